"""Parity records: how closely an exported file, run in its runtime, reproduces a reference PyTorch model.

Cosine similarity between the reference's and the runtime's L2-normalised embeddings of the same faces (mean,
min, 1st percentile); optionally LFW accuracy through the runtime. For TensorRT FP16 (no TensorRT here) an
FP16 emulation of the exact exported ONNX: onnxruntime on a copy converted to float16 weights/activations by
onnxruntime.transformers.float16 (keep_io_types=True), which rounds every tensor to half like an FP16 engine
does (TensorRT may still fuse layers or keep some in float, so this bounds, not reproduces, the engine).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..evaluate.embed import Embedder, TorchEmbedder, execution_notes

MIN_FACES = 200
# Below this mean cosine to the float model an int8 file is a different face space, not a rounding of it (the
# paper entries' int8 exports are at 0.97-0.99; a narrow pruned network's per-tensor PTQ reached 0.42): warn.
LOW_INT8_COSINE = 0.9


def low_int8_warning(cosine_mean: float, what: str) -> str | None:
    """The one-line warning for an int8 result this far from float, or None."""
    if cosine_mean >= LOW_INT8_COSINE:
        return None
    return (f"warning: {what}: int8 embeddings are at cosine {cosine_mean:.3f} to float (< {LOW_INT8_COSINE}): "
            "accuracy is lost; measure it (--lfw), keep the worst layers in float (`compress quantize --keep-float`) "
            "or fine-tune with `compress quantize --mode qat`")


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cos = np.sum(a * b, axis=1)
    dist = 1.0 - cos
    rel = np.linalg.norm(a - b, axis=1)  # relative L2 error of the normalised embeddings
    return {"cosine_mean": round(float(cos.mean()), 6), "cosine_min": round(float(cos.min()), 6),
            "cosine_p01": round(float(np.percentile(cos, 1)), 6),
            # 1 - cosine to 3 significant digits: the cosines above round to 1.0 for fp32/fp16 exports
            "distance_mean": float(f"{dist.mean():.3g}"), "distance_max": float(f"{dist.max():.3g}"),
            "rel_l2_error_max": float(f"{rel.max():.3g}")}


def parity_record(reference: torch.nn.Module | Embedder, runner: Embedder, images: np.ndarray, images_desc: str,
                  reference_desc: str = "", reference_embeddings: np.ndarray | None = None) -> dict:
    """Cosine parity of `runner` against `reference` (a torch model run by PyTorch on the CPU in float32, or
    any Embedder) on `images` (uint8 [N,112,112,3]); no flip fusion."""
    ref = reference if isinstance(reference, Embedder) else TorchEmbedder(reference, name=reference_desc or "reference")
    e_ref = reference_embeddings if reference_embeddings is not None else ref.embed(images)
    e_run = runner.embed(images)
    for emb, who in ((e_ref, reference_desc or getattr(ref, "name", "the reference")),
                     (e_run, getattr(runner, "name", "the exported model"))):
        bad = int((~np.isfinite(np.asarray(emb, np.float64))).any(axis=1).sum())
        if bad:  # NaN cosines compare false against every tolerance: fail here, never record them as parity
            raise UserError(f"parity check failed: {who} gives NaN or inf embeddings for {bad} of {len(images)} "
                            "faces; the model's weights are damaged or diverged (re-train or re-quantize it with a "
                            "lower learning rate)")
    n = len(images)
    rec = {
        "reference": reference_desc or getattr(ref, "name", "reference"),
        "reference_runtime": getattr(ref, "runtime", "pytorch"),
        "runtime": getattr(runner, "runtime", "unknown"),
        **execution_notes(runner),
        "model": getattr(runner, "name", ""),
        "images": images_desc,
        "n": n,
        **cosine_stats(e_ref, e_run),
    }
    if n < MIN_FACES:
        rec["warning"] = f"only {n} faces (fewer than {MIN_FACES}): the minimum and 1st percentile are rough"
    return rec


def lfw_record(runner: Embedder, lfw_dir: str | Path, progress: bool = True) -> dict:
    """LFW View-2 accuracy through the runtime (compress.evaluate.lfw.evaluate_lfw), both flip variants."""
    from ..evaluate.lfw import evaluate_lfw

    return evaluate_lfw(runner, lfw_dir, flip="both", progress=progress)


FP16_EMULATION = ("onnxruntime CPU on the exported ONNX converted by onnxruntime.transformers.float16."
                  "convert_float_to_float16(keep_io_types=True): weights and every intermediate tensor stored in "
                  "float16; ops without a float16 CPU kernel are computed in float32 between float16 tensors "
                  "(onnxruntime inserts the casts), so accumulation may be more precise than on the GPU")
FP16_EMULATION_TORCH = "PyTorch CPU, the float model cast to torch.float16 (input cast to half)"


class _HalfTorchEmbedder(TorchEmbedder):
    runtime = "pytorch-fp16-emulation"

    @torch.no_grad()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        from ..data.transforms import to_float

        x = to_float(torch.from_numpy(np.ascontiguousarray(batch))).half()
        return self.model(x).float().numpy()


def fp16_emulation_runner(onnx_path: str | Path, float_model: torch.nn.Module | None = None,
                          workdir: str | Path | None = None) -> tuple[Embedder, str]:
    """An Embedder emulating an FP16 engine of `onnx_path`, and a description of the method. First choice:
    onnxruntime on a float16 copy of the exact ONNX; if that conversion or session fails, PyTorch half on the
    CPU (of `float_model`, which must then be given)."""
    import onnx

    from ..evaluate.embed import OnnxEmbedder

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        m16 = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
        d = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="fp16-emulation-"))
        p16 = d / (Path(onnx_path).stem + ".fp16-emulation.onnx")
        onnx.save(m16, str(p16))
        emb = OnnxEmbedder(p16)
        emb.embed(np.zeros((1, emb.input_size, emb.input_size, 3), np.uint8))  # fail here, not later
        emb.runtime = "onnxruntime-fp16-emulation"
        return emb, FP16_EMULATION
    except Exception as e:  # noqa: BLE001 - fall back to torch half and say so
        if float_model is None:
            raise
        import copy

        emb = _HalfTorchEmbedder(copy.deepcopy(float_model).half(), name="float model in half")
        return emb, f"{FP16_EMULATION_TORCH} (onnxruntime float16 failed: {type(e).__name__}: {str(e)[:120]})"
