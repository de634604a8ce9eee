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


def _module_file(root: Path, parts: list[str]) -> Path | None:
    base = root.joinpath(*parts)
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _package_imports(root: Path, path: Path) -> set[Path]:
    """Files of this package that `path` imports, anywhere in it (lazy imports inside functions included), plus
    the __init__.py of every package on the way, since importing a module runs them."""
    import ast

    here = list(path.relative_to(root).parts[:-1])  # relative imports start from the file's package
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
            elif (node.module or "").split(".")[0] == root.name:
                base = []
            else:
                continue
            mod = (node.module or "").split(".") if node.module else []
            if not node.level:
                mod = mod[1:]
            targets.append(base + mod)
            targets += [base + mod + [a.name] for a in node.names]  # `from . import x` may name a module
        elif isinstance(node, ast.Import):
            targets += [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == root.name]
        for t in targets:
            for i in range(len(t) + 1):
                f = _module_file(root, t[:i]) if i else root / "__init__.py"
                if f is not None and (i == len(t) or f.name == "__init__.py"):
                    found.add(f)
    return found


def code_fingerprint(*modules: str, root: Path | None = None) -> str:
    """Hash of the package's own source: a cached artifact is reused only if the code that made it is the same.
    With module names (e.g. "compress.quantize"), only those modules and the package modules they import,
    transitively, count; so a change to the report code does not invalidate a trained model. `root`: the
    package folder (this package by default)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent
    if modules:
        todo = []
        for m in modules:
            parts = m.split(".")[1:]
            f = _module_file(root, parts)
            if f is None:
                raise ValueError(f"no module {m} in {root}")
            todo.append(f)
            todo += [root.joinpath(*parts[:i], "__init__.py") for i in range(len(parts))
                     if root.joinpath(*parts[:i], "__init__.py").is_file()]  # its packages' __init__ run first
        files: set[Path] = set()
        while todo:
            f = todo.pop()
            if f not in files:
                files.add(f)
                todo.extend(_package_imports(root, f) - files)
    else:
        files = set(root.rglob("*.py"))
    h = hashlib.sha256()
    for p in sorted(files):
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
