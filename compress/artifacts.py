"""Atomic writes, artifact folders and their manifests.

Every stage writes a folder: the payload plus `manifest.json` (inputs, config, versions, metrics). Writes go
to a temporary sibling and are renamed into place, so an interrupted run never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UserError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path), then rename tmp_path onto path (same directory, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def artifact_dir(dest: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces `dest` in one rename, on failure it is removed.

    An existing `dest` is an error unless overwrite is set, so a re-run never destroys a model silently.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise UserError(f"{dest} already exists; pass --overwrite to replace it or choose another --out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield stage
        if dest.exists():
            trash = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(dest, trash)
            os.replace(stage, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def repo_folder(env_var: str, name: str) -> Path:
    """A data folder at the repository root (profiles/, targets/), overridable by an environment variable."""
    env = os.environ.get(env_var)
    return Path(env) if env else Path(__file__).resolve().parents[1] / name


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and their hashes, in sorted order)."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the interpreter and of the libraries that shape numerics, for the manifest."""
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "compress": _pkg("compress")}
    for name in ("torch", "numpy", "onnx", "onnxruntime", "ptflops", "opencv-python-headless"):
        v = _pkg(name)
        if v:
            out[name] = v
    return out


def _pkg(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def code_fingerprint() -> str:
    """Hash of the package's own source: a cached artifact is reused only if the code that made it is the same."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def host_description() -> str:
    """What a measured number was measured on: CPU model and core count."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores ({platform.system()} {platform.machine()})"
