"""Saving and loading model artifacts. A model file carries its own schedule, so it rebuilds anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..artifacts import atomic_write
from ..data.transforms import NORMALIZATION
from ..errors import UserError
from ..schedules import Schedule
from .network import FaceMobileNet, batchnorms_folded, fold_batchnorms

MODEL_FORMAT = "compress.model/1"
MODEL_FILE = "model.pt"


def save_model(model: FaceMobileNet, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    payload = {
        "format": MODEL_FORMAT,
        "schedule": model.schedule.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalization": NORMALIZATION,
        # a folded model (fold_batchnorms: QAT-tuned weights of a quantized model) has no BN and conv biases
        "batchnorm": "folded" if batchnorms_folded(model) else "separate",
        **(extra or {}),
    }
    return atomic_write(path, lambda p: torch.save(payload, p))


def resolve_model_file(path: str | Path) -> Path:
    """An artifact folder, its model.pt, `zoo:NAME` (hash-checked), or an .onnx face model (imported once per
    file content, see onnx_import.import_cached) -> the model file."""
    from ..zoo import is_zoo_spec, verified_model_file

    if is_zoo_spec(path):
        return verified_model_file(path)
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        from .onnx_import import import_cached

        return import_cached(p)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise UserError(f"model {path} not found; pass an artifact folder (from `compress train`) or its model.pt")
    return p


def load_model(path: str | Path) -> FaceMobileNet:
    p = resolve_model_file(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign/corrupt pickles
        raise UserError(f"{p} is not a readable compress model ({type(e).__name__}); re-run `compress train`") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserError(f"{p} is not a compress model file (expected format {MODEL_FORMAT})")
    try:
        model = FaceMobileNet(Schedule.from_dict(payload["schedule"]))
        if payload.get("batchnorm") == "folded":
            model = fold_batchnorms(model.eval())
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise UserError(f"{p}: its schedule is missing or malformed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                        "the file is damaged or was not written by compress: re-run `compress train`") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"{p}: holds no weights (state_dict); the file is damaged: re-run `compress train`")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UserError(f"{p}: its weights do not fit its schedule '{model.schedule.name}' "
                        f"({str(e).splitlines()[0][:120]}); the file is damaged or was edited: re-run `compress train`"
                        ) from None
    return model.eval()
