"""export_model: a float model or a quantized artifact -> an artifact folder for one target.

The folder holds the model file(s), ``manifest.json`` (source, target, runtime, precision, opset, input spec,
tool versions, host) and ``parity.json`` (cosine parity of the exported file in its runtime against the
PyTorch model(s), and LFW accuracy through the runtime when an LFW folder is given).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import _pkg, artifact_dir, read_manifest, file_sha256, host_description, now_iso, tree_sha256, versions, write_json
from ..errors import UserError
from ..evaluate.embed import TorchEmbedder
from ..model.network import FaceMobileNet, batchnorms_folded, fold_embedding_bn
from ..quantize.artifact import QuantizedArtifact
from ..targets import Target, load_target
from .bundle import BUNDLE_FORMAT, RUNNER_FILE, SUMS_FILE, write_bundle, write_sums
from .formats import ExportJob, format_for_target
from .parity import cosine_stats, lfw_record, parity_record
from .runtimes import load_runner

EXPORT_FORMAT = "compress.export/1"
TOOLS = ("onnx", "onnxsim", "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert", "torchao",
         "polygraphy", "tensorrt")


def tool_versions() -> dict[str, str]:
    out = versions()
    for name in TOOLS:
        out[name] = _pkg(name) or "not installed"
    return out


def _source_sha(path: str | Path | None) -> str | None:
    return tree_sha256(path) if path is not None and Path(path).exists() else None


def resolve_precision(target: Target, precision: str | None, quantized: bool, fmt_precisions: tuple) -> str:
    precision = precision or target.default_precision
    if precision not in target.precisions:
        raise UserError(f"target {target.name} does not offer precision {precision!r}; "
                        f"choose one of: {', '.join(target.precisions)}")
    if precision not in fmt_precisions:
        raise UserError(f"the {target.runtime} exporter cannot write {precision!r}; "
                        f"it writes: {', '.join(fmt_precisions)}")
    if precision == "int8" and not quantized:
        others = [p for p in target.precisions if p != "int8"]
        alt = f" (or pass --precision {'/'.join(others)})" if others else ""
        raise UserError(f"target {target.name} at int8 needs a quantized model: run `compress quantize --model M` "
                        f"first and export its output{alt}")
    return precision


def _embedding_bn(fold: bool, is_int8: bool, source: Any) -> str:
    if fold:
        return "folded into the embedding conv (exact)"
    if is_int8 and not batchnorms_folded(source.qmodel):
        return "kept (the int8 graph as calibrated)"
    return "every BatchNorm folded into its conv before quantization"


def export_model(source: torch.nn.Module | QuantizedArtifact, target: str | Path, precision: str | None,
                 out: str | Path, *, parity_images: np.ndarray, parity_desc: str, lfw_dir: str | Path | None = None,
                 overwrite: bool = False, progress: bool = True, source_path: str | Path | None = None,
                 source_sha256: str | None = None, threads: int = 0) -> dict[str, Any]:
    """Export `source` (a FaceMobileNet in float, with `source_path`/`source_sha256` naming its file, or a
    QuantizedArtifact) for `target` (name or .toml path) at `precision` (None = the target's default) into the
    folder `out`, check it in its runtime here, and return the manifest."""
    t0 = time.perf_counter()
    tgt = load_target(target)
    fmt = format_for_target(tgt)
    quantized = isinstance(source, QuantizedArtifact)
    float_model = source.float_model if quantized else source
    if not isinstance(float_model, torch.nn.Module):
        raise UserError(f"export needs a model or a quantized artifact, got {type(source).__name__}")
    prec = resolve_precision(tgt, precision, quantized, fmt.precisions)
    if parity_images is None or np.asarray(parity_images).ndim != 4:
        raise UserError("parity_images must be uint8 faces [N,112,112,3]")
    float_model = float_model.eval()
    if quantized:
        source_path = source_path or source.path
    sha = source_sha256 or _source_sha(source_path)
    is_int8 = prec == "int8"

    with artifact_dir(out, "export", overwrite=overwrite) as stage:
        # float exports get the final BN folded (exact); int8 ones keep the graph their quantizers calibrated
        fold = not is_int8 and isinstance(float_model, FaceMobileNet) and not batchnorms_folded(float_model)
        job = ExportJob(float_model=fold_embedding_bn(float_model) if fold else float_model, precision=prec,
                        target=tgt, stage=stage,
                        qmodel=source.qmodel.eval() if quantized and is_int8 else None,
                        calibration=source.calibration if quantized else None,
                        keep_float=list(source.keep_float) if quantized else [], progress=progress)
        t_exp = time.perf_counter()
        res = fmt.export(job)
        export_s = time.perf_counter() - t_exp

        job.log(f"parity on {len(parity_images)} faces")
        runner = load_runner(stage / res.model_file, threads=threads)
        runner.name = f"{Path(out).name}/{res.model_file}"
        schedule = getattr(getattr(float_model, "schedule", None), "name", "")
        float_desc = f"PyTorch float32 model ({schedule or 'FaceMobileNet'}), CPU"
        parity: dict[str, Any] = {"format": "compress.export.parity/1", "images": parity_desc,
                                  "flip": False, "checks": {}}
        ref_float = TorchEmbedder(float_model, name=float_desc)
        e_float = ref_float.embed(parity_images)
        parity["checks"]["vs_float"] = parity_record(ref_float, runner, parity_images, parity_desc, float_desc,
                                                     reference_embeddings=e_float)
        if runner.int8.startswith("emulated"):  # what this host's own int8 kernels give: shown, not gated
            native = load_runner(stage / res.model_file, threads=threads, int8="native")
            parity["checks"]["vs_float"]["host_int8_kernels"] = {
                **cosine_stats(e_float, native.embed(parity_images)),
                "note": "this host's native int8 kernels, which saturate without VNNI; not what the board computes"}
        if quantized and is_int8:
            qdesc = "NNCF fake-quant model (PyTorch, CPU)"
            parity["checks"]["vs_nncf_fake_quant"] = parity_record(source.qmodel, runner, parity_images,
                                                                   parity_desc, qdesc)
        for key, extra, how in res.extra_runners:
            rec = parity_record(ref_float, extra, parity_images, parity_desc, float_desc, reference_embeddings=e_float)
            rec["method"] = how
            parity["checks"][key] = rec
        if lfw_dir is not None:
            job.log("LFW through the runtime")
            parity["lfw"] = lfw_record(runner, lfw_dir, progress=progress)
        write_json(stage / "parity.json", parity)
        bundle_files = write_bundle(stage, tgt, prec, res.model_file, res.input, parity_images, e_float, parity_desc,
                                    float_desc, parity["checks"]["vs_float"], Path(out).name) + [SUMS_FILE]

        manifest = {
            "format": EXPORT_FORMAT,
            "created": now_iso(),
            "host": host_description(),
            "target": {"name": tgt.name, "runtime": tgt.runtime, "runtime_version": tgt.runtime_version,
                       "path": tgt.path},
            "export_format": fmt.name,
            "runtime": tgt.runtime,
            "checked_here_by": runner.runtime,
            "precision": prec,
            "source": {"kind": "quantized" if quantized else "float", "path": str(source_path) if source_path else None,
                       "sha256": sha, "schedule": schedule,
                       **({"keep_float": list(source.keep_float), "quantize_meta": source.meta} if quantized else {})},
            "model_file": res.model_file,
            "embedding_bn": _embedding_bn(fold, is_int8, source),
            "model_sha256": file_sha256(stage / res.model_file),
            "files": res.files + ["manifest.json", "parity.json"] + bundle_files,
            # what goes to the board besides the model files (not counted in the artifact's size)
            "bundle": {"format": BUNDLE_FORMAT, "files": bundle_files, "run": f"python3 {RUNNER_FILE}",
                       "board_python_min": tgt.board_python_min},
            "opset": res.opset,
            "input": res.input,
            "output": {"name": "embedding", "shape": [1, int(e_float.shape[1])], "dtype": "float32",
                       "l2_normalised": False},
            "details": res.details,
            "parity": {k: {m: v[m] for m in ("reference", "runtime", "n", "cosine_mean", "cosine_min", "cosine_p01",
                                           "distance_max", "rel_l2_error_max")}
                       for k, v in parity["checks"].items()},
            "versions": tool_versions(),
            "timings": {"export_s": round(export_s, 2), "total_s": round(time.perf_counter() - t0, 2)},
        }
        if tgt.runtime == "tensorrt":
            manifest["engine"] = res.details["engine"]
        write_json(stage / "manifest.json", manifest)
        write_sums(stage)
    return read_manifest(Path(out)) or manifest  # as written: artifact_dir adds the kind and the file list
