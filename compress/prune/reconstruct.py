"""Least-squares reconstruction of a pruned network's pointwise convs from its source (no training).

Pruning removes channels and leaves the remaining weights as they were, so every 1x1 conv that reads a pruned
(or, downstream, a changed) input computes something else than in the source: errors add up block by block and
a MobileFaceNet pruned to a quarter of its MACs scores ~70% on LFW before any recovery. The channel-pruning
papers' answer (He et al. 2017, "Channel Pruning for Accelerating Very Deep Neural Networks"; ThiNet, Luo et
al. 2017) is to re-fit each layer's weights so that its output matches the source's on real inputs. Here, in
forward order, for every pointwise conv of the pruned network: X = its input in the *pruned* network (earlier
layers already re-fitted, so accumulated drift is corrected too), Y = the matching conv's output in the *source*
network, restricted to the output channels the pruned conv kept; the weights become the ridge solution
W = Y X^T (X X^T + lambda I)^-1, accumulated over every pixel of every face. The convs are linear and their
BNs follow (activations after), so matching the pre-BN output matches the source's layer up to its
nonlinearity. Depthwise convs keep their weights (one channel in, one out: nothing to mix).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..model.network import FaceMobileNet

RECONSTRUCT_FACES = 512  # faces the command fits on (each conv's moments are summed over all their pixels)
RIDGE = 1e-4  # lambda relative to the mean diagonal of X X^T: keeps near-dead channels from blowing up


def pointwise_convs(model: nn.Module) -> list[str]:
    """Names of the 1x1, ungrouped convs in forward (registration) order."""
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size == (1, 1)]


@torch.no_grad()
def _moments(source: nn.Module, pruned: nn.Module, src_name: str, tgt_name: str, out_idx: np.ndarray | None,
             images: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(X X^T, Y X^T, ||Y||^2) over all pixels of all faces; X gets a row of ones when the conv has a bias, so the
    fit reproduces the source output bias included."""
    smod, tmod = dict(source.named_modules())[src_name], dict(pruned.named_modules())[tgt_name]
    got: dict[str, torch.Tensor] = {}
    hs = [smod.register_forward_hook(lambda m, i, o: got.__setitem__("y", o)),
          tmod.register_forward_hook(lambda m, i, o: got.__setitem__("x", i[0]))]
    xx = yx = None
    yy = 0.0
    try:
        for k in range(0, len(images), batch):
            b = images[k:k + batch]
            source(b)
            pruned(b)
            x = got["x"].double().transpose(0, 1).reshape(got["x"].shape[1], -1)
            y = got["y"].double().transpose(0, 1).reshape(got["y"].shape[1], -1)
            if out_idx is not None:
                y = y[torch.as_tensor(out_idx)]
            if tmod.bias is not None:
                x = torch.cat([x, torch.ones(1, x.shape[1], dtype=x.dtype)])
            xx = x @ x.T if xx is None else xx + x @ x.T
            yx = y @ x.T if yx is None else yx + y @ x.T
            yy += float((y * y).sum())
    finally:
        for h in hs:
            h.remove()
    return xx, yx, yy


def _error(w: torch.Tensor, xx: torch.Tensor, yx: torch.Tensor, yy: float) -> float:
    """||Y - W X||^2 / ||Y||^2 from the moments."""
    return (yy - 2 * float((w * yx).sum()) + float((w @ xx * w).sum())) / max(yy, 1e-30)


@torch.no_grad()
def reconstruct(source: FaceMobileNet, pruned: FaceMobileNet, images: torch.Tensor,
                source_name: Callable[[str], str], out_channels: dict[str, np.ndarray],
                batch: int = 64, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Re-fit every pointwise conv of `pruned` (in place) to its source conv's output on `images` (normalised
    NCHW faces). `source_name(t)` names the source module of pruned module t; `out_channels[t]`: the source
    output channels pruned conv t kept (absent: all). Returns a record: per conv the relative error before and
    after (||Y - W X||^2 / ||Y||^2 over the faces, measured from the same moments)."""
    was = source.training, pruned.training
    source.eval(), pruned.eval()
    rows = []
    try:
        for t in pointwise_convs(pruned):
            conv = dict(pruned.named_modules())[t]
            xx, yx, yy = _moments(source, pruned, source_name(t), t, out_channels.get(t), images, batch)
            w_old = conv.weight.double().flatten(1)
            if conv.bias is not None:
                w_old = torch.cat([w_old, conv.bias.double()[:, None]], 1)
            lam = RIDGE * float(torch.diagonal(xx).mean())
            w = torch.linalg.solve(xx + lam * torch.eye(len(xx), dtype=xx.dtype), yx.T).T
            err = (_error(w_old, xx, yx, yy), _error(w, xx, yx, yy))
            if err[1] >= err[0]:  # already as close as the ridge fit gets (e.g. nothing upstream changed)
                w, err = w_old, (err[0], err[0])
            if conv.bias is not None:
                w, b = w[:, :-1], w[:, -1]
                conv.bias.copy_(b.to(conv.bias.dtype))
            conv.weight.copy_(w.reshape(conv.weight.shape).to(conv.weight.dtype))
            rows.append({"conv": t, "source": source_name(t), "inputs": int(xx.shape[0]),
                         "outputs": int(yx.shape[0]), "relative_error_before": err[0], "relative_error_after": err[1]})
            if progress:
                progress(f"reconstructed {t}: relative error {err[0]:.4f} -> {err[1]:.4f}")
    finally:
        source.train(was[0])
        pruned.train(was[1])
    return {"method": "least-squares reconstruction of pointwise convs (He et al. 2017; ThiNet)",
            "faces": int(len(images)), "ridge": RIDGE, "convs": rows}


def relative_error(source: FaceMobileNet, pruned: FaceMobileNet, images: torch.Tensor) -> float:
    """1 - mean cosine between the two networks' embeddings on `images` (eval mode): how far the pruned
    network is from its source, before and after reconstruction."""
    with torch.no_grad():
        a = nn.functional.normalize(source.eval()(images), dim=1)
        b = nn.functional.normalize(pruned.eval()(images), dim=1)
    return float(1 - (a * b).sum(1).mean())
