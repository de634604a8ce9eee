"""Output folders: nothing executable is loaded, no user file is deleted, concurrent writers fail clearly,
leftovers of killed runs are cleaned, one permission mode."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from compress.artifacts import artifact_dir, folder_lock, write_json
from compress.errors import UserError
from compress.model import build_model
from compress.model.io import save_model

from .conftest import run_cli


class _RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_runs_no_code(tmp_path):
    from compress.train.trainer import load_checkpoint

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    import torch

    torch.save({"format": "compress.checkpoint/1", "payload": _RunsCode(marker)}, run / "checkpoint.pt")
    assert pickle.loads(pickle.dumps(_RunsCode(tmp_path / "control"))) == 0  # the payload does run when unpickled
    assert (tmp_path / "control").exists()
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(run)
    assert not marker.exists()


def _write_artifact(stage: Path, kind: str) -> None:
    (stage / "model.pt").write_bytes(b"m")
    write_json(stage / "manifest.json", {"kind": kind})


def test_overwrite_never_deletes_a_user_file(tmp_path):
    dest = tmp_path / "v"
    dest.mkdir()
    (dest / "important.txt").write_text("x")
    with pytest.raises(UserError, match="not a compress artifact"):
        with artifact_dir(dest, "export", overwrite=True) as st:
            _write_artifact(st, "export")
    assert (dest / "important.txt").read_text() == "x"
    # an artifact of the same kind with a user file dropped into it: refused, and the file names are said
    dest2 = tmp_path / "a"
    with artifact_dir(dest2, "prune") as st:
        _write_artifact(st, "prune")
    assert json.loads((dest2 / "manifest.json").read_text())["artifact_files"] == ["manifest.json", "model.pt"]
    (dest2 / "notes.md").write_text("mine")
    with pytest.raises(UserError, match=r"files compress did not write \(notes.md\)"):
        with artifact_dir(dest2, "prune", overwrite=True) as st:
            _write_artifact(st, "prune")
    assert (dest2 / "notes.md").exists()
    (dest2 / "notes.md").unlink()
    with pytest.raises(UserError, match="is a 'prune' artifact, and --overwrite replaces only a 'quantize'"):
        with artifact_dir(dest2, "quantize", overwrite=True) as st:
            _write_artifact(st, "quantize")
    with artifact_dir(dest2, "prune", overwrite=True) as st:  # its own kind, only its own files: replaced
        (st / "model.pt").write_bytes(b"new")
        write_json(st / "manifest.json", {"kind": "prune"})
    assert (dest2 / "model.pt").read_bytes() == b"new"


@pytest.mark.parametrize("out", ["..", ".", "/"])
def test_special_folders_are_never_an_artifact(out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="not a folder an artifact can own"):
        with artifact_dir(Path(out), "export", overwrite=True) as st:
            _write_artifact(st, "export")


def test_concurrent_writer_fails_and_stale_lock_is_taken_over(tmp_path):
    dest = tmp_path / "e"
    with folder_lock(dest):
        with pytest.raises(UserError, match=r"another compress process \(pid \d+\) is writing"):
            # the same check another process would hit: a live pid in the lock file
            lock = tmp_path / ".e.lock"
            lock.write_text(str(os.getppid()))
            with folder_lock(dest):
                pass
    # a lock left by a dead process, with its staging folder and a half-written checkpoint
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".e.lock").write_text(dead.stdout.strip())
    import platform

    from compress.artifacts import STAGE_MARKER

    pid = int(dead.stdout.strip())  # the leftovers carry the dead writer's marker (issue 28: only ours are removed)
    (tmp_path / ".e.abc123.partial").mkdir()
    (tmp_path / ".e.abc123.partial" / STAGE_MARKER).write_text(
        json.dumps({"pid": pid, "host": platform.node(), "dest": "e"}))
    dest.mkdir()
    (dest / f".checkpoint.pt.{pid}.xyz12345.tmp").write_bytes(b"half")
    with artifact_dir(dest, "export", overwrite=True) as st:
        _write_artifact(st, "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "model.pt"]


def test_artifact_folders_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        with artifact_dir(tmp_path / "q", "quantize") as st:
            _write_artifact(st, "quantize")
        (tmp_path / "t").mkdir()
    finally:
        os.umask(old)
    assert (tmp_path / "q").stat().st_mode & 0o777 == (tmp_path / "t").stat().st_mode & 0o777 == 0o755


def test_prune_and_train_overwrite_keep_user_files(tmp_path):
    model = tmp_path / "t2"
    save_model(build_model("table2"), model / "model.pt")
    out = tmp_path / "v"
    out.mkdir()
    (out / "important.txt").write_text("x")
    r = run_cli("prune", "--model", str(model), "--ratio", "0.5", "--out", str(out), "--overwrite", "--no-progress",
                check_rc=None)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a compress artifact" in r.stderr, r.stderr
    assert (out / "important.txt").exists()
    r = run_cli("train", "--data", "synthetic", "--epochs", "1", "--out", str(out), "--overwrite", "--no-progress",
                check_rc=None)
    assert r.returncode == 2 and "holds files but no training run" in r.stderr, r.stderr
    assert (out / "important.txt").exists()
