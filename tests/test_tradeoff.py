"""benchmarks/tradeoff.py's pure parts: figures read from records (never invented), families, the generated table.
No exports, no timing, no ../shared."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import compress.zoo as zoo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tr():
    spec = importlib.util.spec_from_file_location("tradeoff_bench", ROOT / "benchmarks" / "tradeoff.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def _lfw_record(path: Path, sha: str | None, mean: float = 0.9) -> Path:
    doc = {"dataset": "LFW", "protocol": "10-fold", "runtime": "pytorch", "host": "h",
           "results": {"flip": {"accuracy_mean": mean, "accuracy_std": 0.01, "tar_at_far": {"1e-3": 0.5}}}}
    if sha:
        doc["model_sha256"] = sha
    path.write_text(json.dumps(doc))
    return path


def _open_set(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps({"dataset": "LFW all", "protocol": "open set", "host": "h", "models": rows}))
    return path


def _os_row(sha: str | None, rank1: float) -> dict:
    row = {"model": "m", "runtime": "pytorch", "precision": "fp32",
           "results": {"100": {"rank1": rank1, "rank1_std": 0.01, "dir@far=0.01": 0.5, "dir@far=0.01_std": 0.02,
                               "draws": 10}}}
    if sha:
        row["sha256"] = sha
    return row


def test_lfw_from_record_or_not_measured(tr, tmp_path):
    assert tr.lfw_figures(tmp_path / "absent.json", "a" * 64)["status"] == "not measured"
    rec = _lfw_record(tmp_path / "r.json", "a" * 64)
    got = tr.lfw_figures(rec, "a" * 64)
    assert got["status"] == "measured" and got["accuracy_mean"] == 0.9 and got["record_names_sha256"]
    stale = tr.lfw_figures(rec, "b" * 64)  # the record measured another file
    assert stale["status"] == "not measured" and "re-run" in stale["why"]
    assert tr.lfw_figures(_lfw_record(tmp_path / "n.json", None), "b" * 64)["status"] == "measured"


def test_open_set_prefers_entry_record_then_shared_row_by_sha(tr, tmp_path, monkeypatch):
    monkeypatch.setattr(tr, "ZOO_REPORTS", tmp_path / "zoo")
    (tmp_path / "zoo").mkdir()
    shared = _open_set(tmp_path / "identify.json", [_os_row("c" * 64, 0.6), _os_row("a" * 64, 0.7)])
    entry = tmp_path / "zoo" / "x-open-set.json"
    cands = [entry, shared]
    got = tr.open_set_figures(cands, "a" * 64)
    assert got["status"] == "measured" and got["rank1"] == 0.7 and got["dir_at_far_1e-2"] == 0.5
    assert tr.open_set_figures(cands, "d" * 64)["status"] == "not measured"
    _open_set(entry, [_os_row(None, 0.95)])  # the entry's own record, a sole row naming no sha256: its figures
    assert tr.open_set_figures(cands, "a" * 64)["rank1"] == 0.95
    _open_set(entry, [_os_row("e" * 64, 0.95)])  # another file's figures are not this model's
    assert tr.open_set_figures(cands, "a" * 64)["rank1"] == 0.7
    assert tr.open_set_figures([entry], "a" * 64)["status"] == "not measured"


def test_rows_and_table_say_not_measured(tr, tmp_path, monkeypatch):
    monkeypatch.setattr(tr, "ZOO_REPORTS", tmp_path)
    m = tr.Model(name="zoo:x", spec="zoo:x", family="mobilefacenet", sha256="a" * 64, file="f",
                 lfw_record=_lfw_record(tmp_path / "x-lfw.json", "a" * 64, 0.99),
                 open_set_records=[tmp_path / "x-open-set.json"])
    cx = {"params": 1000, "macs": 57_000_000, "schedule": "s", "counted_by": "ptflops"}
    row = tr.build_row(m, cx, tr.not_measured_latency("--skip-latency"),
                       {"raspberry-pi-4": {"precision": "int8", "estimate_ms": 3.25}})
    assert row["open_set"]["status"] == "not measured" and row["family"] == "mobilefacenet"
    text = tr.markdown_tables([row])
    line = next(x for x in text.splitlines() if x.startswith("| zoo:x | mobilefacenet"))
    assert "57,000,000" in line and "99.00 +- 1.00" in line and line.count("not measured") == 2
    lat = next(x for x in text.splitlines()[4:] if x.startswith("| zoo:x"))
    assert lat.count("not measured") == len(tr.COLUMNS)
    assert "| raspberry-pi-4 int8 |" in text and "| zoo:x | 3.25 |" in text


def test_zoo_entries_discovered_with_their_records(tr):
    models, notes = tr.discover(ROOT / "no-such-teacher.onnx")
    assert notes and "not found" in notes[0] and all(m.name != "teacher" for m in models)
    by = {m.name: m for m in models}
    assert set(by) == {e.spec for e in zoo.list_entries()}  # every entry, none typed in
    t3 = by["zoo:table3"]
    assert t3.family == "paper" and t3.lfw_record == ROOT / "reports" / "zoo" / "table3-lfw.json"
    os3 = tr.open_set_figures(t3.open_set_records, t3.sha256)  # the committed identify record names its sha256
    assert os3["status"] == "measured" and 0 < os3["rank1"] < 1
    assert tr.open_set_figures(by["zoo:table2"].open_set_records, by["zoo:table2"].sha256)["status"] == "not measured"


def test_export_budget_leaves_missing_exports_not_measured(tr, tmp_path, monkeypatch):
    monkeypatch.setattr(tr, "EXPORTS", tmp_path)
    called = []
    monkeypatch.setattr(tr, "ensure_export", lambda *a, **k: called.append(a))
    m = tr.Model(name="zoo:x", spec="zoo:x", family="paper", sha256="a" * 64, file="f", lfw_record=tmp_path / "r",
                 label="zoo-x")
    got = tr.make_exports([m], budget_s=-1.0, progress=False)  # the budget is spent before the first export
    assert not called and set(got) == {("zoo:x", c) for c in tr.COLUMNS}
    assert all(isinstance(v, str) and "--exports-only" in v for v in got.values())
