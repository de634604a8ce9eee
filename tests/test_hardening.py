"""Hardening: every bad input ends in one line `error: <problem>; <fix>` and exit code 2, before any expensive
work; and every file reader turns random bytes and truncated files into a UserError, never another exception.

The CLI is driven in-process through compress.cli.main (what the `compress` script runs), so the file stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import UserError
from compress.model import build_model
from compress.model.io import save_model

from .conftest import toy_faces, write_image_folder


def cli_error(monkeypatch, capsys, *args: str) -> str:
    """Run `compress ARGS` in-process; assert exit code 2 and one line `error: ...` on stderr; return that line."""
    from compress.cli import main

    monkeypatch.setattr(sys, "argv", ["compress", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    # a progress bar (tqdm, leave=False) may have drawn and erased itself with carriage returns: keep what stays
    lines = [ln.split("\r")[-1] for ln in err.splitlines()]
    # `model: <which>` is the CLI's note of the model a command uses (stderr, before the work), not an error line
    lines = [ln for ln in lines if ln.strip()]
    assert e.value.code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("model") / "run" / "model.pt"
    save_model(build_model("table3"), p)
    return p


def folder(root: Path, classes: int, per_class: int) -> Path:
    return write_image_folder(root, toy_faces(classes=classes, per_class=per_class, size=112))


# ---------------------------------------------------------------- item 4: prune numbers, no 0-channel layer
@pytest.mark.parametrize("extra,msg", [
    (["--ratio", "0.5", "--round-to", "-8"], "round-to must be an integer >= 1"),
    (["--ratio", "0.5", "--round-to", "0"], "round-to must be an integer >= 1"),
    (["--ratio", "0"], "ratio must be a number > 0 and <= 1"),
    (["--ratio", "1.5"], "ratio must be a number > 0 and <= 1"),
    (["--ratio", "0.5", "--steps", "0"], "steps must be an integer >= 1"),
    (["--ratio", "0.5", "--finetune-steps", "-1"], "finetune-steps must be an integer >= 0"),
    (["--ratio", "0.5", "--finetune-lr", "0"], "finetune-lr must be a number > 0"),
])
def test_item4_prune_rejects_meaningless_numbers(monkeypatch, capsys, tmp_path, model_file, extra, msg):
    line = cli_error(monkeypatch, capsys, "prune", "--model", model_file, "--out", tmp_path / "p", *extra)
    assert msg in line
    assert not (tmp_path / "p").exists()


def test_item4_no_plan_makes_a_zero_channel_layer():
    from compress.prune.in_memory import ratio_schedule
    from compress.prune.plan import plan_pruning
    from compress.schedules import load_schedule

    src = load_schedule("table3")
    with pytest.raises(UserError, match="round_to must be >= 1"):
        ratio_schedule(src, 0.5, round_to=-8)
    stages = list(src.stages)
    stages[2] = replace(stages[2], c=0)
    with pytest.raises(UserError, match=r"stage 3 \(stages.2\) would keep 0 channels"):
        plan_pruning(src, replace(src, stages=tuple(stages)))
    with pytest.raises(UserError, match="layer stem would keep 0 channels"):
        plan_pruning(src, replace(src, stem_c=0))
    # a tiny ratio keeps one channel per layer, never zero
    tiny = ratio_schedule(src, 0.001)
    assert min(st.c for st in tiny.stages) >= 1 and tiny.stem_c >= 1


# ---------------------------------------------------------------- item 5: one identity does not train
def test_item5_training_needs_two_identities(monkeypatch, capsys, tmp_path):
    one = folder(tmp_path / "one", classes=1, per_class=4)
    line = cli_error(monkeypatch, capsys, "train", "--data", one, "--out", tmp_path / "r", "--epochs", "1",
                     "--batch-size", "2", "--no-progress")
    assert "1 labelled identity" in line and "add more identity folders" in line
    single = folder(tmp_path / "single", classes=3, per_class=1)
    line = cli_error(monkeypatch, capsys, "train", "--data", single, "--out", tmp_path / "r2", "--epochs", "1",
                     "--batch-size", "2", "--no-progress")
    assert "single image" in line and "add more images" in line
    assert not (tmp_path / "r" / "model.pt").exists()


# ---------------------------------------------------------------- item 6: estimate precision the board lacks
def test_item6_estimate_rejects_a_precision_the_target_lacks(monkeypatch, capsys):
    line = cli_error(monkeypatch, capsys, "estimate", "--target", "jetson-nano", "--precision", "int8")
    assert "jetson-nano does not offer int8" in line and "fp16" in line


# ---------------------------------------------------------------- item 7: one line instead of a traceback
@pytest.mark.parametrize("extra,msg", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--threads", "-1"], "threads must be >= 0"),
])
def test_item7_train_device_and_threads(monkeypatch, capsys, tmp_path, extra, msg):
    assert msg in cli_error(monkeypatch, capsys, "train", "--out", tmp_path / "r", *extra)


@pytest.mark.parametrize("n", ["0", "1", "3"])
def test_item7_evaluate_identities(monkeypatch, capsys, model_file, n):
    line = cli_error(monkeypatch, capsys, "evaluate", "--model", model_file, "--data", "synthetic", "--identities", n)
    assert "--identities" in line and ">= 4" in line and f"got {n}" in line


def test_item7_evaluate_folder_with_one_identity_or_one_image_each(monkeypatch, capsys, tmp_path, model_file):
    line = cli_error(monkeypatch, capsys, "evaluate", "--model", model_file, "--data",
                     folder(tmp_path / "one", classes=1, per_class=3))
    assert "has 1 identity" in line and "add more identity folders" in line
    line = cli_error(monkeypatch, capsys, "evaluate", "--model", model_file, "--data",
                     folder(tmp_path / "single", classes=4, per_class=1))
    assert "single image" in line and "add a second image" in line


def test_item7_model_file_with_format_tag_but_bad_content(tmp_path):
    """load_model (compress/model/io.py) must turn a tagged but broken payload into a UserError."""
    from compress.model.io import MODEL_FORMAT, load_model

    good = build_model("table3")
    payloads = {
        "no_schedule": {"format": MODEL_FORMAT, "state_dict": good.state_dict()},
        "bad_schedule": {"format": MODEL_FORMAT, "schedule": {"name": "x"}, "state_dict": good.state_dict()},
        "wrong_weights": {"format": MODEL_FORMAT, "schedule": build_model("table2").schedule.to_dict(),
                          "state_dict": good.state_dict()},
        "no_weights": {"format": MODEL_FORMAT, "schedule": good.schedule.to_dict()},
    }
    for name, payload in payloads.items():
        p = tmp_path / name / "model.pt"
        p.parent.mkdir()
        torch.save(payload, p)
        with pytest.raises(UserError):
            load_model(p)


def test_item7_checkpoint_with_format_tag_but_bad_content(monkeypatch, capsys, tmp_path):
    from compress.train.trainer import CHECKPOINT_FORMAT, load_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    for ck in ({"format": CHECKPOINT_FORMAT},
               {"format": CHECKPOINT_FORMAT, "config": {"epochs": 1}, "data_fingerprint": "x", "epoch": "1",
                "history": [], "net": {"w": torch.zeros(1)}, "optimizer": {}},
               {"format": CHECKPOINT_FORMAT, "config": {"bogus": 1}, "data_fingerprint": "x", "epoch": 1,
                "history": [], "net": {}, "optimizer": {}}):
        torch.save(ck, run / "checkpoint.pt")
        with pytest.raises(UserError):
            load_checkpoint(run)
    torch.save({"format": CHECKPOINT_FORMAT}, run / "checkpoint.pt")
    assert "--resume" in cli_error(monkeypatch, capsys, "train", "--resume", run, "--out", run)


def test_item7_checkpoint_settings_of_another_version(monkeypatch, capsys, tmp_path):
    from compress.train.trainer import CHECKPOINT_FORMAT

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "config": {"bogus": 1}, "data_fingerprint": "x", "epoch": 1,
                "history": [], "net": {}, "optimizer": {}}, run / "checkpoint.pt")
    assert "holds settings this version does not know (['bogus'])" in cli_error(monkeypatch, capsys, "train", "--resume", run,
                                                                 "--out", run)


def _onnx(path: Path, inputs: list[list[int]], output: list[int]) -> Path:
    import onnx
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, s) for i, s in enumerate(inputs)]
    node = helper.make_node("Identity", ["x0"], ["y"])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, output)
    model = helper.make_model(helper.make_graph([node], "g", ins, [out]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_item7_onnx_model_of_the_wrong_shape(monkeypatch, capsys, tmp_path):
    four_d = _onnx(tmp_path / "4d.onnx", [[1, 3, 112, 112]], [1, 3, 112, 112])
    line = cli_error(monkeypatch, capsys, "evaluate", "--model", four_d, "--data", "synthetic")
    assert "expected an embedding output [B,D]" in line
    two = _onnx(tmp_path / "two.onnx", [[1, 3, 112, 112], [1, 3, 112, 112]], [1, 3, 112, 112])
    line = cli_error(monkeypatch, capsys, "evaluate", "--model", two, "--data", "synthetic")
    assert "takes 2" in line and "single input" in line


@pytest.mark.parametrize("out", [".", "..", "/", "~", "REPO"])
def test_item7_train_refuses_a_folder_that_is_not_its_own(monkeypatch, capsys, tmp_path, out):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (tmp_path / "a" / "keep.txt").write_text("mine")
    monkeypatch.chdir(work)
    if out == "REPO":
        out = str(Path(__file__).resolve().parents[1])
    line = cli_error(monkeypatch, capsys, "train", "--out", out, "--overwrite", "--epochs", "1")
    assert "a run needs a folder of its own" in line
    assert (tmp_path / "a" / "keep.txt").exists() and not (work / "model.pt").exists()


def test_item7_recipe_with_zero_evaluate_identities_fails_before_training(monkeypatch, capsys, tmp_path):
    from compress.train.config import make_config

    r = tmp_path / "r.toml"
    r.write_text("[train]\nepochs = 1\n[evaluate]\nidentities = 0\n")
    line = cli_error(monkeypatch, capsys, "pipeline", "--recipe", r, "--out", tmp_path / "run", "--report-dir",
                     tmp_path / "rep")
    assert "[evaluate] identities must be an integer >= 4" in line and line.endswith("got 0")
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="eval_identities must be >= 4"):
        make_config(None, eval_identities=0)


# ---------------------------------------------------------------- item 8: misleading messages
def test_item8_targets_string_is_one_name(monkeypatch, capsys, tmp_path):
    from compress.pipeline import _targets

    r = tmp_path / "r.toml"
    r.write_text('[train]\nepochs = 1\n[export]\ntargets = "nope"\n')
    line = cli_error(monkeypatch, capsys, "pipeline", "--recipe", r, "--out", tmp_path / "run", "--report-dir",
                     tmp_path / "rep")
    assert "unknown target 'nope'" in line
    assert _targets("onnx") == [("onnx", "fp32")]
    with pytest.raises(UserError, match="must be \"all\" or a non-empty list"):
        _targets(3)


def test_item8_three_identities_say_how_many_are_needed(monkeypatch, capsys, tmp_path, model_file):
    line = cli_error(monkeypatch, capsys, "evaluate", "--model", model_file, "--data",
                     folder(tmp_path / "three", classes=3, per_class=3))
    assert "has 3 identities" in line and "at least 4" in line
    from compress.data.pairs import make_pairs

    with pytest.raises(UserError, match="needs at least 20 identities"):
        make_pairs(np.repeat(np.arange(6), 3), folds=10)


# ---------------------------------------------------------------- item 9: accepted though meaningless
@pytest.mark.parametrize("args,msg", [
    (["bench", "--artifact", "a.onnx", "--artifact", "b.onnx", "--rounds", "0"], "--rounds must be an integer >= 1"),
    (["bench", "--artifact", "a.onnx", "--seconds", "-5"], "--seconds must be a number > 0"),
    (["bench", "--artifact", "a.onnx", "--threads", "-1"], "--threads must be an integer >= 0"),
    (["export", "--target", "onnx", "--model", "MODEL", "--threads", "-1", "--out", "OUT"], "--threads must be an integer >= 0"),
    (["quantize", "--model", "MODEL", "--out", "OUT", "--threads", "-1"], "--threads must be an integer >= 0"),
    (["quantize", "--model", "MODEL", "--out", "OUT", "--mode", "qat", "--qat-steps", "-5"], "--qat-steps must be an integer >= 1"),
    (["quantize", "--model", "MODEL", "--out", "OUT", "--qat-lr", "0"], "--qat-lr must be a number > 0"),
    (["quantize", "--model", "MODEL", "--out", "OUT", "--calibration-images", "0"], "--calibration-images must be an integer >= 1"),
    (["train", "--out", "OUT", "--margin", "10"], "margin m is an angle in radians in [0, pi/2)"),
    (["train", "--out", "OUT", "--margin", "-0.1"], "margin m is an angle"),
    (["train", "--out", "OUT", "--scale", "0"], "scale s must be > 0"),
    (["train", "--out", "OUT", "--terms", "0"], "terms must be >= 1"),
    (["train", "--out", "OUT", "--epochs", "0"], "epochs must be >= 1"),
    (["train", "--out", "OUT", "--batch-size", "0"], "batch_size must be >= 1"),
    (["train", "--out", "OUT", "--lr", "0"], "lr must be > 0"),
    (["train", "--out", "OUT", "--mixup", "1"], "mixup is a fraction"),
    (["train", "--out", "OUT", "--distill-weight", "-1"], "distill_weight must be >= 0"),
])
def test_item9_meaningless_numbers(monkeypatch, capsys, tmp_path, model_file, args, msg):
    args = [str(model_file) if a == "MODEL" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    assert msg in cli_error(monkeypatch, capsys, *args)
    assert not (tmp_path / "out").exists()


def test_item9_report_on_a_folder_that_is_not_a_run(monkeypatch, capsys, tmp_path):
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "x.txt").write_text("x")
    line = cli_error(monkeypatch, capsys, "report", "--run", tmp_path / "notarun")
    assert "is not a pipeline run folder" in line
    assert not (tmp_path / "notarun" / "report").exists()


def test_item9_train_recipe_rejects_unknown_sections_and_keys(monkeypatch, capsys, tmp_path):
    r = tmp_path / "r.toml"
    r.write_text("[train]\nepochs = 1\n[quantise]\nimages = 4\n")
    assert "unknown recipe section [quantise]" in cli_error(monkeypatch, capsys, "train", "--recipe", r, "--out",
                                                             tmp_path / "o")
    r.write_text("epochs = 3\n[train]\nepochs = 1\n")
    assert "outside any section" in cli_error(monkeypatch, capsys, "train", "--recipe", r, "--out", tmp_path / "o")
    r.write_text("[train]\nepoch = 1\n")
    assert "unknown [train] key 'epoch'; did you mean 'epochs'?" in cli_error(monkeypatch, capsys, "train", "--recipe",
                                                                               r, "--out", tmp_path / "o")
    r.write_text('[train]\nepochs = "3"\n')
    assert "epochs must be a int" in cli_error(monkeypatch, capsys, "train", "--recipe", r, "--out", tmp_path / "o")
    r.write_text('base = "r2.toml"\n[train]\nepochs = 1\n')
    (tmp_path / "r2.toml").write_text(f'base = "{r}"\n[train]\nepochs = 2\n')
    monkeypatch.chdir(tmp_path)
    assert "cycle" in cli_error(monkeypatch, capsys, "train", "--recipe", r, "--out", tmp_path / "o")


def test_item9_empty_gate_baseline_fails(monkeypatch, capsys, tmp_path):
    from compress.report.gate import BASELINE_FORMAT
    from compress.report.schema import REPORT_FORMAT

    rep, base = tmp_path / "report.json", tmp_path / "baseline.json"
    rep.write_text(json.dumps({"format": REPORT_FORMAT}))
    base.write_text(json.dumps({"format": BASELINE_FORMAT, "metrics": {}}))
    line = cli_error(monkeypatch, capsys, "gate", "--report", rep, "--baseline", base)
    assert "tracks no metrics" in line and "--update" in line


def test_item9_pipeline_sections_are_checked(tmp_path):
    from compress.full_recipe import load_recipe

    r = tmp_path / "r.toml"
    for body, msg in (("[bench]\nseconds = 0\n", r"\[bench\] seconds must be a number > 0"),
                      ("[bench]\nsecs = 1\n", r"unknown \[bench\] key"),
                      ("[prune]\nround_to = -8\n", r"\[prune\] round_to must be an integer >= 1"),
                      ("[quantize]\nqat_steps = -5\n", r"\[quantize\] qat_steps must be an integer >= 1"),
                      ("[evaluate]\nflip = 1\n", r"\[evaluate\] flip must be true or false")):
        r.write_text("[train]\nepochs = 1\n" + body)
        with pytest.raises(UserError, match=msg):
            load_recipe(r)


# ---------------------------------------------------------------- fuzz: every reader says UserError
def _mutants(good: bytes, seed: int, n: int = 4) -> list[bytes]:
    """Random bytes, random printable text, truncations of a real file, and the real file with bytes flipped."""
    rng = np.random.default_rng(seed)
    out = [b"", rng.integers(0, 256, 64, dtype=np.uint8).tobytes(), rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
           bytes(rng.integers(32, 127, 300, dtype=np.uint8)), b"\xff\xfe" + good[:50]]
    for frac in rng.uniform(0.02, 0.98, n):
        out.append(good[: max(1, int(len(good) * frac))])
    for _ in range(n):
        b = bytearray(good)
        idx = rng.integers(0, len(b), max(1, len(b) // 200))
        b_arr = np.frombuffer(bytes(b), np.uint8).copy()
        b_arr[idx] ^= rng.integers(1, 256, idx.size, dtype=np.uint8)
        out.append(b_arr.tobytes())
    return out


_TRUNCATED, _FLIPPED = 5, 5 + 4  # indices of the first truncated and the first byte-flipped mutant


def _expect_user_error(read, path: Path, blobs: list[bytes], what: str, ok_from: int | None = None) -> None:
    """Each blob must raise UserError (one line); from index ok_from on, a blob may also read as valid (a text
    file cut at a line end, or a flipped byte in a comment, is still a valid file)."""
    for i, blob in enumerate(blobs):
        path.write_bytes(blob)
        try:
            read(path)
        except UserError as e:
            assert "\n" not in str(e), f"{what} mutant {i}: multi-line message {e!r}"
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{what} mutant {i} ({len(blob)} bytes): {type(e).__name__}: {e}")
        else:
            assert ok_from is not None and i >= ok_from, f"{what} mutant {i} ({len(blob)} bytes) was accepted"


def test_fuzz_text_readers(tmp_path):
    from compress.evaluate.lfw import parse_pairs
    from compress.report.gate import read_baseline
    from compress.schedules import load_schedule, profiles_dir
    from compress.targets import load_target, targets_dir
    from compress.train.config import make_config, resolve_recipe

    sched = (profiles_dir() / "table3.toml").read_bytes()
    _expect_user_error(load_schedule, tmp_path / "s.toml", _mutants(sched, 1), "schedule", _TRUNCATED)
    tgt = (targets_dir() / "onnx.toml").read_bytes()
    d = tmp_path / "t"
    d.mkdir()
    _expect_user_error(load_target, d / "onnx.toml", _mutants(tgt, 2), "target", _TRUNCATED)
    recipe = resolve_recipe("demo").read_bytes()
    _expect_user_error(make_config, tmp_path / "r.toml", _mutants(recipe, 3), "recipe", _TRUNCATED)
    pairs = "2 2\n" + "A 1 2\nB 1 2\nA 1 B 2\nC 1 D 1\n" * 2
    _expect_user_error(parse_pairs, tmp_path / "pairs.txt", _mutants(pairs.encode(), 4)[:9], "pairs.txt")
    baseline = json.dumps({"format": "compress.gate-baseline/1", "metrics": {"macs.trained": {
        "value": 1, "unit": "macs", "direction": "exact", "tolerance_abs": 0, "gate": True}}}).encode()
    _expect_user_error(read_baseline, tmp_path / "b.json", _mutants(baseline, 5), "baseline", _FLIPPED)


def test_fuzz_binary_readers(tmp_path, model_file):
    from compress.evaluate.embed import load_embedder
    from compress.model.io import load_model
    from compress.train.trainer import CHECKPOINT_FORMAT, load_checkpoint

    _expect_user_error(load_model, tmp_path / "model.pt", _mutants(model_file.read_bytes(), 6, n=3), "model.pt",
                       _FLIPPED)
    ck = tmp_path / "ck" / "checkpoint.pt"
    ck.parent.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "net": build_model("table3").state_dict()}, ck)
    _expect_user_error(load_checkpoint, ck, _mutants(ck.read_bytes(), 7, n=3), "checkpoint", _FLIPPED)
    onnx_bytes = _onnx(tmp_path / "good.onnx", [[1, 3, 8, 8]], [1, 3, 8, 8]).read_bytes()
    _expect_user_error(load_embedder, tmp_path / "m.onnx", _mutants(onnx_bytes, 8), "onnx", _FLIPPED)


def test_fuzz_image_folder(tmp_path):
    from compress.data.folder import read_image_folder

    good = folder(tmp_path / "good", classes=1, per_class=1)
    png = next(good.rglob("*.png")).read_bytes()
    bad = tmp_path / "bad" / "person"
    bad.mkdir(parents=True)
    for i, blob in enumerate(_mutants(png, 9)[:9]):  # random bytes and truncations: none decodes
        (bad / f"{i}.png").write_bytes(blob)
    with pytest.raises(UserError, match="none of the 9 images"):
        read_image_folder(tmp_path / "bad", progress=False)
    # flipped bytes: each image is decoded or skipped and counted, never a crash
    for i, blob in enumerate(_mutants(png, 10)[9:]):
        (bad / f"flip{i}.png").write_bytes(blob)
    try:
        faces = read_image_folder(tmp_path / "bad", progress=False)
        assert len(faces) + len(faces.skipped) == 9 + 4
    except UserError:
        pass
