"""Least-squares reconstruction of a pruned network's pointwise convs (compress.prune.reconstruct): every
re-fitted conv reproduces its source conv at least as well as before, the pruned network moves towards its
source, and a network that lost nothing is left as it was."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch

from compress.prune.budget import derive_schedule, macs_cost
from compress.prune.in_memory import prune_plan_for
from compress.prune.reconstruct import reconstruct, relative_error
from compress.prune.surgery import apply_selection, kept_output_channels, select_channels
from compress.schedules import load_schedule

from .test_prune import randomized

SIZE = 56


def _pruned():
    src = randomized(replace(load_schedule("mobilefacenet"), input_size=SIZE))
    sched, _, _ = derive_schedule(src, 0.4 * macs_cost(src.schedule), macs_cost, "MACs", "uniform")
    plan = prune_plan_for(src, sched)
    sel = select_channels(src, plan, "l1")
    return src, apply_selection(src, sel).eval(), plan, sel


def test_reconstruction_fits_every_conv_and_moves_the_network_to_its_source():
    src, pruned, plan, sel = _pruned()
    torch.manual_seed(1)
    faces, held_out = torch.randn(48, 3, SIZE, SIZE), torch.randn(16, 3, SIZE, SIZE)
    before = relative_error(src, pruned, held_out)
    rec = reconstruct(src, pruned, faces, plan.source_module, kept_output_channels(sel, pruned), batch=16)
    assert rec["convs"] and all(r["relative_error_after"] <= r["relative_error_before"] + 1e-9 for r in rec["convs"])
    assert any(r["relative_error_after"] < 0.9 * r["relative_error_before"] for r in rec["convs"])
    assert relative_error(src, pruned, held_out) < before


def test_an_unpruned_network_is_left_as_it_was():
    src = randomized(replace(load_schedule("mobilefacenet"), input_size=SIZE))
    same = copy.deepcopy(src)
    rec = reconstruct(src, same, torch.randn(32, 3, SIZE, SIZE), lambda t: t, {}, batch=16)
    assert max(r["relative_error_after"] for r in rec["convs"]) < 1e-6
    for a, b in zip(src.parameters(), same.parameters()):
        assert torch.allclose(a, b, atol=1e-4)


def test_cli_refuses_reconstruct_without_faces(tmp_path):
    from click.testing import CliRunner

    from compress.cli import cli

    r = CliRunner().invoke(cli, ["prune", "--model", "zoo:table3", "--macs", "12M", "--reconstruct",
                                 "--out", str(tmp_path / "p"), "--no-progress"])
    from compress.errors import UserError

    assert isinstance(r.exception, UserError) and "--data" in str(r.exception)
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_cli_reconstructs_a_budget_pruning_on_faces(tmp_path):
    from click.testing import CliRunner

    from compress.cli import cli

    out = tmp_path / "p"
    r = CliRunner().invoke(cli, ["prune", "--model", "zoo:table2", "--macs", "50M", "--data", "synthetic",
                                 "--reconstruct", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "manifest.json").read_text())["method"]["budget"]["reconstruction"]
    assert rec["one_minus_cos_to_source"]["after"] < rec["one_minus_cos_to_source"]["before"]
    assert "1 - cos to the source" in r.output
