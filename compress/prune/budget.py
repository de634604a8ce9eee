"""Prune to a budget (MACs, or estimated latency on a board): derive the per-block widths and depth.

What is pruned: the hidden (expand) width of every bottleneck with an expand conv, and whole removable blocks
(identity-shortcut blocks after a stage's first one: deleting one leaves every width unchanged). Stage, stem
and head widths stay; a budget below what that can reach is refused.

Importance ("importance" allocation):
- with faces: first-order Taylor on activations (Molchanov et al. 2019) of the margin loss at the faces'
  class centres (the loss `compress prune --criterion taylor` uses): a hidden channel j of block b scores
  mean over faces of (sum over pixels of a_j * dL/da_j)^2, a removable block scores the same for its whole
  residual output (the loss change when the branch is zeroed);
- without faces: weight magnitude (product of the L1 norms of the channel's expand row, depthwise kernel and
  projection column; a block scores the sum of its channels), said so in the report.
Allocation: greedy. The cost of the network is linear per block (cost = fixed + hidden x slope; for MACs
exactly, as ptflops counts them), with the slopes and fixed parts measured once on the source network; each
step removes the `granule` least important channels of one block, or one whole block, whichever loses the
least importance per unit of cost saved, until the cost is under the budget; then channels are given back
(most important per cost first, one at a time) while the cost stays under it, so the result lands just under.
The final cost is measured on the built network, not taken from the linear model.
"uniform": the same fraction of every hidden width (bisection on the fraction), no depth.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch

from ..errors import UserError
from ..model.network import FaceMobileNet
from ..schedules import Schedule
from .plan import block_specs

ALLOCATIONS = ("importance", "uniform")
DEFAULT_GRANULE = 8
LANDING = 0.02  # the result must land within 2% under the budget
TAYLOR_BATCH = 128  # faces for the Taylor importance (one forward + backward)


def fmt(v: float, unit: str) -> str:
    return f"{v:,.0f} MACs" if unit == "MACs" else f"{v:.4g} {unit}"


def parse_macs(text: str) -> int:
    """'57M', '113.5M', '1.2G', '57000000' -> MACs."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*", str(text))
    if not m:
        raise UserError(f"--macs {text!r} is not a MAC count; write e.g. 57M, 113.5M or 57000000")
    return int(round(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]))


@dataclass
class Unit:
    """One block of the source network, as the allocator sees it."""

    stage: int
    block: int
    hidden: int  # source hidden width (0: no expand conv, not width-prunable)
    removable: bool
    slope: float = 0.0  # cost per hidden channel
    fixed: float = 0.0  # cost of the block with no hidden channel (only needed for removable blocks)


def units_of(s: Schedule) -> list[Unit]:
    return [Unit(b.stage, b.index, b.hidden if b.has_expand and b.kind == "a" else 0,
                 removable=b.kind == "a" and b.shortcut and b.index > 0)
            for st in block_specs(s) for b in st]


def schedule_from(src: Schedule, units: list[Unit], widths: dict[tuple[int, int], int],
                  alive: set[tuple[int, int]], name: str, description: str) -> Schedule:
    """The target schedule: source stages (source = k + 1), kept blocks and explicit hidden widths."""
    stages = []
    by_stage: dict[int, list[Unit]] = {}
    for u in units:
        by_stage.setdefault(u.stage, []).append(u)
    for k, st in enumerate(src.stages):
        kept = [u for u in by_stage[k] if (u.stage, u.block) in alive]
        hidden = None
        if st.t != 1 and st.residual == "a":
            hs = [widths[(u.stage, u.block)] for u in kept]
            hidden = None if all(h == u.hidden for h, u in zip(hs, kept)) and st.hidden is None else tuple(hs)
        full = len(kept) == st.n
        stages.append(replace(st, n=len(kept), source=k + 1, hidden=hidden if st.residual == "a" else st.hidden,
                              kept=None if full else tuple(u.block + 1 for u in kept)))
    return replace(src, name=name, description=description, stages=tuple(stages), prune_from=src.name, path="")


CostFn = Callable[[Schedule], float]


def macs_cost(s: Schedule) -> float:
    from .in_memory import schedule_macs

    return float(schedule_macs(s))


def latency_cost(board: str) -> CostFn:
    """Estimated batch-1 latency (ms) on `board` at its default precision (compress.bench.estimate)."""
    from ..bench.estimate import estimate_latency
    from ..targets import load_target

    t = load_target(board)
    probe = estimate_latency("table3", t)
    if probe.get("estimate_ms") is None:
        raise UserError(f"board {board} has no calibrated latency estimate ({probe.get('status')}); "
                        f"choose a board with published references (`compress targets`) or use --macs")

    def cost(s: Schedule) -> float:
        return float(estimate_latency(FaceMobileNet(s).eval(), t)["estimate_ms"])
    return cost


def measure_costs(src: Schedule, units: list[Unit], cost: CostFn) -> float:
    """Fill every unit's slope (cost per hidden channel) and fixed part; return the source's cost."""
    full = cost(src)
    widths = {(u.stage, u.block): u.hidden for u in units}
    alive = {(u.stage, u.block) for u in units}
    for u in units:
        key = (u.stage, u.block)
        if u.hidden > 1:
            half = u.hidden // 2
            s = schedule_from(src, units, {**widths, key: u.hidden - half}, alive, "probe", "")
            u.slope = (full - cost(s)) / half
        if u.removable:
            s = schedule_from(src, units, widths, alive - {key}, "probe", "")
            u.fixed = (full - cost(s)) - u.slope * u.hidden
    return full


def floor_cost(full: float, units: list[Unit], allocation: str, min_width: int) -> float:
    """The least cost the allocation can reach (hidden widths at their minimum, removable blocks deleted)."""
    c = full - sum(u.slope * (u.hidden - min(u.hidden, min_width)) for u in units if u.hidden)
    if allocation == "importance":
        c -= sum(u.fixed + u.slope * min(u.hidden, min_width) for u in units if u.removable)
    return c


# ---------------------------------------------------------------------------------------------- importance


def taylor_importance(model: FaceMobileNet, units: list[Unit], loss_fn: Callable, batch: Any
                      ) -> tuple[dict[tuple[int, int], np.ndarray], dict[tuple[int, int], float]]:
    """Per hidden channel and per removable block: mean over faces of (sum a * dL/da)^2 (see module doc)."""
    acts: dict[Any, torch.Tensor] = {}
    hooks = []

    def keep(key: Any) -> Callable:
        def hook(mod, inp, out):
            t = inp[0] if key[0] == "h" else out
            t.retain_grad()
            acts[key] = t
        return hook

    for u in units:
        blk = model.stages[u.stage][u.block]
        if u.hidden:
            hooks.append(blk.conv[2][0].register_forward_hook(keep(("h", u.stage, u.block))))
        if u.removable:
            hooks.append(blk.conv.register_forward_hook(keep(("b", u.stage, u.block))))
    was = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was)
    chan, block = {}, {}
    for key, a in acts.items():
        prod = (a * a.grad).detach().double()
        if key[0] == "h":
            chan[key[1:]] = prod.sum((2, 3)).pow(2).mean(0).numpy()
        else:
            block[key[1:]] = float(prod.sum((1, 2, 3)).pow(2).mean())
    return chan, block


@torch.no_grad()
def magnitude_importance(model: FaceMobileNet, units: list[Unit]
                         ) -> tuple[dict[tuple[int, int], np.ndarray], dict[tuple[int, int], float]]:
    """Without faces: L1(expand row) x L1(depthwise kernel) x L1(projection column) per hidden channel."""
    chan, block = {}, {}
    for u in units:
        conv = model.stages[u.stage][u.block].conv
        if u.hidden:
            e = conv[0][0].weight.abs().flatten(1).sum(1)
            d = conv[1][0].weight.abs().flatten(1).sum(1)
            p = conv[2][0].weight.abs().transpose(0, 1).flatten(1).sum(1)
            chan[(u.stage, u.block)] = (e * d * p).double().numpy()
        if u.removable:
            block[(u.stage, u.block)] = float(chan[(u.stage, u.block)].sum()) if u.hidden else 0.0
    return chan, block


# ---------------------------------------------------------------------------------------------- allocation


def allocate_importance(units: list[Unit], full: float, budget: float, chan: dict, block: dict,
                        granule: int, min_width: int) -> tuple[dict, set]:
    """Greedy removal by importance lost per cost saved, then give-back one channel at a time (module doc)."""
    order = {(u.stage, u.block): np.argsort(chan[(u.stage, u.block)], kind="stable") for u in units if u.hidden}
    widths = {(u.stage, u.block): u.hidden for u in units}
    alive = {(u.stage, u.block) for u in units}
    by_key = {(u.stage, u.block): u for u in units}

    def removed_scores(key: tuple[int, int], w: int, k: int) -> float:  # the next k channels to drop at width w
        u = by_key[key]
        return float(chan[key][order[key][u.hidden - w: u.hidden - w + k]].sum())

    def cost() -> float:
        c = full
        for key, u in by_key.items():
            if key not in alive:
                c -= u.fixed + u.slope * u.hidden
            elif u.hidden:
                c -= u.slope * (u.hidden - widths[key])
        return c

    cur = cost()
    while cur > budget:
        best = None
        for key in alive:
            u = by_key[key]
            w = widths[key]
            if u.hidden and w - granule >= min_width and u.slope > 0:
                k = granule
                cand = (removed_scores(key, w, k) / (k * u.slope), "w", key)
                best = cand if best is None or cand < best else best
            if u.removable:
                saved = u.fixed + u.slope * w
                if saved > 0:
                    kept_imp = float(chan[key][order[key][u.hidden - w:]].sum()) if u.hidden else 0.0
                    imp = block.get(key, kept_imp)
                    cand = (imp / saved, "b", key)
                    best = cand if best is None or cand < best else best
        if best is None:
            break
        _, kind, key = best
        if kind == "w":
            widths[key] -= granule
        else:
            alive.discard(key)
        cur = cost()
    # give back: most important removed channel per cost first, while under the budget
    heap = []
    for key in alive:
        u = by_key[key]
        if u.hidden and widths[key] < u.hidden and u.slope > 0:
            heapq.heappush(heap, (-removed_scores(key, widths[key] + 1, 1) / u.slope, key))
    while heap:
        _, key = heapq.heappop(heap)
        u = by_key[key]
        if cur + u.slope <= budget:
            widths[key] += 1
            cur += u.slope
            if widths[key] < u.hidden:
                heapq.heappush(heap, (-removed_scores(key, widths[key] + 1, 1) / u.slope, key))
    return widths, alive


def allocate_uniform(units: list[Unit], full: float, budget: float, min_width: int) -> tuple[dict, set]:
    """The largest common fraction of every hidden width whose cost is under the budget (bisection)."""
    def widths_at(r: float) -> dict:
        return {(u.stage, u.block): max(min(u.hidden, min_width), int(np.floor(r * u.hidden))) for u in units}

    def cost(ws: dict) -> float:
        return full - sum(u.slope * (u.hidden - ws[(u.stage, u.block)]) for u in units if u.hidden)

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(widths_at(mid)) <= budget else (lo, mid)
    ws = widths_at(lo)
    cur = cost(ws)
    grow = [u for u in units if u.hidden and u.slope > 0]
    while True:  # floor() left some budget: one more channel to the blocks furthest below the fraction
        cand = [u for u in grow if ws[(u.stage, u.block)] < u.hidden and cur + u.slope <= budget]
        if not cand:
            return ws, {(u.stage, u.block) for u in units}
        u = min(cand, key=lambda v: ws[(v.stage, v.block)] / v.hidden)
        ws[(u.stage, u.block)] += 1
        cur += u.slope


def derive_schedule(model: FaceMobileNet, budget: float, cost: CostFn, unit: str, allocation: str = "importance",
                    taylor: Callable[[], tuple[Callable, Any]] | None = None, granule: int = DEFAULT_GRANULE,
                    name: str | None = None) -> tuple[Schedule, dict[str, Any], dict[tuple[int, int], np.ndarray]]:
    """The schedule `model` prunes to under `budget` (in the cost's unit), a record of how it was derived, and
    the per-channel importance of every hidden space (for choosing which channels to keep; empty for uniform).

    Refuses (UserError) a budget at or above the source's cost or below what the allocation can reach before
    `taylor()` is called: it returns (loss_fn, batch) for Taylor importance (loading faces is the slow part);
    None means weight-magnitude importance."""
    if allocation not in ALLOCATIONS:
        raise UserError(f"unknown allocation '{allocation}'; choose one of {', '.join(ALLOCATIONS)}")
    if granule < 1:
        raise UserError(f"granule must be >= 1, got {granule}")
    src = model.schedule
    units = units_of(src)
    if not any(u.hidden for u in units):
        raise UserError(f"schedule '{src.name}' has no bottleneck with an expand conv: nothing a budget can prune; "
                        "use --schedule or --ratio")
    full = measure_costs(src, units, cost)
    min_width = 1 if allocation == "uniform" else granule
    floor = floor_cost(full, units, allocation, min_width)
    if budget >= full:
        raise UserError(f"budget {fmt(budget, unit)} is at or above the source network's {fmt(full, unit)} "
                        f"('{src.name}'): nothing to prune; pass a smaller budget")
    if budget < floor:
        raise UserError(f"budget {fmt(budget, unit)} is below the least '{src.name}' reaches by {allocation} "
                        f"allocation ({fmt(floor, unit)}: every hidden width at {min_width}"
                        f"{', every removable block deleted' if allocation == 'importance' else ''}; stem, stage "
                        f"and head widths are kept); raise the budget or prune stage widths with --schedule")
    chan: dict[tuple[int, int], np.ndarray] = {}
    if taylor is not None:  # also for uniform: which channels each block keeps
        chan, block = taylor_importance(model, units, *taylor())
        how = "first-order Taylor on activations of the margin loss at the faces' class centres"
    elif allocation == "importance":
        chan, block = magnitude_importance(model, units)
        how = "weight magnitude (no faces given: L1 expand row x depthwise kernel x projection column)"
    else:
        how = "none (the pruning criterion chooses the channels)"
    if allocation == "importance":
        widths, alive = allocate_importance(units, full, budget, chan, block, granule, min_width)
    else:
        widths, alive = allocate_uniform(units, full, budget, min_width)
    tag = name or f"{src.name}-{allocation}-" + (f"{budget / 1e6:g}M" if unit == "MACs" else f"{budget:g}{unit}")
    sched = schedule_from(src, units, widths, alive, tag,
                          f"{src.name} pruned to {fmt(budget, unit)} ({allocation} allocation)")
    got = cost(sched)
    # the linear model is exact for MACs; for an estimate it is not: trim until the measured cost is under
    trims = 0
    while got > budget and trims < 200:
        k = max((kk for kk in alive if by_width(units, kk) and widths[kk] > min_width),
                key=lambda kk: widths[kk], default=None)
        if k is None:
            break
        widths[k] -= 1
        trims += 1
        sched = schedule_from(src, units, widths, alive, tag, sched.description)
        got = cost(sched)
    record = {"allocation": allocation, "importance": how,
              "budget": budget, "unit": unit, "source_cost": full, "floor_cost": floor, "cost": got,
              "under_budget_by": (budget - got) / budget, "granule": granule,
              "deleted_blocks": [f"stage {s + 1} block {b + 1}" for (s, b) in sorted(set(widths) - alive)],
              "hidden_widths": {f"stage {s + 1} block {b + 1}": w for (s, b), w in sorted(widths.items())
                                if (s, b) in alive and by_width(units, (s, b))}}
    return sched, record, chan


def hidden_scores(plan: Any, chan: dict[tuple[int, int], np.ndarray]) -> dict[str, np.ndarray]:
    """Importance per hidden space of the pruned network (surgery's space names), from the source blocks'."""
    return {f"stages.{tk}.{tj}.conv.hidden": chan[(si, bi)] for (tk, tj), (si, bi) in plan.block_map()
            if (si, bi) in chan}


def by_width(units: list[Unit], key: tuple[int, int]) -> bool:
    return any(u.hidden for u in units if (u.stage, u.block) == key)


# ---------------------------------------------------------------------------------------------- TOML


def schedule_toml(s: Schedule, header: str = "") -> str:
    """A schedule as a TOML file that load_schedule reads back to an equal Schedule."""
    def val(v: Any) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return str(v)

    lines = [f"# {ln}" for ln in header.splitlines()]
    top = {"name": s.name, "description": s.description, "input_size": s.input_size,
           "embedding_size": s.embedding_size, "prune_from": s.prune_from, "activation": s.activation}
    lines += [f"{k} = {val(v)}" for k, v in top.items() if v is not None]
    lines += ["", "[stem]", f"c = {s.stem_c}", f"s = {s.stem_s}"]
    for st in s.stages:
        lines += ["", "[[stages]]"]
        for k in ("t", "c", "n", "s", "residual", "source", "hidden", "activation", "kept"):
            v = getattr(st, k)
            if v is not None:
                lines.append(f"{k} = {val(v)}")
    lines += ["", "[head]", f"c = {s.head_c}", f"pool = {val(s.head_pool)}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- the command


def budget_prune(model: FaceMobileNet, model_path: Any, out: Any, *, macs: str | None, latency: float | None,
                 board: str | None, allocation: str, criterion: str, round_to: int | None, lfw: Any,
                 overwrite: bool, data: str | None, align: bool, finetune_steps: int, progress: bool
                 ) -> dict[str, Any]:
    """`compress prune --macs/--latency`: derive the schedule, prune one-shot, write the artifact with the
    derived schedule as schedule.toml (readable by `schedules show` and `prune --schedule`)."""
    from pathlib import Path

    import click

    from ..artifacts import artifact_dir, file_sha256, host_description, now_iso, versions, write_json
    from ..model.complexity import MAC_SOURCE
    from ..model.io import resolve_model_file, save_model
    from .measure import lfw_record, model_size, taylor_loss
    from .in_memory import prune_plan_for
    from .plan import format_plan
    from .surgery import apply_selection, select_channels

    if finetune_steps:
        raise UserError("--macs / --latency prune without fine-tuning; drop --finetune-steps and fine-tune the "
                        "result with `compress train --init-model OUT --teacher MODEL`")
    if round_to:
        raise UserError("--round-to would round the derived widths up past the budget; drop it with --macs / "
                        "--latency")
    if macs is not None:
        budget, cost, unit = float(parse_macs(macs)), macs_cost, "MACs"
    else:
        if not latency > 0:
            raise UserError(f"--latency must be > 0 ms, got {latency}")
        budget, cost, unit = float(latency), latency_cost(board), "ms"

    def taylor() -> tuple[Callable, Any]:
        from ..data.sources import load_faces

        faces = load_faces(data, progress=progress, align=align)
        taylor.faces = faces.describe()
        return taylor_loss(model, faces, batch_size=TAYLOR_BATCH)

    sched, rec, chan = derive_schedule(model, budget, cost, unit, allocation, taylor if data else None)
    if board:
        rec["board"] = board
    plan = prune_plan_for(model, sched)
    click.echo(format_plan(plan))
    sel = select_channels(model, plan, "l1" if chan else criterion, scores=hidden_scores(plan, chan))
    pruned = apply_selection(model, sel).eval()
    before, after = model_size(model), model_size(pruned)
    acc: dict[str, Any] = {}
    if lfw:
        acc["before_pruning"] = lfw_record(model, Path(lfw), f"{model.schedule.name} (unpruned)")
        acc["after_pruning"] = lfw_record(pruned, Path(lfw), f"{sched.name} (pruned, not fine-tuned)")
        click.echo(f"LFW before pruning: {acc['before_pruning']['summary']}\n"
                   f"LFW right after pruning: {acc['after_pruning']['summary']}")
    src_file = resolve_model_file(model_path)
    rec["faces"] = getattr(taylor, "faces", None)
    manifest = {
        "kind": "prune", "created": now_iso(), "model": "model.pt", "schedule_file": "schedule.toml",
        "source_model": {"path": str(src_file), "sha256": file_sha256(src_file)},
        "source_schedule": model.schedule.to_dict(), "schedule": sched.to_dict(),
        "method": {"budget": rec, "channel_choice": "importance above" if chan else f"criterion {criterion}",
                   "steps": 1, "finetune_steps_per_step": 0},
        "stage_mapping": [{"target_stage": i + 1, "source_stage": m.source + 1, "kept_blocks": [k + 1 for k in m.kept]}
                          for i, m in enumerate(plan.stages)],
        "params": {"before": before["params"], "after": after["params"]},
        "macs": {"before": before["macs"], "after": after["macs"], "counted_by": MAC_SOURCE},
        "accuracy": acc or "not measured (pass --lfw DIR)",
        "host": host_description(), "versions": versions(),
    }
    header = (f"Derived by `compress prune` from {model.schedule.name} to a budget of {fmt(budget, unit)}"
              f"{f' on {board}' if board else ''} ({allocation} allocation; importance: {rec['importance']}).\n"
              f"Cost {fmt(rec['cost'], unit)} (source {fmt(rec['source_cost'], unit)}). Prune a model to it with "
              f"`compress prune --model M --schedule THIS_FILE`.")
    with artifact_dir(out, "prune", overwrite=overwrite) as stage:
        save_model(pruned, stage / "model.pt", {"pruned_from": str(model_path)})
        (stage / "schedule.toml").write_text(schedule_toml(sched, header))
        write_json(stage / "manifest.json", manifest)
    click.echo(f"budget {fmt(budget, unit)}: {fmt(rec['cost'], unit)} ({rec['under_budget_by']:.2%} under; "
               f"{'ptflops pytorch backend' if unit == 'MACs' else 'estimated by compress.bench.estimate'}); "
               f"params {before['params']:,} -> {after['params']:,}; MACs {before['macs']:,} -> {after['macs']:,}; "
               f"deleted blocks: {', '.join(rec['deleted_blocks']) or 'none'}; wrote {out} (schedule: "
               f"{Path(out) / 'schedule.toml'})")
    return manifest
