"""Per-channel importance of one weight slice, for the pruning criteria.

- "l1" / "l2": magnitude of the conv weights touching the channel (its filter as producer, its column as
  consumer, its depthwise kernel), as in Li et al. 2017 (L1) and torch-pruning's MagnitudeImportance.
- "bn": |gamma| of the BatchNorms on the channel (network slimming, Liu et al. 2017); spaces with no BN fall
  back to l1.
- "taylor": first-order Taylor estimate |sum(w * dL/dw)| of the loss change when the slice is removed
  (Molchanov et al. 2019); needs gradients from a loss on a batch (select_channels runs the backward).
Each slice's vector is normalised by its mean before the group sums them, so no single layer dominates.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CRITERIA = ("l1", "l2", "bn", "taylor")


@torch.no_grad()
def member_scores(mod: nn.Module, role: str, criterion: str) -> np.ndarray | None:
    """Score per channel of `mod` along the axis `role` names; None when the criterion ignores this slice."""
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        if criterion == "bn":
            return mod.weight.detach().abs().double().numpy()
        if criterion == "taylor":
            g, gb = mod.weight.grad, mod.bias.grad
            if g is None or gb is None:
                return None
            return (mod.weight * g + mod.bias * gb).abs().double().numpy()
        return None
    if criterion == "bn":
        return None
    w = mod.weight.detach()
    if criterion == "taylor":
        if mod.weight.grad is None:
            return None
        w = w * mod.weight.grad
    if role == "in":
        w = w.transpose(0, 1)
    w = w.flatten(1).double()
    if criterion == "l1":
        return w.abs().sum(1).numpy()
    if criterion == "l2":
        return w.pow(2).sum(1).sqrt().numpy()
    return w.sum(1).abs().numpy()
