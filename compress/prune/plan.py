"""Schedule-level pruning plan: which source stage and blocks each target stage comes from, validated, and the
width of every layer before and after.

A target schedule names, per stage, the source stage it is pruned from (`source`, 1-based, see
profiles/table3.toml). Source stages nobody names are deleted (depth pruning). A target stage with fewer
blocks keeps the first n blocks of its source stage: the first block carries the stage's stride and width
change and must stay; the later ones are identity-shortcut (a) or split (b) blocks whose order we keep, so the
kept network is the source network minus the tail of each stage (document: "first-n" depth rule).
When the block feeding a kept block was deleted, the kept block's input convs are re-wired: their input
channels are chosen by importance among the source block's own input channels ("rewired input").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..schedules import Schedule, Stage, load_schedule, parse_schedule


@dataclass(frozen=True)
class BlockSpec:
    """One residual block of a schedule, with every width the network builder derives from it."""

    stage: int  # 0-based
    index: int  # 0-based within the stage
    kind: str  # "a" | "b" | "dws"
    cin: int
    cout: int
    stride: int
    t: int
    branch_in: int  # input width of the expand branch (half of cin for a split (b) block)
    hidden: int  # width of the depthwise conv (== branch_in when t == 1)
    shortcut: bool  # (a): identity add; (b): split mode (chunk / concat / shuffle)

    @property
    def has_expand(self) -> bool:
        return self.t != 1


def block_specs(s: Schedule) -> list[list[BlockSpec]]:
    out, cin = [], s.stem_c
    for k, st in enumerate(s.stages):
        blocks = []
        for i in range(st.n):
            bin_, stride = (cin if i == 0 else st.c), (st.s if i == 0 else 1)
            short = stride == 1 and bin_ == st.c and st.residual != "dws"  # dws: never a shortcut
            branch_in = st.c // 2 if (st.residual == "b" and short) else bin_
            h = st.hidden_of(i)
            hidden = branch_in if st.t == 1 else (branch_in * st.t if h is None else h)
            blocks.append(BlockSpec(k, i, st.residual, bin_, st.c, stride, st.t, branch_in, hidden, short))
        out.append(blocks)
        cin = st.c
    return out


@dataclass
class StageMap:
    target: int  # 0-based target stage
    source: int  # 0-based source stage
    kept: list[int]  # 0-based source block indices kept, in order
    rewired: bool = False  # the first kept block's input came from a deleted stage
    notes: list[str] = field(default_factory=list)


@dataclass
class LayerWidth:
    name: str  # parameter-holding module in the pruned (target) network
    source_name: str  # the module in the source network it is cut from
    before: tuple[int, ...]
    after: tuple[int, ...]


@dataclass
class PrunePlan:
    source: Schedule
    target: Schedule
    stages: list[StageMap]
    deleted: list[int]  # 0-based source stages removed entirely
    layers: list[LayerWidth] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def block_map(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """((target stage, block), (source stage, block)) for every block of the pruned network."""
        return [((m.target, j), (m.source, b)) for m in self.stages for j, b in enumerate(m.kept)]

    def source_module(self, target_name: str) -> str:
        """Source module name for a target module name (stages.k.j.* -> stages.src.kept[j].*)."""
        parts = target_name.split(".")
        if parts[0] == "stages" and len(parts) >= 3:
            m = self.stages[int(parts[1])]
            return ".".join(["stages", str(m.source), str(m.kept[int(parts[2])])] + parts[3:])
        return target_name


def _coerce(s: Schedule | str | Path | dict[str, Any], what: str) -> Schedule:
    if isinstance(s, Schedule):
        return s
    if isinstance(s, dict):
        return parse_schedule(s, f"<{what} schedule>")
    return load_schedule(s)


def _check_no_empty_layer(tgt: Schedule) -> None:
    """Every layer of the target keeps at least one channel: a 0-channel conv is no network."""
    where = tgt.name
    if tgt.stem_c < 1:
        raise UserError(f"{where}: layer stem would keep {tgt.stem_c} channels; every layer needs at least 1 "
                        f"(raise the ratio or the widths)")
    if tgt.head_c < 1:
        raise UserError(f"{where}: layer head would keep {tgt.head_c} channels; every layer needs at least 1 "
                        f"(raise the ratio or the widths)")
    for k, st in enumerate(tgt.stages):
        if st.c < 1:
            raise UserError(f"{where}: stage {k + 1} (stages.{k}) would keep {st.c} channels; every layer needs at "
                            f"least 1 (raise the ratio or the widths)")
        if st.hidden is not None and min(st.hidden) < 1:
            raise UserError(f"{where}: stage {k + 1} (stages.{k}) hidden widths {list(st.hidden)} include "
                            f"{min(st.hidden)} channels; every layer needs at least 1")
    for blocks in block_specs(tgt):
        for b in blocks:
            for what, w in (("input", b.cin), ("branch input", b.branch_in), ("hidden", b.hidden)):
                if w < 1:
                    raise UserError(f"{where}: layer stages.{b.stage}.{b.index} ({what}) would have {w} channels; "
                                    f"every layer needs at least 1 (raise the ratio or the widths)")


def plan_pruning(model_schedule: Schedule | str | Path | dict[str, Any],
                 target_schedule: Schedule | str | Path | dict[str, Any],
                 mapping: list[int] | None = None, kept: list[list[int]] | None = None,
                 layers: bool = True) -> PrunePlan:
    """Validate `target_schedule` against the model's schedule and return the stage/block mapping.

    `mapping` (0-based source stage per target stage) overrides the schedule's `source` fields; `kept`
    overrides the first-n block rule. Every violation is a one-line UserError naming the target stage.
    """
    src = _coerce(model_schedule, "model")
    tgt = _coerce(target_schedule, "target")
    name = tgt.name
    ns = len(src.stages)
    _check_no_empty_layer(tgt)
    if tgt.embedding_size != src.embedding_size:
        raise UserError(f"{name}: embedding_size {tgt.embedding_size} differs from the model's "
                        f"{src.embedding_size}; pruning keeps the embedding, set embedding_size = {src.embedding_size}")
    if tgt.stem_s != src.stem_s:
        raise UserError(f"{name}: stem.s {tgt.stem_s} differs from the model's stem stride {src.stem_s}")
    if tgt.stem_c > src.stem_c:
        raise UserError(f"{name}: stem.c {tgt.stem_c} is wider than the model's {src.stem_c}; pruning only removes channels")
    if tgt.head_c > src.head_c:
        raise UserError(f"{name}: head.c {tgt.head_c} is wider than the model's {src.head_c}; pruning only removes channels")
    for what, a, b in (("activation", tgt.activation, src.activation), ("head.pool", tgt.head_pool, src.head_pool)):
        if a != b:
            raise UserError(f"{name}: {what} '{a}' differs from the model's '{b}'; pruning cannot change it")
    if kept is None and any(st.kept for st in tgt.stages):
        kept = [[b - 1 for b in st.kept] if st.kept else list(range(st.n)) for st in tgt.stages]

    if mapping is None:
        given = [st.source for st in tgt.stages]
        if all(g is None for g in given):
            if len(tgt.stages) != ns:
                raise UserError(f"{name}: no stage names a `source` and it has {len(tgt.stages)} stages vs the "
                                f"model's {ns}; add `source = <model stage>` to every stage")
            mapping = list(range(ns))
        else:
            mapping = []
            for k, g in enumerate(given, start=1):
                if g is None:
                    raise UserError(f"{name} stage {k}: missing `source` (the model stage it is pruned from)")
                mapping.append(g - 1)
    if len(mapping) != len(tgt.stages):
        raise UserError(f"{name}: mapping lists {len(mapping)} stages for {len(tgt.stages)} target stages")

    sspec, tspec = block_specs(src), block_specs(tgt)
    stages: list[StageMap] = []
    prev = -1
    for k, (si, tst) in enumerate(zip(mapping, tgt.stages)):
        where = f"{name} stage {k + 1}"
        if not 0 <= si < ns:
            raise UserError(f"{where}: source stage {si + 1} does not exist (the model '{src.name}' has stages 1..{ns})")
        if si <= prev:
            raise UserError(f"{where}: source stage {si + 1} does not come after the previous stage's source "
                            f"{prev + 1}; stages must keep the model's order and each source is used once")
        sst = src.stages[si]
        if tst.s != sst.s:
            raise UserError(f"{where}: stride {tst.s} differs from source stage {si + 1}'s stride {sst.s}; "
                            f"map it onto a source stage with the same stride")
        if tst.residual != sst.residual:
            raise UserError(f"{where}: residual '{tst.residual}' differs from source stage {si + 1}'s "
                            f"'{sst.residual}'; pruning cannot change the block structure")
        if tgt.act_of(tst) != src.act_of(sst):
            raise UserError(f"{where}: activation '{tgt.act_of(tst)}' differs from source stage {si + 1}'s "
                            f"'{src.act_of(sst)}'; pruning cannot change it")
        if (tst.t == 1) != (sst.t == 1):
            raise UserError(f"{where}: t = {tst.t} vs source stage {si + 1}'s t = {sst.t}; t = 1 (no expand conv) "
                            f"must stay t = 1 and t > 1 must stay > 1")
        if tst.n > sst.n:
            raise UserError(f"{where}: n = {tst.n} blocks but source stage {si + 1} has only {sst.n}")
        if tst.c > sst.c:
            raise UserError(f"{where}: c = {tst.c} is wider than source stage {si + 1}'s c = {sst.c}; "
                            f"pruning only removes channels")
        keep = list(range(tst.n)) if kept is None else list(kept[k])
        if len(keep) != tst.n or keep[0] != 0 or sorted(set(keep)) != keep or keep[-1] >= sst.n:
            raise UserError(f"{where}: kept blocks {keep} must start with block 0, increase and lie in 0..{sst.n - 1}")
        m = StageMap(k, si, keep, rewired=si != prev + 1)
        for j, b in enumerate(keep):
            tb, sb = tspec[k][j], sspec[si][b]
            if tb.cin > sb.cin:
                raise UserError(f"{where}: block {j + 1} input width {tb.cin} is wider than source block's {sb.cin}")
            if tb.hidden > sb.hidden:
                raise UserError(f"{where}: block {j + 1} hidden width {tb.hidden} (t x {tb.branch_in}) is wider than "
                                f"source stage {si + 1}'s {sb.hidden}; lower t or set a smaller `hidden`")
            if tb.kind == "b" and tb.shortcut != sb.shortcut:
                mode = "splits its input" if sb.shortcut else "does not split"
                raise UserError(f"{where}: block {j + 1} is a residual (b) whose source {mode} (cin == c, stride 1) "
                                f"but the target {'does not' if sb.shortcut else 'does'}; keep the same split mode")
            if tb.kind == "a" and tb.shortcut != sb.shortcut:
                m.notes.append(f"block {j + 1}: identity shortcut {'added' if tb.shortcut else 'dropped'} "
                               f"(source cin {sb.cin} -> c {sb.cout}, target {tb.cin} -> {tb.cout})")
        if m.rewired:
            m.notes.append(f"input re-wired: source stage(s) {', '.join(str(i + 1) for i in range(prev + 1, si))} "
                           f"deleted; its first conv keeps {tspec[k][0].cin} of its {sspec[si][0].cin} input "
                           f"channels, chosen by importance")
        if keep != list(range(sst.n)):
            dropped = [b + 1 for b in range(sst.n) if b not in keep]
            m.notes.append(f"blocks {dropped} of source stage {si + 1} deleted")
        stages.append(m)
        prev = si
    deleted = [i for i in range(ns) if i not in mapping]
    plan = PrunePlan(src, tgt, stages, deleted)
    if tgt.prune_from and tgt.prune_from != src.name:
        plan.notes.append(f"target says prune_from = '{tgt.prune_from}' but the model's schedule is '{src.name}'")
    if layers:
        plan.layers = layer_widths(plan)
    return plan


def layer_widths(plan: PrunePlan) -> list[LayerWidth]:
    """Every conv/BN of the pruned network with its source module and weight shape before -> after."""
    from torch import nn

    from ..model.network import FaceMobileNet

    s_net, t_net = FaceMobileNet(plan.source), FaceMobileNet(plan.target)  # ~30 ms for Table 2 on a CPU
    smods = dict(s_net.named_modules())
    out = []
    for n, mod in t_net.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d)):
            sn = plan.source_module(n)
            out.append(LayerWidth(n, sn, tuple(smods[sn].weight.shape), tuple(mod.weight.shape)))
    return out


def format_plan(plan: PrunePlan, macs: dict[str, int] | None = None, layers: bool = True) -> str:
    """The mapping and per-layer widths as text (what `compress prune` shows)."""
    src, tgt = plan.source, plan.target
    lines = [f"prune '{src.name}' -> '{tgt.name}'", "",
             f"{'target':<8}{'<- source':<11}{'kind':<6}{'t':>6}{'c':>10}{'n':>8}{'s':>4}  blocks kept"]
    for m in plan.stages:
        ts, ss = tgt.stages[m.target], src.stages[m.source]
        lines.append(f"{m.target + 1:<8}{'<- ' + str(m.source + 1):<11}{ts.residual:<6}{f'{ss.t}->{ts.t}':>6}"
                     f"{f'{ss.c}->{ts.c}':>10}{f'{ss.n}->{ts.n}':>8}{ts.s:>4}  {[b + 1 for b in m.kept]}")
        lines += [f"{'':<8}note: {n}" for n in m.notes]
    for d in plan.deleted:
        ss = src.stages[d]
        lines.append(f"{'-':<8}{'<- ' + str(d + 1):<11}{ss.residual:<6}{ss.t:>6}{ss.c:>10}{ss.n:>8}{ss.s:>4}  deleted")
    lines.append(f"stem c {src.stem_c} -> {tgt.stem_c}; head c {src.head_c} -> {tgt.head_c}; "
                 f"embedding {tgt.embedding_size} (kept)")
    lines += [f"note: {n}" for n in plan.notes]
    if layers and plan.layers:
        lines += ["", f"{'layer':<28}{'from':<28}{'before':>20}{'after':>20}"]
        for lw in plan.layers:
            if len(lw.before) == 1:
                continue  # BatchNorms follow their conv
            lines.append(f"{lw.name:<28}{lw.source_name:<28}{'x'.join(map(str, lw.before)):>20}"
                         f"{'x'.join(map(str, lw.after)):>20}")
    if macs:
        lines.append("")
        lines += [f"MACs {k}: {v:,}" for k, v in macs.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- schedules


def _explicit_hidden(stage: Stage, spec: list[BlockSpec], widths: list[int]) -> tuple[int, ...] | None:
    if stage.t == 1 or all(w == b.branch_in * stage.t for w, b in zip(widths, spec)):
        return None
    return tuple(widths)


def round_schedule(target: Schedule, round_to: int, limit: Schedule | None = None) -> Schedule:
    """Round every pruned width up to a multiple of `round_to` (hardware-friendly), never past the source's.

    Stage c, stem c and head c round up; hidden widths become t x (rounded input width), rounded up again and
    recorded as explicit `hidden` where that is not what t gives. `limit` (the source schedule, with the
    target's `source` mapping) caps each width at what the source has.
    """
    if round_to < 1:
        raise UserError(f"round_to must be >= 1, got {round_to}")

    def up(v: int, cap: int | None, even: bool = False) -> int:
        r = -(-v // round_to) * round_to
        if even and r % 2:
            r += round_to
        return min(r, cap) if cap is not None else r

    plan = plan_pruning(limit, target, layers=False) if limit is not None else None
    src_spec = block_specs(limit) if limit is not None else None
    stages = []
    for k, st in enumerate(target.stages):
        cap = limit.stages[plan.stages[k].source].c if plan else None
        stages.append(replace(st, c=up(st.c, cap, even=st.residual == "b")))
    rounded = replace(target, name=f"{target.name}-r{round_to}", stem_c=up(target.stem_c, limit.stem_c if limit else None),
                      head_c=up(target.head_c, limit.head_c if limit else None), stages=tuple(stages))
    spec = block_specs(rounded)
    final = []
    for k, st in enumerate(rounded.stages):
        widths = []
        for i, b in enumerate(spec[k]):
            cap = src_spec[plan.stages[k].source][plan.stages[k].kept[i]].hidden if plan else None
            widths.append(up(b.hidden, cap) if st.t != 1 else b.hidden)
        final.append(replace(st, hidden=_explicit_hidden(st, spec[k], widths)))
    return replace(rounded, stages=tuple(final))


def interpolate_schedule(plan: PrunePlan, frac: float, name: str) -> Schedule:
    """Widths a fraction `frac` of the way from the source to the target (depth already the target's).

    Used by iterative pruning; (b) widths stay even and hidden widths are explicit.
    """
    src, tgt = plan.source, plan.target
    sspec, tspec = block_specs(src), block_specs(tgt)

    def lerp(a: int, b: int, step: int = 1) -> int:
        v = round((a + (b - a) * frac) / step) * step
        return max(b, min(a, v))

    def granule(c: int) -> int:
        # (b) widths move in steps of the largest power of two (<= 16) dividing the target width, so the
        # split/shuffle channel classes of an intermediate width stay feasible (see surgery.py)
        g = 2
        while g < 16 and c % (2 * g) == 0:
            g *= 2
        return g

    stages = []
    for m in plan.stages:
        ts, ss = tgt.stages[m.target], src.stages[m.source]
        stages.append(replace(ts, c=lerp(ss.c, ts.c, granule(ts.c) if ts.residual == "b" else 1), hidden=None))
    mid = replace(tgt, name=name, stem_c=lerp(src.stem_c, tgt.stem_c), head_c=lerp(src.head_c, tgt.head_c),
                  stages=tuple(stages))
    mspec = block_specs(mid)
    final = []
    for m, st in zip(plan.stages, mid.stages):
        widths = []
        for j, b in enumerate(m.kept):
            sh, th = sspec[m.source][b].hidden, tspec[m.target][j].hidden
            widths.append(mspec[m.target][j].branch_in if st.t == 1 else max(1, lerp(sh, th)))
        final.append(replace(st, hidden=_explicit_hidden(st, mspec[m.target], widths)))
    return replace(mid, stages=tuple(final))
