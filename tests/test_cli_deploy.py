"""The deploy commands end to end through the CLI: quantize -> export -> bench, and their one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from compress.data.sources import synthetic_faces
from compress.data.transforms import to_float
from compress.model import build_model
from compress.model.io import save_model

from .conftest import run_cli as run


def run_process(*args, check_rc=0):
    """The end-to-end deploy chain runs each command in its own interpreter, as a user does: NNCF and the
    runtimes' thread pools stay out of the test process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # NNCF and the runtimes on a busy 2-core host
    r = subprocess.run([sys.executable, "-m", "compress.cli", *args], capture_output=True, text=True, timeout=900,
                       env=env)
    assert r.returncode == check_rc, (r.stdout[-1500:], r.stderr[-1500:])
    return r


@pytest.fixture(scope="module")
def float_artifact(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model("table3")
    x = to_float(torch.from_numpy(synthetic_faces(8, 4, progress=False).images))
    m.train()
    with torch.no_grad():  # real BN statistics
        for _ in range(3):
            m(x)
    d = tmp_path_factory.mktemp("float")
    save_model(m.eval(), d / "model.pt")
    return d


@pytest.fixture(scope="module")
def quantized(float_artifact, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "q"
    r = run_process("quantize", "--model", str(float_artifact), "--out", str(out), "--calibration-images", "32",
                    "--threads", "1", "--no-progress")
    assert "cosine mean" in r.stdout
    return out


@pytest.mark.slow
def test_quantize_export_bench_through_the_cli(float_artifact, quantized, tmp_path):
    man = json.loads((quantized / "manifest.json").read_text())
    assert man["kind"] == "quantize" and man["keep_float"] == ["stem", "embedding", "bn"]
    # int8 from the quantized artifact, fp32 from the float one: both checked in onnxruntime here.
    r = run_process("export", "--target", "onnx", "--precision", "int8", "--model", str(quantized), "--out",
                    str(tmp_path / "e8"), "--parity-images", "24", "--no-progress")
    assert "parity vs_float" in r.stdout and "parity vs_nncf_fake_quant" in r.stdout
    e8 = json.loads((tmp_path / "e8" / "manifest.json").read_text())
    assert e8["precision"] == "int8" and e8["source"]["kind"] == "quantized"
    assert e8["parity"]["vs_float"]["cosine_mean"] > 0.99
    run_process("export", "--target", "onnx", "--model", str(float_artifact), "--out", str(tmp_path / "e32"),
                "--parity-images", "24", "--no-progress")
    e32 = json.loads((tmp_path / "e32" / "manifest.json").read_text())
    assert e32["precision"] == "fp32" and e32["parity"]["vs_float"]["cosine_min"] >= 0.9999
    # A re-run refuses to overwrite, and leaves the folder as it was.
    r = run_process("export", "--target", "onnx", "--model", str(float_artifact), "--out", str(tmp_path / "e32"),
                    "--parity-images", "24", "--no-progress", check_rc=2)
    assert "already exists" in r.stderr and json.loads((tmp_path / "e32" / "manifest.json").read_text()) == e32
    # bench: one artifact -> JSON record; two -> a comparison with ratios against the first.
    r = run_process("bench", "--artifact", str(tmp_path / "e32"), "--seconds", "0.2", "--threads", "1",
                    "--json", str(tmp_path / "b.json"))
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["runtime"] == "onnxruntime" and b["precision"] == "fp32" and b["median_ms"] > 0
    assert b["p90_ms"] >= b["median_ms"] and b["runs"] >= 100 and b["measured"] == "measured on this host"
    r = run_process("bench", "--artifact", str(tmp_path / "e32"), "--artifact", str(tmp_path / "e8"),
                    "--seconds", "0.1", "--rounds", "2", "--threads", "1")
    assert "ratio" in r.stdout and "e8" in r.stdout and "1.00" in r.stdout


@pytest.mark.parametrize("args,msg", [
    (["export", "--target", "jetson-xavier", "--model", "M"], "unknown target 'jetson-xavier'"),
    (["export", "--target", "nope", "--model", "M"], "raspberry-pi-4"),  # the error lists the valid targets
    (["bench", "--artifact", "/nonexistent/export"], "not found"),
    (["quantize", "--model", "/nonexistent/run", "--out", "Q"], "not found"),
    (["report", "--run", "/nonexistent/run"], "run folder /nonexistent/run not found"),
])
def test_deploy_errors_are_one_line(args, msg, tmp_path):
    r = run(*args, check_rc=2)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], r.stderr


@pytest.mark.slow
def test_int8_export_of_a_float_model_quantizes_on_the_way(float_artifact, tmp_path):
    """`compress export --target T` works at T's default precision for every board (issue 28): a float model
    for an int8 target (Orin Nano) is quantized on the way, which it says and the manifest records."""
    r = run_process("export", "--target", "jetson-orin-nano", "--model", str(float_artifact), "--out",
                    str(tmp_path / "x"), "--calibration-images", "16", "--parity-images", "16", "--threads", "1",
                    "--no-progress")
    assert "quantized on the way to int8" in r.stdout
    man = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert man["precision"] == "int8" and man["source"]["kind"] == "quantized"
    q = man["source"]["quantize_meta"]
    assert q["quantized_by"].startswith("compress export") and q["calibration"]["n"] == 16
    assert q["source_model"]["path"].endswith("model.pt") and man["parity"]["vs_float"]["cosine_mean"] > 0.9


def test_every_boards_default_precision_is_exportable_from_a_float_model():
    """No target's default precision is refused for a float model any more: int8 ones are quantized on the way."""
    from compress.export.formats import format_for_target
    from compress.targets import list_targets

    for t in list_targets():
        assert t.default_precision in format_for_target(t).precisions, t.name


def test_export_calibration_images_is_checked_first(float_artifact, tmp_path):
    r = run("export", "--target", "jetson-orin-nano", "--model", str(float_artifact), "--out", str(tmp_path / "x"),
            "--calibration-images", "0", check_rc=2)
    assert "--calibration-images must be at least 1" in r.stderr and not (tmp_path / "x").exists()


def test_bench_refuses_a_folder_that_is_not_an_export(float_artifact):
    r = run("bench", "--artifact", str(float_artifact), check_rc=2)
    assert "not an export folder" in r.stderr


def test_estimate_prints_calibrated_figures_and_refuses_uncalibrated_boards(tmp_path):
    r = run("estimate", "--target", "raspberry-pi-4", "--precision", "fp32", "--json", str(tmp_path / "e.json"))
    pi = json.loads((tmp_path / "e.json").read_text())["estimates"][0]
    assert pi["target"] == "raspberry-pi-4" and pi["precision"] == "fp32" and pi["estimate_ms"] > 0 and pi["loo"]["rows"]
    assert "LOO" in r.stdout and "estimated" in pi["label"]
    # intel-nuc's fp16 has no published reference to calibrate on (nor a peak ratio to int8's): said, not guessed
    r = run("estimate", "--target", "intel-nuc", "--precision", "fp16", "--json", str(tmp_path / "n.json"))
    nuc = json.loads((tmp_path / "n.json").read_text())["estimates"][0]
    assert nuc["precision"] == "fp16" and nuc["estimate_ms"] is None and "no estimate" in r.stdout
    # a named board that lacks the precision is an error, not a silent fallback to its default
    bad = run("estimate", "--target", "raspberry-pi-4", "--target", "intel-nuc", "--precision", "fp32", check_rc=2)
    assert "intel-nuc does not offer fp32" in bad.stderr



def test_float_model_at_int8_goes_through_in_memory_ptq(float_artifact, tmp_path, monkeypatch):
    """The wiring, fast: export_artifact hands export_model an in-memory QuantizedArtifact built by
    compress.quantize's PTQ with the default calibration (PTQ itself stubbed; the slow test above runs it)."""
    import compress.quantize.in_memory as qim
    from compress.export import folders
    from compress.quantize.artifact import QuantizedArtifact

    calls = {}
    monkeypatch.setattr(qim, "ptq", lambda model, calib, names, **k: calls.setdefault("ptq", (len(calib), names,
                                                                                              k)) and model)
    monkeypatch.setattr(folders, "export_model", lambda source, *a, **k: {"source": source, "precision": a[1]})
    m = folders.export_artifact(float_artifact, "intel-nuc", out=tmp_path / "x", n_parity=2, n_calibration=8,
                                progress=False)
    assert isinstance(m["source"], QuantizedArtifact) and m["precision"] == "int8"
    n, names, k = calls["ptq"]
    assert n == 8 and names[:2] == ["stem", "embedding"] and k["activations"] == "asymmetric"
    assert m["source"].meta["quantized_by"].startswith("compress export")
