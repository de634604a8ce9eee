"""Saving and loading model artifacts. A model file carries its own schedule, so it rebuilds anywhere."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..schedules import Schedule
from .checkpoint import MODEL_FILE, MODEL_FORMAT, save_model  # noqa: F401 (re-exported: the public place)
from .network import FaceMobileNet, fold_batchnorms

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
        _refuse_export_folder(p)
        p = p / MODEL_FILE
    if not p.is_file():
        raise UserError(f"model {path} not found; pass an artifact folder (from `compress train`) or its model.pt")
    return p


def _refuse_export_folder(p: Path) -> None:
    """An export folder (`compress export` output) holds a runtime file, not the PyTorch model a command needs:
    say so, and name the model it was exported from."""
    import json

    try:
        m = json.loads((p / "manifest.json").read_text())
    except (OSError, ValueError):
        return
    if isinstance(m, dict) and m.get("format") == "compress.export/1" and not (p / MODEL_FILE).is_file():
        src = (m.get("source") or {}).get("path") if isinstance(m.get("source"), dict) else None
        raise UserError(f"{p} is an export folder (`compress export` output for a board runtime), not a model "
                        f"artifact; pass the model it was exported from{f' ({src})' if src else ''}")


def describe_model(spec: str | Path) -> str:
    """What a command says about the model it used: the zoo entry's line, or the path and its sha256."""
    from ..artifacts import file_sha256
    from ..zoo import describe_entry, is_zoo_spec

    if is_zoo_spec(spec):
        return describe_entry(str(spec))
    p = Path(spec)
    f = p if p.suffix.lower() == ".onnx" else resolve_model_file(p)
    return f"{spec} (sha256 {file_sha256(f)[:12]})" if f.is_file() else str(spec)


def load_model(path: str | Path) -> FaceMobileNet:
    p = resolve_model_file(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign/corrupt pickles
        raise UserError(f"{p} is not a readable compress model ({type(e).__name__}); re-run `compress train`") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserError(f"{p} is not a compress model file (expected format {MODEL_FORMAT})")
    try:
        model = FaceMobileNet(Schedule.from_dict(payload["schedule"], f"{p}: stored schedule"))
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
