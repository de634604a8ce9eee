"""The quantize stage on artifact folders: a train / prune artifact (or zoo:NAME) in, a quantized artifact out
(`compress quantize`). The in-memory NNCF work (PTQ, QAT, keep-float scopes) is in in_memory.py."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

from ..artifacts import check_out
from ..errors import UserError
from ..limits import field_range
from ..recipe import QuantizeConfig
from .artifact import QuantizedArtifact, save_quantized
from .calibration import calibration_and_held_out
from .in_memory import ACTIVATIONS, DEFAULT_KEEP_FLOAT, OVERFLOW_FIX, fake_quant_cosine, float_weights, ptq, qat, resolve_keep_float

MODES = ("ptq", "qat")


def _training_loss_settings(model_path: str | Path) -> dict[str, Any]:
    """The margin-loss settings the source model was trained with (its run manifest), for QAT to reuse."""
    from ..model.io import resolve_model_file

    manifest = resolve_model_file(model_path).parent / "manifest.json"  # zoo:NAME included
    try:
        cfg = json.loads(manifest.read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: cfg[k] for k in ("loss", "s", "m", "terms") if k in cfg}


_Q = QuantizeConfig  # the defaults ([quantize] in a recipe)


def quantize_artifact(model_path: str | Path, out: str | Path, mode: str = _Q.mode, calibration_spec: str | None = None,
                      n_calibration: int = _Q.images, keep_float: Iterable[str] | None = DEFAULT_KEEP_FLOAT,
                      qat_steps: int = _Q.qat_steps, qat_lr: float = _Q.qat_lr, qat_batch_size: int = 32,
                      train_spec: str | None = None, distill_weight: float = 50.0, align: bool = _Q.align,
                      n_held_out: int = 128, bias_correction: bool = False, overflow_fix: str = _Q.overflow_fix,
                      threads: int = _Q.threads, activations: str = _Q.activations,
                      progress: bool = True, overwrite: bool = False, seed: int = 0) -> dict[str, Any]:
    """Quantize the model artifact at `model_path` (PTQ, or PTQ then QAT), measure float-vs-int8 embedding
    cosine on held-out faces, write the quantized artifact folder `out`, return its manifest.

    calibration_spec / train_spec: None or "synthetic" (built-in generator), an image folder of aligned faces
    (`align=True` for raw photos), or `lfw-unpaired:LFW_DIR` (calibration only). threads > 0 sets torch's
    intra-op threads (on a busy 2-core host, 1 thread made PTQ 9x faster than 2: NNCF's cost is Python
    overhead, and oversubscribed OpenMP threads spin)."""
    from ..artifacts import file_sha256
    from ..data.sources import load_faces, synthetic_faces
    from ..model.io import load_model, resolve_model_file

    if mode not in MODES:
        raise UserError(f"unknown quantization mode '{mode}'; choose one of: {', '.join(MODES)}")
    if overflow_fix not in OVERFLOW_FIX:
        raise UserError(f"unknown overflow fix '{overflow_fix}'; choose one of: {', '.join(OVERFLOW_FIX)}")
    if activations not in ACTIVATIONS:
        raise UserError(f"unknown activation quantization '{activations}'; choose one of: {', '.join(ACTIVATIONS)}")
    # Meaningless numbers fail here, not after minutes of calibration.
    if n_calibration < 1:
        raise UserError(f"--calibration-images must be >= 1, got {n_calibration}")
    if mode == "qat" and qat_steps < 1:
        raise UserError(f"--qat-steps must be >= 1 with --mode qat, got {qat_steps}")
    if not qat_lr > 0:
        raise UserError(f"--qat-lr must be > 0, got {qat_lr}")
    if threads < 0:
        raise UserError(f"--threads must be >= 0 (0 = torch's default), got {threads}")
    for name, v, key in (("--calibration-images", n_calibration, "images"), ("--qat-lr", qat_lr, "qat_lr"),
                         ("--threads", threads, "threads")):
        field_range(QuantizeConfig, key).check(v, name)  # the caps (and finiteness) the checks above leave open
    out = Path(out)
    check_out(out, "quantize", overwrite)  # before minutes of work, not after
    if threads:
        import torch

        torch.set_num_threads(threads)
    model_file = resolve_model_file(model_path)
    model = load_model(model_file)
    names = resolve_keep_float(model, keep_float)
    calib, held_out, cdesc = calibration_and_held_out(calibration_spec, n_calibration, seed=seed, align=align,
                                                      n_held_out=n_held_out)
    if len(held_out) == 0:
        ev = synthetic_faces(-(-n_held_out // 2), 2, seed=seed, first_identity=1_000_000, progress=False)
        held_out = ev.images[:n_held_out]
        cdesc["held_out"] = f"{len(held_out)} synthetic faces (the calibration source had no images left over)"
    if progress:
        print(f"quantizing {model.schedule.name} ({mode}) with {len(calib)} calibration faces "
              f"({cdesc['source']}); float layers: {', '.join(names) or 'none (full int8)'}")
    t0 = time.perf_counter()
    qmodel = ptq(model, calib, names, bias_correction=bias_correction, overflow_fix=overflow_fix,
                 activations=activations)
    timings = {"ptq_s": round(time.perf_counter() - t0, 2)}
    cos_ptq = fake_quant_cosine(model, qmodel, held_out)
    meta: dict[str, Any] = {
        "mode": mode, "calibration": cdesc, "keep_float": names,
        "nncf": {"preset": "mixed (asymmetric activations)" if activations == "asymmetric" else
                 "performance (symmetric)", "activations": f"{activations}, per tensor", "subset_size": len(calib),
                 "per_channel_weights": True, "calibration_batch": 32,
                 "batchnorm": "folded into the convs before quantization",
                 "fast_bias_correction": bias_correction, "overflow_fix": overflow_fix},
        "cosine_ptq": cos_ptq,
        "source_model": {"path": str(model_file), "sha256": file_sha256(model_file)},
    }
    float_model = model
    if mode == "qat":
        if train_spec is None or train_spec == "synthetic":
            train = synthetic_faces(120, 20, seed=seed, progress=progress)  # the demo's training identities
        else:
            train = load_faces(train_spec, progress=progress, align=align)
        loss_cfg = _training_loss_settings(model_path)
        history: list[dict[str, float]] = []
        t1 = time.perf_counter()
        qmodel = qat(model, calib, train, steps=qat_steps, lr=qat_lr, batch_size=qat_batch_size, keep_float=names,
                     teacher=model, distill_weight=distill_weight, seed=seed, progress=progress, qmodel=qmodel,
                     history=history, **loss_cfg)
        timings["qat_s"] = round(time.perf_counter() - t1, 2)
        # The artifact's float model is the QAT-tuned float weights, so float and int8 exports match.
        float_model = float_weights(qmodel)
        tail = history[-min(20, len(history)):]
        meta["qat"] = {"steps": qat_steps, "lr": qat_lr, "batch_size": qat_batch_size, "distill_weight": distill_weight,
                       "train_data": train.describe(),
                       "loss_settings": loss_cfg or "defaults (arcface_w, s=32, m=0.5, N=2)",
                       "first_loss": history[0]["loss"], "final_loss": sum(h["loss"] for h in tail) / len(tail),
                       "bn": "eval mode (frozen running statistics)"}
        meta["cosine_qat_vs_tuned_float"] = fake_quant_cosine(float_model, qmodel, held_out)
    cos = fake_quant_cosine(model, qmodel, held_out)
    if cos["n"] and not all(math.isfinite(cos[k]) for k in ("mean", "min")):  # a NaN model must not be written
        raise UserError(f"not writing {out}: the quantized model's embeddings are NaN or inf (cosine mean "
                        f"{cos['mean']}){' after QAT: lower --qat-lr' if mode == 'qat' else ''}; the source model may "
                        "be damaged")
    meta["cosine"] = {**cos, "versus": "source float model", "faces": cdesc["held_out"],
                      "runtime": "pytorch fake-quant (NNCF), CPU"}
    meta["timings"] = timings
    if progress:
        print(f"  float vs int8 embedding cosine on {cos['n']} held-out faces: mean {cos['mean']:.5f}, "
              f"min {cos['min']:.5f}")
    art = QuantizedArtifact(out, float_model, qmodel, calib, names, meta)
    save_quantized(art, out, overwrite=overwrite, manifest_extra={"source_model": meta["source_model"],
                                                                   "metrics": {"cosine": meta["cosine"]}})
    return json.loads((out / "manifest.json").read_text())
