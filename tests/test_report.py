"""compress.report on a small but real run folder: table3 model (real BN statistics), NNCF PTQ, two ONNX exports,
benches on this host, accuracies from a real (synthetic-data) verification; one estimate and one board record are
hand-written fixtures and say so."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import UserError
from compress.report import REPORT_FORMAT, accuracy_record, collect, validate_accuracy, write_accuracy, write_report
from compress.report.schema import exported_stage
from compress.targets import list_targets

pytest.importorskip("nncf")
pytest.importorskip("onnxruntime")

ESTIMATE = {"target": "raspberry-pi-4", "precision": "int8", "latency_ms": 12.5,
            "label": "TEST FIXTURE estimate (hand-written, not a model output)",
            "loo": {"mean_abs_rel_error": 0.31, "n": 4}, "test_fixture": True}
BOARD_HOST = "TEST FIXTURE board (hand-written record, not a measurement)"


def _bn_model(seed: int):
    from compress.data.sources import synthetic_faces
    from compress.data.transforms import to_float
    from compress.model.network import build_model

    torch.manual_seed(seed)
    m = build_model("table3").train()
    x = to_float(torch.from_numpy(synthetic_faces(8, 4, seed=seed + 3, progress=False).images))
    with torch.no_grad():  # real BatchNorm statistics
        for _ in range(2):
            m(x)
    return m.eval()


def _eval(embedder, faces, stage: str, run: Path, roc_name: str | None = None):
    from compress.artifacts import write_json
    from compress.evaluate.pairs_eval import evaluate_pairs

    res = evaluate_pairs(embedder, faces, folds=2, pairs_per_fold=40, flip=False)
    roc = None
    if roc_name:
        roc = write_json(run / "roc" / roc_name, res["result"])  # VerificationResult.to_dict(), with "roc"
        roc = str(roc.relative_to(run))
    return accuracy_record(stage, res, roc=roc)


@pytest.fixture(scope="module")
def run(tmp_path_factory):  # end to end (NNCF quantize, exports, benches): its tests are marked slow
    from compress.artifacts import write_json
    from compress.bench.latency import bench_artifact
    from compress.data.sources import EVAL_IDENTITY_OFFSET, synthetic_faces
    from compress.evaluate.embed import OnnxEmbedder, TorchEmbedder
    from compress.export.folders import export_artifact
    from compress.model.io import save_model
    from compress.quantize import load_quantized, quantize_artifact

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    run = root / "RUN"
    model = _bn_model(0)
    save_model(model, run / "stages" / "train" / "model.pt")
    write_json(run / "stages" / "train" / "manifest.json", {"note": "test fixture: BN statistics only, untrained"})
    quantize_artifact(run / "stages" / "train", run / "stages" / "quantize", n_calibration=16, n_held_out=4,
                      threads=1, progress=False, bias_correction=False)
    for src, prec in (("train", "fp32"), ("quantize", "int8")):
        export_artifact(run / "stages" / src, "onnx", out=run / "exports" / f"onnx-{prec}", precision=prec,
                        n_parity=16, threads=1, progress=False)
        write_json(run / "bench" / f"onnx-{prec}.json",
                   bench_artifact(run / "exports" / f"onnx-{prec}", threads=1, warmup=5, min_runs=20,
                                  min_seconds=0.2, max_seconds=1.0))
    # Reference stand-in (a differently seeded table3, NOT MobileFaceNet): benched in the same runtime and run.
    ref = _bn_model(1)
    save_model(ref, root / "ref" / "model.pt")
    export_artifact(root / "ref", "onnx", out=root / "ref-onnx", precision="fp32", n_parity=16, threads=1,
                    progress=False)
    write_json(run / "reference" / "bench" / "onnx-fp32.json",
               bench_artifact(root / "ref-onnx", threads=1, warmup=5, min_runs=20, min_seconds=0.2, max_seconds=1.0))
    # Accuracy, same synthetic protocol for every stage.
    faces = synthetic_faces(8, 4, seed=7, first_identity=EVAL_IDENTITY_OFFSET, progress=False)
    write_accuracy(run, _eval(TorchEmbedder(model, name="stages/train"), faces, "trained", run, "trained.json"))
    q = load_quantized(run / "stages" / "quantize")
    write_accuracy(run, _eval(TorchEmbedder(q.qmodel, name="stages/quantize (fake-quant)"), faces, "quantized", run))
    onnx = run / "exports" / "onnx-fp32" / json.loads((run / "exports" / "onnx-fp32" / "manifest.json").read_text())[
        "model_file"]
    write_accuracy(run, _eval(OnnxEmbedder(onnx, threads=1), faces, exported_stage("onnx", "fp32"), run))
    write_accuracy(run, _eval(TorchEmbedder(ref, name="reference stand-in"), faces, "reference", run), reference=True)
    # Hand-written fixtures: an estimate and a board record (values are NOT measurements).
    write_json(run / "estimates" / "raspberry-pi-4-int8.json", ESTIMATE)
    board = {**json.loads((run / "bench" / "onnx-fp32.json").read_text()), "target": "jetson-nano",
             "precision": "fp16", "runtime": "tensorrt", "measured_on": BOARD_HOST, "median_ms": 4.2, "p90_ms": 4.5}
    write_json(run / "board" / "jetson-nano-fp16.json", board)
    return run, model


@pytest.fixture(scope="module")
def written(run):
    return write_report(run[0])


def _variant(report, target, precision):
    t = next(t for t in report["targets"] if t["name"] == target)
    return next(v for v in t["variants"] if v["precision"] == precision)


@pytest.mark.slow
def test_every_target_and_schema(written):
    run = Path(written["run_dir"])
    rep = json.loads((run / "report" / "report.json").read_text())
    assert rep["format"] == REPORT_FORMAT
    names = {t.name for t in list_targets()}
    assert {t["name"] for t in rep["targets"]} == names
    md = (run / "report" / "report.md").read_text()
    page = (run / "report" / "report.html").read_text()
    for n in names:
        assert n in md and n in page
    assert REPORT_FORMAT in md and REPORT_FORMAT in page


@pytest.mark.slow
def test_labels_and_values_equal_inputs(run, written):
    run_dir, model = run
    rep = json.loads((run_dir / "report" / "report.json").read_text())
    bench = json.loads((run_dir / "bench" / "onnx-fp32.json").read_text())
    v = _variant(rep, "onnx", "fp32")
    here = v["latency"]["here"]
    assert here["status"] == "measured" and here["median_ms"] == bench["median_ms"]
    assert here["p90_ms"] == bench["p90_ms"] and here["host"] == bench["measured_on"]
    assert here["provenance"] == f"measured on {bench['measured_on']}"
    assert v["latency"]["estimate"]["status"] == "not measured"
    assert v["latency"]["board"]["status"] == "not measured"
    # artifact size = the exported model file(s), not the board bundle's runner files
    mf = json.loads((run_dir / "exports" / "onnx-fp32" / "manifest.json").read_text())
    size = sum((run_dir / "exports" / "onnx-fp32" / f).stat().st_size for f in mf["files"]
               if f not in ("manifest.json", "parity.json", *mf["bundle"]["files"]))
    assert size == (run_dir / "exports" / "onnx-fp32" / "model.onnx").stat().st_size
    assert v["export"]["artifact_bytes"] == size > 0
    parity = json.loads((run_dir / "exports" / "onnx-fp32" / "parity.json").read_text())["checks"]["vs_float"]
    got = next(c for c in v["export"]["parity"] if c["check"] == "vs_float")
    assert (got["cosine_mean"], got["cosine_min"], got["n"]) == (parity["cosine_mean"], parity["cosine_min"], 16)
    # MACs / params from the stage model the export came from
    from compress.model.complexity import layer_table, totals

    params, macs = totals(layer_table(model))
    assert v["model"] == {**v["model"], "stage": "trained", "params": params, "macs": macs}
    assert _variant(rep, "onnx", "int8")["model"]["stage"] == "quantized"
    train = next(s for s in rep["stages"] if s["stage"] == "trained")
    assert train["macs"] == macs and sum(x["macs"] for x in train["layers"]) == macs
    # reference: same runtime and host -> ratio of the two medians
    rb = json.loads((run_dir / "reference" / "bench" / "onnx-fp32.json").read_text())
    assert v["reference"]["here"]["median_ms"] == rb["median_ms"]
    assert v["reference"]["ratio_here"]["ratio"] == pytest.approx(bench["median_ms"] / rb["median_ms"])
    assert v["reference"]["ratio_board"]["status"] == "not measured"
    # estimate and board fixtures
    est = _variant(rep, "raspberry-pi-4", "int8")["latency"]["estimate"]
    assert est["status"] == "estimated" and est["latency_ms"] == ESTIMATE["latency_ms"]
    assert "31%" in est["provenance"] and "n=4" in est["provenance"]
    nano = _variant(rep, "jetson-nano", "fp16")
    assert nano["latency"]["board"]["status"] == "measured on board"
    assert nano["latency"]["board"]["median_ms"] == 4.2 and BOARD_HOST in nano["latency"]["board"]["provenance"]
    assert nano["latency"]["here"]["status"] == "not measured" and nano["export"]["status"] == "not run"
    assert _variant(rep, "intel-nuc", "int8")["export"]["artifact_bytes"] is None


@pytest.mark.slow
def test_accuracy_per_stage(run, written):
    run_dir, _ = run
    rep = json.loads((run_dir / "report" / "report.json").read_text())
    stages = {a["stage"]: a for a in rep["accuracy"]["stages"]}
    assert list(stages) == ["trained", "pruned", "fine-tuned", "quantized"]
    rec = json.loads((run_dir / "accuracy" / "trained.json").read_text())
    assert stages["trained"]["accuracy"] == rec["accuracy"] and stages["trained"]["status"] == "measured"
    assert "SYNTHETIC" in stages["trained"]["provenance"] and rec["protocol"] in stages["trained"]["provenance"]
    assert stages["pruned"]["status"] == "not run" and stages["fine-tuned"]["status"] == "not run"
    assert stages["quantized"]["status"] == "measured"
    assert stages["trained"]["roc_data"]["kind"] == "points"
    assert rep["accuracy"]["same_protocol"]
    exp = _variant(rep, "onnx", "fp32")["accuracy"]
    assert exp["stage"] == "exported:onnx-fp32" and exp["status"] == "measured"
    assert _variant(rep, "onnx", "int8")["accuracy"]["status"] == "not measured"  # exported, not evaluated
    assert rep["reference"]["accuracy"]["status"] == "measured"
    assert rep["warnings"] == []


@pytest.mark.slow
def test_html_self_contained_with_plots(written):
    page = Path(written["written"]["html"]).read_text()
    srcs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert srcs and all(s.startswith("data:") for s in srcs)
    assert not re.search(r"<link\b|<script\b|@import|url\(", page, flags=re.I)
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) >= 3  # accuracy vs latency, MACs per layer, ROC
    from PIL import Image

    for b64 in pngs:
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert im.size[0] > 300 and np.asarray(im.convert("L")).std() > 5
    for title in ("Accuracy vs latency", "MACs per layer", "ROC"):
        assert title in page
    assert "not measured" in page and "not run" in page


def test_missing_parts_render_as_not_measured(tmp_path):
    write_json_path = tmp_path / "RUN"
    write_json_path.mkdir()
    rep = write_report(write_json_path)
    assert all(v["export"]["status"] == "not run" and v["latency"]["here"]["status"] == "not measured"
               and v["latency"]["estimate"]["status"] == "not measured"
               for t in rep["targets"] for v in t["variants"])
    assert all(s["status"] == "not run" for s in rep["stages"])
    md = Path(rep["written"]["md"]).read_text()
    assert "not measured" in md and "ms" not in md.split("## Per board")[1].split("## Accuracy")[0]
    with pytest.raises(UserError, match="already exists"):
        write_report(write_json_path, overwrite=False)


def test_accuracy_schema_validation():
    good = {"stage": "exported:raspberry-pi-4-int8", "model": "m", "runtime": "litert", "dataset": "d",
            "protocol": "p", "accuracy": 97.5, "accuracy_std": 0.7, "summary": "s"}
    assert validate_accuracy(good).accuracy == 97.5
    for bad, msg in (({**good, "stage": "exported"}, "stage"), ({**good, "accuracy": 0.975 * 1000}, "accuracy"),
                     ({k: v for k, v in good.items() if k != "protocol"}, "protocol"),
                     ({**good, "extra": 1}, "unknown"), ({**good, "roc": 3}, "roc")):
        with pytest.raises(UserError, match=msg):
            validate_accuracy(bad)


def test_bad_accuracy_file_is_a_warning_not_a_crash(tmp_path):
    (tmp_path / "accuracy").mkdir()
    (tmp_path / "accuracy" / "x.json").write_text(json.dumps({"stage": "trained"}))
    rep = collect(tmp_path)
    assert any("missing field" in w for w in rep["warnings"])
    assert rep["accuracy"]["stages"][0]["status"] == "not run"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if p:
            return p
    return None


@pytest.mark.slow
def test_screenshot_in_headless_browser(written, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium binary (apt-get install -y chromium); the HTML screenshot test needs a browser")
    shot = tmp_path / "report.png"
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           Path(written["written"]["html"]).resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert shot.is_file(), f"chromium wrote no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    from PIL import Image

    im = Image.open(shot)
    assert im.size == (1280, 2000)
    px = np.asarray(im.convert("L"), dtype=np.float64)
    assert shot.stat().st_size > 20_000
    assert px.std() > 10  # not blank: text, tables and plots
    assert (px < 128).mean() > 0.005  # some dark pixels (text)
