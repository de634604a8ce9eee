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
import re
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UserError


STAGE_MARKER = ".compress-stage"  # in every staging / swap folder compress makes: {"pid", "host", "dest"}
# atomic_write's temporary files: .NAME.<pid>.<8 random>.tmp; the pid proves a leftover is a dead writer's
_TMP_RE = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]{8}\.tmp$")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path), then rename tmp_path onto path (same directory, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _umask_mode(0o666))  # mkstemp makes 0600; files get the mode every new file gets
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


ARTIFACT_FILES_KEY = "artifact_files"  # manifest key: every file the artifact's command wrote (relative paths)
LEGACY_FILES = {"manifest.json", "model.pt", "quantized.pt", "calibration.npz", "checkpoint.pt", "lfw_roc.png",
                "parity.json"}  # what artifacts made before ARTIFACT_FILES_KEY existed can hold


def manifest_kind(manifest: dict[str, Any]) -> str | None:
    """An artifact's kind ("train", "prune", "quantize", "export", ...) from its manifest."""
    kind = manifest.get("kind")
    if kind is None and str(manifest.get("format", "")).startswith("compress.export/"):
        kind = "export"
    return kind if isinstance(kind, str) else None


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """folder/manifest.json as a dict, or None when absent or unreadable."""
    try:
        m = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def _files_under(folder: Path) -> set[str]:
    """Relative paths of the files under folder; atomic_write's `.NAME.<pid>.XXXX.tmp` leftovers and the
    staging marker do not count (a user's own `.x.tmp` does)."""
    return {str(f.relative_to(folder)) for f in folder.rglob("*")
            if (f.is_file() or f.is_symlink()) and not _TMP_RE.match(f.name) and f.name != STAGE_MARKER}


def check_replaceable(dest: Path, kind: str) -> None:
    """Refuse to replace `dest` unless it is an artifact of `kind` holding only files its command wrote."""
    if not dest.is_dir():
        raise UserError(f"{dest} exists and is not a folder; choose another --out")
    present = _files_under(dest)
    if not present:
        return
    m = read_manifest(dest)
    if m is None or manifest_kind(m) != kind:
        what = f"a '{manifest_kind(m)}' artifact" if m else "not a compress artifact"
        raise UserError(f"{dest} is {what}, and --overwrite replaces only a '{kind}' artifact; choose another --out")
    ours = set(m.get(ARTIFACT_FILES_KEY) or []) or LEGACY_FILES | set(m.get("files") or [])
    foreign = sorted(present - ours)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(f"{dest} holds files compress did not write ({shown}); move them out or choose another --out")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def folder_lock(dest: str | Path) -> Iterator[None]:
    """Hold `.<name>.lock` beside `dest` while writing it: a second writer fails at once with one line. A lock
    left by a dead process is taken over, and that process's leftovers (`.partial` staging folders, `.old`
    swaps, `.tmp` files inside dest) are removed and reported."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = dest.parent / f".{dest.name}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip())
            except (OSError, ValueError):
                raise UserError(f"{lock} exists and is not a compress lock (no process id in it); move it away or "
                                f"choose another --out") from None
            if _pid_alive(pid) and pid != os.getpid():
                raise UserError(f"another compress process (pid {pid}) is writing {dest}; wait for it to finish "
                                f"or choose another --out") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise UserError(f"could not lock {dest} ({lock} keeps reappearing); choose another --out")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        _clean_leftovers(dest)
        yield
    finally:
        lock.unlink(missing_ok=True)


def mark_stage(folder: Path, dest: Path) -> None:
    """Write the marker that proves `folder` is a staging / swap folder this process made for `dest`."""
    (folder / STAGE_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": platform.node(), "dest": dest.name}))


def _dead_stage(folder: Path, dest: Path) -> bool:
    """`folder` holds the marker of a compress process on this host, now dead, that staged `dest`."""
    try:
        m = json.loads((folder / STAGE_MARKER).read_text())
        return (m["dest"] == dest.name and m["host"] == platform.node() and isinstance(m["pid"], int)
                and not _pid_alive(m["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _dead_tmp(f: Path) -> bool:
    m = _TMP_RE.match(f.name)
    return bool(m) and f.is_file() and not f.is_symlink() and not _pid_alive(int(m.group(1)))


def _clean_leftovers(dest: Path) -> None:
    """Remove what dead writers of `dest` left (only called while holding its lock): only folders holding a
    dead compress process's marker and temporary files named with a dead pid; anything else is the user's."""
    gone = [p for p in dest.parent.glob(f".{glob_escape(dest.name)}.*")
            if p.suffix in (".partial", ".old") and p.is_dir() and not p.is_symlink() and _dead_stage(p, dest)]
    if dest.is_dir():
        gone += [p for p in dest.glob(".*.tmp") if _dead_tmp(p)]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if gone:
        print(f"note: removed {len(gone)} leftover(s) of an interrupted run: "
              f"{', '.join(p.name for p in gone[:3])}", file=sys.stderr)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _umask_mode(mode: int = 0o777) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextlib.contextmanager
def artifact_dir(dest: str | Path, kind: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces `dest` in one rename, on failure it is removed.

    The caller writes manifest.json (with "kind": kind) into the stage; the list of files written is added to it.
    An existing `dest` is an error unless overwrite is set, and even then only an artifact of the same kind that
    holds nothing but its own files is replaced: no user file is ever deleted. A lock makes concurrent writers
    to one folder fail clearly instead of silently replacing each other's work.
    """
    dest = Path(dest)
    check_out(dest, kind, overwrite)
    with folder_lock(dest):
        stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        try:
            os.chmod(stage, _umask_mode())  # mkdtemp makes 0700; artifacts get the mode every folder gets
            mark_stage(stage, dest)
            yield stage
            (stage / STAGE_MARKER).unlink()
            _seal_manifest(stage, kind)
            if dest.exists():
                if not overwrite:  # appeared while we worked (a writer that ignores the lock)
                    raise UserError(f"{dest} appeared while this command ran; nothing was replaced. "
                                    f"Pass --overwrite or choose another --out")
                check_replaceable(dest, kind)
                # a fresh, empty swap folder (never a user's `.NAME.old`); the old artifact carries the marker
                trash = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
                mark_stage(dest, dest)
                os.replace(dest, trash)
                os.replace(stage, dest)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(stage, dest)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise


def check_out(dest: str | Path, kind: str, overwrite: bool) -> None:
    """Fail before any work when `dest` cannot receive a `kind` artifact (call it first, then artifact_dir)."""
    dest = Path(dest)
    refuse_special_folder(dest)
    if dest.exists() and not overwrite:
        raise UserError(f"{dest} already exists; pass --overwrite to replace it or choose another --out")
    if dest.exists():
        check_replaceable(dest, kind)


def refuse_special_folder(dest: Path) -> None:
    """Folders that are never an artifact: the filesystem root, the home folder, the working directory, the
    repository, and their parents."""
    r = dest.resolve()
    special = {Path("/"), Path.home().resolve(), Path.cwd().resolve(), Path(__file__).resolve().parents[1]}
    if r in special or any(r in s.parents for s in special):
        raise UserError(f"--out {dest} is {r}, not a folder an artifact can own; choose a new folder such as "
                        f"runs/<name>")


def _seal_manifest(stage: Path, kind: str) -> None:
    m = read_manifest(stage)
    if m is None:
        raise RuntimeError(f"artifact stage {stage} has no manifest.json")  # a bug in the caller, not user input
    if manifest_kind(m) != kind:
        m["kind"] = kind
    m[ARTIFACT_FILES_KEY] = sorted(_files_under(stage) | {"manifest.json"})
    write_json(stage / "manifest.json", m)


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
