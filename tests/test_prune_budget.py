"""Pruning to a MAC budget: lands under and within 2%, refuses what cannot be reached, deletes blocks where it
pays, and the derived schedule.toml round-trips through `schedules show` and `prune --schedule`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from compress.errors import UserError
from compress.model.network import FaceMobileNet
from compress.prune.budget import (LANDING, allocate_importance, cost_model, derive_schedule, floor_widths, macs_cost,
                                   parse_macs, schedule_from, schedule_toml, source_widths, units_of)
from compress.prune.in_memory import prune_to_schedule, schedule_macs
from compress.schedules import load_schedule

SIZE = 56  # a small input keeps ptflops fast; the structure is MobileFaceNet's


def _mfn(seed: int = 0) -> FaceMobileNet:
    torch.manual_seed(seed)
    return FaceMobileNet(replace(load_schedule("mobilefacenet"), input_size=SIZE)).eval()


def test_parse_macs():
    assert parse_macs("57M") == 57_000_000 and parse_macs("113.5M") == 113_500_000 and parse_macs("1200") == 1200
    with pytest.raises(UserError, match="not a MAC count"):
        parse_macs("lots")


@pytest.mark.parametrize("allocation", ["importance", "uniform"])
def test_lands_under_and_within_two_percent(allocation):
    m = _mfn()
    full = schedule_macs(m.schedule)
    budget = 0.3 * full
    sched, rec, _ = derive_schedule(m, budget, macs_cost, "MACs", allocation)
    pruned = prune_to_schedule(m, sched)
    got = schedule_macs(pruned.schedule)
    assert got == rec["cost"]
    assert (1 - LANDING) * budget <= got <= budget
    if allocation == "uniform":
        assert not rec["deleted_blocks"]


def test_refuses_impossible_budgets_before_work():
    m = _mfn()
    full = schedule_macs(m.schedule)
    with pytest.raises(UserError, match="at or above the source"):
        derive_schedule(m, full * 1.01, macs_cost, "MACs", taylor=lambda: pytest.fail("work started"))
    with pytest.raises(UserError, match="below the least") as e:
        derive_schedule(m, 1000, macs_cost, "MACs", taylor=lambda: pytest.fail("work started"))
    assert "\n" not in str(e.value)


def test_min_keep_floors_every_width_and_refuses_a_floor_above_the_budget():
    m = _mfn()
    full = schedule_macs(m.schedule)
    hidden = {f"stage {s + 1} block {b + 1}": u.hidden for u in units_of(m.schedule) if u.hidden
              for (s, b) in [u.key]}
    sched, rec, _ = derive_schedule(m, 0.3 * full, macs_cost, "MACs", "importance", min_keep=0.25)
    assert rec["min_keep"] == 0.25 and (1 - LANDING) * 0.3 * full <= rec["cost"] <= 0.3 * full
    for name, w in rec["hidden_widths"].items():
        assert w >= np.ceil(0.25 * hidden[name]), name
    for name, change in rec["trunk_widths"].items():
        src_w, w = (int(v) for v in change.split(" -> "))
        assert w >= np.ceil(0.25 * src_w), name
    _, plain, _ = derive_schedule(m, 0.3 * full, macs_cost, "MACs", "importance")
    def least_fraction(r: dict) -> float:
        trunk = [int(b) / int(a) for a, b in (c.split(" -> ") for c in r["trunk_widths"].values())]
        return min(trunk + [w / hidden[k] for k, w in r["hidden_widths"].items()])

    assert least_fraction(plain) < 0.25 <= least_fraction(rec)  # the floor changed the allocation
    with pytest.raises(UserError, match="lower --min-keep"):
        derive_schedule(m, 0.3 * full, macs_cost, "MACs", min_keep=0.8, taylor=lambda: pytest.fail("work started"))


def test_greedy_deletes_an_unimportant_block_exactly():
    """A removable block with no importance goes first; the pruned network is the source minus that branch."""
    m = _mfn()
    src = m.schedule
    units = units_of(src)
    cm, trunk, full = cost_model(src, units, macs_cost, "MACs")
    src_w = source_widths(units, trunk)
    victim = next(u for u in units if u.removable and u.stage == 3)
    key = (victim.stage, victim.block)
    chan = {k: np.full(w, 1e6) for k, w in src_w.items()}
    block = {(u.stage, u.block): (0.0 if (u.stage, u.block) == key else 1e9) for u in units if u.removable}
    everyone = {u.key for u in units}
    budget = cm.cost(src_w, everyone - {key}) + 1
    widths, alive = allocate_importance(cm, units, src_w, budget, chan, block, 8, floor_widths(src_w, 8))
    assert alive == everyone - {key}
    assert widths == src_w
    sched = schedule_from(src, units, widths, alive, "t", "", trunk)
    assert sched.stages[3].n == src.stages[3].n - 1 and victim.block + 1 not in sched.stages[3].kept
    pruned = prune_to_schedule(m, sched)
    ref = _mfn()
    with torch.no_grad():
        ref.stages[victim.stage][victim.block].conv[2][0].weight.zero_()
        ref.stages[victim.stage][victim.block].conv[2][1].bias.zero_()
        x = torch.randn(2, 3, SIZE, SIZE)
        assert torch.allclose(pruned(x), ref(x), atol=1e-5)


def test_toml_round_trips(tmp_path):
    m = _mfn()
    sched, _, _ = derive_schedule(m, 0.4 * schedule_macs(m.schedule), macs_cost, "MACs")
    f = tmp_path / "s.toml"
    f.write_text(schedule_toml(sched, "a header\nof two lines"))
    back = load_schedule(f)
    assert back.to_dict() | {"path": ""} == sched.to_dict() | {"path": ""}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compress.cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_cli_macs_then_schedule_show_and_prune_schedule(tmp_path):
    from compress.model.io import load_model, save_model

    save_model(_mfn(), tmp_path / "src" / "model.pt")
    src = tmp_path / "src"
    budget = int(0.35 * schedule_macs(_mfn().schedule))
    r = _cli("prune", "--model", str(src), "--macs", str(budget), "--out", str(tmp_path / "a"), "--no-progress")
    assert r.returncode == 0, r.stderr
    sfile = tmp_path / "a" / "schedule.toml"
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert (1 - LANDING) * budget <= man["macs"]["after"] <= budget
    r = _cli("schedules", "show", str(sfile))
    assert r.returncode == 0 and f"{man['macs']['after']:,}" in r.stdout, r.stderr
    r = _cli("prune", "--model", str(src), "--schedule", str(sfile), "--out", str(tmp_path / "b"), "--no-progress")
    assert r.returncode == 0, r.stderr
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    assert a.schedule.to_dict() | {"path": "", "name": ""} == b.schedule.to_dict() | {"path": "", "name": ""}
    r = _cli("prune", "--model", str(src), "--macs", "1G", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "above the source" in r.stderr


def test_cli_budget_options_refused_in_one_line(tmp_path):
    for args, why in ((["--latency", "5"], "go together"), (["--macs", "57M", "--ratio", "0.5"], "exactly one of"),
                      (["--macs", "57M", "--steps", "2"], "in one step")):
        r = _cli("prune", "--model", "zoo:table2", *args, "--out", str(tmp_path / "x"))
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and why in r.stderr
    assert not (tmp_path / "x").exists()


def test_importance_picks_the_channels_each_block_keeps():
    """The hidden channels kept are the most important ones by the budget's importance, not by the criterion."""
    from compress.prune.budget import hidden_scores
    from compress.prune.in_memory import prune_plan_for
    from compress.prune.surgery import select_channels

    m = _mfn()
    sched, _, chan = derive_schedule(m, 0.5 * schedule_macs(m.schedule), macs_cost, "MACs")
    plan = prune_plan_for(m, sched)
    rng = np.random.default_rng(0)
    chan = {k: rng.random(len(v)) for k, v in chan.items()}
    sel = select_channels(m, plan, "l1", scores=hidden_scores(plan, chan))
    sp = next(s for s in sel.spaces if s.name == "stages.3.2.conv.hidden")
    w = len(sp.keep)
    assert list(sp.keep) == sorted(np.argsort(-chan[(3, 2)], kind="stable")[:w])
