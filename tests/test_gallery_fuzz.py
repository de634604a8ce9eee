"""Issue 28: a gallery database damaged, tampered with, emptied or read-only is one line (exit 2) from every
command that opens it, never a traceback, never a silent "unknown" or a wrong threshold, and the file is left
exactly as it was. Each case tampers a copy of one real (aligned synthetic faces) gallery."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from compress.identify.gallery import Gallery
from tests.identify_helpers import PLAN, enrol, make_faces, run_cli

NAN = struct.pack("<f", float("nan"))

# (case, SQL run on a copy of the gallery, what the one-line error says)
TAMPER = [
    ("no calibration table", "DROP TABLE calibration", "table 'calibration' is missing"),
    ("no people table", "DROP TABLE people", "table 'people' is missing"),
    ("audit column dropped", "ALTER TABLE audit DROP COLUMN detail", "table 'audit' has other columns"),
    ("delete trigger dropped", "DROP TRIGGER audit_no_delete", "no longer append-only"),
    ("update trigger dropped", "DROP TRIGGER audit_no_update", "no longer append-only"),
    ("short embedding", "UPDATE embeddings SET vector = substr(vector, 1, 100) WHERE id = 1", "embeddings row 1"),
    ("text embedding", "UPDATE embeddings SET vector = 'hello' WHERE id = 2", "embeddings row 2"),
    ("text dim", "UPDATE embeddings SET dim = 'abc' WHERE id = 1", "embeddings row 1"),
    ("short calibration", "UPDATE calibration SET vector = x'00' WHERE id = 3", "calibration row 3"),
    ("text threshold", "UPDATE meta SET value = 'abc' WHERE key = 'threshold'", "not a number"),
    ("threshold -1", "UPDATE meta SET value = '-1' WHERE key = 'threshold'", "not the one its calibration"),
    ("threshold nudged", "UPDATE meta SET value = value + 0.05 WHERE key = 'threshold'", "not the one its calibration"),
    ("threshold nan", "UPDATE meta SET value = 'nan' WHERE key = 'threshold'", "not a finite number"),
    ("threshold 5", "UPDATE meta SET value = '5' WHERE key = 'threshold'", "not a finite number"),
    ("no threshold", "DELETE FROM meta WHERE key = 'threshold'", "no threshold recorded"),
    ("broken threshold JSON", "UPDATE meta SET value = '{broken' WHERE key = 'threshold_info'", "not JSON"),
    ("threshold record list", "UPDATE meta SET value = '[1]' WHERE key = 'threshold_info'", "threshold record"),
    ("far inf", "UPDATE meta SET value = 'inf' WHERE key = 'far'", "far"),
    ("far changed", "UPDATE meta SET value = '0.5' WHERE key = 'far'", "not the one its calibration"),
    ("flip maybe", "UPDATE meta SET value = 'maybe' WHERE key = 'flip'", "flip"),
    ("text embedding_dim", "UPDATE meta SET value = 'abc' WHERE key = 'embedding_dim'", "embedding_dim"),
    ("no model hash", "DELETE FROM meta WHERE key = 'model_sha256'", "no model_sha256 recorded"),
    ("bad model hash", "UPDATE meta SET value = 'xyz' WHERE key = 'model_sha256'", "not a sha256"),
    ("nan embedding", "UPDATE embeddings SET vector = ? WHERE id = 1", "NaN"),
    ("nan calibration", "UPDATE calibration SET vector = ? WHERE id = 1", "NaN"),
    ("zero embeddings", "UPDATE embeddings SET vector = zeroblob(length(vector))", "all zero"),
    ("no calibration", "DELETE FROM calibration", "no calibration faces"),
    ("orphan embedding", "UPDATE embeddings SET person_id = 999 WHERE id = 1", "belongs to no enrolled person"),
    ("blob name", "UPDATE people SET name = x'ff00' WHERE id = 1", "belongs to no enrolled person"),
    ("schema version", "PRAGMA user_version = 9", "schema version 9"),
]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return make_faces(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def gallery(faces, tmp_path_factory) -> Path:
    return enrol(faces, tmp_path_factory.mktemp("ward") / "ward.db", real=True)


def _tamper(gallery: Path, dst: Path, sql: str) -> Path:
    shutil.copy(gallery, dst)
    con = sqlite3.connect(dst)
    if "?" in sql:
        dim = int(con.execute("SELECT value FROM meta WHERE key = 'embedding_dim'").fetchone()[0])
        con.execute(sql, (NAN * dim,))
    else:
        con.execute(sql)
    con.commit()
    con.close()
    return dst


def _every_command(db: Path, faces: Path, tmp_path: Path) -> list[tuple[str, int, str, str]]:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    probe = faces / "gallery" / "P1" / "0.png"
    runs = {"identify": ("identify", "--db", db, "--aligned", probe),
            "check-dose": ("check-dose", "--db", db, "--plan", plan, "--image", probe, "--aligned", "--at",
                           "2026-12-01T08:10"),
            "enrol": ("enrol", "--gallery", faces / "gallery", "--db", db, "--aligned", "--overwrite")}
    return [(name, *run_cli(*args)) for name, args in runs.items()]


def test_the_untampered_copy_works(gallery, faces, tmp_path):
    db = _tamper(gallery, tmp_path / "copy.db", "SELECT 1")
    rc, out, err = run_cli("identify", "--db", db, "--aligned", faces / "gallery" / "P1" / "0.png")
    assert rc == 0 and "P1" in out, err


@pytest.mark.parametrize("case, sql, want", TAMPER, ids=[c[0] for c in TAMPER])
def test_a_tampered_gallery_is_one_line_and_left_untouched(gallery, faces, tmp_path, case, sql, want):
    db = _tamper(gallery, tmp_path / "ward.db", sql)
    before = sha(db)
    for command, rc, out, err in _every_command(db, faces, tmp_path):
        assert rc == 2, (command, out, err)
        assert want in err and ("damaged" in err or "schema version" in err), (command, err)
        assert "CONFIRMED" not in out
        assert sha(db) == before, command


@pytest.mark.parametrize("cut", [0.5, 0.1])
def test_a_truncated_or_overwritten_gallery_is_one_line(gallery, faces, tmp_path, cut):
    db = tmp_path / "ward.db"
    data = gallery.read_bytes()
    db.write_bytes(data[:int(len(data) * cut)] if cut < 0.3 else data[:4096] + b"\x5a" * (len(data) - 4096))
    before = sha(db)
    for command, rc, out, err in _every_command(db, faces, tmp_path):
        assert rc == 2 and ("damaged" in err or "not a readable gallery" in err), (command, err)
        assert sha(db) == before


@pytest.mark.parametrize("kind", ["zero bytes", "killed first enrol"])
def test_an_empty_database_says_so_and_enrol_fills_it(faces, tmp_path, kind):
    db = tmp_path / "ward.db"
    if kind == "zero bytes":
        db.write_bytes(b"")
    else:  # what sqlite leaves when enrol is killed between opening the file and creating the schema
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode = WAL")
        con.close()
    rc, _, err = run_cli("identify", "--db", db, "--aligned", faces / "gallery" / "P1" / "0.png")
    assert rc == 2 and "empty database" in err and "compress enrol" in err
    enrol(faces, db, real=True)
    with Gallery(db) as g:
        assert g.people() == ["P0", "P1", "P2"]


def test_a_folder_as_db_is_named_a_folder(faces, tmp_path):
    rc, _, err = run_cli("identify", "--db", tmp_path, "--aligned", faces / "gallery" / "P1" / "0.png")
    assert rc == 2 and "is a folder" in err and "not found" not in err
    rc, _, err = run_cli("enrol", "--gallery", faces / "gallery", "--db", tmp_path, "--aligned")
    assert rc == 2 and "is a folder" in err


@pytest.fixture()
def read_only(gallery, tmp_path):
    """A read-only copy: chattr +i, since root ignores file modes."""
    db = tmp_path / "ro" / "ward.db"
    db.parent.mkdir()
    shutil.copy(gallery, db)
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not available here (needs root and ext4)")
    yield db
    subprocess.run(["chattr", "-i", str(db)], check=True)


def test_a_read_only_gallery_is_one_line(read_only, faces, tmp_path):
    before = sha(read_only)
    for command, rc, out, err in _every_command(read_only, faces, tmp_path):
        assert rc == 2 and "cannot be written" in err and "writable" in err, (command, err)
    assert sha(read_only) == before


def test_a_nan_query_embedding_is_one_line_not_unknown(gallery, faces, monkeypatch):
    import compress.identify.api as api

    monkeypatch.setattr(api, "embed", lambda model, crops, flip: np.full((len(crops), 512), np.nan, np.float32))
    rc, out, err = run_cli("identify", "--db", gallery, "--aligned", faces / "gallery" / "P1" / "0.png")
    assert rc == 2 and "NaN" in err and "unknown" not in out
