"""Trunk widths for budget pruning: the channel spaces between blocks (stem, each residual chain, head) and an
exact per-module MAC model in every prunable width, so one greedy can trade hidden channels, trunk channels and
whole blocks (compress/prune/budget.py).

A trunk space is one surgery space (compress/prune/surgery.py, built on the identity plan) that is not a block's
hidden space: the stem's output, each chain of identity-shortcut blocks (a stage's first block opens it, the
following stages whose first block has an identity shortcut continue it), the dws stage's output and the head
width before the pool. Its schedule fields move together: `stem.c`, the `c` of every stage writing into it,
`head.c`. The embedding size stays.

Why an analytic model: a trunk width multiplies into every 1x1 conv that reads or writes it (cost is bilinear
in the widths), so the per-block slopes measured once on the source are wrong after the first trunk step, and
re-measuring with ptflops after every candidate step is minutes per budget. Instead each counted module's
ptflops count on the source (conv MACs, BN/activation element ops, as compress.model.complexity counts them)
is scaled by (new / source width) of its input space (full convs only) and of its output space: exact for how
ptflops counts, checked against ptflops on built networks in tests/test_prune_trunk.py. The final cost is still
measured on the built network.
Networks with residual (b) blocks keep their trunk widths (the split/shuffle ties widths to powers of two).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Hashable

import numpy as np
import torch
from torch import nn

from ..model.network import FaceMobileNet
from ..schedules import Schedule

Key = Hashable  # (stage, block) for a hidden space, the space's name (str) for a trunk space
COUNTED = (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.AdaptiveAvgPool2d)


@dataclass
class TrunkSpace:
    name: str  # the surgery space's name in the source network ("stem", "stages.2.0.out", "head")
    width: int
    stem: bool = False
    head: bool = False
    stages: list[int] = field(default_factory=list)  # 0-based stages whose `c` is this width
    producers: list[str] = field(default_factory=list)  # modules whose output adds into the space (Taylor)


def _identity_spaces(src: Schedule) -> list:
    from .plan import plan_pruning
    from .surgery import build_spaces

    # a pruned schedule (table3) names the stages of *its* source (table2): map each stage onto itself
    own = replace(src, stages=tuple(replace(st, source=k + 1, kept=None) for k, st in enumerate(src.stages)))
    return build_spaces(plan_pruning(src, own, layers=False))


def _hidden_key(name: str) -> tuple[int, int] | None:
    p = name.split(".")
    return (int(p[1]), int(p[2])) if len(p) == 5 and p[0] == "stages" and p[-1] == "hidden" else None


def trunk_spaces(src: Schedule) -> list[TrunkSpace]:
    """The trunk spaces of `src` (none for networks with residual (b) blocks, see module doc)."""
    if any(st.residual == "b" for st in src.stages):
        return []
    out = []
    for sp in _identity_spaces(src):
        if _hidden_key(sp.name) is not None:
            continue
        t = TrunkSpace(sp.name, sp.W)
        for m in sp.members:
            if m.role != "out":
                continue
            if m.src == "stem.0":
                t.stem, t.producers = True, t.producers + ["stem"]
            elif m.src == "head.0":
                t.head, t.producers = True, t.producers + ["head"]
            elif m.src.startswith("stages."):
                k, j = (int(x) for x in m.src.split(".")[1:3])
                t.stages += [] if k in t.stages else [k]
                t.producers.append(f"stages.{k}.{j}.conv")
        out.append(t)
    return out


def _space_keys(src: Schedule, trunk: list[TrunkSpace]) -> dict[str, tuple[Key | None, Key | None]]:
    """Module name -> (key of its input space, key of its output space); None where the width is fixed."""
    trunk_names = {t.name for t in trunk}
    io: dict[str, list] = {}
    for sp in _identity_spaces(src):
        key = _hidden_key(sp.name) or (sp.name if sp.name in trunk_names else None)
        for m in sp.members:
            slot = io.setdefault(m.src, [None, None])
            if m.role == "in":
                slot[0] = key
            else:  # out / dw / bn: the module's output channels (a depthwise conv's input is the same)
                slot[1] = key
    for name in list(io):  # conv_bn's activation ("X.2") runs on its BN's ("X.1") channels
        if name.endswith(".1"):
            io[name[:-1] + "2"] = [None, io[name][1]]
    return {k: (v[0], v[1]) for k, v in io.items()}


class MacModel:
    """cost(widths, alive): the network's MACs (ptflops' count) at the given space widths and live blocks."""

    def __init__(self, terms: list[tuple[float, Key | None, Key | None, Key | None]], source: dict[Key, int]) -> None:
        self.terms = terms  # (source MACs, block, in key, out key) per counted module
        self.source = source  # source width per key
        self.keys = list(source)
        self.blocks = sorted({b for _, b, _, _ in terms if b is not None})
        ki = {k: i for i, k in enumerate(self.keys)}  # index len(keys): width fixed (ratio 1)
        bi = {b: i for i, b in enumerate(self.blocks)}  # index len(blocks): not in a block (always live)
        self.macs = np.array([t[0] for t in terms])
        self.blk = np.array([bi.get(t[1], len(self.blocks)) for t in terms])
        self.kin = np.array([ki.get(t[2], len(self.keys)) for t in terms])
        self.kout = np.array([ki.get(t[3], len(self.keys)) for t in terms])

    def cost(self, widths: dict[Key, int], alive: set) -> float:
        r = np.array([widths[k] / self.source[k] for k in self.keys] + [1.0])
        live = np.array([b in alive for b in self.blocks] + [True])
        return float((self.macs * r[self.kin] * r[self.kout] * live[self.blk]).sum())


def module_macs(model: FaceMobileNet) -> dict[str, float]:
    """Per counted module, what ptflops' pytorch backend counts for it (one forward on zeros)."""
    counts: dict[str, float] = {}

    def hook(name: str):
        def f(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            if isinstance(mod, nn.Conv2d):
                k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
                counts[name] = out.numel() * (k + (mod.bias is not None))
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                counts[name] = inp[0].numel() * (2 if mod.affine else 1)
            elif isinstance(mod, nn.AdaptiveAvgPool2d):
                counts[name] = inp[0].numel()
            else:  # ptflops counts nn.ReLU twice: as a module and as torch.nn.functional.relu (ReLU6 once)
                counts[name] = out.numel() * (2 if type(mod) is nn.ReLU else 1)
        return f

    hooks = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, COUNTED)]
    s = model.schedule.input_size
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, s, s))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return counts


def mac_model(src: Schedule, trunk: list[TrunkSpace], hidden: dict[tuple[int, int], int]) -> MacModel:
    """The MAC model of `src` with the given trunk spaces and hidden widths in play (see module doc)."""
    io = _space_keys(src, trunk)
    in_play = set(hidden) | {t.name for t in trunk}
    terms = []
    net = FaceMobileNet(src)
    mods = dict(net.named_modules())
    for name, macs in module_macs(net).items():
        kin, kout = (k if k in in_play else None for k in io.get(name, (None, None)))
        m = mods[name]
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            kin = None  # a depthwise conv scales with its channels once
        p = name.split(".")
        blk = (int(p[1]), int(p[2])) if p[0] == "stages" else None
        terms.append((float(macs), blk, kin, kout))
    source: dict[Key, int] = {**hidden, **{t.name: t.width for t in trunk}}
    return MacModel(terms, source)
