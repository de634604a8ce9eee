"""`compress models` names each zoo entry's family, derived from the schedule its manifest stores."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import compress.zoo as zoo
from compress.artifacts import file_sha256
from compress.model.io import save_model
from compress.model.network import build_model
from compress.schedules import load_schedule

FLIP = {"accuracy_mean": 0.5, "accuracy_std": 0.01, "tar_at_far": {"1e-3": 0.0, "1e-2": 0.01},
        "far_false_accepts": {"1e-3": 3, "1e-2": 30}, "auc": 0.5}


def _entry(root: Path, name: str, schedule: dict, **extra) -> None:
    folder = root / name
    save_model(build_model("table3"), folder / "model.pt")  # the weights do not matter to the listing
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "zoo", "name": name, "weights": {"file": "model.pt", "sha256": file_sha256(folder / "model.pt")},
        "schedule": schedule, "params": 1, "macs": 2, "lfw": {"flip": FLIP, "record": "r.json"}, **extra}))


@pytest.mark.parametrize("schedule, family", [
    ({"name": "table2"}, "paper"),
    ({"name": "table3", "prune_from": "table2"}, "paper"),
    (load_schedule("mobilefacenet").to_dict(), "mobilefacenet"),
    ({"name": "mobilefacenet-importance-57M", "prune_from": "mobilefacenet"}, "mobilefacenet"),
    ({"name": "derived", "prune_from": "derived-113M", "head_pool": "gdc"}, "mobilefacenet"),
])
def test_family_from_schedule(schedule, family):
    assert zoo.family_of({"schedule": schedule}) == family


def test_explicit_family_key_wins():
    assert zoo.family_of({"schedule": {"name": "table3"}, "family": "mobilefacenet"}) == "mobilefacenet"
    assert zoo.family_of({"schedule": {"name": "table3"}, "family": "bogus"}) == "paper"  # unknown: derived


def test_models_lists_family(tmp_path, monkeypatch):
    from compress.cli import cli

    _entry(tmp_path, "small", {"name": "table3", "prune_from": "table2"})
    _entry(tmp_path, "mfn-57m", {**load_schedule("mobilefacenet").to_dict(), "name": "mobilefacenet-57M",
                                 "prune_from": "mobilefacenet"})
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    r = CliRunner().invoke(cli, ["models", "--json"])
    assert r.exit_code == 0, r.output
    assert {x["name"]: x["family"] for x in json.loads(r.output)["models"]} == {
        "zoo:mfn-57m": "mobilefacenet", "zoo:small": "paper"}
    lines = CliRunner().invoke(cli, ["models"]).output.splitlines()
    assert "family" in lines[0]
    row = next(x for x in lines if x.startswith("zoo:mfn-57m"))
    assert row.split()[1] == "mobilefacenet"


def test_shipped_entries_have_a_family():
    fams = {e.name: zoo.family_of(e.manifest) for e in zoo.list_entries()}
    assert fams.get("table2") == "paper" and fams.get("table3") == "paper"
    assert all(f in zoo.FAMILIES for f in fams.values())
