"""Face embedders: one interface over a project model (PyTorch) and any ONNX file (onnxruntime).

Both take aligned uint8 RGB crops [N,112,112,3] and return L2-normalised float32 embeddings, so the teacher,
trained models and exported files all go through the same evaluation code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.transforms import MEAN, STD, to_float
from ..errors import UserError


def normalise_nchw(batch: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] RGB -> float32 [N,3,H,W] with the project's (ImageNet) normalisation, for runtimes."""
    mean = np.array(MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(STD, np.float32).reshape(1, 3, 1, 1)
    return (batch.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std


class Embedder:
    name: str = ""
    runtime: str = ""
    input_size: int = 112

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self.forward_nchw(normalise_nchw(batch))

    def forward_nchw(self, x: np.ndarray) -> np.ndarray:
        """Already-normalised float32 [N,3,H,W] -> raw (unnormalised) embeddings; the entry for inputs that
        are not uint8 crops, e.g. a training step's augmented batch seen by an online teacher."""
        raise NotImplementedError

    def embed(self, images: np.ndarray, batch_size: int = 64, flip: bool = False, progress: bool = False) -> np.ndarray:
        """images uint8 [N,H,W,3] RGB -> [N,D] L2-normalised; flip=True fuses the mirrored image's embedding."""
        if images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise UserError(f"{self.name} expects aligned crops of shape [N,{self.input_size},{self.input_size},3], "
                            f"got {list(images.shape)}; align the images first (`compress data align`)")
        out = []
        for i in tqdm(range(0, len(images), batch_size), desc=f"embedding ({self.runtime})", unit="batch",
                      disable=not progress, leave=False):
            b = images[i:i + batch_size]
            e = self._forward(b)
            if flip:
                e = e + self._forward(np.ascontiguousarray(b[:, :, ::-1]))
            out.append(e)
        emb = np.concatenate(out).astype(np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


class TorchEmbedder(Embedder):
    runtime = "pytorch"

    def __init__(self, model: torch.nn.Module, name: str = "model", device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.name = name
        self.input_size = getattr(getattr(model, "schedule", None), "input_size", 112)

    @torch.no_grad()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        x = to_float(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return self.model(x).float().cpu().numpy()

    @torch.no_grad()
    def forward_nchw(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)).float().cpu().numpy()


class OnnxEmbedder(Embedder):
    """Any ONNX face model with input [B,3,H,W] float, RGB, ImageNet normalisation (the project's convention
    and the MobileFaceNet teacher's). A fixed batch dimension of 1 is handled by looping."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise UserError(f"cannot load ONNX model {path}: {str(e).splitlines()[0][:160]}") from None
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.shape[1] != 3:
            raise UserError(f"{path}: expected an image input [B,3,H,W], got {inp.shape}")
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.input_size = int(inp.shape[2]) if isinstance(inp.shape[2], int) else 112
        self.name = Path(path).name

    def forward_nchw(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if self.fixed_batch == 1:
            return np.concatenate([self.session.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))])
        return self.session.run(None, {self.input_name: x})[0]


def load_embedder(path: str | Path, device: str = "cpu") -> Embedder:
    """A project artifact folder / model.pt, or an .onnx file."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise UserError(f"ONNX model {p} not found")
        return OnnxEmbedder(p)
    from ..model.io import load_model, resolve_model_file

    model = load_model(p)
    name = resolve_model_file(p).parent.name
    return TorchEmbedder(model, name=f"{name} ({model.schedule.name})", device=device)
