"""The whole chain from one recipe: train -> quantize -> export -> bench -> estimate -> reference -> report."""

import json

import pytest

from compress.errors import UserError
from compress.pipeline import run_pipeline

TINY = """[train]
synthetic_identities = 8
synthetic_images_per_identity = 8
epochs = 1
batch_size = 16
s = 16.0
m = 0.2
threads = 1
progress = false
[evaluate]
identities = 20
flip = false
[quantize]
images = 16
threads = 1
[export]
targets = ["onnx", "onnx:int8", "jetson-nano"]
parity_images = 16
[bench]
seconds = 0.2
threads = 1
[reference]
model = "/nonexistent/reference.onnx"
"""


@pytest.mark.slow
def test_pipeline_runs_every_stage_reports_and_reuses_cached_stages(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY)
    out = tmp_path / "run"
    first = run_pipeline(recipe, out, progress=False, report_dir=tmp_path / "reports")
    assert not any(s["cached"] for s in first["stages"])
    for f in ["stages/train/model.pt", "stages/quantize/quantized.pt", "exports/onnx-fp32/model.onnx",
              "exports/onnx-int8/model.onnx", "exports/jetson-nano-fp16/model.onnx", "bench/onnx-int8.json",
              "estimates/jetson-nano-fp16.json", "report/report.html", "report/report.json"]:
        assert (out / f).exists(), f
    assert (tmp_path / "reports" / "report.html").is_file()
    accs = {json.loads(p.read_text())["stage"]: json.loads(p.read_text()) for p in (out / "accuracy").glob("*.json")}
    assert set(accs) == {"trained", "quantized", "exported:onnx-fp32", "exported:onnx-int8",
                         "exported:jetson-nano-fp16"}
    # One evaluation set and protocol for every stage, and each stage says what ran it.
    assert len({(a["dataset"], a["protocol"]) for a in accs.values()}) == 1
    # on an x86 host without VNNI the int8 runtime label says its integer part was emulated in float
    assert accs["exported:onnx-int8"]["runtime"].startswith("onnxruntime") and accs["trained"]["runtime"] == "pytorch"
    # fp32 ONNX computes what PyTorch computes, so the same pairs give the same accuracy.
    assert abs(accs["exported:onnx-fp32"]["accuracy"] - accs["trained"]["accuracy"]) < 0.5
    ref = json.loads((out / "reference" / "status.json").read_text())
    assert ref["status"].startswith("not measured") and "not found" in ref["status"]
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["format"] == "compress.report/1"
    # A re-run reuses every stage but the report; --force recomputes.
    stamp = (out / "stages" / "train" / "model.pt").stat().st_mtime_ns
    again = run_pipeline(recipe, out, progress=False)
    assert [s["stage"] for s in again["stages"] if not s["cached"]] == ["report"]
    assert (out / "stages" / "train" / "model.pt").stat().st_mtime_ns == stamp
    # Changing one stage's settings recomputes that stage and what depends on it, not training.
    recipe.write_text(TINY.replace("images = 16", "images = 12"))
    third = run_pipeline(recipe, out, progress=False)
    redone = {s["stage"] for s in third["stages"] if not s["cached"]}
    assert "quantize" in redone and "export onnx int8" in redone and "train" not in redone
    run_pipeline(recipe, out, force=True, progress=False)
    assert (out / "stages" / "train" / "model.pt").stat().st_mtime_ns != stamp


def test_pipeline_rejects_unknown_sections_and_targets(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 1\n[quantise]\nimages = 4\n")
    with pytest.raises(UserError, match=r"unknown recipe section \[quantise\]"):
        run_pipeline(bad, tmp_path / "r", progress=False)
    bad.write_text("[train]\nepochs = 1\n[export]\ntargets = [\"jetson-xavier\"]\n")
    with pytest.raises(UserError, match="unknown target"):
        run_pipeline(bad, tmp_path / "r", progress=False)


def test_no_progress_reaches_the_training_stage(tmp_path, monkeypatch):
    """`pipeline --no-progress` (CI logs) also silences the per-epoch bars, without changing the stage's key."""
    import compress.train.trainer as trainer
    from compress.full_recipe import load_recipe
    from compress.pipeline import _Evaluator, _Plan, _train_stages

    seen = []
    monkeypatch.setattr(trainer, "train", lambda cfg, out, overwrite: seen.append(cfg.progress))
    rec = load_recipe("ci")
    keys = []
    for progress in (True, False):
        stage = _train_stages(_Plan(rec, tmp_path, _Evaluator(rec.evaluate, 0), tmp_path, progress))[0]
        stage.run()
        keys.append(stage.settings)
    assert seen == [True, False] and keys[0] == keys[1]
