"""Prune to a budget (MACs, or estimated latency on a board): derive the per-layer widths and depth.

What is pruned: the hidden (expand) width of every bottleneck with an expand conv, whole removable blocks
(identity-shortcut blocks after a stage's first one: deleting one leaves every width unchanged), and, for a
MAC budget, the trunk widths: stem c, every stage's c, head c (compress/prune/trunk.py: one width per trunk
channel space; a residual chain's stages move together; the embedding stays). Every width keeps a floor
(the granule; 1 for uniform); a budget below that floor is refused before any importance is computed.

Importance ("importance" allocation):
- with faces: first-order Taylor on activations (Molchanov et al. 2019) of the margin loss at the faces'
  class centres (the loss `compress prune --criterion taylor` uses): a hidden channel j of block b scores
  mean over faces of (sum over pixels of a_j * dL/da_j)^2; a trunk channel the same with the sum running
  over every producer adding into the space (stem / a chain's branch outputs / head: removing the channel
  zeroes all of them), so hidden and trunk channels are in the same units and one greedy compares them; a
  removable block scores the same for its whole residual output (the loss change when it is zeroed);
- without faces: weight magnitude (per channel, the sum over the convs it touches of its L1 slice divided by
  that conv's mean: layers' magnitudes are not comparable, and a channel carrying more layers' weights weighs
  more, which keeps trunk and hidden channels on one scale; a block scores the sum of its channels), said so
  in the report.
Allocation: greedy. For MACs the cost is the exact per-module model of compress/prune/trunk.py (bilinear in
the widths: a trunk step's saving depends on every hidden width it multiplies, so each candidate step is
costed on the current state, not by slopes measured once); for a latency estimate it is linear per block
(cost = fixed + hidden x slope, measured once on the source) and trunk widths stay. Each step removes the
`granule` least important channels of one hidden or trunk space, or one whole block, whichever loses the
least importance per unit of cost saved, until the cost is under the budget; then channels are given back
(most important per cost first, one at a time) while the cost stays under it, so the result lands just under.
The final cost is measured on the built network, not taken from the model.
"uniform": one common fraction of every hidden and trunk width (bisection on the fraction), no depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch

from ..errors import UserError
from ..model.network import FaceMobileNet
from ..schedules import Schedule
from .plan import block_specs
from .trunk import Key, MacModel, TrunkSpace, _identity_spaces, mac_model, trunk_spaces

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
    slope: float = 0.0  # cost per hidden channel (linear model, --latency only)
    fixed: float = 0.0  # cost of the block with no hidden channel (linear model, removable blocks only)

    @property
    def key(self) -> tuple[int, int]:
        return (self.stage, self.block)


def units_of(s: Schedule) -> list[Unit]:
    return [Unit(b.stage, b.index, b.hidden if b.has_expand and b.kind == "a" else 0,
                 removable=b.kind == "a" and b.shortcut and b.index > 0)
            for st in block_specs(s) for b in st]


def source_widths(units: list[Unit], trunk: list[TrunkSpace]) -> dict[Key, int]:
    """Every width in play: hidden widths by (stage, block), trunk widths by space name."""
    return {**{u.key: u.hidden for u in units if u.hidden}, **{t.name: t.width for t in trunk}}


def _trunk_fields(src: Schedule, trunk: list[TrunkSpace], widths: dict[Key, int]) -> tuple[int, int, dict[int, int]]:
    stem, head, stage_c = src.stem_c, src.head_c, {}
    for t in trunk:
        w = widths.get(t.name, t.width)
        stem, head = (w if t.stem else stem), (w if t.head else head)
        stage_c.update({k: w for k in t.stages})
    return stem, head, stage_c


def schedule_from(src: Schedule, units: list[Unit], widths: dict[Key, int], alive: set[tuple[int, int]],
                  name: str, description: str, trunk: list[TrunkSpace] = ()) -> Schedule:
    """The target schedule: source stages (source = k + 1), kept blocks, trunk widths and hidden widths
    (explicit wherever they differ from t x the block's new input width)."""
    stem, head, stage_c = _trunk_fields(src, list(trunk), widths)
    by_stage: dict[int, list[Unit]] = {}
    for u in units:
        by_stage.setdefault(u.stage, []).append(u)
    stages = []
    for k, st in enumerate(src.stages):
        kept = [u for u in by_stage[k] if u.key in alive]
        full = len(kept) == st.n
        stages.append(replace(st, c=stage_c.get(k, st.c), n=len(kept), source=k + 1,
                              hidden=None if st.t != 1 and st.residual == "a" else st.hidden,
                              kept=None if full else tuple(u.block + 1 for u in kept)))
    out = replace(src, name=name, description=description, stem_c=stem, head_c=head, stages=tuple(stages),
                  prune_from=src.name, path="")
    final = []
    for k, (st, specs) in enumerate(zip(out.stages, block_specs(out))):
        if st.t != 1 and st.residual == "a":
            hs = [widths.get(u.key, u.hidden) for u in by_stage[k] if u.key in alive]
            if any(h != b.hidden for h, b in zip(hs, specs)):
                st = replace(st, hidden=tuple(hs))
        final.append(st)
    return replace(out, stages=tuple(final))


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
    widths = {u.key: u.hidden for u in units}
    alive = {u.key for u in units}
    for u in units:
        if u.hidden > 1:
            half = u.hidden // 2
            s = schedule_from(src, units, {**widths, u.key: u.hidden - half}, alive, "probe", "")
            u.slope = (full - cost(s)) / half
        if u.removable:
            s = schedule_from(src, units, widths, alive - {u.key}, "probe", "")
            u.fixed = (full - cost(s)) - u.slope * u.hidden
    return full


@dataclass
class LinearModel:
    """cost(widths, alive) linear per block (slopes and fixed parts measured once): for a latency estimate,
    which has no per-module form; trunk widths are not in play with it."""

    full: float
    units: list[Unit]

    def cost(self, widths: dict[Key, int], alive: set) -> float:
        c = self.full
        for u in self.units:
            if u.key not in alive:
                c -= u.fixed + u.slope * u.hidden
            elif u.hidden:
                c -= u.slope * (u.hidden - widths[u.key])
        return c


def cost_model(src: Schedule, units: list[Unit], cost: CostFn, unit: str
               ) -> tuple[MacModel | LinearModel, list[TrunkSpace], float]:
    """(model, trunk spaces in play, the source's measured cost): MACs get the exact per-module model with
    trunk widths in play (compress/prune/trunk.py); a latency estimate the linear per-block one."""
    full = cost(src)
    if unit == "MACs":
        trunk = trunk_spaces(src)
        return mac_model(src, trunk, {u.key: u.hidden for u in units if u.hidden}), trunk, full
    measure_costs(src, units, cost)
    return LinearModel(full, units), [], full


def floor_widths(src_w: dict[Key, int], min_width: int, min_keep: float = 0.0) -> dict[Key, int]:
    """The least every width may keep: the granule floor, or min_keep of its source width if that is more (a
    width cut far below its neighbours destroys the function the distillation then has to rebuild)."""
    return {k: max(min(w, min_width), int(np.ceil(min_keep * w))) for k, w in src_w.items()}


# ---------------------------------------------------------------------------------------------- importance


def _taylor_hooks(model: FaceMobileNet, units: list[Unit], trunk: list[TrunkSpace], acts: dict) -> list:
    """Forward hooks keeping (with grad) each hidden space's activation and each trunk producer's output."""
    def keep(key: Any, use_input: bool) -> Callable:
        def hook(mod, inp, out):
            t = inp[0] if use_input else out
            t.retain_grad()
            acts[key] = t
        return hook

    mods = dict(model.named_modules())
    hooks = []
    for u in units:
        blk = model.stages[u.stage][u.block]
        if u.hidden:
            hooks.append(blk.conv[2][0].register_forward_hook(keep(("h", u.key), True)))
    produced = {p for t in trunk for p in t.producers}
    for u in units:  # a block's branch output: its residual contribution and what it adds to its trunk space
        if u.removable or f"stages.{u.stage}.{u.block}.conv" in produced:
            hooks.append(model.stages[u.stage][u.block].conv.register_forward_hook(keep(("b", u.key), False)))
    for p in produced - {f"stages.{u.stage}.{u.block}.conv" for u in units}:
        hooks.append(mods[p].register_forward_hook(keep(("p", p), False)))
    return hooks


def taylor_importance(model: FaceMobileNet, units: list[Unit], loss_fn: Callable, batch: Any,
                      trunk: list[TrunkSpace] = ()) -> tuple[dict[Key, np.ndarray], dict[tuple[int, int], float]]:
    """Per hidden and trunk channel and per removable block: mean over faces of (sum a * dL/da)^2 (module doc)."""
    acts: dict[Any, torch.Tensor] = {}
    hooks = _taylor_hooks(model, units, list(trunk), acts)
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
    prod = {k: (a * a.grad).detach().double().sum((2, 3)) for k, a in acts.items()}  # faces x channels
    chan: dict[Key, np.ndarray] = {k[1]: v.pow(2).mean(0).numpy() for k, v in prod.items() if k[0] == "h"}
    block = {k[1]: float(v.sum(1).pow(2).mean()) for k, v in prod.items()
             if k[0] == "b" and next(u for u in units if u.key == k[1]).removable}
    by_name = {(f"stages.{k[1][0]}.{k[1][1]}.conv" if k[0] == "b" else k[1]): v for k, v in prod.items() if k[0] != "h"}
    for t in trunk:  # removing a trunk channel zeroes it in every producer's contribution: sum, then square
        chan[t.name] = sum(by_name[p] for p in t.producers).pow(2).mean(0).numpy()
    return chan, block


@torch.no_grad()
def magnitude_importance(model: FaceMobileNet, units: list[Unit], trunk: list[TrunkSpace] = ()
                         ) -> tuple[dict[Key, np.ndarray], dict[tuple[int, int], float]]:
    """Without faces: per channel, the sum over the convs it touches (as producer row, consumer column or
    depthwise kernel) of its L1 norm divided by that conv's mean (magnitudes of different layers are not
    comparable; a channel carrying more layers' weights weighs more); a block scores the sum of its channels."""
    from .importance import member_scores

    mods = dict(model.named_modules())
    keys = {f"stages.{u.stage}.{u.block}.conv.hidden": u.key for u in units if u.hidden}
    keys.update({t.name: t.name for t in trunk})
    chan: dict[Key, np.ndarray] = {}
    for sp in _identity_spaces(model.schedule):
        if sp.name not in keys:
            continue
        acc = np.zeros(sp.W)
        for m in sp.members:
            v = member_scores(mods[m.src], m.role, "l1")
            if v is not None and v.mean() > 0:
                np.add.at(acc, m.a * np.arange(len(v)) + m.b_src, v / v.mean())
        chan[keys[sp.name]] = acc
    block = {u.key: float(chan[u.key].sum()) if u.hidden else 0.0 for u in units if u.removable}
    return chan, block


# ---------------------------------------------------------------------------------------------- allocation


@dataclass
class Greedy:
    """The allocator's state: widths and live blocks, their cost, and the channels' removal order."""

    cm: MacModel | LinearModel
    units: list[Unit]
    src_w: dict[Key, int]
    chan: dict[Key, np.ndarray]
    widths: dict[Key, int] = field(default_factory=dict)
    alive: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.widths = self.widths or dict(self.src_w)
        self.alive = self.alive or {u.key for u in self.units}
        self.order = {k: np.argsort(self.chan[k], kind="stable") for k in self.src_w}

    def cost(self, widths: dict | None = None, alive: set | None = None) -> float:
        return self.cm.cost(self.widths if widths is None else widths, self.alive if alive is None else alive)

    def scores(self, key: Key, w: int, k: int) -> float:
        """Importance of the k channels dropped when width w of `key` shrinks by k (least important first)."""
        W = self.src_w[key]
        return float(self.chan[key][self.order[key][W - w: W - w + k]].sum())

    def live(self, key: Key) -> bool:
        return not isinstance(key, tuple) or key in self.alive


def _removal_step(g: Greedy, cur: float, block: dict, granule: int, floors: dict[Key, int]) -> tuple | None:
    """The step losing the least importance per unit of cost saved: (ratio, kind, _, key), or None."""
    best = None
    for key, w in g.widths.items():
        if g.live(key) and w - granule >= floors[key]:
            saved = cur - g.cost({**g.widths, key: w - granule})
            if saved > 0:
                best = min(best or (np.inf,), (g.scores(key, w, granule) / saved, "w", str(key), key))
    for u in g.units:
        if u.removable and u.key in g.alive:
            saved = cur - g.cost(alive=g.alive - {u.key})
            if saved > 0:
                best = min(best or (np.inf,), (block[u.key] / saved, "b", str(u.key), u.key))
    return best


def _give_back(g: Greedy, cur: float, budget: float) -> float:
    """Channels back, most important per cost added first, one at a time, while the cost stays under."""
    while True:
        best = None
        for key, w in g.widths.items():
            if g.live(key) and w < g.src_w[key]:
                c = g.cost({**g.widths, key: w + 1})
                if c <= budget:
                    gain = g.scores(key, w + 1, 1) / max(c - cur, 1e-12)
                    best = max(best or (-np.inf,), (gain, str(key), key, c))
        if best is None:
            return cur
        g.widths[best[2]] += 1
        cur = best[3]


def allocate_importance(cm: MacModel | LinearModel, units: list[Unit], src_w: dict[Key, int], budget: float,
                        chan: dict, block: dict, granule: int, floors: dict[Key, int]) -> tuple[dict, set]:
    """Greedy removal by importance lost per cost saved, then give-back one channel at a time (module doc)."""
    g = Greedy(cm, units, src_w, chan)
    cur = g.cost()
    while cur > budget:
        step = _removal_step(g, cur, block, granule, floors)
        if step is None:
            break
        _, kind, _, key = step
        if kind == "w":
            g.widths[key] -= granule
        else:
            g.alive.discard(key)
        cur = g.cost()
    _give_back(g, cur, budget)
    return g.widths, g.alive


def allocate_uniform(cm: MacModel | LinearModel, units: list[Unit], src_w: dict[Key, int], budget: float,
                     floors: dict[Key, int]) -> tuple[dict, set]:
    """The largest common fraction of every hidden and trunk width whose cost is under the budget (bisection)."""
    alive = {u.key for u in units}

    def widths_at(r: float) -> dict:
        return {k: max(floors[k], int(np.floor(r * w))) for k, w in src_w.items()}

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cm.cost(widths_at(mid), alive) <= budget else (lo, mid)
    ws = widths_at(lo)
    while True:  # floor() left some budget: one more channel to the widths furthest below the fraction
        cand = [k for k in ws if ws[k] < src_w[k] and cm.cost({**ws, k: ws[k] + 1}, alive) <= budget]
        if not cand:
            return ws, alive
        k = min(cand, key=lambda v: (ws[v] / src_w[v], str(v)))
        ws[k] += 1


def _check_budget(src: Schedule, budget: float, full: float, floor: float, unit: str, allocation: str,
                  min_width: int, trunk: list[TrunkSpace], min_keep: float) -> None:
    if budget >= full:
        raise UserError(f"budget {fmt(budget, unit)} is at or above the source network's {fmt(full, unit)} "
                        f"('{src.name}'): nothing to prune; pass a smaller budget")
    if budget < floor:
        at = f"{min_width}" + (f" or {min_keep:g} of its source width" if min_keep else "")
        kept = ("stem, stage and head widths" + (f" also at {at}" if trunk else " kept"))
        raise UserError(f"budget {fmt(budget, unit)} is below the least '{src.name}' reaches by {allocation} "
                        f"allocation ({fmt(floor, unit)}: every hidden width at {at}"
                        f"{', every removable block deleted' if allocation == 'importance' else ''}; {kept}); "
                        f"raise the budget{' or lower --min-keep' if min_keep else ''}")


def _importance(model: FaceMobileNet, units: list[Unit], trunk: list[TrunkSpace], allocation: str,
                taylor: Callable[[], tuple[Callable, Any]] | None) -> tuple[dict, dict, str]:
    if taylor is not None:  # also for uniform: which channels each space keeps
        chan, block = taylor_importance(model, units, *taylor(), trunk=trunk)
        return chan, block, "first-order Taylor on activations of the margin loss at the faces' class centres"
    if allocation == "importance":
        chan, block = magnitude_importance(model, units, trunk)
        return chan, block, ("weight magnitude (no faces given: per channel, the sum over the convs it touches "
                             "of its L1 slice over that conv's mean)")
    return {}, {}, "none (the pruning criterion chooses the channels)"


def _trim(src: Schedule, units: list[Unit], trunk: list[TrunkSpace], widths: dict, alive: set, budget: float,
          cost: CostFn, floors: dict[Key, int], tag: str, description: str) -> tuple[Schedule, float]:
    """Build the schedule and measure it; the model is exact for MACs, not for an estimate: trim the widest
    hidden width until the measured cost is under the budget."""
    sched = schedule_from(src, units, widths, alive, tag, description, trunk)
    got = cost(sched)
    for _ in range(200):
        if got <= budget:
            break
        k = max((kk for kk in widths if isinstance(kk, tuple) and kk in alive and widths[kk] > floors[kk]),
                key=lambda kk: widths[kk], default=None)
        if k is None:
            break
        widths[k] -= 1
        sched = schedule_from(src, units, widths, alive, tag, description, trunk)
        got = cost(sched)
    return sched, got


def derive_schedule(model: FaceMobileNet, budget: float, cost: CostFn, unit: str, allocation: str = "importance",
                    taylor: Callable[[], tuple[Callable, Any]] | None = None, granule: int = DEFAULT_GRANULE,
                    name: str | None = None, min_keep: float = 0.0
                    ) -> tuple[Schedule, dict[str, Any], dict[Key, np.ndarray]]:
    """The schedule `model` prunes to under `budget` (in the cost's unit), a record of how it was derived, and
    the per-channel importance of every hidden and trunk space (for choosing which channels to keep; empty for
    uniform without faces).

    Refuses (UserError) a budget at or above the source's cost or below what the allocation can reach before
    `taylor()` is called: it returns (loss_fn, batch) for Taylor importance (loading faces is the slow part);
    None means weight-magnitude importance. min_keep: every width keeps at least this fraction of its source
    width (0: only the granule floor)."""
    if allocation not in ALLOCATIONS:
        raise UserError(f"unknown allocation '{allocation}'; choose one of {', '.join(ALLOCATIONS)}")
    if granule < 1:
        raise UserError(f"granule must be >= 1, got {granule}")
    if not 0 <= min_keep < 1:
        raise UserError(f"--min-keep is a fraction of each source width in [0, 1), got {min_keep:g}")
    src = model.schedule
    units = units_of(src)
    if not any(u.hidden for u in units):
        raise UserError(f"schedule '{src.name}' has no bottleneck with an expand conv: nothing a budget can prune; "
                        "use --schedule or --ratio")
    cm, trunk, full = cost_model(src, units, cost, unit)
    src_w = source_widths(units, trunk)
    min_width = 1 if allocation == "uniform" else granule
    floor_alive = {u.key for u in units if not (allocation == "importance" and u.removable)}
    floors = floor_widths(src_w, min_width, min_keep)
    floor = cm.cost(floors, floor_alive)
    _check_budget(src, budget, full, floor, unit, allocation, min_width, trunk, min_keep)
    chan, block, how = _importance(model, units, trunk, allocation, taylor)
    if allocation == "importance":
        widths, alive = allocate_importance(cm, units, src_w, budget, chan, block, granule, floors)
    else:
        widths, alive = allocate_uniform(cm, units, src_w, budget, floors)
    tag = name or f"{src.name}-{allocation}-" + (f"{budget / 1e6:g}M" if unit == "MACs" else f"{budget:g}{unit}")
    sched, got = _trim(src, units, trunk, widths, alive, budget, cost, floors, tag,
                       f"{src.name} pruned to {fmt(budget, unit)} ({allocation} allocation)")
    record = {"allocation": allocation, "importance": how,
              "budget": budget, "unit": unit, "source_cost": full, "floor_cost": floor, "cost": got,
              "under_budget_by": (budget - got) / budget, "granule": granule, "min_keep": min_keep,
              "deleted_blocks": [f"stage {s + 1} block {b + 1}" for (s, b) in sorted({u.key for u in units} - alive)],
              "hidden_widths": {f"stage {s + 1} block {b + 1}": widths[(s, b)] for (s, b) in sorted(
                  k for k in widths if isinstance(k, tuple)) if (s, b) in alive},
              "trunk_widths": {t.name: f"{t.width} -> {widths[t.name]}" for t in trunk}}
    return sched, record, chan


def _reconstruct(model: FaceMobileNet, pruned: FaceMobileNet, plan: Any, sel: Any, images: np.ndarray,
                 progress: bool) -> dict[str, Any]:
    """Least-squares re-fit of the pruned network's pointwise convs on up to RECONSTRUCT_FACES of the faces."""
    import click

    from ..data.transforms import to_float
    from .reconstruct import RECONSTRUCT_FACES, reconstruct, relative_error
    from .surgery import kept_output_channels

    pick = np.random.default_rng(0).permutation(len(images))
    fit, held = pick[:RECONSTRUCT_FACES], pick[RECONSTRUCT_FACES:RECONSTRUCT_FACES + 256]
    x = to_float(torch.from_numpy(images[fit]))
    check = to_float(torch.from_numpy(images[held if len(held) else fit[:256]]))
    before = relative_error(model, pruned, check)
    r = reconstruct(model, pruned, x, plan.source_module, kept_output_channels(sel, pruned),
                    progress=click.echo if progress else None)
    r["one_minus_cos_to_source"] = {"before": before, "after": relative_error(model, pruned, check),
                                    "faces": "held out" if len(held) else "the fitted faces (too few to hold out)"}
    click.echo(f"reconstruction on {len(fit)} faces: 1 - cos to the source {before:.4f} -> "
               f"{r['one_minus_cos_to_source']['after']:.4f} ({r['one_minus_cos_to_source']['faces']})")
    return r


def hidden_scores(plan: Any, chan: dict[Key, np.ndarray]) -> dict[str, np.ndarray]:
    """Importance per hidden and trunk space of the pruned network (surgery's space names), from the source's
    (a trunk space is named after the block opening it, which budget pruning never deletes)."""
    out = {name: chan[name] for name in ("stem", "head") if name in chan}
    for (tk, tj), (si, bi) in plan.block_map():
        if (si, bi) in chan:
            out[f"stages.{tk}.{tj}.conv.hidden"] = chan[(si, bi)]
        if f"stages.{si}.{bi}.out" in chan:
            out[f"stages.{tk}.{tj}.out"] = chan[f"stages.{si}.{bi}.out"]
    return out


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
                 overwrite: bool, data: str | None, align: bool, finetune_steps: int, progress: bool,
                 reconstruct: bool = False, min_keep: float = 0.0) -> dict[str, Any]:
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
        taylor.images = faces.images
        return taylor_loss(model, faces, batch_size=TAYLOR_BATCH)

    sched, rec, chan = derive_schedule(model, budget, cost, unit, allocation, taylor if data else None,
                                     min_keep=min_keep)
    if board:
        rec["board"] = board
    plan = prune_plan_for(model, sched)
    click.echo(format_plan(plan))
    sel = select_channels(model, plan, "l1" if chan else criterion, scores=hidden_scores(plan, chan))
    pruned = apply_selection(model, sel).eval()
    if reconstruct:
        rec["reconstruction"] = _reconstruct(model, pruned, plan, sel, taylor.images, progress)
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
               f"deleted blocks: {', '.join(rec['deleted_blocks']) or 'none'}; "
               f"trunk widths: {', '.join(f'{k} {v}' for k, v in rec['trunk_widths'].items()) or 'kept'}; "
               f"wrote {out} (schedule: "
               f"{Path(out) / 'schedule.toml'})")
    return manifest
