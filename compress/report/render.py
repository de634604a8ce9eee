"""Render a collected report as Markdown, a self-contained HTML page (inline CSS, plots as base64 PNG) and JSON.

write_report(run_dir) collects the run folder and writes RUN/report/{report.md, report.html, report.json}
atomically. The HTML references nothing outside itself: no scripts, stylesheets, fonts or remote images.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write_text, write_json
from ..errors import UserError
from ..run_folder import REPORT, REPORT_FILES, report_file
from .collect import EMULATED, NOT_MEASURED, NOT_RUN, collect

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px 0;font-size:13px}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{color:#999;font-style:italic}.est{color:#8a5a00}.board{color:#0a6b2d;font-weight:600}
.warn{color:#a40000}.small{font-size:12px;color:#555}
img.plot{max-width:100%;border:1px solid #ddd;margin:8px 0}
"""


# ---------------------------------------------------------------- formatting
def _hosts(report: dict[str, Any]) -> dict[str, str]:
    """Host description -> short tag (H1, H2, ...) for every host named in the report."""
    names: list[str] = []
    for t in report["targets"]:
        for v in t["variants"]:
            for lat in (v["latency"]["here"], v["latency"]["board"], v["reference"]["here"], v["reference"]["board"]):
                h = lat.get("host")
                if h and h not in names:
                    names.append(h)
    return {h: f"H{i}" for i, h in enumerate(names, 1)}


def _ms(x: float | None) -> str:
    return "?" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def fmt_latency(lat: dict[str, Any], hosts: dict[str, str]) -> str:
    if lat.get("status") in (NOT_MEASURED, NOT_RUN, None):
        return lat.get("note") if str(lat.get("note", "")).startswith("not estimated") else (lat.get("status") or NOT_MEASURED)
    if lat["status"] == "estimated":
        v = lat.get("latency_ms")
        return f"{_ms(v) if isinstance(v, (int, float)) else '?'} ms, {lat['provenance']}"
    if lat["status"] == EMULATED:  # the emulator's timing is not the board's: no number
        return f"{EMULATED} [{hosts.get(lat.get('host'), lat.get('host'))}]: parity only, timing not meaningful"
    where = "measured on board" if lat["status"] == "measured on board" else "measured on"
    p90 = f" (p90 {_ms(lat.get('p90_ms'))})" if lat.get("p90_ms") is not None else ""
    extra = f", {lat.get('runtime')}, threads {lat.get('threads')}"
    warn = " NOT settled" if lat.get("stable") is False else ""
    if (lat.get("board") or {}).get("on_target") is False:  # run_on_board.py ran elsewhere than the target
        warn += " (NOT on the target board)"
    return f"{_ms(lat['median_ms'])} ms{p90} {where} [{hosts.get(lat.get('host'), lat.get('host'))}]{extra}{warn}"


def _estimate_tags(report: dict[str, Any]) -> dict[str, str]:
    """Variant key -> footnote tag (E1, E2, ...) of its row in the estimates table."""
    keys = [v["key"] for t in report["targets"] for v in t["variants"]]
    return {k: f"E{i}" for i, k in enumerate(keys, 1)}


def fmt_estimate_cell(lat: dict[str, Any], tag: str) -> str:
    """The per-board cell: the number and its kind only; how it was calibrated lives in the estimates table."""
    v = lat.get("latency_ms")
    if lat.get("status") == "estimated" and isinstance(v, (int, float)):
        loo = (lat.get("loo") or {}).get("mean_abs_rel_error")
        err = f", LOO {loo:.0%}" if isinstance(loo, (int, float)) else ""
        return f"{_ms(v)} ms estimated [{tag}{err}]"
    return f"not estimated [{tag}]" if str(lat.get("note", "")).startswith("not estimated") else NOT_MEASURED


def _calibration_text(raw: dict[str, Any]) -> tuple[str, str, str]:
    """(calibrated on, LOO mean / max, model) of an estimate record's estimator output."""
    e = raw.get("estimator") if isinstance(raw.get("estimator"), dict) else {}
    used = e.get("references_used") or []
    if not used:
        return "", "", ""
    prec = e.get("calibrated_at", "")
    nets = ", ".join(r["network"].split(" (")[0] for r in used[:4]) + (", ..." if len(used) > 4 else "")
    loo = e.get("loo") or {}
    mean, mx = loo.get("mean_abs_rel_error"), loo.get("max_abs_rel_error")
    loo_txt = f"{mean:.0%} / {mx:.0%}" if isinstance(mean, (int, float)) else "impossible (n < 2)"
    return f"{len(used)} published {prec} latencies ({nets})", loo_txt, str(e.get("model", ""))


def estimate_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per board x precision: ours and MobileFaceNet estimated alike, the calibration behind both."""
    tags, rows = _estimate_tags(report), []
    for t in report["targets"]:
        for v in t["variants"]:
            est = v["latency"]["estimate"]
            raw = est.get("raw") or {}
            ref = est.get("reference") or {}
            ours, theirs = est.get("latency_ms"), ref.get("latency_ms")
            on, loo, model = _calibration_text(raw)
            if est.get("status") == "estimated" and isinstance(ours, (int, float)):
                speed = (f"{theirs / ours:.1f}x faster" if theirs and theirs >= ours else
                         f"{ours / theirs:.1f}x slower" if theirs else "")
                rows.append([tags[v["key"]], t["name"], v["precision"], f"{_ms(ours)} ms",
                             f"{_ms(theirs)} ms" if isinstance(theirs, (int, float)) else NOT_MEASURED,
                             speed + (" (estimated)" if speed else ""), on, loo, model])
            else:
                why = str(est.get("note") or est.get("status") or NOT_MEASURED)
                rows.append([tags[v["key"]], t["name"], v["precision"], "not estimated", "not estimated", "",
                             why[len("not estimated: "):] if why.startswith("not estimated: ") else why, "", ""])
    return rows


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return NOT_RUN
    return f"{n / 1e6:.2f} MB ({n:,} B)" if n >= 1e5 else f"{n / 1e3:.1f} kB ({n:,} B)"


def fmt_acc(a: dict[str, Any]) -> str:
    if a.get("status") != "measured":
        return a.get("status", NOT_MEASURED)
    return f"{a['accuracy']:.2f}% ± {a['accuracy_std']:.2f}" + (" (synthetic)" if a.get("synthetic") else "")


def fmt_ratio(r: dict[str, Any]) -> str:
    if r.get("status") != "measured":
        return NOT_MEASURED
    prov = r.get("provenance", "")
    return f"{r['ratio']:.2f}×" + (prov[prov.index(" (ours "):] if " (ours " in prov else "")


def fmt_parity(checks: list[dict[str, Any]]) -> str:
    if not checks or checks[0].get("status") in (NOT_MEASURED, NOT_RUN):
        return checks[0]["status"] if checks else NOT_MEASURED
    return "; ".join(f"{c['check']}: {c['cosine_mean']:.5f} / {c['cosine_min']:.5f}" for c in checks
                     if c.get("cosine_mean") is not None)


def _int(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


# ---------------------------------------------------------------- tables (as rows; rendered to md or html)
def tables(report: dict[str, Any]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(section title, note, header, rows) for every table of the report."""
    hosts, tags = _hosts(report), _estimate_tags(report)
    out = []
    rows = []
    for t in report["targets"]:
        for v in t["variants"]:
            lat = v["latency"]
            rows.append([t["name"],
                         v["precision"] + (" (default)" if v["default"] else ""),
                         v["export"]["status"], fmt_bytes(v["export"].get("artifact_bytes")),
                         fmt_latency(lat["here"], hosts), fmt_estimate_cell(lat["estimate"], tags[v["key"]]),
                         fmt_latency(lat["board"], hosts), fmt_acc(v["accuracy"]),
                         fmt_parity(v["export"].get("parity", [])) if v["export"]["status"] != NOT_RUN else NOT_RUN])
    out.append(("Per board", "latency = median, batch 1, runtime call only; parity = cosine mean / min vs the "
                "PyTorch model; accuracy = the exported model through its runtime (stage exported:<target>-<precision>)",
                ["target", "precision", "export", "artifact size", "latency measured here", "latency estimated on board",
                 "latency measured on board", "accuracy (exported)", "parity cos mean / min"], rows))
    out.append(("Latency estimates per board", "[E#] in the table above. Estimated by the per-layer latency model "
                "(compress.bench.estimate) from the layer list alone, batch 1, ours and the reference model "
                "(MobileFaceNet, rebuilt from arXiv:1804.07573 Table 1) with the same calibration; calibrated on "
                "published latencies of other networks on that board (sources in targets/<board>.toml); LOO = "
                "leave-one-out |relative error| over those references (mean / max), which measures how well the "
                "model transfers between published networks, not its error on ours",
                ["#", "target", "precision", "ours (estimated)", "MobileFaceNet (estimated)", "ours vs MobileFaceNet",
                 "calibrated on / why not estimated", "LOO mean / max", "latency model"], estimate_rows(report)))

    rows = []
    acc = report["accuracy"]
    for a in (acc["stages"] + acc["exported"] + acc.get("extra_sets", [])
              + [{**report["reference"]["accuracy"], "stage": "reference"}]):
        m = a.get("status") == "measured"
        rows.append([a["stage"], fmt_acc(a), a.get("runtime", "") if m else "", a.get("dataset", "") if m else "",
                     a.get("protocol", "") if m else "", a.get("summary", "") if m else ""])
    note = ("all stages use the same dataset and protocol" if acc["same_protocol"]
            else "WARNING: stages use different datasets/protocols; not directly comparable")
    if acc.get("extra_sets"):
        note += "; bin:<stage>:<file> rows: that stage's model on an extra verification set (its own data set)"
    out.append(("Accuracy per stage", note, ["stage", "accuracy", "runtime", "dataset", "protocol", "summary"], rows))

    rows = []
    for s in report["stages"]:
        ok = s["status"] == "present"
        rows.append([s["stage"], s["dir"], s["status"], s.get("schedule", "") if ok else "",
                     _int(s["params"]) if ok else NOT_RUN, _int(s["macs"]) if ok else NOT_RUN,
                     s.get("provenance", "") if ok else ""])
    out.append(("Model size per stage", "", ["stage", "folder", "status", "schedule", "params", "MACs", "provenance"],
                rows))

    present = [s for s in report["stages"] if s["status"] == "present"]
    if present:
        n = max(len(s["layers"]) for s in present)
        rows = []
        for i in range(n):
            first = next(s["layers"][i] for s in present if i < len(s["layers"]))
            row = [str(i), first["operator"], "x".join(map(str, first["input"]))]
            for s in present:
                lay = s["layers"][i] if i < len(s["layers"]) else None
                row += [_int(lay["params"]), _int(lay["macs"])] if lay else ["", ""]
            rows.append(row)
        rows.append(["", "total", ""] + sum(([_int(s["params"]), _int(s["macs"])] for s in present), []))
        head = ["#", "operator", "input (CxHxW, first stage)"] + sum(
            ([f"{s['stage']} params", f"{s['stage']} MACs"] for s in present), [])
        out.append(("MACs and params per layer", present[0].get("provenance", ""), head, rows))

    rows = []
    for t in report["targets"]:
        for v in t["variants"]:
            on_board = v["latency"]["board"].get("parity")  # from run_on_board.py, via RUN/board/
            for c in v["export"].get("parity", []) + ([on_board] if on_board else []):
                if c.get("check"):
                    rows.append([v["key"], c["check"], str(c.get("n")), f"{c['cosine_mean']:.6f}",
                                 f"{c['cosine_min']:.6f}", str(c.get("reference")), str(c.get("runtime")),
                                 str(c.get("images")) + (f" ({c['warning']})" if c.get("warning") else "")])
    out.append(("Parity of the exported files", "measured on the export host, in the target's runtime (or its "
                "emulation) against PyTorch; check on_board: measured on the board by run_on_board.py; check emulated_arm64: "
                "run_on_board.py on an emulated Arm CPU (`compress emulate`, QEMU)", ["export", "check", "n", "cos mean", "cos min", "reference",
                                               "runtime", "faces"], rows or [["no exports", "", "", "", "", "", "", ""]]))

    rows = frame_rows(report, hosts)
    if rows:  # only when a board record has them (run_on_board.py --frame)
        out.append(("Robot frame measured on board", "run_on_board.py --frame: a 640x480 frame with one face, "
                    "detect + align + embed (flip) + match, per stage median / p90 ms; total also min (the least "
                    "disturbed run)", ["export", "photo", "detect", "align", "embed", "match", "total median / p90 / "
                                       "min", "detector", "embed runtime", "threads, templates", "measured on"], rows))

    rows = []
    ref_acc = report["reference"]["accuracy"]
    for t in report["targets"]:
        for v in t["variants"]:
            r = v["reference"]
            if all(x.get("status") == NOT_MEASURED for x in (r["here"], r["board"])) and v["export"]["status"] == NOT_RUN:
                continue
            rows.append([v["key"], fmt_latency(v["latency"]["here"], hosts), fmt_latency(r["here"], hosts),
                         fmt_ratio(r["ratio_here"]), fmt_latency(v["latency"]["board"], hosts),
                         fmt_latency(r["board"], hosts), fmt_ratio(r["ratio_board"])])
    out.append(("Reference model (" + report["reference"]["name"] + ")",
                f"reference accuracy: {fmt_acc(ref_acc)}" + (f" ({ref_acc['provenance']})" if ref_acc.get('provenance')
                                                             else "") + "; ratio = our median / reference median, "
                "same runtime and host only",
                ["export", "ours here", "reference here", "ratio here", "ours on board", "reference on board",
                 "ratio on board"], rows or [["none", "", "", "", "", "", ""]]))

    out.append(("Hosts", "", ["tag", "host"], [[tag, h] for h, tag in hosts.items()] or [["-", "no measurements"]]))
    return out


def frame_rows(report: dict[str, Any], hosts: dict[str, str]) -> list[list[str]]:
    """One row per export whose board record carries the whole-frame timing."""
    rows = []
    for t in report["targets"]:
        for v in t["variants"]:
            lat = v["latency"]["board"]
            f = lat.get("frame")
            if not f:
                continue
            st, tot, det = f["stages"], f["total"], f.get("detector") or {}
            cell = [f"{_ms(st[s].get('median_ms'))} / {_ms(st[s].get('p90_ms'))}" if s in st else "?"
                    for s in ("detect", "align", "embed", "match")]
            warn = " (NOT on the target board)" if (lat.get("board") or {}).get("on_target") is False else ""
            rows.append([v["key"], str(f.get("photo")), *cell,
                         f"{_ms(tot.get('median_ms'))} / {_ms(tot.get('p90_ms'))} / {_ms(tot.get('min_ms'))}",
                         f"{det.get('file')} at {det.get('detect_max_side')} (sha256 {str(det.get('sha256'))[:12]})",
                         str((f.get("stage_runtime") or {}).get("embed")), f"{f.get('threads')}, {f.get('templates')}",
                         f"{hosts.get(lat.get('host'), lat.get('host'))}{warn}"])
    return rows


# ---------------------------------------------------------------- plots
def _fig():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", bbox_inches="tight")  # keeps legends placed beside the axes
    return buf.getvalue()


def plot_accuracy_latency(report: dict[str, Any]) -> bytes | None:
    """Accuracy (%) vs latency (ms): one point per export with both numbers; marker = how latency was got.
    Accuracy is the exported model's; when absent, its source stage's (hollow marker, labelled so)."""
    stage_acc = {a["stage"]: a for a in report["accuracy"]["stages"]}
    pts = []
    for t in report["targets"]:
        for v in t["variants"]:
            a = v["accuracy"]
            hollow = False
            if a.get("status") != "measured":
                a = stage_acc.get(v["model"].get("stage") or "", {})
                hollow = True
            if a.get("status") != "measured":
                continue
            for kind, lat, marker in (("here", v["latency"]["here"], "o"), ("estimate", v["latency"]["estimate"], "^"),
                                      ("board", v["latency"]["board"], "s")):
                ms = lat.get("median_ms", lat.get("latency_ms"))
                if lat.get("status") in ("measured", "estimated", "measured on board") and isinstance(ms, (int, float)):
                    pts.append((v["key"], kind, float(ms), a["accuracy"], marker, hollow))
    ref = report["reference"]["accuracy"]
    if not pts:
        return None
    from matplotlib.lines import Line2D

    fig = _fig()
    fig.set_size_inches(10, 5)
    ax = fig.add_subplot(1, 1, 1)
    # No text next to points (they overlap where exports share a latency): colour names the export, the
    # marker how its latency was got, both in legends beside the axes.
    keys = sorted({p[0] for p in pts})
    colors = {k: _palette(i) for i, k in enumerate(keys)}
    for key, kind, ms, accv, marker, hollow in pts:
        ax.scatter([ms], [accv], marker=marker, s=55, edgecolors=colors[key], alpha=0.85,
                   facecolors="none" if hollow else colors[key])
    refs = {round(v["reference"]["here"]["median_ms"], 6) for t in report["targets"] for v in t["variants"]
            if v["reference"]["here"].get("status") == "measured"} if ref.get("status") == "measured" else set()
    for ms in sorted(refs):
        ax.scatter([ms], [ref["accuracy"]], marker="*", s=140, color="k")
    kinds = [Line2D([], [], marker=m, ls="", color="gray", label=lab) for m, lab in
             (("o", "measured on host"), ("^", "estimated on board"), ("s", "measured on board"))]
    if refs:
        kinds.append(Line2D([], [], marker="*", ls="", color="k", markersize=10,
                            label=f"{report['reference']['name']} (measured on host)"))
    kinds.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", color="gray",
                        label="hollow: accuracy of the source stage, not the export"))
    first = ax.legend(handles=kinds, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="latency",
                      title_fontsize=7)
    ax.add_artist(first)
    ax.legend(handles=[Line2D([], [], marker="o", ls="", color=colors[k], label=k) for k in keys], fontsize=7,
              loc="lower left", bbox_to_anchor=(1.01, 0.0), title="export (target-precision)", title_fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency, median ms (log scale)")
    ax.set_ylabel("verification accuracy, %")
    ax.set_title("Accuracy vs latency per target")
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)


def _palette(i: int) -> str:
    """Distinct colours for up to 20 exports (tab10 then tab20's light shades)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return cmap((2 * i) % 20 + (i // 10) % 2)


def plot_macs_per_layer(report: dict[str, Any]) -> bytes | None:
    present = [s for s in report["stages"] if s["status"] == "present"]
    if not present:
        return None
    import numpy as np

    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    n = max(len(s["layers"]) for s in present)
    width = 0.8 / len(present)
    for j, s in enumerate(present):
        macs = [lay["macs"] / 1e6 for lay in s["layers"]]
        ax.bar(np.arange(len(macs)) + (j - (len(present) - 1) / 2) * width, macs, width=width,
               label=f"{s['stage']} ({s['macs'] / 1e6:.1f} M MACs total)")
    ax.set_xticks(range(n))
    labels = [lay["operator"] for lay in max(present, key=lambda s: len(s["layers"]))["layers"]]
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("MACs (millions)")
    ax.set_title("MACs per layer")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_roc(report: dict[str, Any]) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """(one plot of every ROC stored as points, [(stage, stored PNG bytes)] for ROCs stored as images)."""
    entries = (report["accuracy"]["stages"] + report["accuracy"]["exported"] + [report["reference"]["accuracy"]])
    curves, pngs = [], []
    for a in entries:
        rd = a.get("roc_data")
        if not rd:
            continue
        if rd["kind"] == "png":
            try:
                pngs.append((a["stage"], Path(rd["path"]).read_bytes()))
            except OSError:
                pass
        else:
            curves.append((a["stage"], rd["fpr"], rd["tpr"], a.get("accuracy")))
    if not curves:
        return None, pngs
    fig = _fig()
    ax = fig.add_subplot(1, 1, 1)
    for stage, fpr, tpr, accv in curves:
        keep = [i for i, f in enumerate(fpr) if f > 0]
        ax.step([fpr[i] for i in keep], [tpr[i] for i in keep], where="post",
                label=f"{stage}" + (f" ({accv:.2f}%)" if accv is not None else ""))
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate (log scale)")
    ax.set_ylabel("true accept rate")
    ax.set_title("ROC (stored with the accuracy records)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig), pngs


def plots(report: dict[str, Any]) -> list[tuple[str, bytes | None, str]]:
    """(title, PNG bytes or None, note) for every plot."""
    roc, roc_pngs = plot_roc(report)
    out = [("Accuracy vs latency", plot_accuracy_latency(report),
            "no export has both an accuracy and a latency yet"),
           ("MACs per layer", plot_macs_per_layer(report), "no stage model in stages/"),
           ("ROC", roc, "no ROC data stored with the accuracy records" if not roc_pngs else "")]
    out += [(f"ROC ({stage}, stored image)", png, "") for stage, png in roc_pngs]
    return out


# ---------------------------------------------------------------- output formats
def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Compression report: {report['run_dir']}", "",
             f"Schema `{report['format']}`, written {report['created']} on {report['report_host']}.", "",
             "Labels: " + "; ".join(f"**{k}** = {v}" for k, v in report["labels"].items()), ""]
    for title, note, head, rows in tables(report):
        lines += [f"## {title}", ""]
        if note:
            lines += [note, ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
        lines.append("")
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {_md_cell(w)}" for w in report["warnings"]] + [""]
    lines += ["Plots: see report.html.", ""]
    return "\n".join(lines)


def _td(c: str) -> str:
    cls = ""
    if c in (NOT_MEASURED, NOT_RUN):
        cls = ' class="missing"'
    elif "estimated (" in c or "estimated [" in c or c.endswith("(estimated)"):
        cls = ' class="est"'
    elif "measured on board" in c:
        cls = ' class="board"'
    return f"<td{cls}>{html.escape(str(c))}</td>"


def to_html(report: dict[str, Any]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Compression report: {e(report['run_dir'])}</title>", f"<style>{CSS}</style></head><body>",
             f"<h1>Compression report: {e(report['run_dir'])}</h1>",
             f"<p class=\"small\">Schema <code>{e(report['format'])}</code>, written {e(report['created'])} on "
             f"{e(report['report_host'])}.</p>",
             "<ul class=\"small\">" + "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in report["labels"].items())
             + "</ul>"]
    tabs = tables(report)
    for title, note, head, rows in tabs[:1]:
        parts += _html_table(title, note, head, rows)
    parts.append("<h2>Plots</h2>")
    for title, png, note in plots(report):
        parts.append(f"<h3>{e(title)}</h3>")
        if png:
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(f'<img class="plot" alt="{e(title)}" src="data:image/png;base64,{b64}">')
        else:
            parts.append(f'<p class="missing">not shown: {e(note)}</p>')
    for title, note, head, rows in tabs[1:]:
        parts += _html_table(title, note, head, rows)
    if report["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f'<li class="warn">{e(w)}</li>' for w in report["warnings"])
                     + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_table(title: str, note: str, head: list[str], rows: list[list[str]]) -> list[str]:
    e = html.escape
    out = [f"<h2>{e(title)}</h2>"]
    if note:
        out.append(f'<p class="small">{e(note)}</p>')
    out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>")
    out += ["<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows]
    out.append("</tbody></table>")
    return out


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Collect run_dir and write report.md, report.html, report.json (each atomically) into out_dir
    (default RUN/report/). Returns the report dict plus "written": {kind: path}."""
    run = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run / REPORT
    names = {kind: report_file(out, kind) for kind in REPORT_FILES}
    if not overwrite:
        existing = [str(p) for p in names.values() if p.exists()]
        if existing:
            raise UserError(f"{existing[0]} already exists; pass overwrite=True or choose another out_dir")
    report = collect(run)
    json.dumps(report)  # fail before writing anything if something is not JSON-able
    write_json(names["json"], report)
    atomic_write_text(names["md"], to_markdown(report))
    atomic_write_text(names["html"], to_html(report))
    return {**report, "written": {k: str(p) for k, p in names.items()}}
