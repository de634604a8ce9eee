"""Single-file outputs (`--json FILE`, `--out FILE`, `--roc FILE`, a report folder's three files): checked before
any work, written atomically, and never over a file compress did not write.

A path is refused, with one line, when it is a folder, a symbolic link, a SQLite database (the gallery), one of
the command's own inputs, an existing file compress did not write (JSON without compress's marker, a PNG
without compress's Software tag, a foreign snapshot), or when its folder does not exist (compress creates no
folders for a single file). JSON outputs carry MARKER so that a later run may replace them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from .artifacts import atomic_write_text
from .errors import UserError

MARKER = "written_by"  # key in every JSON output compress writes
MARKER_VALUE = "compress"
PNG_SOFTWARE = "compress"  # the PNG `Software` text chunk of the plots compress writes
SQLITE_MAGIC = b"SQLite format 3\x00"
MAX_JSON_BYTES = 256 << 20  # a JSON file bigger than this is not one of ours (and is not read whole)


def _is_json_ours(path: Path) -> bool:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return False
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and (d.get(MARKER) == MARKER_VALUE or str(d.get("format", "")).startswith("compress."))


def _is_png_ours(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get("Software") == PNG_SOFTWARE
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def _is_snapshot_ours(path: Path) -> bool:
    """A data snapshot (compress.data.snapshot's format; read here, not imported: that module is above this one)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return str(json.loads(bytes(z["meta"]).decode()).get("format", "")).startswith("compress.snapshot/")
    except (OSError, ValueError, KeyError, AttributeError):
        return False


def _is_text_ours(head: str) -> bool:
    """report.md / report.html as compress report writes them (recognised by their first lines)."""
    return (head.startswith("# Compression report:") and "Schema `compress.report/" in head) or (
        head.startswith("<!DOCTYPE html>") and "<title>Compression report:" in head)


def _is_report_text_ours(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return _is_text_ours(f.read(600))
    except OSError:
        return False


OWNERS = {"json": _is_json_ours, "png": _is_png_ours, "snapshot": _is_snapshot_ours, "report": _is_report_text_ours}


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(path: str | Path | None, option: str, kind: str = "json",
                 inputs: Iterable[str | Path | None] = ()) -> Path | None:
    """Fail before any work unless `path` may receive a `kind` output ("json", "png", "snapshot", "report");
    `inputs`: files the command reads (the gallery database, the plan, images), never written over."""
    if path is None:
        return None
    p = Path(path)
    for q in inputs:
        if q is not None and _same(p, Path(q)):
            raise UserError(f"{option} {p} is also one of this command's inputs ({q}); name a new file")
    if p.is_symlink():
        raise UserError(f"{option} {p} is a symbolic link; name the file itself or a new file")
    if p.is_dir():
        raise UserError(f"{option} {p} is a folder; name a file, e.g. {p / ('result.' + _suffix(kind))}")
    if p.exists():
        if is_sqlite(p):
            raise UserError(f"{option} {p} is a SQLite database (a gallery?); it is never replaced: name a new file")
        if not p.is_file() or not OWNERS[kind](p):
            raise UserError(f"{option} {p} exists and was not written by compress (or has no compress marker); "
                            f"move it away or name a new file")
    parent = p.parent
    if not parent.is_dir():
        raise UserError(f"{option} {p}: folder {parent} does not exist; create it first (compress creates no folders "
                        f"for a single output file)")
    return p


def _suffix(kind: str) -> str:
    return {"png": "png", "snapshot": "npz", "report": "md"}.get(kind, "json")


def write_output_json(path: str | Path, obj: Any) -> Path:
    """Atomically write `obj` (a dict) as JSON, with MARKER so that a later run may replace it."""
    if isinstance(obj, dict):
        obj = {MARKER: MARKER_VALUE, **obj}
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def check_report_folder(out: str | Path, option: str = "--out") -> Path:
    """A report folder: never a special folder (/, home, the working directory, the repository, their parents),
    not a file, and any report.md / report.html / report.json already in it written by compress report. Other
    files in it are left alone (a report writes only its three files)."""
    from .artifacts import refuse_special_folder
    from .run_folder import REPORT_FILES

    out = Path(out)
    refuse_special_folder(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out} exists and is not a folder; choose a folder for the report")
    if out.is_dir():
        for name in REPORT_FILES.values():
            check_output(out / name, option, "json" if name.endswith(".json") else "report")
    return out
