"""Channel selection and weight surgery for FaceMobileNet, residual (b) blocks included.

Why not torch-pruning's DependencyGraph here: torch-pruning 1.6.1 cannot trace the channel shuffle of a
residual (b) block (view -> transpose -> reshape): building the graph fails with ZeroDivisionError in
`update_reshape_index_mapping`, and even the split/concat index mapping would not know that the shuffle
interleaves the halves. FaceMobileNet's structure is fully given by its schedule, so the coupling is derived
here explicitly, as a graph of *channel spaces* (the coupled channel sets torch-pruning calls groups):

- a space is one activation tensor's channels, together with every weight slice that touches them: the
  convs/BNs that produce them (output channels), depthwise convs and their BNs (same channel in and out)
  and the convs that consume them (input channels). An (a) block with an identity shortcut reads and writes
  the same space, so a residual chain is one space; a block with t = 1 runs its depthwise on its input space.
- a split (b) block (stride 1, cin == c) passes input position p < c/2 to output position 2p (the shortcut
  half after the shuffle), feeds positions >= c/2 to its branch, and writes branch channel j to output 2j+1.
  Its output space is *derived*: its even positions are fixed by the input's choice, its odd ones are free.
- a non-split (b) block writes its "DW + SW" shortcut to the even output positions and its branch to the odd.

To stay exact, the pruned network must route every kept channel the way the source routed it: a channel at
position p of width W and its pruned position p' of width W' must have the same *class*: the same producer
(even/odd parity where two producers interleave) and the same *fate* through the following split blocks
(consumed by split block k's branch, or carried to the end). Channels are chosen per class, by importance
summed over the whole group (a channel's importance includes its downstream life through the shortcut).
With that, the pruned network equals the source network with the pruned channels zeroed (tested).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..model.network import FaceMobileNet
from .importance import CRITERIA, member_scores
from .plan import PrunePlan, block_specs

ROLES_AXIS = {"out": 0, "dw": 0, "bn": 0, "in": 1}


@dataclass(frozen=True)
class Member:
    """A weight slice coupled to a space: module channel m sits at space position a*m + b."""

    src: str
    tgt: str
    role: str  # "out" | "in" | "dw" | "bn"
    a: int = 1
    b_src: int = 0
    b_tgt: int = 0


@dataclass(eq=False)
class Space:
    name: str
    W: int  # width in the source network
    Wt: int  # width in the pruned network
    parity: bool = False  # two producers interleaved by the shuffle (even / odd positions)
    members: list[Member] = field(default_factory=list)
    child: "Space | None" = None  # the output space of the split (b) block that consumes this one
    parent: "Space | None" = None  # for a split block's output: its input space (even positions derive from it)
    own: np.ndarray | None = None
    total: np.ndarray | None = None
    keep: np.ndarray | None = None  # source position of each pruned position

    def fate(self, p: int, w: int) -> tuple[int, ...]:
        if self.child is None:
            return ()
        if p >= w // 2:
            return (0,)
        return (1,) + self.child.fate(2 * p, w)

    def key(self, p: int, w: int) -> tuple[Any, ...]:
        return ((p % 2) if self.parity else 0, self.fate(p, w))

    def add(self, *ms: Member) -> None:
        self.members.extend(ms)


def build_spaces(plan: PrunePlan) -> list[Space]:
    """The channel spaces of the pruned network, in forward order, with their source weight slices."""
    src, tgt = plan.source, plan.target
    sspec, tspec = block_specs(src), block_specs(tgt)
    # Which source blocks read/write the same tensor (identity shortcuts share it).
    ids: dict[tuple[int, int], tuple[int, int]] = {}
    cur_id, nxt = 0, 1
    for st in sspec:
        for b in st:
            out_id = cur_id if (b.kind == "a" and b.shortcut) else nxt
            nxt += out_id != cur_id
            ids[(b.stage, b.index)] = (cur_id, out_id)
            cur_id = out_id
    final_id = cur_id

    spaces: list[Space] = []

    def new(name: str, W: int, Wt: int, parity: bool = False) -> Space:
        s = Space(name, W, Wt, parity)
        spaces.append(s)
        return s

    def M(ps: str, pt: str, suffix: str, role: str, a: int = 1, bs: int = 0, bt: int = 0) -> Member:
        return Member(f"{ps}.{suffix}", f"{pt}.{suffix}", role, a, bs, bt)

    def branch(ps: str, pt: str, X: Space, inmap: tuple[int, int, int], sb: Any, tb: Any,
               Y: Space, outmap: tuple[int, int, int]) -> None:
        if sb.has_expand:
            X.add(M(ps, pt, "0.0", "in", *inmap))
            H = new(f"{pt}.hidden", sb.hidden, tb.hidden)
            H.add(M(ps, pt, "0.0", "out"), M(ps, pt, "0.1", "bn"), M(ps, pt, "1.0", "dw"), M(ps, pt, "1.1", "bn"),
                  M(ps, pt, "2.0", "in"))
            proj = 2
        else:
            X.add(M(ps, pt, "0.0", "dw", *inmap), M(ps, pt, "0.1", "bn", *inmap), M(ps, pt, "1.0", "in", *inmap))
            proj = 1
        Y.add(M(ps, pt, f"{proj}.0", "out", *outmap), M(ps, pt, f"{proj}.1", "bn", *outmap))

    cur = new("stem", src.stem_c, tgt.stem_c)
    cur.add(Member("stem.0", "stem.0", "out"), Member("stem.1", "stem.1", "bn"))
    cur_id = 0
    for (tk, tj), (si, bi) in plan.block_map():
        sb, tb = sspec[si][bi], tspec[tk][tj]
        ps, pt = f"stages.{si}.{bi}", f"stages.{tk}.{tj}"
        in_id, out_id = ids[(si, bi)]
        rewired = in_id != cur_id
        X = new(f"{pt}.in (re-wired)", sb.cin, tb.cin) if rewired else cur
        if sb.kind in ("a", "dws"):  # dws: a t = 1 branch without shortcut (block_specs says so)
            shared = sb.shortcut and tb.shortcut and not rewired
            Y = X if shared else new(f"{pt}.out", sb.cout, tb.cout)
            branch(f"{ps}.conv", f"{pt}.conv", X, (1, 0, 0), sb, tb, Y, (1, 0, 0))
        elif sb.shortcut:  # split (b): chunk -> branch on the second half -> concat -> shuffle
            Y = new(f"{pt}.out", sb.cout, tb.cout, parity=True)
            X.child, Y.parent = Y, X
            branch(f"{ps}.branch", f"{pt}.branch", X, (1, sb.cin // 2, tb.cin // 2), sb, tb, Y, (2, 1, 1))
        else:  # (b) with DW + SW shortcut: shortcut -> even outputs, branch -> odd outputs
            Y = new(f"{pt}.out", sb.cout, tb.cout, parity=True)
            X.add(M(ps, pt, "shortcut.0.0", "dw"), M(ps, pt, "shortcut.0.1", "bn"), M(ps, pt, "shortcut.1.0", "in"))
            Y.add(M(ps, pt, "shortcut.1.0", "out", 2, 0, 0), M(ps, pt, "shortcut.1.1", "bn", 2, 0, 0))
            branch(f"{ps}.branch", f"{pt}.branch", X, (1, 0, 0), sb, tb, Y, (2, 1, 1))
        cur, cur_id = Y, out_id
    if cur_id != final_id:  # the source's last stage(s) were deleted: re-wire the head's input
        last = src.stages[-1].c
        cur = new("head.in (re-wired)", last, tgt.stages[-1].c)
    cur.add(Member("head.0", "head.0", "in"))
    hd = new("head", src.head_c, tgt.head_c)
    hd.add(Member("head.0", "head.0", "out"), Member("head.1", "head.1", "bn"), Member("embedding", "embedding", "in"))
    if src.head_pool == "gdc":  # the global depthwise conv runs per head channel
        hd.add(Member("pool.0", "pool.0", "dw"), Member("pool.1", "pool.1", "bn"))
    return spaces


@dataclass
class Selection:
    plan: PrunePlan
    spaces: list[Space]
    criterion: str


def _score_spaces(model: FaceMobileNet, spaces: list[Space], criterion: str) -> None:
    mods = dict(model.named_modules())
    for sp in spaces:
        for crit in ([criterion, "l1"] if criterion == "bn" else [criterion]):
            acc, cnt = np.zeros(sp.W), np.zeros(sp.W)
            for m in sp.members:
                v = member_scores(mods[m.src], m.role, crit)
                if v is None:
                    continue
                mean = float(v.mean())
                v = v / mean if mean > 0 else v
                pos = m.a * np.arange(len(v)) + m.b_src
                np.add.at(acc, pos, v)
                np.add.at(cnt, pos, 1)
            if (cnt > 0).all() or crit == "l1":
                break  # "bn" falls back to l1 for spaces without a BatchNorm (a re-wired input)
        sp.own = acc / np.maximum(cnt, 1)
    for sp in reversed(spaces):  # a channel's importance includes its life after the split shortcut
        sp.total = sp.own.copy()
        if sp.child is not None:
            h = sp.W // 2
            sp.total[:h] += sp.child.total[2 * np.arange(h)]


def _choose(sp: Space) -> None:
    keep = np.full(sp.Wt, -1, dtype=np.int64)
    if sp.parent is not None:
        h = sp.Wt // 2
        keep[0:2 * h:2] = 2 * sp.parent.keep[:h]
        tpos, spos = range(1, sp.Wt, 2), range(1, sp.W, 2)
    else:
        tpos, spos = range(sp.Wt), range(sp.W)
    want: dict[tuple, list[int]] = defaultdict(list)
    have: dict[tuple, list[int]] = defaultdict(list)
    for p in tpos:
        want[sp.key(p, sp.Wt)].append(p)
    for p in spos:
        have[sp.key(p, sp.W)].append(p)
    for key, tp in want.items():
        cand = have.get(key, [])
        if len(cand) < len(tp):
            raise UserError(f"{sp.name}: cannot prune {sp.W} -> {sp.Wt} channels exactly through the residual (b) "
                            f"split/shuffle (class {key} needs {len(tp)}, source has {len(cand)}); "
                            f"use a width that is a multiple of 2^(split blocks + 1)")
        score = sp.total[cand]
        order = np.argsort(-score, kind="stable")[: len(tp)]
        keep[tp] = np.sort(np.asarray(cand)[order])
    assert (keep >= 0).all(), sp.name
    sp.keep = keep


def select_channels(model: FaceMobileNet, plan: PrunePlan, criterion: str = "l1",
                    loss_fn: Callable[[FaceMobileNet, Any], torch.Tensor] | None = None,
                    example_batch: Any = None, scores: dict[str, np.ndarray] | None = None) -> Selection:
    """Score every channel with `criterion` and choose which to keep, space by space (see module doc).

    `scores` (space name -> per source channel) replaces the criterion's scores of those spaces (budget
    pruning's importance measured on faces)."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown pruning criterion '{criterion}'; choose one of {', '.join(CRITERIA)}")
    spaces = build_spaces(plan)
    if criterion == "taylor":
        if loss_fn is None or example_batch is None:
            raise UserError("criterion 'taylor' needs loss_fn(model, batch) -> scalar loss and an example_batch")
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model, example_batch)
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise UserError("loss_fn must return a scalar tensor for the 'taylor' criterion")
        loss.backward()
    try:
        _score_spaces(model, spaces, criterion)
    finally:
        if criterion == "taylor":
            model.zero_grad(set_to_none=True)
    for sp in spaces:
        if scores and sp.name in scores and sp.child is None:
            sp.own = sp.total = np.asarray(scores[sp.name], dtype=np.float64)
        _choose(sp)
    return Selection(plan, spaces, criterion)


def _index_map(sel: Selection, target: nn.Module) -> dict[tuple[str, int], np.ndarray]:
    tmods = dict(target.named_modules())
    idx: dict[tuple[str, int], np.ndarray] = {}
    for sp in sel.spaces:
        for m in sp.members:
            axis = ROLES_AXIS[m.role]
            n_t = tmods[m.tgt].weight.shape[axis]
            pos_t = m.a * np.arange(n_t) + m.b_tgt
            ch = sp.keep[pos_t] - m.b_src
            assert (ch % m.a == 0).all(), (sp.name, m)
            ch = ch // m.a
            key = (m.tgt, axis)
            assert key not in idx or np.array_equal(idx[key], ch), (sp.name, m)
            idx[key] = ch
    return idx


def kept_output_channels(sel: Selection, target: nn.Module) -> dict[str, np.ndarray]:
    """Per module of the pruned network whose output channels were chosen: the source channels it kept."""
    return {name: ch for (name, axis), ch in _index_map(sel, target).items() if axis == 0}


@torch.no_grad()
def apply_selection(model: FaceMobileNet, sel: Selection) -> FaceMobileNet:
    """A new FaceMobileNet built from the plan's target schedule, holding the selected source weights."""
    target = FaceMobileNet(sel.plan.target)
    idx = _index_map(sel, target)
    smods = dict(model.named_modules())
    for name, tm in target.named_modules():
        if not isinstance(tm, (nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d)):
            continue
        sm = smods[sel.plan.source_module(name)]
        i0 = idx.get((name, 0))
        t0 = None if i0 is None else torch.as_tensor(i0)
        if isinstance(tm, nn.Conv2d):
            w = sm.weight
            if t0 is not None:
                w = w[t0]
            i1 = idx.get((name, 1))
            if i1 is not None and tm.groups == 1:
                w = w[:, torch.as_tensor(i1)]
            _copy(tm.weight, w, name)
            if tm.bias is not None:
                _copy(tm.bias, sm.bias if t0 is None else sm.bias[t0], name)
        else:
            for attr in ("weight", "bias", "running_mean", "running_var"):
                v = getattr(sm, attr)
                _copy(getattr(tm, attr), v if t0 is None else v[t0], f"{name}.{attr}")
            tm.num_batches_tracked.copy_(sm.num_batches_tracked)
    return target.train(model.training)


def _copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if dst.shape != src.shape:
        raise AssertionError(f"surgery bug: {name} expects {tuple(dst.shape)}, selected {tuple(src.shape)}")
    dst.copy_(src)


@torch.no_grad()
def zero_pruned_channels(model: FaceMobileNet, sel: Selection) -> FaceMobileNet:
    """Zero, in the *source* model, every channel the selection drops (producers and consumers).

    Without re-wired inputs, the pruned model then computes exactly what this zeroed model computes: the
    reference for the exactness tests, and a way to preview a pruning without changing shapes.
    """
    mods = dict(model.named_modules())
    for sp in sel.spaces:
        dropped = np.setdiff1d(np.arange(sp.W), sp.keep)
        for m in sp.members:
            mod = mods[m.src]
            n = mod.weight.shape[ROLES_AXIS[m.role]]
            pos = m.a * np.arange(n) + m.b_src
            ch = torch.as_tensor(np.nonzero(np.isin(pos, dropped))[0])
            if m.role in ("out", "dw"):
                mod.weight[ch] = 0
            elif m.role == "in":
                mod.weight[:, ch] = 0
            else:
                mod.weight[ch] = 0
                mod.bias[ch] = 0
    return model
