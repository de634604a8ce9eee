"""Is this gallery whole? Every value a decision rests on is checked before the first face is matched.

A gallery is a file a robot copies, restores and sometimes edits by hand; a damaged one must be one line
("gallery damaged: ...: re-enrol"), never a traceback and never a silent "unknown" or a wrong threshold. The
checks: the schema (tables, columns, the audit's append-only triggers) is the one this version writes; the
model keys, threshold and FAR are present, finite and in range; every embedding and calibration vector is a
blob of the recorded size with finite values; and the stored threshold is the one its calibration record gives
(recomputed here: a threshold edited to -1 would otherwise accept everyone while the tool claims FAR 0.1%).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import UserError
from .gallery import _SCHEMA, MODEL_KEYS, Gallery, Templates, _statements

THRESHOLD_TOLERANCE = 1e-5  # recomputed vs stored threshold: float32 sums may differ in the last bits
MAX_DIM = 65_536


@dataclass(frozen=True)
class CheckedGallery:
    threshold: float
    threshold_info: dict[str, Any]
    flip: bool
    templates: Templates


def damaged(g: Gallery, what: str) -> UserError:
    return UserError(f"gallery {g.path} damaged: {what}: re-enrol into a new --db (keep this file: it holds the "
                     "audit)")


@lru_cache(maxsize=1)
def _expected() -> tuple[dict[str, list[tuple]], dict[str, str]]:
    """Columns of each table and the SQL of each trigger, as this version's schema creates them."""
    con = sqlite3.connect(":memory:")
    for statement in _statements(_SCHEMA):
        con.execute(statement)
    return _layout(con)


def _layout(con: sqlite3.Connection) -> tuple[dict[str, list[tuple]], dict[str, str]]:
    rows = con.execute("SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'trigger')").fetchall()
    tables = {n: [tuple(r[1:]) for r in con.execute(f'PRAGMA table_info("{n}")')] for t, n, _ in rows
              if t == "table"}
    return tables, {n: " ".join(str(sql).split()) for t, n, sql in rows if t == "trigger"}


def is_fresh(g: Gallery) -> bool:
    """A schema with nobody and no model in it (created by an enrolment that did not get further)."""
    c = g.counts()
    return "model_sha256" not in g.meta() and not (c["people"] or c["embeddings"] or c["calibration"])


def check_gallery(g: Gallery) -> CheckedGallery | None:
    """The checked threshold, its record, flip and the templates; None for a fresh gallery. Raises
    UserError("gallery ... damaged: ...") on anything else that is not as enrolment wrote it."""
    try:
        _check_schema(g)
        if is_fresh(g):
            return None
        m = g.meta()
        dim = _check_meta(g, m)
        _check_rows(g, dim)
        return _check_threshold(g, m)
    except sqlite3.DatabaseError as e:
        raise damaged(g, f"unreadable ({e})") from None


def _check_schema(g: Gallery) -> None:
    tables, triggers = _layout(g.conn)
    want_tables, want_triggers = _expected()
    for name, cols in want_tables.items():
        if name not in tables:
            raise damaged(g, f"table {name!r} is missing")
        if tables[name] != cols:
            raise damaged(g, f"table {name!r} has other columns than enrolment writes")
    for name, sql in want_triggers.items():
        if triggers.get(name) != sql:
            raise damaged(g, f"audit trigger {name!r} is missing or changed, so the audit is no longer "
                             "append-only")


def _number(g: Gallery, m: dict[str, str], key: str, lo: float, hi: float) -> float:
    try:
        v = float(m[key])
    except KeyError:
        raise damaged(g, f"no {key} recorded") from None
    except (TypeError, ValueError):
        raise damaged(g, f"{key} {m[key]!r} is not a number") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise damaged(g, f"{key} {v} is not a finite number in {lo:g}..{hi:g}")
    return v


def _check_meta(g: Gallery, m: dict[str, str]) -> int:
    missing = [k for k in (*MODEL_KEYS, "far", "threshold", "threshold_info") if k not in m]
    if missing:
        raise damaged(g, f"no {', '.join(missing)} recorded")
    sha = m["model_sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(ch in "0123456789abcdef" for ch in sha)):
        raise damaged(g, f"model_sha256 {sha!r} is not a sha256")
    if m["flip"] not in ("true", "false"):
        raise damaged(g, f"flip {m['flip']!r} is not true or false")
    return int(_number(g, m, "embedding_dim", 1, MAX_DIM))


def _check_rows(g: Gallery, dim: int) -> None:
    q = g.conn.execute
    for table in ("embeddings", "calibration"):
        bad = q(f"SELECT id FROM {table} WHERE typeof(vector) != 'blob' OR length(vector) != ? OR "
                f"typeof(model_sha256) != 'text'" + (" OR typeof(dim) != 'integer' OR dim != ?" if table ==
                                                      "embeddings" else "") + " LIMIT 1",
                (4 * dim, dim) if table == "embeddings" else (4 * dim,)).fetchone()
        if bad:
            raise damaged(g, f"{table} row {bad[0]} is not a vector of {dim} float32 values")
    orphan = q("SELECT e.id FROM embeddings e LEFT JOIN people p ON p.id = e.person_id WHERE p.id IS NULL "
               "OR typeof(p.name) != 'text' LIMIT 1").fetchone()
    if orphan:
        raise damaged(g, f"embedding {orphan[0]} belongs to no enrolled person")
    if not q("SELECT count(*) FROM calibration").fetchone()[0]:
        raise damaged(g, "no calibration faces recorded, so the threshold cannot be checked")


def _check_threshold(g: Gallery, m: dict[str, str]) -> CheckedGallery:
    from .enrol import threshold_at_far

    sha = m["model_sha256"]
    far = _number(g, m, "far", 0.0, 1.0)
    threshold = _number(g, m, "threshold", -1.0, 1.0)
    try:
        info = json.loads(m["threshold_info"])
    except ValueError:
        raise damaged(g, "threshold_info is not JSON") from None
    if not isinstance(info, dict) or not 0 < far < 1:
        raise damaged(g, f"threshold record {str(m['threshold_info'])[:60]!r} or far {far} is not one enrolment "
                         "writes")
    t = g.templates(sha)
    cal = g.calibration(sha)
    if not (np.isfinite(t.vectors).all() and np.isfinite(cal).all()):
        raise damaged(g, "an embedding or calibration vector holds NaN or infinity")
    if not np.allclose(np.linalg.norm(t.vectors, axis=1), 1.0, atol=1e-3):
        raise damaged(g, "an enrolled person's embeddings are all zero")
    expected = threshold_at_far((cal @ t.vectors.T).max(axis=1), far)
    recorded = (info.get("threshold"), info.get("far"), info.get("impostors"))
    if abs(expected["threshold"] - threshold) > THRESHOLD_TOLERANCE or recorded != (threshold, far, len(cal)):
        raise damaged(g, f"stored threshold {threshold:.4f} (record {recorded}) is not the one its calibration "
                         f"record gives ({expected['threshold']:.4f} at FAR {far:g} on {len(cal)} impostors)")
    return CheckedGallery(threshold, info, m["flip"] == "true", t)
