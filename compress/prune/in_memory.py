"""One-shot, iterative and uniform-ratio structured pruning of a FaceMobileNet."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import UserError
from ..model.network import FaceMobileNet
from ..schedules import Schedule
from .plan import (PrunePlan, _coerce, block_specs, format_plan, interpolate_schedule, plan_pruning,
                   round_schedule)
from .surgery import apply_selection, select_channels

LossFn = Callable[[FaceMobileNet, Any], torch.Tensor]
DEPTH_RULES = ("first", "importance")


def schedule_macs(schedule: Schedule) -> int:
    """MACs of a freshly built network (compress.model.complexity.count_macs, ptflops pytorch backend)."""
    from ..model.complexity import count_macs

    return count_macs(FaceMobileNet(schedule).eval(), (3, schedule.input_size, schedule.input_size))


def _kept_by_importance(model: FaceMobileNet, plan: PrunePlan) -> list[list[int]]:
    """Block 0 plus the n-1 later blocks whose residual contribution is largest (mean |gamma| of the last BN
    of their branch), kept in source order."""
    kept = []
    for m in plan.stages:
        n = plan.target.stages[m.target].n
        stage = model.stages[m.source]
        scores = []
        for b in range(1, len(stage)):
            last_bn = [mod for mod in stage[b].modules() if isinstance(mod, torch.nn.BatchNorm2d)][-1]
            scores.append((-float(last_bn.weight.detach().abs().mean()), b))
        kept.append([0] + sorted(b for _, b in sorted(scores)[: n - 1]))
    return kept


def prune_plan_for(model: FaceMobileNet, target: Schedule | str | Path | dict[str, Any],
                   round_to: int | None = None, depth: str = "first") -> PrunePlan:
    """The validated plan `prune_to_schedule` will follow (rounded target when round_to is given)."""
    if depth not in DEPTH_RULES:
        raise UserError(f"unknown depth rule '{depth}'; choose one of {', '.join(DEPTH_RULES)}")
    if round_to is not None and round_to < 1:
        raise UserError(f"round_to must be >= 1 (a channel multiple such as 8), got {round_to}")
    tgt = _coerce(target, "target")
    plan = plan_pruning(model.schedule, tgt, layers=False)  # validate the exact widths first
    if round_to:
        tgt = round_schedule(tgt, round_to, limit=model.schedule)
    kept = _kept_by_importance(model, plan) if depth == "importance" else None
    return plan_pruning(model.schedule, tgt, kept=kept)


def prune_to_schedule(model: FaceMobileNet, target: Schedule | str | Path | dict[str, Any], criterion: str = "l1",
                      round_to: int | None = None, example_batch: Any = None, loss_fn: LossFn | None = None,
                      steps: int = 1, between_steps: Callable[[FaceMobileNet], Any] | None = None,
                      depth: str = "first") -> FaceMobileNet:
    """Prune `model` to the `target` schedule; the result's `.schedule` is the target (rounded if round_to).

    criterion: "l1" | "l2" | "bn" | "taylor" (taylor needs loss_fn(model, batch) and example_batch).
    round_to: round every width up to a multiple (e.g. 8), capped at the source's widths.
    steps: k > 1 prunes in k steps whose widths go linearly from the source to the target (depth is cut
    in step 1); between_steps(model) runs after each step but the last (fine-tune there).
    depth: "first" keeps the first n blocks of a shortened stage; "importance" keeps block 1 and the n-1
    later blocks with the largest residual scale (|gamma| of the branch's last BN).
    The input model is not modified.
    """
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    plan = prune_plan_for(model, target, round_to, depth)
    final = plan.target
    for k in range(1, steps + 1):
        if k == steps:
            step_target = final
        else:
            step_target = interpolate_schedule(plan, k / steps, f"{final.name}-step{k}of{steps}")
        try:
            if k == 1:
                step_plan = plan_pruning(model.schedule, step_target, mapping=[m.source for m in plan.stages],
                                         kept=[m.kept for m in plan.stages], layers=False)
            else:
                step_plan = plan_pruning(model.schedule, step_target, mapping=list(range(len(final.stages))),
                                         layers=False)
            sel = select_channels(model, step_plan, criterion, loss_fn, example_batch)
        except UserError:
            if k == steps:
                raise
            continue  # an interpolated width changed a split mode or is not splittable; skip this step
        model = apply_selection(model, sel)
        if k < steps and between_steps is not None:
            between_steps(model)
    return model


def rounding_report(model_schedule: Schedule, target: Schedule | str | Path, round_to: int = 8,
                    source_macs: bool = True) -> dict[str, Any]:
    """Exact vs hardware-rounded widths of a target schedule: both schedules and their MACs."""
    exact = _coerce(target, "target")
    plan_pruning(model_schedule, exact, layers=False)
    rounded = round_schedule(exact, round_to, limit=model_schedule)
    out = {"exact": exact, "rounded": rounded, "macs_exact": schedule_macs(exact), "macs_rounded": schedule_macs(rounded)}
    if source_macs:
        out["macs_source"] = schedule_macs(model_schedule)
    return out


def describe_pruning(model_schedule: Schedule, target: Schedule | str | Path, round_to: int | None = None) -> str:
    """Text for `compress prune`: the stage mapping, per-layer widths and MACs (exact and rounded)."""
    exact = _coerce(target, "target")
    plan = plan_pruning(model_schedule, exact)
    macs = {f"source ({model_schedule.name})": schedule_macs(model_schedule), f"pruned ({exact.name})": schedule_macs(exact)}
    if round_to:
        rounded = round_schedule(exact, round_to, limit=model_schedule)
        plan = plan_pruning(model_schedule, rounded)
        macs[f"pruned, widths rounded up to x{round_to} ({rounded.name})"] = schedule_macs(rounded)
    return format_plan(plan, macs)


def ratio_schedule(schedule: Schedule, ratio: float, round_to: int | None = None) -> Schedule:
    """The schedule keeping `ratio` of the channels of every prunable layer (uniform pruning).

    Stage c, stem c, head c and every block's hidden width become round(ratio x width) (>= 1; even for (b));
    t keeps the source's nominal value and the real hidden widths are recorded in the stage's `hidden`
    field wherever they differ from t x (input width). The embedding is not pruned.
    """
    if not 0 < ratio <= 1:
        raise UserError(f"ratio must be in (0, 1], got {ratio}")
    if round_to is not None and round_to < 1:
        raise UserError(f"round_to must be >= 1 (a channel multiple such as 8), got {round_to}")
    step = round_to or 1

    def r(v: int, even: bool = False) -> int:
        w = max(1, int(np.floor(v * ratio + 0.5)))
        w = -(-w // step) * step
        if even and w % 2:
            w += 1
        return min(w, v)

    stages = tuple(replace(st, c=r(st.c, st.residual == "b"), hidden=None, source=i + 1)
                   for i, st in enumerate(schedule.stages))
    out = replace(schedule, name=f"{schedule.name}-x{ratio:g}", stem_c=r(schedule.stem_c),
                  head_c=r(schedule.head_c), stages=stages, prune_from=schedule.name,
                  description=f"{schedule.name} with {ratio:g} of the channels of every layer")
    sspec, ospec = block_specs(schedule), block_specs(out)
    final = []
    for k, st in enumerate(out.stages):
        if st.t == 1:
            final.append(st)
            continue
        widths = [r(sb.hidden) for sb in sspec[k]]
        explicit = any(w != b.branch_in * st.t for w, b in zip(widths, ospec[k]))
        final.append(replace(st, hidden=tuple(widths) if explicit else None))
    return replace(out, stages=tuple(final))


def prune_by_ratio(model: FaceMobileNet, ratio: float, criterion: str = "l1", round_to: int | None = None,
                   example_batch: Any = None, loss_fn: LossFn | None = None) -> tuple[FaceMobileNet, Schedule]:
    """Keep `ratio` of the channels in every prunable layer; returns the model and the Schedule describing it."""
    target = ratio_schedule(model.schedule, ratio, round_to)
    pruned = prune_to_schedule(model, target, criterion, None, example_batch, loss_fn)
    return pruned, pruned.schedule
