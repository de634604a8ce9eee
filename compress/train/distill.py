"""Embedding-level distillation targets: the teacher's embedding of every training image and its mirror.

The teacher is any embedder (an ONNX file such as MobileFaceNet, or a project artifact such as the unpruned
network when fine-tuning a pruned one).

Computed once per (teacher file, data) and cached, because the MobileFaceNet teacher costs ~12x the Table 3
student per image; the student's random shift/crop is small enough that the teacher's embedding of the
un-shifted view is a faithful target, while the mirror is not, so both views are kept.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..artifacts import atomic_write, file_sha256
from ..errors import UserError
from ..evaluate.embed import load_embedder


def cache_dir() -> Path:
    return Path(os.environ.get("COMPRESS_TEACHER_CACHE", Path.home() / ".cache" / "facecompress" / "teacher"))


def teacher_path(value: str) -> Path:
    """A recipe's teacher: `zoo:NAME` (hash-checked; its folder) or a path resolved as the recipe's others."""
    from ..recipe import resolve_path
    from ..zoo import is_zoo_spec, verified_model_file

    return verified_model_file(value).parent if is_zoo_spec(value) else resolve_path(value)


def teacher_sha256(teacher: Path) -> str:
    """sha256 of the teacher's weights file (an ONNX file, or an artifact folder's model.pt)."""
    weights = teacher / "model.pt" if teacher.is_dir() else teacher
    if not weights.is_file():
        raise UserError(f"teacher model {teacher} not found; pass an ONNX face model or a model artifact, "
                        "or drop teacher from the recipe")
    return file_sha256(weights)


def teacher_targets(teacher: str | Path, images: np.ndarray, progress: bool = True, device: str = "cpu"
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """(embeddings, mirrored-image embeddings, teacher sha256), both [N, D] L2-normalised float32.

    On an accelerator an ONNX teacher runs as a converted torch module there, 64 images a batch; on the CPU in
    onnxruntime (faster there, even one image at a time for a fixed-batch file)."""
    teacher = Path(teacher)
    t_hash = teacher_sha256(teacher)
    h = hashlib.sha256(t_hash.encode())
    h.update(np.ascontiguousarray(images).data)
    path = cache_dir() / f"{h.hexdigest()[:24]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["plain"], z["mirror"], t_hash
    emb = load_embedder(teacher, device=device, onnx_runtime="auto")
    plain = emb.embed(images, batch_size=64, progress=progress)
    mirror = emb.embed(np.ascontiguousarray(images[:, :, ::-1]), batch_size=64, progress=progress)

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, plain=plain, mirror=mirror)

    atomic_write(path, write)
    return plain, mirror, t_hash
