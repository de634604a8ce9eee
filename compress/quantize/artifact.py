"""The quantized-model artifact: what `compress quantize` writes and `compress export` reads for int8 targets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..model.io import MODEL_FILE
from ..model.network import FaceMobileNet, batchnorms_folded, fold_batchnorms


@dataclass
class QuantizedArtifact:
    path: Path | None
    float_model: FaceMobileNet  # eval mode; float weights (after QAT fine-tuning when QAT ran)
    qmodel: torch.nn.Module  # NNCF-quantized (fake-quant) model, eval mode, same input/output as float_model
    calibration: np.ndarray  # uint8 [N,112,112,3] aligned RGB faces: the one calibration set for every int8 path
    keep_float: list[str] = field(default_factory=list)  # FaceMobileNet module-name prefixes left in float
    meta: dict[str, Any] = field(default_factory=dict)  # mode (ptq/qat), calibration source, metrics


QUANTIZED_FORMAT = "compress.quantized/1"
QUANTIZED_FILE = "quantized.pt"
CALIBRATION_FILE = "calibration.npz"
MANIFEST_FILE = "manifest.json"


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only, so quantized.pt loads with torch.load(weights_only=True)."""
    return json.loads(json.dumps(obj, default=str))


def save_quantized(art: QuantizedArtifact, dest: str | Path, overwrite: bool = False,
                   manifest_extra: dict[str, Any] | None = None) -> Path:
    """Write the artifact folder `dest` atomically (model.pt, quantized.pt, calibration.npz, manifest.json)."""
    import nncf
    import nncf.torch

    from ..artifacts import artifact_dir, now_iso, versions, write_json
    from ..model.io import save_model

    calib = np.ascontiguousarray(art.calibration)
    if calib.ndim != 4 or calib.shape[-1] != 3 or calib.dtype != np.uint8:
        raise UserError(f"calibration must be uint8 [N,H,W,3], got {calib.dtype} {list(calib.shape)}")
    meta = _jsonable(art.meta)
    payload = {
        "format": QUANTIZED_FORMAT,
        "schedule": art.float_model.schedule.to_dict(),
        # The NNCF config lists every quantizer's hook name and settings: enough to rebuild the structure on a
        # fresh FaceMobileNet (nncf.torch.load_from_config), after which the state_dict fills scales/weights.
        "nncf_config": _jsonable(nncf.torch.get_config(art.qmodel)),
        "state_dict": {k: v.detach().cpu() for k, v in art.qmodel.state_dict().items()},
        "keep_float": list(art.keep_float),
        # folded: the quantized network has every BN folded into its conv (ptq); rebuilt the same way
        "batchnorm": "folded" if batchnorms_folded(art.qmodel) else "separate",
        "meta": meta,
        "nncf_version": str(nncf.__version__),
    }
    versions_ = {**versions(), "nncf": str(nncf.__version__)}
    with artifact_dir(dest, "quantize", overwrite=overwrite) as stage:
        save_model(art.float_model, stage / MODEL_FILE, {"quantized_with": "nncf " + str(nncf.__version__)})
        torch.save(payload, stage / QUANTIZED_FILE)
        with open(stage / CALIBRATION_FILE, "wb") as f:
            np.savez_compressed(f, images=calib)
        manifest = {
            "kind": "quantize",
            "stage": "quantize",
            "created": now_iso(),
            "model": MODEL_FILE,
            "quantized": QUANTIZED_FILE,
            "format": QUANTIZED_FORMAT,
            "mode": meta.get("mode"),
            "keep_float": list(art.keep_float),
            "calibration": {**(meta.get("calibration") or {}), "file": CALIBRATION_FILE, "images": int(len(calib))},
            "schedule": art.float_model.schedule.to_dict(),
            "meta": meta,
            "versions": versions_,
            "nncf_version": str(nncf.__version__),
            **(manifest_extra or {}),
        }
        write_json(stage / MANIFEST_FILE, manifest)
    return Path(dest)


def is_quantized_artifact(path: str | Path) -> bool:
    """True for a folder written by save_quantized (manifest kind "quantize" and quantized.pt present)."""
    p = Path(path)
    if not (p.is_dir() and (p / QUANTIZED_FILE).is_file()):
        return False
    try:
        return json.loads((p / MANIFEST_FILE).read_text()).get("kind") == "quantize"
    except (OSError, ValueError, AttributeError):
        return False


def load_quantized(path: str | Path) -> QuantizedArtifact:
    """Rebuild both models and the calibration set from a folder written by save_quantized."""
    import nncf.torch

    from ..model.io import load_model
    from ..schedules import Schedule

    p = Path(path)
    qfile = p / QUANTIZED_FILE
    if not qfile.is_file():
        raise UserError(f"{p} is not a quantized artifact (no {QUANTIZED_FILE}); run `compress quantize` first")
    try:
        payload = torch.load(qfile, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign/corrupt pickles
        raise UserError(f"{qfile} is not readable ({type(e).__name__}); re-run `compress quantize`") from None
    if not isinstance(payload, dict) or payload.get("format") != QUANTIZED_FORMAT:
        raise UserError(f"{qfile} is not a compress quantized model (expected format {QUANTIZED_FORMAT}); "
                        "re-run `compress quantize`")
    float_model = load_model(p / MODEL_FILE)
    try:
        base = FaceMobileNet(Schedule.from_dict(payload["schedule"], f"{qfile}: stored schedule")).eval()
        if payload.get("batchnorm") == "folded":
            base = fold_batchnorms(base)
        qmodel = nncf.torch.load_from_config(base, payload["nncf_config"])
        qmodel.load_state_dict(payload["state_dict"])
    except UserError:
        raise
    except Exception as e:  # mismatched schedule/config/state: a foreign or damaged file, not a bug here
        raise UserError(f"{qfile} does not rebuild a quantized model ({type(e).__name__}); re-run "
                        "`compress quantize` (written by nncf " f"{payload.get('nncf_version', '?')})") from None
    try:
        with np.load(p / CALIBRATION_FILE) as z:
            calibration = z["images"]
    except Exception as e:
        raise UserError(f"{p / CALIBRATION_FILE} is missing or unreadable ({type(e).__name__}); "
                        "re-run `compress quantize`") from None
    return QuantizedArtifact(p, float_model, qmodel.eval(), calibration, list(payload.get("keep_float", [])),
                             dict(payload.get("meta", {})))
