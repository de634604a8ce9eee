"""What pruning measures on a network in memory: its size, its LFW accuracy, and the Taylor criterion's loss
(shared by schedule pruning, prune/folders.py, and budget pruning, prune/budget.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..model.complexity import count_macs
from ..model.network import FaceMobileNet


def model_size(model: FaceMobileNet) -> dict[str, int]:
    s = model.schedule.input_size
    return {"params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model.eval(), (3, s, s))}


def lfw_record(model: FaceMobileNet, lfw: Path, name: str) -> dict[str, Any]:
    from ..evaluate.embed import TorchEmbedder
    from ..evaluate.lfw import evaluate_lfw

    r = evaluate_lfw(TorchEmbedder(model, name=name), lfw, flip=True, progress=False)
    return {"summary": r["summary"]["flip"], "accuracy": r["results"]["flip"]["accuracy_mean"],
            "accuracy_std": r["results"]["flip"]["accuracy_std"], "dataset": r["dataset"], "protocol": r["protocol"]}


def taylor_loss(reference: FaceMobileNet, faces, batch_size: int = 64):
    """(loss_fn, batch) for the Taylor criterion: the margin loss of a head at the data's class centres."""
    import torch

    from ..data.transforms import to_float
    from ..train.finetune import margin_head_for

    head = margin_head_for(reference, faces, reference.schedule.embedding_size)
    known = np.flatnonzero(faces.labels >= 0)
    if len(known) == 0:
        raise UserError("criterion 'taylor' needs labelled faces in --data (an ImageFolder of identities)")
    idx = np.random.default_rng(0).choice(known, size=min(batch_size, len(known)), replace=False)
    batch = (to_float(torch.from_numpy(faces.images[idx])), torch.from_numpy(faces.labels[idx]))
    return (lambda model, b: head(model(b[0]), b[1])[0]), batch
