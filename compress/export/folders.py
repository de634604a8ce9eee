"""`compress export`: a model artifact (float or quantized) in, one target's export folder out.

The parity faces are real when they can be: the LFW images of people in no test pair (aligned, cached) when an
LFW folder is given, otherwise held-out synthetic identities, and the record says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.sources import EVAL_IDENTITY_OFFSET, LFW_UNPAIRED, synthetic_faces
from ..artifacts import check_out
from ..errors import UserError
from ..limits import field_range
from ..model.io import load_model, resolve_model_file
from ..quantize.artifact import QuantizedArtifact, is_quantized_artifact, load_quantized
from ..quantize.calibration import calibration_faces
from ..recipe import ExportConfig, QuantizeConfig
from ..targets import load_target
from .in_memory import export_model
from .bundle import check_tar_out, write_tar

MIN_PARITY_FACES = 200  # issue contract: parity on at least 200 real aligned faces


def parity_faces(spec: str | None, n: int = ExportConfig.parity_images, lfw_dir: str | Path | None = None, seed: int = 1
                 ) -> tuple[np.ndarray, str]:
    """(uint8 faces, description). spec None: LFW's unpaired images when lfw_dir is given, else synthetic
    faces of the held-out evaluation identities. A different seed from calibration keeps the sets apart."""
    if n < 1:
        raise UserError(f"--parity-images must be at least 1, got {n}")
    if spec is None and lfw_dir is not None:
        spec = LFW_UNPAIRED + str(lfw_dir)
    if spec is None or spec == "synthetic":
        faces = synthetic_faces(-(-n // 2), 2, seed=seed, first_identity=EVAL_IDENTITY_OFFSET, progress=False)
        return faces.images[:n], (f"{n} SYNTHETIC faces of held-out identities {EVAL_IDENTITY_OFFSET}.. "
                                  f"(built-in generator, seed {seed}; pass --lfw or --parity-data for real faces)")
    images, desc = calibration_faces(spec, n, seed=seed, align=True)
    return images, f"{n} real aligned faces from {spec} ({desc['chosen']})"


def quantize_on_the_way(model: Any, source_path: Path, calibration_spec: str | None = None,
                        n_calibration: int = QuantizeConfig.images, align: bool = False,
                        progress: bool = True) -> QuantizedArtifact:
    """A float model exported at int8: post-training quantization in memory, as `compress quantize` does by
    default (its calibration set, float layers and NNCF settings), recorded in the export's manifest."""
    from ..artifacts import file_sha256
    from ..quantize.in_memory import fake_quant_cosine, ptq, resolve_keep_float

    q = QuantizeConfig
    calib, desc = calibration_faces(calibration_spec, n_calibration, seed=0, align=align)
    names = resolve_keep_float(model, q.keep_float)
    if progress:
        print(f"quantizing on the way: {source_path} is a float model and the target's precision is int8; post-"
              f"training quantization (NNCF) with {len(calib)} calibration faces ({desc['source']}, "
              f"{calibration_spec or 'synthetic, the default'}); float layers: {', '.join(names) or 'none'}. "
              f"`compress quantize` first gives the same with more control (QAT, other calibration)")
    qmodel = ptq(model, calib, names, overflow_fix=q.overflow_fix, activations=q.activations)
    meta = {"mode": "ptq", "quantized_by": "compress export (the float model was quantized on the way)",
            "calibration": desc, "keep_float": names,
            "nncf": {"overflow_fix": q.overflow_fix, "activations": f"{q.activations}, per tensor",
                     "batchnorm": "folded into the convs before quantization"},
            "cosine_calibration": fake_quant_cosine(model, qmodel, calib[:128]),
            "source_model": {"path": str(source_path), "sha256": file_sha256(source_path)}}
    return QuantizedArtifact(path=None, float_model=model.eval(), qmodel=qmodel, calibration=calib,
                             keep_float=names, meta=meta)


def default_out(model_path: str | Path, target: str, precision: str) -> Path:
    from ..zoo import safe_name

    return Path("runs") / "exports" / f"{safe_name(model_path)}-{target}-{precision}"


def export_artifact(model_path: str | Path, target: str, out: str | Path | None = None,
                    precision: str | None = None, parity_spec: str | None = None,
                    n_parity: int = ExportConfig.parity_images, lfw: str | Path | None = None,
                    threads: int = ExportConfig.threads, overwrite: bool = False,
                    progress: bool = True, bundle: bool = False, calibration_spec: str | None = None,
                    n_calibration: int = QuantizeConfig.images, align: bool = False) -> dict[str, Any]:
    """Load a float model artifact (train/prune output) or a quantized one (quantize output) and export it.
    A float model at int8 is quantized on the way (quantize_on_the_way; calibration_spec / n_calibration / align
    as `compress quantize`). bundle: also pack the folder as <out>.tar.gz beside it, for copying to the board."""
    if threads < 0:
        raise UserError(f"--threads must be >= 0 (0 = the runtime's default), got {threads}")
    if n_parity < 1:
        raise UserError(f"--parity-images must be at least 1, got {n_parity}")
    field_range(ExportConfig, "parity_images").check(n_parity, "--parity-images")
    field_range(ExportConfig, "threads").check(threads, "--threads")
    if n_calibration < 1:
        raise UserError(f"--calibration-images must be at least 1, got {n_calibration}")
    tgt = load_target(target)  # unknown target: fail before loading anything
    prec = precision or tgt.default_precision
    out = Path(out) if out is not None else default_out(model_path, tgt.name, prec)
    check_out(out, "export", overwrite)  # before minutes of work, not after
    if bundle:
        check_tar_out(out, overwrite)
    p = Path(model_path)
    if is_quantized_artifact(p):
        art = load_quantized(p)
        # fp32 / fp16 from a quantized artifact: its float weights (QAT-tuned when QAT ran).
        source = art if prec == "int8" else art.float_model
        source_path = p
    else:
        source = load_model(p)
        source_path = resolve_model_file(p)
        if prec == "int8" and prec in tgt.precisions:  # one command to the target's default: quantize here
            source = quantize_on_the_way(source, source_path, calibration_spec, n_calibration, align, progress)
    images, desc = parity_faces(parity_spec, n_parity, lfw)
    if len(images) < MIN_PARITY_FACES and progress:
        print(f"note: parity on {len(images)} faces (< {MIN_PARITY_FACES}); the record flags it")
    manifest = export_model(source, tgt.path or tgt.name, prec, out, parity_images=images, parity_desc=desc,
                            lfw_dir=lfw, overwrite=overwrite, progress=progress, source_path=source_path,
                            threads=threads)
    if bundle:
        return {**manifest, "out": str(out), "tar": str(write_tar(out))}
    return {**manifest, "out": str(out)}
