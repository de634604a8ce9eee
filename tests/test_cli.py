import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from compress.evaluate.embed import OnnxEmbedder, TorchEmbedder
from compress.model import build_model
from compress.model.io import save_model

from .conftest import run_cli as run
from .conftest import toy_faces, write_image_folder


def test_schedules_show_table3_prints_paper_rows_and_totals():
    out = run("schedules", "show", "table3").stdout
    for row in ["bottleneck (a)            1     8  1  1", "bottleneck (a)            6    12  2  2",
                "bottleneck (a)            5    16  3  2", "bottleneck (a)            4    32  4  2",
                "parallel expansion (b)    3    64  3  2", "parallel expansion (b)    2   128  1  1"]:
        assert row in out
    assert "total" in out and "426,740" in out and "ptflops" in out
    assert "6->5, 7->6" in out
    listing = run("schedules").stdout
    assert "table2" in listing and "table3" in listing


@pytest.mark.parametrize("args,msg", [
    (["schedules", "show", "nope"], "unknown schedule 'nope'"),
    (["train", "--data", "/nonexistent/faces", "--out", "OUT"], "data folder /nonexistent/faces does not exist"),
    (["train", "--resume", "/nonexistent/run", "--out", "OUT"], "checkpoint /nonexistent/run not found"),
    (["evaluate", "--model", "/nonexistent.onnx", "--data", "synthetic"], "ONNX model /nonexistent.onnx not found"),
    (["train", "--recipe", "nope", "--out", "OUT"], "recipe 'nope' not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, msg):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    r = run(*args, check_rc=2)
    assert r.stderr.strip().startswith("error: ") and msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "model.pt").exists()


def test_the_entry_point_ends_a_bad_input_with_one_line_and_exit_2(tmp_path):
    """The real `python -m compress.cli` process, not the in-process runner: its stderr and exit status."""
    r = subprocess.run([sys.executable, "-m", "compress.cli", "train", "--data", "/nonexistent/faces", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, (r.stdout[-1500:], r.stderr[-1500:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data folder /nonexistent/faces does not exist"), lines


def test_malformed_schedule_file_names_field(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[stem]\nc=8\ns=2\n[[stages]]\nt=2\nc=8\nn=1\ns=5\n[head]\nc=64\n")
    r = run("schedules", "show", str(p), check_rc=2)
    assert "stage 1.s must be one of [1, 2], got 5" in r.stderr


def test_onnx_and_torch_embedders_agree(tmp_path):
    torch.manual_seed(0)
    model = build_model("table3").eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 112, 112), path, input_names=["input"], output_names=["emb"],
                      dynamic_axes={"input": {0: "b"}, "emb": {0: "b"}}, dynamo=False)
    imgs = toy_faces(classes=2, per_class=3).images
    a = TorchEmbedder(model).embed(imgs, flip=True)
    b = OnnxEmbedder(path).embed(imgs, flip=True)
    assert np.min(np.sum(a * b, axis=1)) > 0.9999
    # the float entry (an online teacher's) gives both the raw embeddings of the uint8 path
    from compress.evaluate.embed import normalise_nchw

    x = normalise_nchw(imgs)
    for emb in (TorchEmbedder(model), OnnxEmbedder(path)):
        np.testing.assert_allclose(emb.forward_nchw(x), emb._forward(imgs), atol=1e-5)


def test_evaluate_artifact_on_synthetic_pairs(tmp_path):
    torch.manual_seed(0)
    save_model(build_model("table3"), tmp_path / "run" / "model.pt")
    out = tmp_path / "eval.json"
    r = run("evaluate", "--model", str(tmp_path / "run"), "--data", "synthetic", "--identities", "20",
            "--json", str(out))
    res = json.loads(out.read_text())
    assert "SYNTHETIC" in res["dataset"] and res["runtime"] == "pytorch"
    assert 0.3 <= res["accuracy"] <= 1.0
    assert "accuracy:" in r.stdout and "measured on" in r.stdout


def test_prune_cli_table2_to_table3_writes_artifact(tmp_path):
    torch.manual_seed(0)
    save_model(build_model("table2"), tmp_path / "t2" / "model.pt")
    r = run("prune", "--model", str(tmp_path / "t2"), "--schedule", "table3", "--round-to", "8",
            "--out", str(tmp_path / "p"))
    assert "7" in r.stdout and "wrote" in r.stdout
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert m["deleted_source_stages"] == [5]
    assert [x["source_stage"] for x in m["stage_mapping"]] == [1, 2, 3, 4, 6, 7]
    assert m["macs"]["after"] > m["macs"]["exact_widths"] and m["macs"]["after"] < m["macs"]["before"]
    from compress.model.io import load_model

    assert load_model(tmp_path / "p")(torch.zeros(1, 3, 112, 112)).shape == (1, 128)
    again = run("prune", "--model", str(tmp_path / "t2"), "--schedule", "table3", "--out", str(tmp_path / "p"),
                check_rc=2)
    assert "already exists" in again.stderr
    bad = run("prune", "--model", str(tmp_path / "t2"), "--schedule", "table2", "--ratio", "0.5",
              "--out", str(tmp_path / "q"), check_rc=2)
    assert "exactly one of --schedule" in bad.stderr


@pytest.mark.slow
def test_resume_from_cli_uses_the_runs_own_settings(tmp_path):
    data = write_image_folder(tmp_path / "faces", toy_faces(classes=4, per_class=6))
    out = tmp_path / "run"
    from compress.train.config import make_config
    from compress.train.trainer import train

    train(make_config(data=str(data), epochs=2, batch_size=8, s=16.0, m=0.2, progress=False, threads=2), out,
          _stop_after_epoch=1)
    r = run("train", "--resume", str(out), "--out", str(out), "--epochs", "2", "--no-progress")
    assert "epoch 2/2" in r.stdout and (out / "model.pt").is_file()
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["data"] == str(data) and len(m["history"]) == 2


def test_train_options_reach_the_config(tmp_path):
    data = write_image_folder(tmp_path / "faces", toy_faces(classes=4, per_class=4))
    out = tmp_path / "run"
    run("train", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--weight-decay", "0.05",
        "--distill-weight", "0", "--threads", "1", "--out", str(out), "--no-progress")
    cfg = json.loads((out / "manifest.json").read_text())["config"]
    assert (cfg["weight_decay"], cfg["epochs"], cfg["batch_size"]) == (0.05, 1, 8)
