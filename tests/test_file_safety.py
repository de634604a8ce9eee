"""No data lost: hostile snapshot member names, bundle tampering, output paths that name user files, and
leftover folders that are not the tool's own (issue 28)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress.errors import UserError


# ---------------------------------------------------------------- snapshots
def _hostile_snapshot(path, names, encoding="png"):
    from compress.data.snapshot import FORMAT, encode

    img = np.zeros((4, 4, 3), np.uint8)
    blobs = [encode(img, "png") for _ in names]
    offsets = np.r_[0, np.cumsum([len(b) for b in blobs])].astype(np.int64)
    meta = {"format": FORMAT, "encoding": encoding, "quality": 75,
            "parts": [{"name": "lfw", "kind": "lfw", "count": len(names), "names": names, "pairs_txt": "1 1\n"}]}
    with open(path, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                 p0_bytes=np.frombuffer(b"".join(blobs), np.uint8), p0_offsets=offsets,
                 p0_labels=np.full(len(names), -1, np.int64))


@pytest.mark.parametrize("bad", ["../victim.txt", "/tmp/x/victim.txt", "A/../../victim.txt", "A//B.jpg", "./A.jpg",
                                 "A\\..\\..\\victim.txt", "", "C:evil.jpg", "A/\x1b[2J.jpg"])
def test_unpack_refuses_names_outside_dst_before_writing(tmp_path, bad):
    from compress.data.snapshot import unpack_snapshot

    victim = tmp_path / "victim.txt"
    victim.write_text("user data")
    snap = tmp_path / "s.npz"
    _hostile_snapshot(snap, ["A/A_0001.jpg", bad.replace("/tmp/x", str(tmp_path))])
    with pytest.raises(UserError, match="outside its folder"):
        unpack_snapshot(snap, tmp_path / "dst" / "u")
    assert victim.read_text() == "user data"
    assert not (tmp_path / "dst").exists()  # refused before anything was written


def test_unpack_refuses_an_encoding_that_is_a_path(tmp_path):
    from compress.data.snapshot import unpack_snapshot

    snap = tmp_path / "s.npz"
    _hostile_snapshot(snap, ["A/A_0001.jpg"], encoding="png/../../../x")
    with pytest.raises(UserError, match="encoding"):
        unpack_snapshot(snap, tmp_path / "u")


# ---------------------------------------------------------------- single-file outputs
def run_cli(*args: object) -> tuple[int, str]:
    """(exit code, one-line error or stdout), as `compress` ends."""
    from click.testing import CliRunner

    from compress.cli import cli

    r = CliRunner().invoke(cli, [str(a) for a in args])
    if isinstance(r.exception, UserError):
        assert "\n" not in str(r.exception)
        return 2, str(r.exception)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout


def _gallery_db(path):
    import sqlite3

    with sqlite3.connect(path) as c:
        c.execute("create table audit (x text)")
        c.execute("insert into audit values ('a dose was given')")
    return path


# Every command with a single-file output, given that output and inputs that would fail later (nothing exists):
# the output is checked first, before any work (for identify: before its audit row).
COMMANDS = {
    "bench --json": lambda o, t: ["bench", "--artifact", t / "none", "--json", o],
    "estimate --json": lambda o, t: ["estimate", "--model", t / "none", "--json", o],
    "evaluate --json": lambda o, t: ["evaluate", "--model", t / "none", "--data", "synthetic", "--json", o],
    "evaluate --roc": lambda o, t: ["evaluate", "--model", t / "none", "--data", "synthetic", "--roc", o],
    "gate --out": lambda o, t: ["gate", "--report", t / "none", "--baseline", t / "none.json", "--out", o],
    "gate --update --baseline": lambda o, t: ["gate", "--report", t / "none", "--baseline", o, "--update"],
    "enrol --json": lambda o, t: ["enrol", "--gallery", t / "none", "--db", t / "db.sqlite", "--json", o],
    "identify --json": lambda o, t: ["identify", "--db", t / "db.sqlite", t / "none.jpg", "--json", o],
    "check-dose --json": lambda o, t: ["check-dose", "--db", t / "db.sqlite", "--plan", t / "none.toml",
                                       "--image", t / "none.jpg", "--json", o],
    "data snapshot --out": lambda o, t: ["data", "snapshot", "--recipe", t / "none.toml", "--out", o, "--overwrite"],
}


def _target(kind: str, t):
    if kind == "user file":
        (t / "important.txt").write_text("user data")
        return t / "important.txt", "not written by compress"
    if kind == "folder":
        (t / "adir").mkdir()
        return t / "adir", "is a folder"
    if kind == "database":
        return t / "db.sqlite", "SQLite database|inputs"
    if kind == "link to the database":
        (t / "link.json").symlink_to(t / "db.sqlite")
        return t / "link.json", "symbolic link|inputs"
    if kind == "user json":
        (t / "mine.json").write_text('{"my": "notes"}')
        return t / "mine.json", "not written by compress"
    return t / "no" / "such" / "out.json", "does not exist"


@pytest.mark.parametrize("kind", ["user file", "folder", "database", "link to the database", "user json",
                                  "missing folder"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_outputs_never_replace_what_compress_did_not_write(tmp_path, command, kind):
    import re

    _gallery_db(tmp_path / "db.sqlite")
    before = (tmp_path / "db.sqlite").read_bytes()
    out, why = _target(kind, tmp_path)
    user = out.read_bytes() if out.is_file() and not out.is_symlink() else None
    rc, msg = run_cli(*COMMANDS[command](out, tmp_path))
    assert rc == 2 and re.search(why, msg), msg
    assert (tmp_path / "db.sqlite").read_bytes() == before
    if user is not None:
        assert out.read_bytes() == user
    assert not (tmp_path / "no").exists()


def test_an_output_compress_wrote_may_be_replaced(tmp_path):
    from compress.outputs import MARKER, check_output, write_output_json

    p = write_output_json(tmp_path / "r.json", {"x": 1})
    assert json.loads(p.read_text())[MARKER] == "compress"
    assert check_output(p, "--json") == p
    (tmp_path / "g.json").write_text('{"format": "compress.gate-result/1"}')
    assert check_output(tmp_path / "g.json", "--out") == tmp_path / "g.json"


def test_roc_png_is_tagged_and_replaceable(tmp_path):
    from compress.evaluate.verification import VerificationResult, plot_roc, kfold_verification
    from compress.outputs import check_output

    rng = np.random.default_rng(0)
    scores, same = np.r_[rng.normal(0.6, 0.1, 200), rng.normal(0.1, 0.1, 200)], np.r_[np.ones(200), np.zeros(200)]
    res = kfold_verification(scores, same.astype(bool))
    assert isinstance(res, VerificationResult)
    p = plot_roc({"x": res}, tmp_path / "roc.png")
    assert check_output(p, "--roc", "png") == p
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "holiday.png")
    with pytest.raises(UserError, match="not written by compress"):
        check_output(tmp_path / "holiday.png", "--roc", "png")


# ---------------------------------------------------------------- report folders
@pytest.mark.parametrize("name", ["report.md", "report.html", "report.json"])
def test_report_never_replaces_a_users_file(tmp_path, name):
    (tmp_path / "run" / "accuracy").mkdir(parents=True)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / name).write_text("my own notes")
    rc, msg = run_cli("report", "--run", tmp_path / "run", "--out", tmp_path / "rep")
    assert rc == 2 and "not written by compress" in msg and name in msg
    assert (tmp_path / "rep" / name).read_text() == "my own notes"


def test_report_refuses_home_and_working_folder(tmp_path, monkeypatch):
    (tmp_path / "run" / "accuracy").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for out in (tmp_path / "home", tmp_path):
        monkeypatch.chdir(tmp_path)
        rc, msg = run_cli("report", "--run", tmp_path / "run", "--out", out)
        assert rc == 2 and "not a folder an artifact can own" in msg
    assert not list((tmp_path / "home").iterdir())


def test_report_rewrites_its_own_report(tmp_path):
    from compress.outputs import check_report_folder

    from compress.report.render import write_report

    run = tmp_path / "run"
    (run / "accuracy").mkdir(parents=True)
    try:
        write_report(run, tmp_path / "rep")
    except UserError:
        pytest.skip("an empty run folder does not render")
    (tmp_path / "rep" / "README.md").write_text("kept")  # other files beside a report are left alone
    assert check_report_folder(tmp_path / "rep") == tmp_path / "rep"


# ---------------------------------------------------------------- leftovers: only the tool's own
def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _user_leftovers(tmp_path):
    (tmp_path / ".fresh.old").mkdir()
    (tmp_path / ".fresh.old" / "keep.txt").write_text("user data")
    (tmp_path / ".fresh.abc.partial").mkdir()
    (tmp_path / ".fresh.abc.partial" / "keep.txt").write_text("user data")
    return [tmp_path / ".fresh.old" / "keep.txt", tmp_path / ".fresh.abc.partial" / "keep.txt"]


def test_new_artifact_keeps_users_dot_folders(tmp_path):
    from compress.artifacts import artifact_dir, write_json

    kept = _user_leftovers(tmp_path)
    with artifact_dir(tmp_path / "fresh", "export") as stage:
        write_json(stage / "manifest.json", {"kind": "export"})
    assert all(p.read_text() == "user data" for p in kept)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fresh.") and p.name.endswith(".partial")
                and p.name != ".fresh.abc.partial"]


def test_train_lock_keeps_users_dot_folders(tmp_path):
    from compress.artifacts import folder_lock

    kept = _user_leftovers(tmp_path)
    with folder_lock(tmp_path / "fresh"):
        pass
    assert all(p.read_text() == "user data" for p in kept)


def test_overwrite_keeps_a_users_tmp_file(tmp_path):
    from compress.artifacts import artifact_dir, write_json

    for _ in range(2):
        with artifact_dir(tmp_path / "a", "export", overwrite=True) as stage:
            write_json(stage / "manifest.json", {"kind": "export"})
    (tmp_path / "a" / ".x.tmp").write_text("user data")
    with pytest.raises(UserError, match=r"did not write \(\.x\.tmp\)"):
        with artifact_dir(tmp_path / "a", "export", overwrite=True) as stage:
            write_json(stage / "manifest.json", {"kind": "export"})
    assert (tmp_path / "a" / ".x.tmp").read_text() == "user data"
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".old", ".partial")]  # swap and stage cleaned up


def test_a_dead_writers_marked_leftovers_are_removed(tmp_path, capsys):
    from compress.artifacts import STAGE_MARKER, folder_lock

    import platform

    pid = _dead_pid()
    stage = tmp_path / ".fresh.k3j2.partial"
    stage.mkdir()
    (stage / STAGE_MARKER).write_text(json.dumps({"pid": pid, "host": platform.node(), "dest": "fresh"}))
    other = tmp_path / ".fresh.zz.partial"  # marked for another folder: not ours to judge
    other.mkdir()
    (other / STAGE_MARKER).write_text(json.dumps({"pid": pid, "host": platform.node(), "dest": "other"}))
    (tmp_path / "fresh").mkdir()
    tmp = tmp_path / "fresh" / f".model.pt.{pid}.abcd_123.tmp"
    tmp.write_text("half")
    with folder_lock(tmp_path / "fresh"):
        pass
    assert not stage.exists() and not tmp.exists() and other.exists()
    assert "removed 2 leftover(s)" in capsys.readouterr().err


def test_a_users_lock_named_file_is_not_deleted(tmp_path):
    from compress.artifacts import folder_lock

    (tmp_path / ".fresh.lock").write_text("my notes")
    with pytest.raises(UserError, match="not a compress lock"):
        with folder_lock(tmp_path / "fresh"):
            pass
    assert (tmp_path / ".fresh.lock").read_text() == "my notes"


def test_train_out_a_file_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("user data")
    rc, msg = run_cli("train", "--data", "synthetic", "--epochs", "1", "--out", tmp_path / "a_file")
    assert rc == 2 and "is a file" in msg
    assert (tmp_path / "a_file").read_text() == "user data"


# ---------------------------------------------------------------- a clean tree after the quick start
def test_pipeline_writes_no_report_copy_unless_asked(monkeypatch, tmp_path):
    """`make demo` (= `compress pipeline --recipe demo`) must not rewrite the committed reports/demo/."""
    import compress.pipeline

    seen = {}
    monkeypatch.setattr(compress.pipeline, "run_pipeline", lambda recipe, out, **k: seen.update(k))
    assert run_cli("pipeline", "--recipe", "demo")[0] == 0
    assert seen["report_dir"] is None
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.md").write_text("my notes")
    rc, msg = run_cli("pipeline", "--recipe", "demo", "--report-dir", tmp_path / "rep")
    assert rc == 2 and "not written by compress" in msg


def test_make_demo_runs_the_pipeline_without_a_report_dir():
    from pathlib import Path

    make = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    demo = make.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "compress pipeline --recipe demo" in demo and "reports/" not in demo


# ---------------------------------------------------------------- minor: messages that name the file
def test_identify_aligned_error_names_the_file_before_any_answer(tmp_path):
    from PIL import Image

    Image.new("RGB", (112, 112)).save(tmp_path / "ok.png")
    Image.new("RGB", (100, 80)).save(tmp_path / "big.png")
    rc, msg = run_cli("identify", "--db", tmp_path / "none.sqlite", "--aligned", tmp_path / "ok.png",
                      tmp_path / "big.png")
    assert rc == 2 and str(tmp_path / "big.png") in msg and "112x112" in msg
    assert not (tmp_path / "none.sqlite").exists()


@pytest.mark.parametrize("checkpoint", [True, False])
def test_train_interrupted_prints_the_resume_hint(tmp_path, monkeypatch, checkpoint):
    from click.testing import CliRunner

    import compress.train.trainer as trainer
    from compress.cli import cli

    def interrupted(cfg, out, **k):
        out.mkdir()
        if checkpoint:
            (out / trainer.CHECKPOINT_FILE).write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    r = CliRunner().invoke(cli, ["train", "--data", "synthetic", "--out", str(tmp_path / "run")])
    assert r.exit_code == 130
    want = f"--resume {tmp_path / 'run'} --out {tmp_path / 'run'}" if checkpoint else "nothing to resume"
    assert want in r.stderr, r.stderr


@pytest.mark.parametrize("name", ["ablation.md", "ablation.json", "ablation.png"])
def test_ablation_never_replaces_a_users_file(tmp_path, name):
    out = tmp_path / "abl"
    out.mkdir()
    (out / name).write_text("my own notes")
    rc, msg = run_cli("ablation", "--recipe", "demo", "--out", out, "--epochs", "1")
    assert rc == 2 and name in msg and "not written by compress" in msg
    assert (out / name).read_text() == "my own notes" and not (out / "arcface").exists()


def test_ablation_table_is_recognised_as_its_own(tmp_path):
    from compress.train.ablation import check_table_out, write_table

    write_table([{"variant": "softmax", "loss": "softmax", "epochs": 1, "lfw_no_flip": None, "lfw_no_flip_std": None,
                  "lfw_flip": None, "lfw_flip_std": None, "tar_at_far_1e-3": None}], tmp_path / "abl")
    check_table_out(tmp_path / "abl")


def test_data_align_never_writes_into_a_users_folder(tmp_path):
    from compress.data.align import align_tree

    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "no_face.txt").write_text("my own list")
    with pytest.raises(UserError, match="not an empty folder or an earlier"):
        align_tree(tmp_path / "src", tmp_path / "dst", progress=False)
    assert (tmp_path / "dst" / "no_face.txt").read_text() == "my own list"
