"""The model zoo: shipped real-face weights, `zoo:NAME` everywhere a model is taken, hash checks, records that
match their weights, and the README card's two commands working without --model on a fresh checkout."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import compress.zoo as zoo
from compress.artifacts import file_sha256
from compress.errors import UserError
from compress.model import build_model
from compress.model.complexity import count_macs
from compress.model.io import describe_model, load_model, save_model

from .conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("table2", "table3", zoo.WARD_MODEL.split(":", 1)[1])  # the defaults of prune, export/evaluate, enrol
LFW = SHARED / "data" / "lfw"


# ------------------------------------------------------------------ the mechanism, on a zoo made here
@pytest.fixture
def tmp_zoo(tmp_path, monkeypatch):
    folder = tmp_path / "zoo" / "tiny"
    save_model(build_model("table3"), folder / "model.pt")
    flip = {"accuracy_mean": 0.5, "accuracy_std": 0.01, "tar_at_far": {"1e-3": 0.0, "1e-2": 0.01},
            "far_false_accepts": {"1e-3": 3, "1e-2": 30}, "auc": 0.5}
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "zoo", "name": "tiny", "weights": {"file": "model.pt", "sha256": file_sha256(folder / "model.pt")},
        "schedule": {"name": "table3"}, "params": 1, "macs": 2, "lfw": {"flip": flip, "record": "r.json"}}))
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    return folder


def test_zoo_names_resolve_and_are_hash_checked(tmp_zoo):
    assert load_model("zoo:tiny").schedule.name == "table3"
    assert "zoo:tiny (table3, sha256" in describe_model("zoo:tiny")
    with pytest.raises(UserError, match="no zoo model 'nope'; choose one of: tiny"):
        load_model("zoo:nope")
    data = bytearray((tmp_zoo / "model.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_zoo / "model.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match="do not match their manifest"):
        load_model("zoo:tiny")
    (tmp_zoo / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="broken manifest"):
        load_model("zoo:tiny")


def test_models_command_lists_the_zoo(tmp_zoo):
    from compress.cli import cli

    r = CliRunner().invoke(cli, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["models"]
    assert [x["name"] for x in rows] == ["zoo:tiny"] and rows[0]["sha256"] == file_sha256(tmp_zoo / "model.pt")
    text = CliRunner().invoke(cli, ["models"]).output
    assert "zoo:tiny" in text and "50.00 +- 1.00" in text


# ------------------------------------------------------------------ the shipped entries
def test_required_entries_ship():
    assert set(REQUIRED) <= set(zoo.zoo_names())
    total = sum(f.stat().st_size for f in zoo.ZOO_DIR.rglob("*") if f.is_file())
    assert total <= 20 * 2**20, f"zoo is {total / 2**20:.1f} MiB, the budget is 20"


@pytest.mark.parametrize("name", zoo.zoo_names())
def test_entry_loads_and_matches_its_record(name):
    e = zoo.load_entry(name)
    model = load_model(f"zoo:{name}")  # hash-checked
    assert json.loads(json.dumps(model.schedule.to_dict())) == e.manifest["schedule"]  # tuples are lists in JSON
    if e.manifest.get("family") == "mobilefacenet":  # pruned from the teacher's network (or from an entry pruned
        assert e.manifest["schedule"]["prune_from"].startswith("mobilefacenet")  # from it) to a MAC budget
        assert e.manifest["macs"] <= {"mfn-113m": 113.5e6, "mfn-57m": 57e6, "mfn-18m": 18.1e6}[name]
        o = json.loads((ROOT / e.manifest["open_set"]["record"]).read_text())
        assert o["model_sha256"] == e.sha256 and o["results"]["100"]["rank1"] == e.manifest["open_set"]["gallery_100"]["rank1"]
    else:
        assert e.manifest["schedule"]["name"] == name.split("-")[0]  # table3-faces is a table3 network
    assert sum(p.numel() for p in model.parameters()) == e.manifest["params"]
    assert count_macs(model, (3, 112, 112)) == e.manifest["macs"]
    rec = json.loads((ROOT / e.manifest["lfw"]["record"]).read_text())
    assert rec["model_sha256"] == e.sha256 == file_sha256(e.model_file)
    for key in ("flip", "no_flip"):
        assert rec["results"][key]["accuracy_mean"] == e.manifest["lfw"][key]["accuracy_mean"]
        assert rec["results"][key]["tar_at_far"] == e.manifest["lfw"][key]["tar_at_far"]
    card = (e.folder / "MODEL_CARD.md").read_text()
    f = e.manifest["lfw"]["flip"]
    assert f"{100 * f['accuracy_mean']:.2f}% +- {100 * f['accuracy_std']:.2f}" in card
    assert e.sha256 in card and "non-commercial research" in card
    for part in ("## Intended use", "## Known limits", "## Training data and their terms", "Pose", "Age",
                 "Ethnicity", "Lighting"):
        assert part in card
    assert (ROOT / e.manifest["recipe"]).is_file() and (ROOT / e.manifest["chain_script"]).is_file()
    assert e.manifest["chain"] and all(c.startswith("compress ") for c in e.manifest["chain"])


def test_pt2e_keeps_the_head_float_before_a_float_gdc():
    """PT2E quantizes each op's output: a float GDC would still read the head's int8 output (mfn entries' TFLite
    int8 embedding cosine was 0.2-0.35 before this rule)."""
    from compress.export.formats import _pt2e_keep_float
    from compress.model.io import load_model

    mfn, t3 = load_model(zoo.load_entry("mfn-18m").model_file), load_model(zoo.load_entry("table3").model_file)
    assert _pt2e_keep_float(mfn, ["stem", "pool", "embedding", "bn"]) == ["stem", "pool", "embedding", "bn", "head"]
    assert _pt2e_keep_float(mfn, ["stem"]) == ["stem"]  # a GDC that is quantized anyway: nothing to protect
    assert _pt2e_keep_float(t3, ["stem", "pool", "embedding", "bn"]) == ["stem", "pool", "embedding", "bn"]


@pytest.mark.slow
@pytest.mark.parametrize("name, int8_cosine", [("table2", 0.95), ("table3", 0.95), ("mfn-18m", 0.93)])
def test_entry_exports_with_parity(name, int8_cosine, tmp_path):
    """jetson-nano (fp16 ONNX for TensorRT) and raspberry-pi-4 (int8 TFLite, calibrated on the built-in faces,
    so it works without ../shared), each checked in its runtime here."""
    from compress.export.folders import export_artifact
    from compress.quantize import quantize_artifact

    m = export_artifact(f"zoo:{name}", "jetson-nano", out=tmp_path / "jn", progress=False)
    assert m["precision"] == "fp16" and m["parity"]["vs_float"]["cosine_min"] > 0.999
    quantize_artifact(f"zoo:{name}", tmp_path / "q", n_calibration=64, progress=False)
    m = export_artifact(tmp_path / "q", "raspberry-pi-4", out=tmp_path / "rpi", precision="int8", n_parity=64,
                        progress=False)
    assert m["precision"] == "int8" and m["parity"]["vs_float"]["cosine_mean"] > int8_cosine
    assert m["source"]["sha256"]


@pytest.mark.slow
def test_card_commands_work_without_model_in_a_fresh_folder(tmp_path):
    """The README's two commands, as a new user types them, from an empty folder: the zoo supplies the model."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "compress.cli", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=900)

    r = run("prune", "--schedule", "table3", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "model: zoo:table2 (table2, sha256" in r.stderr
    assert (tmp_path / "runs/pruned/zoo-table2-table3/model.pt").is_file()
    r = run("export", "--target", "jetson-nano", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "model: zoo:table3 (table3, sha256" in r.stderr and "parity" in r.stdout
    man = json.loads((tmp_path / "runs/exports/zoo-table3-jetson-nano-fp16/manifest.json").read_text())
    assert man["source"]["sha256"] == zoo.load_entry("table3").sha256
    r = run("export", "--target", "jetson-nano", "--no-progress")  # a second time: refuses, one line
    assert r.returncode == 2 and "already exists; pass --overwrite" in r.stderr


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.skipif(not (LFW / "pairs.txt").is_file(), reason="../shared LFW not present")
@pytest.mark.parametrize("name", zoo.zoo_names())
def test_entry_lfw_matches_its_card(name):
    from compress.evaluate.embed import load_embedder
    from compress.evaluate.lfw import evaluate_lfw

    e = zoo.load_entry(name)
    res = evaluate_lfw(load_embedder(f"zoo:{name}"), LFW, flip=True)
    assert abs(res["results"]["flip"]["accuracy_mean"] - e.manifest["lfw"]["flip"]["accuracy_mean"]) <= 0.002
