"""tools/uv_args.py: the Makefile passes pip's configured package sources on to uv."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "uv_args.py"


def _tool():
    spec = importlib.util.spec_from_file_location("uv_args", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pip_sources_become_uv_options(tmp_path):
    uv = _tool()
    wheels, constraints = tmp_path / "wheels", tmp_path / "c.txt"
    wheels.mkdir()
    constraints.write_text("torch<=2.14.1\n")
    settings = {"find-links": [str(wheels), str(wheels), "https://example.org/wheels", str(tmp_path / "gone")],
                "constraint": [str(constraints)]}
    # duplicates collapse, a URL is kept, a missing local path (which pip skips and uv would fail on) is dropped
    assert uv.uv_args(settings) == ["--find-links", str(wheels), "--find-links", "https://example.org/wheels",
                                    "--constraint", str(constraints)]
    assert uv.uv_args({}) == []


def test_environment_variables_count(monkeypatch, tmp_path):
    uv = _tool()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    assert str(tmp_path) in uv.pip_settings()["find-links"]
