"""The ward gallery: a SQLite database of enrolled people, their face embeddings and an append-only audit.

Why SQLite: one file a robot can copy, transactions, and safe concurrent readers and writers (WAL journal,
busy timeout) from the stdlib. The schema is versioned with ``PRAGMA user_version``; a file from another
version is refused with a one-line error instead of being read wrongly.

Every embedding row carries the sha256, runtime and precision of the model that produced it, and the gallery
records the one model it was enrolled with: querying with any other model is refused (embeddings of two
models are not comparable). The audit table is append-only: triggers abort any UPDATE or DELETE on it.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import UserError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000  # writers wait this long for the lock instead of failing at once

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, enrolled_at TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    image TEXT NOT NULL, vector BLOB NOT NULL, dim INTEGER NOT NULL, model_sha256 TEXT NOT NULL,
    runtime TEXT NOT NULL, precision TEXT NOT NULL, face_score REAL, created_at TEXT NOT NULL);
CREATE INDEX embeddings_person ON embeddings(person_id);
CREATE TABLE calibration (
    id INTEGER PRIMARY KEY, vector BLOB NOT NULL, source TEXT NOT NULL, model_sha256 TEXT NOT NULL);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY, time TEXT NOT NULL, command TEXT NOT NULL, decision TEXT NOT NULL,
    person TEXT, drug TEXT, slot TEXT, image TEXT, scores TEXT NOT NULL, threshold REAL,
    model_sha256 TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
CREATE INDEX audit_dose ON audit(person, drug, slot, decision);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"""

# meta keys every gallery has once created
MODEL_KEYS = ("model_spec", "model_name", "model_sha256", "runtime", "precision", "embedding_dim", "flip")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Templates:
    """One L2-normalised template per enrolled person (the normalised mean of their embeddings)."""

    names: list[str]
    vectors: np.ndarray  # (P, D) float32
    counts: list[int]  # embeddings behind each template


def _blob(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def _vec(b: bytes, dim: int) -> np.ndarray:
    v = np.frombuffer(b, dtype="<f4")
    if v.size != dim:
        raise UserError(f"gallery embedding of {v.size} values where {dim} were recorded; the database is damaged: "
                        "re-enrol into a new --db")
    return v


class Gallery:
    """An open gallery database. Use as a context manager; every write is one transaction."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"--db {self.path} is a folder; pass the gallery database file, e.g. {self.path}/ward.db")
        if not create and not self.path.is_file():
            raise UserError(f"gallery {self.path} not found; create it with `compress enrol --gallery DIR --db "
                            f"{self.path}`")
        if not create and is_empty_database(self.path):  # refused before connecting: that would write to it
            raise UserError(f"{self.path} is an empty database with nobody enrolled (a first enrolment may have "
                            f"been interrupted); enrol into it with `compress enrol --gallery DIR --db {self.path}`")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._init_or_check(create)
        except sqlite3.DatabaseError as e:
            if _read_only(e):
                raise read_only_error(self.path, e) from None
            raise UserError(f"{self.path} is not a readable gallery database ({e}); pass the file `compress enrol` "
                            "wrote, or enrol into a new --db") from None

    # ----------------------------------------------------------------------------- schema
    def _init_or_check(self, create: bool) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and self._tables() == 0:
            if not create:
                raise UserError(f"{self.path} is an empty database with nobody enrolled; enrol into it with "
                                f"`compress enrol --gallery DIR --db {self.path}`")
            with self.transaction() as c:
                if self._tables() == 0:  # another process may have created it while we waited for the lock
                    for statement in _statements(_SCHEMA):
                        c.execute(statement)
                    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    c.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created_at', ?)",
                              (str(SCHEMA_VERSION), now_iso()))
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise UserError(f"{self.path} has gallery schema version {version}, this compress reads version "
                            f"{SCHEMA_VERSION}; enrol again into a new --db with this version")

    def _tables(self) -> int:
        return self.conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write checks cannot race."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:  # nothing was written: the transaction rolled back
            if _read_only(e):
                raise read_only_error(self.path, e) from None
            raise UserError(f"gallery {self.path}: the write failed ({e}); nothing was written: check the disk "
                            "and the file, or re-enrol into a new --db") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------- meta
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, c: sqlite3.Connection, values: dict[str, Any]) -> None:
        for k, v in values.items():
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v) if not isinstance(v, str) else v))

    def model_sha256(self) -> str | None:
        return self.meta().get("model_sha256")

    def check_model(self, sha256: str, spec: str) -> None:
        """Refuse a model other than the one the gallery was enrolled with."""
        enrolled = self.model_sha256()
        if enrolled is not None and enrolled != sha256:
            m = self.meta()
            raise UserError(f"{self.path} was enrolled with {m.get('model_spec')} (sha256 {enrolled[:12]}), not "
                            f"{spec} (sha256 {sha256[:12]}); embeddings of different models do not compare: "
                            f"re-enrol with `compress enrol --model {spec} --gallery DIR --db NEW.db`")

    # ----------------------------------------------------------------------------- people
    def people(self) -> list[str]:
        return sorted(nfc(r[0]) for r in self.conn.execute("SELECT name FROM people"))

    def add_person(self, c: sqlite3.Connection, name: str, source: str, rows: list[dict[str, Any]],
                   replace: bool) -> None:
        """Insert a person and their embeddings inside the caller's transaction."""
        old = next(((i,) for i, n in c.execute("SELECT id, name FROM people") if nfc(n) == nfc(name)), None)
        if old and not replace:
            raise UserError(f"{name} is already enrolled in {self.path}; pass --overwrite to replace their photos")
        if old:
            c.execute("DELETE FROM people WHERE id = ?", (old[0],))  # embeddings cascade
        pid = c.execute("INSERT INTO people (name, enrolled_at, source) VALUES (?, ?, ?)",
                        (name, now_iso(), source)).lastrowid
        for r in rows:
            v = np.asarray(r["vector"], np.float32)
            c.execute("INSERT INTO embeddings (person_id, image, vector, dim, model_sha256, runtime, precision, "
                      "face_score, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (pid, r["image"], _blob(v), v.size, r["model_sha256"], r["runtime"], r["precision"],
                       r.get("face_score"), now_iso()))

    def templates(self, sha256: str) -> Templates:
        rows = self.conn.execute(
            "SELECT p.name, e.vector, e.dim, e.model_sha256 FROM embeddings e JOIN people p ON p.id = e.person_id "
            "ORDER BY p.name, e.id").fetchall()
        if not rows:
            raise UserError(f"gallery {self.path} has nobody enrolled; enrol people first with `compress enrol "
                            f"--gallery DIR --db {self.path}`")
        foreign = {r[3] for r in rows} - {sha256}
        if foreign:
            raise UserError(f"{self.path} holds embeddings of another model (sha256 {sorted(foreign)[0][:12]}); "
                            "re-enrol everyone into a new --db with one model")
        by_name: dict[str, list[np.ndarray]] = {}
        for name, blob, dim, _ in rows:
            by_name.setdefault(nfc(name), []).append(_vec(blob, dim))
        names = sorted(by_name)
        vecs = np.stack([np.mean(by_name[n], axis=0) for n in names]).astype(np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return Templates(names, vecs, [len(by_name[n]) for n in names])

    def counts(self) -> dict[str, int]:
        q = self.conn.execute
        return {"people": q("SELECT count(*) FROM people").fetchone()[0],
                "embeddings": q("SELECT count(*) FROM embeddings").fetchone()[0],
                "calibration": q("SELECT count(*) FROM calibration").fetchone()[0],
                "audit": q("SELECT count(*) FROM audit").fetchone()[0]}

    # ----------------------------------------------------------------------------- calibration
    def set_calibration(self, c: sqlite3.Connection, vectors: np.ndarray, source: str, sha256: str) -> None:
        c.execute("DELETE FROM calibration")
        c.executemany("INSERT INTO calibration (vector, source, model_sha256) VALUES (?, ?, ?)",
                      [(_blob(v), source, sha256) for v in np.asarray(vectors, np.float32)])

    def calibration(self, sha256: str) -> np.ndarray:
        rows = self.conn.execute("SELECT vector, model_sha256 FROM calibration ORDER BY id").fetchall()
        if any(r[1] != sha256 for r in rows):
            raise UserError(f"{self.path}: calibration embeddings come from another model; re-enrol into a new --db")
        dim = int(self.meta().get("embedding_dim", "0"))
        return np.stack([_vec(r[0], dim) for r in rows]) if rows else np.zeros((0, dim), np.float32)

    # ----------------------------------------------------------------------------- audit
    def audit(self, c: sqlite3.Connection, *, command: str, decision: str, scores: Any, model_sha256: str,
              threshold: float | None = None, person: str | None = None, drug: str | None = None,
              slot: str | None = None, image: str | None = None, detail: str = "") -> int:
        return c.execute(
            "INSERT INTO audit (time, command, decision, person, drug, slot, image, scores, threshold, model_sha256, "
            "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now_iso(), command, decision, person, drug, slot, image, json.dumps(scores), threshold, model_sha256,
             detail)).lastrowid

    def audit_rows(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM audit ORDER BY id")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def integrity(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]


def nfc(name: str) -> str:
    """People are compared in Unicode NFC: "José" typed or copied in another form is the same person."""
    return unicodedata.normalize("NFC", name)


def has_control(text: str) -> bool:
    """Control, format (bidi overrides) and unassigned characters: a name with one could print as another line."""
    return any(unicodedata.category(ch)[0] == "C" for ch in text)


def shown(line: str) -> str:
    """``line`` with every control or format character escaped (\\x1b, \\n, \\u202e): printed names cannot start
    a line of their own, such as one that reads CONFIRMED."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else
                   (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}") for ch in line)


def is_empty_database(path: str | Path) -> bool:
    """A 0-byte file, or an SQLite file with no tables (a first enrolment killed before it wrote any): enrol
    may create the gallery in it."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.stat().st_size == 0:
        return True
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return (con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
                    and con.execute("PRAGMA user_version").fetchone()[0] == 0)
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return False


def _read_only(e: Exception) -> bool:
    return "readonly" in str(e) or "read-only" in str(e)


def read_only_error(path: Path, e: Exception) -> UserError:
    return UserError(f"gallery {path} cannot be written ({e}): enrol, identify and check-dose record every answer "
                     "in its audit table; make the file and its folder writable")


def _statements(script: str) -> list[str]:
    """Split the schema into statements (executescript would COMMIT our open transaction); a trigger body's
    inner ';' stays with its CREATE TRIGGER, which ends in 'END;'."""
    out, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER") or text.upper().endswith("END;")):
            out.append(text)
            buf = []
    return out
