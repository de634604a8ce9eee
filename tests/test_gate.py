"""The CI benchmark gate (compress.report.gate) on a report written from a small but real run folder (the run
fixture of tests/test_report.py: table3 model, NNCF PTQ, two ONNX exports with parity, benches on this host,
synthetic-data accuracies). Regressions are injected into copies of that report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from compress.errors import UserError
from compress.report.gate import (BASELINE_FORMAT, DIRECTIONS, GateResult, check, extract_metrics, format_gate,
                                  make_baseline, run_gate, update_baseline, validate_baseline)

from .conftest import run_cli

pytestmark = pytest.mark.slow  # every test reads the report of a real run folder, built end to end first

try:  # module-scoped fixtures building the real run folder (needs nncf + onnxruntime)
    from .test_report import run, written  # noqa: F401
    _SKIP = None
except pytest.skip.Exception as e:  # pragma: no cover - only without nncf / onnxruntime
    _SKIP = str(e)

GATED_KEYS = {"accuracy.trained", "accuracy.quantized", "accuracy.exported:onnx-fp32",
              "parity.onnx-fp32.vs_float.cosine_min", "parity.onnx-int8.vs_float.cosine_min",
              "parity.onnx-int8.vs_nncf_fake_quant.cosine_min", "size.onnx-fp32.bytes", "size.onnx-int8.bytes",
              "macs.trained", "macs.quantized", "params.trained", "params.quantized"}
TRACKED_KEYS = {"accuracy.reference", "latency.onnx-fp32.here.median_ms", "latency.onnx-int8.here.median_ms",
                "latency.jetson-nano-fp16.board.median_ms", "latency.raspberry-pi-4-int8.estimate.ms",
                "latency_ratio.onnx.int8_vs_fp32.here", "latency_ratio.onnx-fp32.vs_reference.here",
                "latency_ratio.onnx-int8.vs_reference.here"}


@pytest.fixture(scope="module")
def report_path(request) -> Path:
    if _SKIP:
        pytest.skip(_SKIP)
    out = request.getfixturevalue("written")
    return Path(out["written"]["json"])


@pytest.fixture
def report(report_path) -> dict:
    return json.loads(report_path.read_text())  # a fresh copy per test: tests mutate it


@pytest.fixture
def baseline(report) -> dict:
    return make_baseline(copy.deepcopy(report))


def _variant(rep: dict, key: str) -> dict:
    return next(v for t in rep["targets"] for v in t["variants"] if v["key"] == key)


def _stage_acc(rep: dict, stage: str) -> dict:
    return next(a for a in rep["accuracy"]["stages"] if a["stage"] == stage)


def _parity(rep: dict, key: str, check_name: str) -> dict:
    return next(c for c in _variant(rep, key)["export"]["parity"] if c["check"] == check_name)


def _status(res: GateResult, status: str) -> set[str]:
    return set(res.by_status(status))


# ---------------------------------------------------------------- extraction and baseline
def test_extract_metrics_from_real_report(report):
    m = extract_metrics(report)
    assert set(m) == GATED_KEYS | TRACKED_KEYS
    for k, v in m.items():
        assert v["direction"] in DIRECTIONS and isinstance(v["unit"], str) and v["provenance"], k
    # values and provenance are copied from the report, not recomputed
    trained = _stage_acc(report, "trained")
    assert m["accuracy.trained"]["value"] == trained["accuracy"] and m["accuracy.trained"]["unit"] == "%"
    assert m["accuracy.trained"]["provenance"] == trained["provenance"] and "SYNTHETIC" in trained["provenance"]
    exp = _variant(report, "onnx-int8")["export"]
    assert m["size.onnx-int8.bytes"]["value"] == exp["artifact_bytes"] > 0
    assert m["parity.onnx-int8.vs_float.cosine_min"]["value"] == _parity(report, "onnx-int8", "vs_float")["cosine_min"]
    assert m["macs.trained"]["direction"] == "exact"
    assert m["macs.trained"]["value"] == next(s for s in report["stages"] if s["stage"] == "trained")["macs"]
    here = {k: _variant(report, k)["latency"]["here"]["median_ms"] for k in ("onnx-int8", "onnx-fp32")}
    ratio = m["latency_ratio.onnx.int8_vs_fp32.here"]
    assert ratio["value"] == pytest.approx(here["onnx-int8"] / here["onnx-fp32"])
    assert "onnxruntime" in ratio["provenance"]
    # "not run" / "not measured" entries give no metric
    assert not any(k.startswith(("accuracy.pruned", "size.intel-nuc", "accuracy.exported:onnx-int8")) for k in m)


def test_default_tolerances(baseline):
    ms = baseline["metrics"]
    assert baseline["format"] == BASELINE_FORMAT and baseline["source"]["run_dir"]
    assert {k for k, v in ms.items() if v["gate"]} == GATED_KEYS
    assert ms["accuracy.trained"]["tolerance_abs"] == 2.0
    assert ms["parity.onnx-fp32.vs_float.cosine_min"]["tolerance_abs"] == 1e-3
    assert ms["parity.onnx-int8.vs_float.cosine_min"]["tolerance_abs"] == 2e-2
    assert ms["size.onnx-fp32.bytes"]["tolerance_rel"] == 0.10 and "tolerance_abs" not in ms["size.onnx-fp32.bytes"]
    assert ms["macs.trained"]["tolerance_abs"] == 0 and ms["params.quantized"]["tolerance_abs"] == 0
    assert ms["latency_ratio.onnx.int8_vs_fp32.here"] == {**ms["latency_ratio.onnx.int8_vs_fp32.here"],
                                                          "tolerance_rel": 0.5, "gate": False}
    assert ms["latency.onnx-fp32.here.median_ms"]["gate"] is False
    assert validate_baseline(json.loads(json.dumps(baseline))) is not None


def test_tolerance_overrides(report):
    b = make_baseline(report, {"accuracy": {"tolerance_abs": 0.5}, "latency_ratio.*": {"gate": True},
                               "size.onnx-int8.bytes": {"tolerance_abs": 1000}})
    ms = b["metrics"]
    assert ms["accuracy.quantized"]["tolerance_abs"] == 0.5 and ms["accuracy.quantized"]["gate"] is True
    assert ms["latency_ratio.onnx.int8_vs_fp32.here"]["gate"] is True
    assert ms["latency_ratio.onnx.int8_vs_fp32.here"]["tolerance_rel"] == 0.5
    assert ms["size.onnx-int8.bytes"]["tolerance_abs"] == 1000 and "tolerance_rel" not in ms["size.onnx-int8.bytes"]


# ---------------------------------------------------------------- the gate
def test_baseline_passes_on_itself(report_path, tmp_path):
    base = tmp_path / "reports" / "ci" / "baseline.json"
    written_b = update_baseline(report_path, base)
    assert json.loads(base.read_text()) == written_b
    out = tmp_path / "gate" / "result.json"
    res = run_gate(report_path, base, out_path=out)
    assert res.passed and {r["status"] for r in res.rows} == {"ok"}
    assert len(res.rows) == len(GATED_KEYS | TRACKED_KEYS)
    saved = json.loads(out.read_text())
    assert saved["passed"] is True and saved["failed"] == [] and len(saved["rows"]) == len(res.rows)
    assert not [p for p in out.parent.iterdir() if p.name != "result.json"]  # atomic: no temp file left
    text = format_gate(res)
    assert text.splitlines()[-1].startswith("GATE PASSED") and "accuracy.trained" in text
    # a run folder is accepted as the report path too
    assert run_gate(report_path.parent.parent, base).passed


def _inject(rep: dict, what: str) -> str:
    if what == "accuracy":
        _stage_acc(rep, "trained")["accuracy"] -= 5.0
        return "accuracy.trained"
    if what == "cosine":
        _parity(rep, "onnx-fp32", "vs_float")["cosine_min"] -= 0.01
        return "parity.onnx-fp32.vs_float.cosine_min"
    if what == "bytes":
        exp = _variant(rep, "onnx-int8")["export"]
        exp["artifact_bytes"] = int(exp["artifact_bytes"] * 1.5)
        return "size.onnx-int8.bytes"
    if what == "macs":
        next(s for s in rep["stages"] if s["stage"] == "quantized")["macs"] += 1
        return "macs.quantized"
    raise AssertionError(what)


@pytest.mark.parametrize("what", ["accuracy", "cosine", "bytes", "macs"])
def test_single_regression_fails(report, baseline, what):
    key = _inject(report, what)
    res = check(report, baseline)
    assert not res.passed
    assert _status(res, "regressed") == {key} and [r["key"] for r in res.failures] == [key]


def test_injected_regressions_fail_through_files(report, baseline, tmp_path):
    keys = {_inject(report, w) for w in ("accuracy", "cosine", "bytes")}
    rp, bp, out = tmp_path / "report.json", tmp_path / "baseline.json", tmp_path / "gate.json"
    rp.write_text(json.dumps(report))
    bp.write_text(json.dumps(baseline))
    res = run_gate(rp, bp, out_path=out)
    assert not res.passed and _status(res, "regressed") == keys
    row = next(r for r in res.rows if r["key"] == "accuracy.trained")
    assert row["delta"] == pytest.approx(-5.0) and row["tolerance"] == {"tolerance_abs": 2.0}
    saved = json.loads(out.read_text())
    assert saved["passed"] is False and set(saved["failed"]) == keys
    text = format_gate(res)
    verdict = text.splitlines()[-1]
    assert verdict.startswith("GATE FAILED") and all(k in verdict for k in keys)


def test_changes_within_tolerance_pass(report, baseline):
    _stage_acc(report, "trained")["accuracy"] -= 1.5                       # < 2 pp
    _parity(report, "onnx-int8", "vs_float")["cosine_min"] -= 0.01         # < 2e-2 (int8)
    _parity(report, "onnx-fp32", "vs_float")["cosine_min"] -= 5e-4         # < 1e-3 (fp32)
    exp = _variant(report, "onnx-fp32")["export"]
    exp["artifact_bytes"] = int(exp["artifact_bytes"] * 1.05)              # < 10%
    _variant(report, "onnx-int8")["latency"]["here"]["median_ms"] *= 3     # ratio regressed, but not gated
    res = check(report, baseline)
    assert res.passed, format_gate(res)
    assert _status(res, "regressed") == {"latency.onnx-int8.here.median_ms", "latency_ratio.onnx.int8_vs_fp32.here"}
    assert not res.failures and format_gate(res).splitlines()[-1].startswith("GATE PASSED")


def test_improvement_passes_and_is_labelled(report, baseline):
    _stage_acc(report, "quantized")["accuracy"] += 5.0
    exp = _variant(report, "onnx-int8")["export"]
    exp["artifact_bytes"] = int(exp["artifact_bytes"] * 0.5)
    res = check(report, baseline)
    assert res.passed
    assert _status(res, "improved") == {"accuracy.quantized", "size.onnx-int8.bytes"}


def test_missing_gated_metric_fails(report, baseline):
    exp = _variant(report, "onnx-int8")["export"]
    exp.update(status="not run", artifact_bytes=None, parity=[{"status": "not run"}])
    res = check(report, baseline)
    assert not res.passed
    missing = {"size.onnx-int8.bytes", "parity.onnx-int8.vs_float.cosine_min",
               "parity.onnx-int8.vs_nncf_fake_quant.cosine_min"}
    assert _status(res, "missing") == missing == {r["key"] for r in res.failures}
    assert "missing" in format_gate(res).splitlines()[-1]
    assert all("not in the report" in r["note"] for r in res.rows if r["status"] == "missing")


def test_missing_ungated_and_new_metrics_do_not_fail(report, baseline):
    _variant(report, "jetson-nano-fp16")["latency"]["board"] = {"status": "not measured"}
    del baseline["metrics"]["accuracy.quantized"]
    res = check(report, baseline)
    assert res.passed
    assert _status(res, "missing") == {"latency.jetson-nano-fp16.board.median_ms"}
    assert _status(res, "new") == {"accuracy.quantized"}


def test_update_baseline_keeps_hand_edited_tolerances(report_path, tmp_path):
    bp = tmp_path / "baseline.json"
    b = update_baseline(report_path, bp, recipe="ci-smoke")
    assert b["source"]["recipe"] == "ci-smoke"
    b["metrics"]["accuracy.trained"]["tolerance_abs"] = 0.25
    b["metrics"]["latency_ratio.onnx.int8_vs_fp32.here"]["gate"] = True
    bp.write_text(json.dumps(b))
    b2 = update_baseline(report_path, bp)
    assert b2["metrics"]["accuracy.trained"]["tolerance_abs"] == 0.25
    assert b2["metrics"]["latency_ratio.onnx.int8_vs_fp32.here"]["gate"] is True
    assert b2["metrics"]["accuracy.quantized"]["tolerance_abs"] == 2.0


# ---------------------------------------------------------------- malformed input
def _bad_baselines(good: dict) -> list[tuple[str, str]]:
    m = dict(good["metrics"]["accuracy.trained"])
    no_tol = {k: v for k, v in m.items() if k != "tolerance_abs"}
    return [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({**good, "format": "something/1"}), "format"),
        (json.dumps({**good, "metrics": []}), "metrics"),
        (json.dumps({**good, "metrics": {"accuracy.trained": no_tol}}), "tolerance"),
        (json.dumps({**good, "metrics": {"accuracy.trained": {**m, "tolerance_rel": 0.1}}}), "exactly one"),
        (json.dumps({**good, "metrics": {"accuracy.trained": {**m, "direction": "up"}}}), "direction"),
        (json.dumps({**good, "metrics": {"accuracy.trained": {**m, "value": "57"}}}), "value"),
        (json.dumps({**good, "metrics": {"accuracy.trained": {**m, "gate": "yes"}}}), "gate"),
        (json.dumps({**good, "metrics": {"accuracy.trained": {**m, "tolerance_abs": -1}}}), ">= 0"),
    ]


def test_malformed_or_missing_baseline_is_a_user_error(report_path, baseline, tmp_path):
    with pytest.raises(UserError, match="compress gate --update") as ei:
        run_gate(report_path, tmp_path / "nope.json")
    assert "\n" not in str(ei.value) and "does not exist" in str(ei.value)
    bp = tmp_path / "baseline.json"
    for text, msg in _bad_baselines(baseline):
        bp.write_text(text)
        with pytest.raises(UserError, match=msg) as ei:
            run_gate(report_path, bp)
        assert "\n" not in str(ei.value) and "compress gate --update" in str(ei.value), str(ei.value)
    bp.write_text(json.dumps(baseline))
    not_report = tmp_path / "r.json"
    not_report.write_text(json.dumps({"format": "compress.bench/1"}))
    with pytest.raises(UserError, match="compress.report/1"):
        run_gate(not_report, bp)


def test_gate_cli_exit_codes(report_path, tmp_path):
    """`compress gate --update` writes a baseline; `compress gate` exits 0 on it and 1 on an injected regression."""
    def cli(*args):
        return run_cli("gate", *args, check_rc=None)

    base = tmp_path / "baseline.json"
    assert cli("--report", str(report_path), "--baseline", str(base), "--update").returncode == 0
    ok = cli("--report", str(report_path), "--baseline", str(base), "--out", str(tmp_path / "g.json"))
    assert ok.returncode == 0 and "GATE PASSED" in ok.stdout
    rep = json.loads(report_path.read_text())
    _stage_acc(rep, "trained")["accuracy"] -= 5.0
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps(rep))
    r = cli("--report", str(bad), "--baseline", str(base))
    assert r.returncode == 1 and "GATE FAILED" in r.stdout and "accuracy.trained" in r.stdout
    missing = cli("--report", str(report_path), "--baseline", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "compress gate --update" in missing.stderr
