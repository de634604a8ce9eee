"""Artifact helpers: atomic writes and the per-stage code fingerprint the pipeline's cache keys use."""

from pathlib import Path

import pytest

from compress.artifacts import atomic_write, code_fingerprint


def _package(root: Path) -> Path:
    pkg = root / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("x = 1\n")
    (pkg / "c.py").write_text("z = 3\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "d.py").write_text("def f():\n    from ..a import x  # lazy\n    return x\n")
    (pkg / "sub" / "e.py").write_text("from pkg import c\nimport os\n")
    return pkg


def test_code_fingerprint_follows_imports_only(tmp_path):
    pkg = _package(tmp_path)
    a, d, e, whole = (code_fingerprint("pkg.a", root=pkg), code_fingerprint("pkg.sub.d", root=pkg),
                      code_fingerprint("pkg.sub.e", root=pkg), code_fingerprint(root=pkg))
    (pkg / "c.py").write_text("z = 4\n")  # imported by e only
    assert code_fingerprint("pkg.a", root=pkg) == a and code_fingerprint("pkg.sub.d", root=pkg) == d
    assert code_fingerprint("pkg.sub.e", root=pkg) != e and code_fingerprint(root=pkg) != whole
    (pkg / "b.py").write_text("x = 2\n")  # imported by a, and by d through a lazy import of a
    assert code_fingerprint("pkg.a", root=pkg) != a and code_fingerprint("pkg.sub.d", root=pkg) != d
    before = code_fingerprint("pkg.sub.e", root=pkg)
    (pkg / "sub" / "__init__.py").write_text("y = 0\n")
    assert code_fingerprint("pkg.sub.e", root=pkg) != before
    with pytest.raises(ValueError, match="no module pkg.nope"):
        code_fingerprint("pkg.nope", root=pkg)


def test_real_stages_do_not_depend_on_the_report_renderer():
    """The reason for per-stage fingerprints: editing the report's HTML must not retrain or re-export."""
    import compress.artifacts as art

    root = Path(art.__file__).parent
    files = set()
    todo = [root / "train" / "trainer.py", root / "export" / "folders.py", root / "quantize" / "folders.py"]
    while todo:
        f = todo.pop()
        if f not in files:
            files.add(f)
            todo.extend(art._package_imports(root, f) - files)
    names = {str(f.relative_to(root)) for f in files}
    assert "report/render.py" not in names and "cli.py" not in names
    assert {"train/trainer.py", "model/network.py", "export/formats.py", "quantize/in_memory.py"} <= names


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "m.bin"

    def boom(p: Path) -> None:
        p.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    atomic_write(target, lambda p: p.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"
