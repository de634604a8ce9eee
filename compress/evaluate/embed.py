"""Face embedders: one interface over a project model (PyTorch) and any ONNX file (onnxruntime).

Both take aligned uint8 RGB crops [N,112,112,3] and return L2-normalised float32 embeddings, so the teacher,
trained models and exported files all go through the same evaluation code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.transforms import MEAN, STD, to_float
from ..errors import UserError


def execution_notes(embedder: Any) -> dict[str, str]:
    """Record fields saying how a runtime executed an int8 model here, when that is not plain (see
    compress.export.runtimes.OpenVinoEmbedder): every accuracy and parity record carries them."""
    int8 = getattr(embedder, "int8", "none")
    return {} if int8 == "none" else {"int8_execution": int8}


def normalise_nchw(batch: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] RGB -> float32 [N,3,H,W] with the project's (ImageNet) normalisation, for runtimes."""
    mean = np.array(MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(STD, np.float32).reshape(1, 3, 1, 1)
    return (batch.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std


class Embedder:
    name: str = ""
    runtime: str = ""
    input_size: int = 112
    int8: str = "none"  # how an int8 model's integer part ran: "none" (float model), "native", "emulated ..."

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self.forward_nchw(normalise_nchw(batch))

    def forward_nchw(self, x: np.ndarray) -> np.ndarray:
        """Already-normalised float32 [N,3,H,W] -> raw (unnormalised) embeddings; the entry for inputs that
        are not uint8 crops, e.g. a training step's augmented batch seen by an online teacher."""
        raise NotImplementedError

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """forward_nchw on a torch tensor, returned on x's device (torch embedders skip the host round trip)."""
        return torch.from_numpy(self.forward_nchw(x.detach().cpu().numpy())).to(x.device)

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

    @torch.no_grad()
    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.detach().float().to(self.device)).float().to(x.device)


class OnnxTorchEmbedder(TorchEmbedder):
    """An ONNX face model converted to a torch module (compress.model.onnx_torch): batched, on any device,
    same raw embeddings as onnxruntime to float rounding (cosine > 0.99999 on the MobileFaceNet teacher)."""

    runtime = "torch-from-onnx"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from ..model.onnx_torch import onnx_to_torch

        module = onnx_to_torch(path)
        super().__init__(module, name=Path(path).name, device=device)
        self.input_size = module.input_size


class OnnxEmbedder(Embedder):
    """Any ONNX face model with input [B,3,H,W] float, RGB, ImageNet normalisation (the project's convention
    and the MobileFaceNet teacher's). A fixed batch dimension of 1 is handled by looping."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 0, int8: str = "auto") -> None:
        """int8 (a QDQ model): "native" lets onnxruntime fuse Q/DQ pairs into its integer kernels (QLinearConv);
        "emulated" keeps the graph unfused, each conv computed in float between its DequantizeLinear and
        QuantizeLinear, which equals exact int32 accumulation; "auto" emulates only on an x86 host without VNNI,
        where the fused u8 x s8 kernels saturate int16 sums (compress.evaluate.int8_host.host_int8_saturates)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.int8 = _onnx_int8_execution(path, int8)
        if self.int8.startswith("emulated"):
            # level 1 keeps Q/DQ where they are; the QDQ -> QLinear fusions are level-2 transformers
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise UserError(f"cannot load ONNX model {path}: {str(e).splitlines()[0][:160]}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise UserError(f"{path}: a face model takes one image input [B,3,H,W], this one takes {len(inputs)} "
                            f"({', '.join(f'{i.name} {i.shape}' for i in inputs)}); export it with a single input")
        inp = inputs[0]
        if len(inp.shape) != 4 or inp.shape[1] != 3:
            raise UserError(f"{path}: expected an image input [B,3,H,W], got {inp.shape}")
        if not outputs or len(outputs[0].shape or []) != 2:
            got = f"{outputs[0].name} {outputs[0].shape}" if outputs else "no output"
            raise UserError(f"{path}: expected an embedding output [B,D] (one vector per face), got {got}; "
                            "pass a face-embedding model (or export one with a flattened embedding output)")
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.input_size = int(inp.shape[2]) if isinstance(inp.shape[2], int) else 112
        self.name = Path(path).name

    def forward_nchw(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if self.fixed_batch == 1:
            return np.concatenate([self.session.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))])
        return self.session.run(None, {self.input_name: x})[0]


def _onnx_int8_execution(path: str | Path, mode: str) -> str:
    """How a QDQ model's integer part runs here (compress.evaluate.int8_host.int8_execution)."""
    from .int8_host import int8_execution

    try:
        import onnx

        quantized = any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node)
    except Exception:
        quantized = False  # unreadable here: onnxruntime's own error follows
    return int8_execution(quantized, mode, "onnxruntime's fused u8 x s8 kernels",
                          "the Q/DQ graph runs unfused (float convs between Q/DQ)")


ONNX_RUNTIMES = ("onnxruntime", "torch", "auto")


def torch_beats_onnxruntime(device: str) -> bool:
    """Whether "auto" runs an ONNX model as a converted torch module on ``device``: on accelerators, yes; on the
    CPU, no: onnxruntime one image at a time stayed ahead of the batched module there (0.7x its images/s at batch
    16-64, 1 thread, 2-core EPYC; `benchmarks/teacher_speed.py`)."""
    return not str(device).startswith("cpu")


def load_embedder(path: str | Path, device: str = "cpu", onnx_runtime: str = "onnxruntime") -> Embedder:
    """A project artifact folder / model.pt, or an .onnx file run by ``onnx_runtime``: "onnxruntime" (CPU),
    "torch" (converted to a torch module on ``device``, batched; onnxruntime with a note on stderr when the
    conversion does not cover the file's ops) or "auto" (torch on accelerators, onnxruntime on the CPU)."""
    if onnx_runtime not in ONNX_RUNTIMES:
        raise ValueError(f"onnx_runtime must be one of {ONNX_RUNTIMES}, got {onnx_runtime!r}")
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise UserError(f"ONNX model {p} not found")
        if onnx_runtime == "torch" or (onnx_runtime == "auto" and torch_beats_onnxruntime(device)):
            try:
                return OnnxTorchEmbedder(p, device=device)
            except UserError as e:
                why = str(e).split("; use the ONNX runtime")[0]
                print(f"note: {why}; running {p.name} in onnxruntime instead", file=sys.stderr)
        return OnnxEmbedder(p)
    from ..model.io import load_model, resolve_model_file

    from ..zoo import is_zoo_spec

    model = load_model(path)
    name = str(path) if is_zoo_spec(path) else resolve_model_file(p).parent.name
    return TorchEmbedder(model, name=f"{name} ({model.schedule.name})", device=device)
