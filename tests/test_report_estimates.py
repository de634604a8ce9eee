"""The report's board estimates: a short cell per board row, one table with ours vs MobileFaceNet and the
calibration behind both, and a readable accuracy-vs-latency plot (no per-point text)."""

from __future__ import annotations

from pathlib import Path

from compress.artifacts import write_json
from compress.report import write_report

# Hand-written fixture (NOT a model output): the fields compress.pipeline writes into RUN/estimates/*.json.
RECORD = {"target": "jetson-nano", "precision": "fp16", "latency_ms": 4.5,
          "label": "estimated (TEST FIXTURE, hand-written)",
          "loo": {"mean_abs_rel_error": 0.11, "n": 15, "max_abs_rel_error": 0.31},
          "reference_estimate": {"network": "MobileFaceNet (fixture)", "latency_ms": 9.0, "status": "estimated",
                                 "label": "estimated (TEST FIXTURE)"},
          "estimator": {"calibrated_at": "fp16", "model": "one efficiency + per-layer overhead (2 free parameters)",
                        "references_used": [{"network": f"Net {i} (fixture)"} for i in range(5)],
                        "loo": {"mean_abs_rel_error": 0.11, "max_abs_rel_error": 0.31}}}


def _sections(md: str) -> dict[str, str]:
    out, title = {}, ""
    for line in md.splitlines():
        if line.startswith("## "):
            title = line[3:]
            out[title] = ""
        elif title:
            out[title] += line + "\n"
    return out


def test_estimate_cell_is_short_and_the_table_carries_the_calibration(tmp_path: Path):
    run = tmp_path / "RUN"
    write_json(run / "estimates" / "jetson-nano-fp16.json", RECORD)
    rep = write_report(run)
    md = _sections(Path(rep["written"]["md"]).read_text())
    row = next(r for r in md["Per board"].splitlines() if r.startswith("| jetson-nano |"))
    tag = "E" + str([v["key"] for t in rep["targets"] for v in t["variants"]].index("jetson-nano-fp16") + 1)
    assert f"4.500 ms estimated [{tag}, LOO 11%]" in row and "calibrated" not in row
    est = next(r for r in md["Latency estimates per board"].splitlines() if r.startswith(f"| {tag} |"))
    assert "| 4.500 ms | 9.000 ms | 2.0x faster (estimated) |" in est
    assert "5 published fp16 latencies (Net 0, Net 1, Net 2, Net 3, ...)" in est and "11% / 31%" in est
    # a board row without an estimate says so in both places, with no number
    other = next(r for r in md["Latency estimates per board"].splitlines() if "| intel-nuc | int8 |" in r)
    assert "not estimated" in other and " ms" not in other


def test_html_marks_estimates(tmp_path: Path):
    run = tmp_path / "RUN"
    write_json(run / "estimates" / "jetson-nano-fp16.json", RECORD)
    page = Path(write_report(run)["written"]["html"]).read_text()
    assert '<td class="est">4.500 ms estimated [' in page
    assert '<td class="est">2.0x faster (estimated)</td>' in page
