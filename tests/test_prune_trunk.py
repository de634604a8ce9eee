"""Budget pruning of trunk widths (stem, stage and head c): the per-module MAC model is ptflops' count, the
surgery is exact for changed trunk widths of a GDC-head, dws-stage network, MobileFaceNet reaches Table 3's
18.1 M MACs, an unreachable budget is refused before importance, and the derived schedule round-trips."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from compress.errors import UserError
from compress.model.network import FaceMobileNet
from compress.prune.budget import (LANDING, derive_schedule, macs_cost, schedule_from, schedule_toml,
                                   source_widths, units_of)
from compress.prune.in_memory import prune_to_schedule, schedule_macs
from compress.prune.plan import plan_pruning
from compress.prune.surgery import apply_selection, select_channels, zero_pruned_channels
from compress.prune.trunk import mac_model, trunk_spaces
from compress.schedules import load_schedule
from tests.test_prune import arch, randomized

BUDGET = 18_100_000  # Table 3's budget, at MobileFaceNet's 112 x 112 input


def _mfn(size: int = 112) -> "Schedule":  # noqa: F821
    return replace(load_schedule("mobilefacenet"), input_size=size)


def _trunk_target(src, units, trunk):
    """Every trunk width and a few hidden widths cut, one removable block deleted."""
    w = source_widths(units, trunk)
    cut = {"stem": 40, "stages.0.0.out": 48, "stages.1.0.out": 40, "stages.2.0.out": 96, "stages.4.0.out": 80,
           "head": 384, (1, 2): 50, (3, 0): 130, (5, 1): 17}
    alive = {u.key for u in units} - {(3, 4)}
    return schedule_from(src, units, {**w, **cut}, alive, "cut", "", trunk), {**w, **cut}, alive


def test_trunk_spaces_of_mobilefacenet():
    t = {s.name: s for s in trunk_spaces(_mfn())}
    assert list(t) == ["stem", "stages.0.0.out", "stages.1.0.out", "stages.2.0.out", "stages.4.0.out", "head"]
    assert t["stem"].stem and t["head"].head and t["stages.2.0.out"].stages == [2, 3]
    assert [s.width for s in t.values()] == [64, 64, 64, 128, 128, 512]
    assert trunk_spaces(load_schedule("table3")) == []  # residual (b): trunk widths stay


def test_mac_model_is_ptflops_on_built_networks():
    src = _mfn(56)
    units, trunk = units_of(src), trunk_spaces(src)
    cm = mac_model(src, trunk, {u.key: u.hidden for u in units if u.hidden})
    w = source_widths(units, trunk)
    assert cm.cost(w, {u.key for u in units}) == schedule_macs(src)
    sched, w2, alive = _trunk_target(src, units, trunk)
    assert cm.cost(w2, alive) == schedule_macs(sched)


def test_trunk_pruned_network_equals_zeroed_source():
    """Changed stem c, dws stage c, chain c (two stages tied), head c before the GDC, hidden widths, a block."""
    src = _mfn(56)
    units, trunk = units_of(src), trunk_spaces(src)
    dst, _, _ = _trunk_target(src, units, trunk)
    assert (dst.stem_c, dst.stages[0].c, dst.stages[3].c, dst.head_c) == (40, 48, 96, 384)
    m = randomized(src, seed=3)
    plan = plan_pruning(src, dst)
    sel = select_channels(m, plan, "l1")
    pruned = apply_selection(m, sel).eval()
    assert arch(pruned) == arch(FaceMobileNet(dst))
    zeroed = zero_pruned_channels(copy.deepcopy(m), sel).eval()
    # the deleted block adds nothing in the reference: zero its projection (BN weight and bias)
    zeroed.stages[3][4].conv[2][1].weight.data.zero_()
    zeroed.stages[3][4].conv[2][1].bias.data.zero_()
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        ref, out = zeroed(x), pruned(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def _fake_taylor():
    """(loss_fn, batch) standing in for the faces' margin loss: Taylor importance on random inputs."""
    torch.manual_seed(0)
    return (lambda model, b: model(b).pow(2).sum()), torch.randn(4, 3, 112, 112)


@pytest.fixture(scope="module")
def derived_18m():
    m = randomized(_mfn(), seed=4)
    sched, rec, chan = derive_schedule(m, BUDGET, macs_cost, "MACs", "importance", taylor=_fake_taylor)
    return m, sched, rec, chan


def test_mobilefacenet_reaches_table3_budget_with_trunk_widths(derived_18m):
    m, sched, rec, chan = derived_18m
    pruned = prune_to_schedule(m, sched)
    got = schedule_macs(pruned.schedule)
    assert got == rec["cost"] and (1 - LANDING) * BUDGET <= got <= BUDGET
    src = m.schedule
    assert sched.stem_c < src.stem_c or sched.head_c < src.head_c or any(
        a.c < b.c for a, b in zip(sched.stages, src.stages))
    assert set(rec["trunk_widths"]) == {t.name for t in trunk_spaces(src)}
    assert all(len(chan[t.name]) == t.width for t in trunk_spaces(src))  # Taylor scored every trunk channel


def test_uniform_cuts_trunk_and_hidden_by_one_fraction():
    m = FaceMobileNet(_mfn()).eval()
    sched, rec, _ = derive_schedule(m, BUDGET, macs_cost, "MACs", "uniform")
    assert (1 - LANDING) * BUDGET <= rec["cost"] <= BUDGET and not rec["deleted_blocks"]
    fr = [sched.stem_c / 64, sched.stages[3].c / 128, sched.head_c / 512]
    assert max(fr) - min(fr) < 0.05 and max(fr) < 0.5


def test_unreachable_budget_refused_in_one_line_before_importance():
    m = FaceMobileNet(_mfn()).eval()
    with pytest.raises(UserError, match="below the least") as e:
        derive_schedule(m, 1_000_000, macs_cost, "MACs", taylor=lambda: pytest.fail("importance computed"))
    assert "\n" not in str(e.value) and "stem, stage and head widths also at 8" in str(e.value)


def test_derived_trunk_schedule_round_trips(derived_18m, tmp_path):
    m, sched, rec, _ = derived_18m
    f = tmp_path / "s.toml"
    f.write_text(schedule_toml(sched, "derived"))
    back = load_schedule(f)
    assert back.to_dict() | {"path": ""} == sched.to_dict() | {"path": ""}
    again = prune_to_schedule(m, back)  # what `prune --schedule FILE` does with it
    assert schedule_macs(again.schedule) == rec["cost"]
    assert arch(again) == arch(prune_to_schedule(m, sched))


def test_a_pruned_paper_schedule_is_budget_pruned_from_its_own_stages():
    """table3's stages name table2's stages as their `source`: the trunk spaces of table3 itself must map each
    stage onto itself (it raised 'stride 2 differs from source stage 6' before)."""
    from compress.model.network import FaceMobileNet
    from compress.prune.budget import derive_schedule, macs_cost
    from compress.schedules import load_schedule

    m = FaceMobileNet(load_schedule("table3")).eval()
    budget = 0.7 * macs_cost(m.schedule)
    sched, rec, _ = derive_schedule(m, budget, macs_cost, "MACs", "importance")
    assert rec["cost"] <= budget
