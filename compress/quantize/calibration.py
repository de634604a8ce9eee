"""The calibration set: aligned faces that set every int8 range (NNCF PTQ, QAT init, export).

One array of uint8 [N,112,112,3] RGB crops is chosen once and stored in the quantized artifact, so every int8
path (OpenVINO, ONNX QDQ, TFLite) is calibrated on exactly the same faces.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.folder import FaceSet
from ..data.sources import EVAL_IDENTITY_OFFSET, LFW_UNPAIRED, _read_unlabelled, load_faces, synthetic_faces
from ..errors import UserError

# Synthetic calibration identities: disjoint from the demo's training range (0..) and from the held-out
# evaluation range (EVAL_IDENTITY_OFFSET..), so neither training nor the held-out checks see these faces.
CALIBRATION_IDENTITY_OFFSET = 500_000
_SYNTHETIC_PER_IDENTITY = 4  # several poses/lightings per identity, like a real calibration set


def _pool(spec: str | None, n: int, seed: int, align: bool) -> tuple[FaceSet, str]:
    """All faces the spec offers (for synthetic: just enough for n), and the kind of source."""
    if spec is None or spec == "synthetic":
        ids = -(-n // _SYNTHETIC_PER_IDENTITY)
        return synthetic_faces(ids, _SYNTHETIC_PER_IDENTITY, seed=seed, first_identity=CALIBRATION_IDENTITY_OFFSET,
                               progress=False), "synthetic"
    if spec.startswith(LFW_UNPAIRED):
        return _read_unlabelled(spec, progress=False, align=align), "lfw-unpaired"
    return load_faces(spec, progress=False, align=align), "folder"


def _choose(total: int, n: int, seed: int) -> np.ndarray:
    """A seeded random subset, in file order (so the same seed and data give the same array)."""
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


def calibration_faces(spec: str | None, n: int, seed: int = 0, align: bool = False
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """(uint8 [n,112,112,3] aligned RGB faces, description). spec: None/"synthetic", an image folder, or
    `lfw-unpaired:LFW_DIR`. A source with fewer than n images is an error (never a silent smaller set)."""
    faces, _, desc = calibration_and_held_out(spec, n, seed=seed, align=align, n_held_out=0)
    return faces, desc


def calibration_and_held_out(spec: str | None, n: int, seed: int = 0, align: bool = False, n_held_out: int = 128
                             ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Calibration faces as calibration_faces, plus up to n_held_out faces of the same source that are not
    among them (for measuring the quantized model on faces it was not calibrated on)."""
    if n < 1:
        raise UserError(f"the calibration set needs at least 1 image, got {n}; pass --calibration-images 256 or so")
    pool, kind = _pool(spec, n, seed, align)
    total = len(pool)
    if total < n:
        raise UserError(f"calibration source {spec} has only {total} usable images but {n} were asked for; "
                        f"pass --calibration-images {total} or a larger folder")
    idx = _choose(total, n, seed)
    desc: dict[str, Any] = {"source": kind, "spec": spec or "synthetic", "n": n, "seed": seed,
                            "available": total, "description": pool.describe()}
    if kind == "synthetic":
        desc["chosen"] = (f"identities {CALIBRATION_IDENTITY_OFFSET}..{CALIBRATION_IDENTITY_OFFSET + total // 4 - 1} "
                          f"x {_SYNTHETIC_PER_IDENTITY} images (disjoint from training identities 0.. and from the "
                          f"held-out evaluation identities {EVAL_IDENTITY_OFFSET}..), "
                          f"{n} of them by seeded random choice")
    else:
        desc["chosen"] = f"{n} of {total} images, seeded random choice (numpy default_rng({seed}))"
    calib = np.ascontiguousarray(pool.images[idx])
    held_out = np.empty((0,) + calib.shape[1:], np.uint8)
    if n_held_out > 0:
        if kind == "synthetic":
            # Synthetic held-out faces come from the evaluation identities, as the trainer's own check does.
            ev = synthetic_faces(-(-n_held_out // 2), 2, seed=seed, first_identity=EVAL_IDENTITY_OFFSET, progress=False)
            held_out = ev.images[:n_held_out]
            desc["held_out"] = f"{len(held_out)} synthetic faces of evaluation identities {EVAL_IDENTITY_OFFSET}.."
        else:
            rest = np.setdiff1d(np.arange(total), idx)
            rest = rest[:n_held_out] if len(rest) <= n_held_out else _choose_from(rest, n_held_out, seed)
            held_out = pool.images[rest]
            desc["held_out"] = (f"{len(held_out)} images of the same source not in the calibration set"
                                if len(held_out) else "none: every image of the source is in the calibration set")
    return calib, np.ascontiguousarray(held_out), desc


def _choose_from(values: np.ndarray, n: int, seed: int) -> np.ndarray:
    return values[_choose(len(values), n, seed + 1)]
