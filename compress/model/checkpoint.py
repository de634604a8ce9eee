"""Writing a model file: the schedule, the weights and the normalization, so it rebuilds anywhere. Below
compress.model.io (which reads them and resolves model specs) so that importers can write without a cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..artifacts import atomic_write
from ..data.transforms import NORMALIZATION
from ..errors import UserError
from .network import FaceMobileNet, batchnorms_folded

MODEL_FORMAT = "compress.model/1"
MODEL_FILE = "model.pt"


def save_model(model: FaceMobileNet, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a model artifact file; a network with NaN or inf weights (a diverged optimisation) is refused, so no
    command leaves a model behind that embeds every face as NaN."""
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UserError(f"not writing {path}: its weights {k} hold NaN or inf (the optimisation diverged); lower "
                            "the learning rate (--lr, --finetune-lr or --qat-lr) and run again")
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
