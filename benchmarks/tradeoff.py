"""One view of the accuracy / cost trade-off (issue 26, items 5-6): the MobileFaceNet teacher and every zoo entry,
with MACs, params, LFW, open-set rank-1 and DIR@FAR=1% at gallery 100, latency per runtime on this host (measured,
all models and runtimes in ONE interleaved run) and per board (estimated). Writes reports/tradeoff/tradeoff.json,
tradeoff.png and README.md; every figure there is read from a committed record or measured here, never typed in.

    .venv/bin/python benchmarks/tradeoff.py [--skip-latency] [--quick] [--exports-only] [--export-budget-s S]
        [--rerender] [--note TEXT]

Models: the teacher ONNX (--teacher; skipped with a note when absent) and every entry in compress/zoo/
(discovered, so new entries appear without an edit). Accuracy comes from each model's records: LFW from
reports/zoo/NAME-lfw.json (the teacher: reports/mfn/lfw-imported-teacher.json), open set from
reports/zoo/NAME-open-set.json or else the row of reports/identify/lfw_open_set.json whose sha256 is the model's;
a figure without a record is "not measured". Latency: each model exported through the project's own path
(compress.export.folders.export_artifact; int8 from the model quantized once with `compress quantize`'s defaults,
offline synthetic calibration, so no ../shared is needed) to onnxruntime (target onnx), OpenVINO (target intel-nuc) and LiteRT (target raspberry-pi-4),
float and int8, cached in runs/tradeoff/exports/ (remade when the source model's sha256 changes); each export
timed through compress.bench.latency's lowest-overhead call, batch 1, one thread, variants round-robin per round
(the starting variant rotates), median and p90 over every timed call. --exports-only makes the exports and stops
(they take minutes; the timing itself about 2-3 minutes, --quick a few seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.artifacts import atomic_write, atomic_write_text, file_sha256, host_description, now_iso, versions, write_json  # noqa: E402,E501
from compress.zoo import ZooEntry, family_of, list_entries  # noqa: E402

TEACHER = ROOT.parent / "shared" / "models" / "mobilefacenet-teacher" / "MobileFaceNet.onnx"
TEACHER_LFW = ROOT / "reports" / "mfn" / "lfw-imported-teacher.json"
IDENTIFY_OPEN_SET = ROOT / "reports" / "identify" / "lfw_open_set.json"
ZOO_REPORTS = ROOT / "reports" / "zoo"
OUT = ROOT / "reports" / "tradeoff"
EXPORTS = ROOT / "runs" / "tradeoff" / "exports"
QUANTIZED = ROOT / "runs" / "tradeoff" / "quantized"
GALLERY = "100"
NOT_MEASURED = "not measured"
# (column, runtime, precision as timed, export target, export precision). OpenVINO's float export is the
# intel-nuc target's fp16 IR (the target offers no fp32): fp16-compressed weights, which the CPU plugin computes
# at its inference precision (recorded per row; f32 on an x86 host without AVX512-FP16/AMX).
VARIANTS = (("onnxruntime fp32", "onnxruntime", "fp32", "onnx", "fp32"),
            ("onnxruntime int8", "onnxruntime", "int8", "onnx", "int8"),
            ("openvino fp32", "openvino", "fp32", "intel-nuc", "fp16"),
            ("openvino int8", "openvino", "int8", "intel-nuc", "int8"),
            ("litert fp32", "litert", "fp32", "raspberry-pi-4", "fp32"),
            ("litert int8", "litert", "int8", "raspberry-pi-4", "int8"))
COLUMNS = tuple(v[0] for v in VARIANTS)
SOURCE_ONNX = "onnxruntime, the source ONNX as shipped"  # timed too for an ONNX model: not a table column
# The exports are only timed here (accuracy comes from the records), so their parity check (export vs PyTorch
# float, recorded in each export's parity.json) runs on a few synthetic faces instead of the exporter's 256.
PARITY_FACES = 16
TIMING = {"full": {"rounds": 8, "seconds": 0.2}, "quick": {"rounds": 2, "seconds": 0.03}}


@dataclass
class Model:
    """One row's model: what it is called, where its file and records are."""
    name: str  # "teacher" or zoo:NAME
    spec: str  # what export_artifact / load_model take
    family: str
    sha256: str  # of the file a user passes (the ONNX, or the zoo model.pt)
    file: str
    lfw_record: Path
    open_set_records: list[Path] = field(default_factory=list)
    label: str = ""  # folder-name part for its exports


# ------------------------------------------------------------------ discovery (pure but for file reads)
def zoo_model(e: ZooEntry) -> Model:
    return Model(name=e.spec, spec=e.spec, family=family_of(e.manifest), sha256=e.sha256,
                 file=str(e.model_file.relative_to(ROOT) if ROOT in e.model_file.parents else e.model_file),
                 lfw_record=ROOT / e.manifest["lfw"]["record"],
                 open_set_records=[ZOO_REPORTS / f"{e.name}-open-set.json", IDENTIFY_OPEN_SET],
                 label=f"zoo-{e.name}")


def teacher_model(path: Path, family: str) -> Model:
    return Model(name="teacher", spec=str(path), family=family, sha256=file_sha256(path), file=_rel(path),
                 lfw_record=TEACHER_LFW, open_set_records=[IDENTIFY_OPEN_SET], label="teacher")


def discover(teacher: Path) -> tuple[list[Model], list[str]]:
    """(the teacher when its file exists, then every zoo entry; notes on what was left out)."""
    models, notes = [], []
    if teacher.is_file():
        from compress.model.io import load_model

        models.append(teacher_model(teacher, family_of({"schedule": load_model(teacher).schedule.to_dict()})))
    else:
        notes.append(f"teacher {teacher} not found: its row is left out (pass --teacher, or put ../shared beside "
                     "the repository)")
    return models + [zoo_model(e) for e in list_entries()], notes


# ------------------------------------------------------------------ records -> figures
def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rel(p: Path) -> str:
    """A path as the repository sees it (../shared/... for the data beside it)."""
    p = Path(p).resolve()
    if ROOT in p.parents:
        return str(p.relative_to(ROOT))
    return f"../{p.relative_to(ROOT.parent)}" if ROOT.parent in p.parents else str(p)


def lfw_figures(record: Path, sha256: str) -> dict[str, Any]:
    """LFW 10-fold flip mean +- std from a committed record, with what produced it; "not measured" without one.
    A record naming another model file's sha256 is refused (it measured something else)."""
    doc = _read(record)
    if doc is None or "flip" not in doc.get("results", {}):
        return {"status": NOT_MEASURED, "why": f"no LFW record at {_rel(record)}"}
    named = doc.get("model_sha256")
    if named and named != sha256:
        return {"status": NOT_MEASURED, "why": f"{_rel(record)} is for sha256 {named[:12]}, not this model's "
                                               f"{sha256[:12]}: re-run its evaluation"}
    f = doc["results"]["flip"]
    return {"status": "measured", "accuracy_mean": f["accuracy_mean"], "accuracy_std": f["accuracy_std"],
            "tar_at_far_1e-3": f.get("tar_at_far", {}).get("1e-3"), "record": _rel(record),
            "record_names_sha256": bool(named), "record_model": doc.get("model"), "dataset": doc.get("dataset"), "protocol": doc.get("protocol"),
            "flip_fusion": "flip", "aligner": doc.get("aligner"), "runtime": doc.get("runtime"),
            "host": doc.get("host"), "measured": "measured (committed record)"}


def _open_set_row(doc: dict[str, Any], sha256: str, per_model: bool) -> tuple[dict[str, Any] | None, str]:
    """The record's row for this model: the row naming its sha256; in a per-model file also a sole row that
    names no sha256. (row, why not)."""
    rows = doc.get("models") if isinstance(doc.get("models"), list) else [doc]
    for r in rows:
        if r.get("sha256") == sha256 and GALLERY in r.get("results", {}):
            return r, ""
    named = [r.get("sha256") for r in rows if r.get("sha256")]
    if per_model and len(rows) == 1 and not named and GALLERY in rows[0].get("results", {}):
        return rows[0], ""
    return None, (f"no row for sha256 {sha256[:12]} at gallery {GALLERY}" if not named or not per_model
                  else f"it is for sha256 {named[0][:12]}, not this model's {sha256[:12]}")


def open_set_figures(candidates: list[Path], sha256: str) -> dict[str, Any]:
    """Rank-1 and DIR@FAR=1% at gallery 100 from the first record holding this model; else "not measured"."""
    whys = []
    for path in candidates:
        doc = _read(path)
        if doc is None:
            whys.append(f"{_rel(path)}: absent")
            continue
        row, why = _open_set_row(doc, sha256, per_model=path.parent == ZOO_REPORTS)
        if row is None:
            whys.append(f"{_rel(path)}: {why}")
            continue
        g = row["results"][GALLERY]
        return {"status": "measured", "gallery": int(GALLERY), "rank1": g["rank1"], "rank1_std": g.get("rank1_std"),
                "dir_at_far_1e-2": g["dir@far=0.01"], "dir_at_far_1e-2_std": g.get("dir@far=0.01_std"),
                "draws": g.get("draws"), "record": _rel(path), "record_row": row.get("model") or row.get("name"),
                "runtime": row.get("runtime"), "precision": row.get("precision"), "dataset": doc.get("dataset"),
                "protocol": doc.get("protocol"), "host": doc.get("host"), "measured": "measured (committed record)"}
    return {"status": NOT_MEASURED, "why": "; ".join(whys)}


# ------------------------------------------------------------------ complexity and board estimates
def complexity(model: Model) -> dict[str, Any]:
    """Params and MACs counted as `compress models` / zoo_build count them, on the loaded network."""
    from compress.model.complexity import MAC_SOURCE, count_macs
    from compress.model.io import load_model

    net = load_model(model.spec).eval()
    s = net.schedule
    return {"params": sum(p.numel() for p in net.parameters()),
            "macs": count_macs(net, (3, s.input_size, s.input_size)), "schedule": s.name,
            "counted_by": f"{MAC_SOURCE}, batch 1, {s.input_size}x{s.input_size}"}


def board_estimates(model: Model) -> dict[str, Any]:
    """compress.bench.estimate per board at the board's default precision (estimated, never measured)."""
    from compress.bench.estimate import estimate_latency
    from compress.model.io import load_model
    from compress.targets import list_targets

    net = load_model(model.spec).eval()
    out = {}
    for t in list_targets():
        if t.hardware is None:  # a board-less target (plain onnx) has nothing to estimate from
            continue
        d = estimate_latency(net, t)
        out[t.name] = {"precision": d["precision"], "estimate_ms": d["estimate_ms"], "status": d["status"],
                       "measured": "estimated (compress.bench.estimate, per-layer model from published references)",
                       "loo_mean_abs_rel_error": d["loo"].get("mean_abs_rel_error"), "label": d["label"]}
    return out


# ------------------------------------------------------------------ exports and the interleaved timing
def ensure_quantized(model: Model, progress: bool) -> Path:
    """The model's int8 artifact (`compress quantize` with its defaults: PTQ, offline synthetic calibration), made
    once and exported to every int8 target, unless one made from the same model file is already there."""
    from compress.model.io import resolve_model_file
    from compress.quantize import quantize_artifact

    out = QUANTIZED / model.label
    src_sha = file_sha256(resolve_model_file(model.spec))
    m = _read(out / "manifest.json")
    if m and (m.get("source_model") or {}).get("sha256") == src_sha:
        return out
    t0 = time.perf_counter()
    quantize_artifact(model.spec, out, threads=1, progress=False, overwrite=out.exists())
    if progress:
        print(f"quantized {model.name} -> {_rel(out)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def ensure_export(model: Model, target: str, precision: str, progress: bool) -> Path:
    """The export folder of (model, target, precision), made by the project's exporter (int8: from the model's
    quantized artifact) unless one made from the same source (sha256) is already there."""
    from compress.artifacts import tree_sha256
    from compress.export.folders import export_artifact
    from compress.model.io import resolve_model_file

    out = EXPORTS / f"{model.label}-{target}-{precision}"
    source = ensure_quantized(model, progress) if precision == "int8" else resolve_model_file(model.spec)
    m = _read(out / "manifest.json")
    if m and (m.get("source") or {}).get("sha256") == tree_sha256(source) and (out / m.get("model_file", "?")).is_file():
        return out
    t0 = time.perf_counter()
    export_artifact(source, target, out=out, precision=precision, threads=1, overwrite=out.exists(),
                    progress=False, n_parity=PARITY_FACES)
    if progress:
        print(f"exported {model.name} -> {_rel(out)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


@dataclass
class Variant:
    model: str
    column: str
    folder: Path
    call: Callable[[], Any]
    info: dict[str, Any]
    times: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)


def load_variant(model: Model, column: str, folder: Path) -> Variant:
    """A prepared call (runtime only, one fixed face, one thread) through compress.bench.latency."""
    from compress.artifacts import _pkg
    from compress.bench.latency import CALLS, RUNTIME_PACKAGES, _kernel_note, _prepared, _runtime_of

    manifest, mfile, runner, call = _prepared(folder, threads=1)
    rt = _runtime_of(mfile)
    info = {"runtime": rt, "runtime_version": _pkg(RUNTIME_PACKAGES[rt]), "call": CALLS[rt],
            "export": _rel(folder), "export_target": (manifest.get("target") or {}).get("name"),
            "export_precision": manifest.get("precision", "as stored"), "exported_file_sha256": file_sha256(mfile),
            "source_sha256": model.sha256, **_kernel_note(runner)}
    if rt == "openvino" and hasattr(runner, "compiled"):
        try:
            hint = runner.compiled.get_property("INFERENCE_PRECISION_HINT")
            info["openvino_inference_precision"] = getattr(hint, "get_type_name", lambda: str(hint))()
        except Exception as e:  # an older plugin without the property: say so rather than guess
            info["openvino_inference_precision"] = f"not read ({type(e).__name__})"
    info["int8_execution"] = getattr(runner, "int8", "none")
    return Variant(model.name, column, folder, call, info)


def interleave(variants: list[Variant], rounds: int, seconds: float) -> None:
    """Every variant timed in every round, round-robin, the first variant rotating, so load and clock drift on
    a shared host fall on all alike. Raw call times kept (median and p90 over all of them)."""
    for v in variants:  # warm-up: first calls allocate and JIT
        for _ in range(5):
            v.call()
    n = len(variants)
    for r in range(rounds):
        for k in range(n):
            v = variants[(r + k) % n]
            v.call()
            got: list[float] = []
            end = time.perf_counter() + seconds
            while len(got) < 3 or time.perf_counter() < end:
                t0 = time.perf_counter()
                v.call()
                got.append(time.perf_counter() - t0)
            v.times += got
            v.round_medians.append(sorted(got)[len(got) // 2] * 1e3)


def make_exports(models: list[Model], budget_s: float | None, progress: bool) -> dict[tuple[str, str], Path | str]:
    """{(model, column): export folder, or why there is none}, runtime by runtime (an interrupted or budgeted run
    leaves whole columns). budget_s: no new export starts after that many seconds (None: make them all)."""
    t0, out = time.perf_counter(), {}
    for column, _, _, target, prec in VARIANTS:
        for m in models:
            cached = EXPORTS / f"{m.label}-{target}-{prec}"
            if budget_s is not None and time.perf_counter() - t0 > budget_s and not (cached / "manifest.json").is_file():
                out[(m.name, column)] = (f"no export yet (the run's --export-budget-s {budget_s:g} s ran out): run "
                                         "--exports-only, then this again")
                continue
            out[(m.name, column)] = ensure_export(m, target, prec, progress)
    return out


def measure_latency(models: list[Model], rounds: int, seconds: float, progress: bool, budget_s: float | None = None
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """{model name: {column: figures}}, and what the run was (host, flags, settings, wall time)."""
    import numpy as np

    from compress.bench.frame import cpu_flags
    from compress.recipe import QuantizeConfig

    t_exp = time.perf_counter()
    folders = make_exports(models, budget_s, progress)
    export_s = time.perf_counter() - t_exp
    variants, missing = [], {}
    for m in models:
        for column in COLUMNS:
            f = folders[(m.name, column)]
            if isinstance(f, Path):
                variants.append(load_variant(m, column, f))
            else:
                missing[(m.name, column)] = f
        if m.spec.lower().endswith(".onnx"):  # the source file itself, a check on the project's fp32 export
            variants.append(load_variant(m, SOURCE_ONNX, Path(m.spec)))
    load0, t0 = os.getloadavg(), time.perf_counter()
    interleave(variants, rounds, seconds)
    wall = time.perf_counter() - t0
    out: dict[str, dict[str, Any]] = {m.name: {} for m in models}
    for (name, column), why in missing.items():
        out[name][column] = {"status": NOT_MEASURED, "why": why}
    for v in variants:
        ms = np.asarray(v.times) * 1e3
        out[v.model][v.column] = {"status": "measured", "median_ms": round(float(np.median(ms)), 4),
                                  "p90_ms": round(float(np.percentile(ms, 90)), 4), "runs": len(ms),
                                  "round_medians_ms": [round(x, 4) for x in v.round_medians],
                                  "measured": f"measured on {host_description()} (latency_run)", **v.info}
    run = {"measured": "measured on this host, one interleaved run", "host": host_description(),
           "cpu_flags": cpu_flags(), "threads": 1, "batch": 1, "input": "one fixed random 112x112 face, prepared "
           "before timing (runtime call only)", "rounds": rounds, "seconds_per_variant_per_round": seconds,
           "variants": len(variants), "order": "round-robin over every (model, runtime, precision), the first "
           "rotating by one each round", "timing_wall_s": round(wall, 1), "exports_wall_s": round(export_s, 1),
           "load_average_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
           "versions": versions(),
           "exports": {"made_by": "compress.export.folders.export_artifact (cached in runs/tradeoff/exports)",
                       "int8": "each model quantized once by compress.quantize.quantize_artifact with its defaults "
                               f"(NNCF PTQ, {QuantizeConfig.images} synthetic calibration faces; "
                               "runs/tradeoff/quantized), then exported to each int8 target",
                       "parity_check": f"{PARITY_FACES} synthetic faces (the exports are timed only)"}}
    return out, run


def not_measured_latency(why: str) -> dict[str, Any]:
    return {c: {"status": NOT_MEASURED, "why": why} for c in COLUMNS}


# ------------------------------------------------------------------ rows, table, plot, README
def build_row(model: Model, cx: dict[str, Any], latency: dict[str, Any], estimates: dict[str, Any]
              ) -> dict[str, Any]:
    """One model's row: every figure with what produced it."""
    return {"model": model.name, "family": model.family, "file": model.file, "sha256": model.sha256,
            "schedule": cx.get("schedule"), "params": cx.get("params"), "macs": cx.get("macs"),
            "complexity_counted_by": cx.get("counted_by"),
            "lfw": lfw_figures(model.lfw_record, model.sha256),
            "open_set": open_set_figures(model.open_set_records, model.sha256),
            "latency": latency, "board_estimates": estimates}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _lfw(r: dict[str, Any]) -> str:
    f = r["lfw"]
    return f"{_pct(f['accuracy_mean'])} +- {_pct(f['accuracy_std'])}" if f["status"] == "measured" else NOT_MEASURED


def _os(r: dict[str, Any], key: str) -> str:
    o = r["open_set"]
    if o["status"] != "measured":
        return NOT_MEASURED
    sd = o.get(f"{key}_std")
    return _pct(o[key]) + ("" if sd is None else f" +- {_pct(sd)}")


def _lat(r: dict[str, Any], column: str) -> str:
    v = r["latency"].get(column, {})
    return f"{v['median_ms']:.2f} / {v['p90_ms']:.2f}" if v.get("status") == "measured" else NOT_MEASURED


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """The README's tables, generated from the rows (accuracy and cost; latency here; estimated per board)."""
    out = ["| model | family | params | MACs | LFW % (flip, 10-fold) | rank-1 % @100 | DIR@FAR=1% @100 |",
           "|---|---|---:|---:|---|---|---|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['family']} | {r['params']:,} | {r['macs']:,} | {_lfw(r)} | "
                   f"{_os(r, 'rank1')} | {_os(r, 'dir_at_far_1e-2')} |")
    out += ["", "Latency on this host, ms, median / p90 (batch 1, one thread, one interleaved run):", "",
            "| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        out.append(f"| {r['model']} | " + " | ".join(_lat(r, c) for c in COLUMNS) + " |")
    boards = sorted({b for r in rows for b in r["board_estimates"]})
    if boards:
        precs = {b: next(r["board_estimates"][b]["precision"] for r in rows if b in r["board_estimates"])
                 for b in boards}
        out += ["", "Estimated latency per board, ms (compress.bench.estimate at the board's default precision; "
                "estimated, not measured):", "", "| model | " + " | ".join(f"{b} {precs[b]}" for b in boards) + " |",
                "|---|" + "---:|" * len(boards)]
        for r in rows:
            cells = []
            for b in boards:
                e = r["board_estimates"].get(b, {})
                cells.append("-" if e.get("estimate_ms") is None else f"{e['estimate_ms']:.2f}")
            out.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


FAMILY_COLOURS = {"mobilefacenet": "tab:blue", "paper": "tab:orange"}


def plot(rows: list[dict[str, Any]], path: Path, host: str) -> None:
    """LFW (and rank-1 @100 where known) against MACs, log x; LFW against onnxruntime int8 latency here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter, LogLocator

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5.2))
    seen: dict[tuple[str, float], int] = {}

    def label(ax, x: float, y: float, text: str, panel: str) -> None:
        key = (panel, round(math.log10(x), 1))  # models at (nearly) the same x on a log axis: labels stacked
        k = seen[key] = seen.get(key, -1) + 1
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 4 - 11 * k), fontsize=8)

    for r in rows:
        c = FAMILY_COLOURS.get(r["family"], "tab:gray")
        lfw, os_ = r["lfw"], r["open_set"]
        if lfw["status"] == "measured":
            a.errorbar(r["macs"], 100 * lfw["accuracy_mean"], yerr=100 * lfw["accuracy_std"], fmt="o", color=c,
                       capsize=3)
            label(a, r["macs"], 100 * lfw["accuracy_mean"], r["model"], "macs")
        if os_["status"] == "measured":
            a.plot(r["macs"], 100 * os_["rank1"], "s", mfc="none", color=c)
            a.annotate(f"{r['model']} rank-1", (r["macs"], 100 * os_["rank1"]), textcoords="offset points",
                       xytext=(6, -10), fontsize=7, color="dimgray")
        lat = r["latency"].get("onnxruntime int8", {})
        if lfw["status"] == "measured" and lat.get("status") == "measured":
            b.plot(lat["median_ms"], 100 * lfw["accuracy_mean"], "o", color=c)
            label(b, lat["median_ms"], 100 * lfw["accuracy_mean"], r["model"], "ms")
    a.set_xscale("log")
    a.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    a.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:g}M"))
    a.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    lo, hi = a.get_xlim()
    a.set_xlim(lo, hi * 1.6)  # room for the right-most labels
    a.set_xlabel("MACs (ptflops, batch 1, 112x112; log scale)")
    a.set_ylabel("%")
    a.set_title("LFW 10-fold flip (filled, +- std); rank-1 @100 people (open squares)", fontsize=9)
    a.grid(True, which="both", alpha=0.3)
    for fam, c in FAMILY_COLOURS.items():
        a.plot([], [], "o", color=c, label=fam)
    a.legend(fontsize=8, loc="lower right")
    b.set_xlabel(f"onnxruntime int8 latency, ms (median, batch 1, 1 thread; measured on {host})", fontsize=8)
    b.set_ylabel("LFW % (flip)")
    b.set_title("LFW against measured latency", fontsize=9)
    b.grid(True, which="both", alpha=0.3)
    if b.lines:
        b.set_xscale("log")
        b.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        b.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        b.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
        lo, hi = b.get_xlim()
        b.set_xlim(lo, hi * 1.6)
    else:
        b.text(0.5, 0.5, "latency not measured (--skip-latency)", ha="center", transform=b.transAxes)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def readme(doc: dict[str, Any]) -> str:
    rows = doc["rows"]
    lat = doc["latency_run"]
    lat_line = (f"Latency ({lat.get('mode')}): {lat['measured']} on {lat['host']} (CPU flags: {', '.join(lat['cpu_flags']) or 'none read'}), "
                f"{lat['threads']} thread, batch {lat['batch']}, {lat['variants']} variants x {lat['rounds']} rounds of "
                f"{lat['seconds_per_variant_per_round']} s ({lat['timing_wall_s']} s of timing), load average "
                f"{lat['load_average_before_after'][0]} before / {lat['load_average_before_after'][1]} after; "
                f"versions: {', '.join(f'{k} {v}' for k, v in lat['runtime_versions'].items())}."
                + (f" Note: {lat['note']}." if lat.get("note") else "")
                if lat.get("measured") else f"Latency: {lat['why']}.")
    ov_prec = sorted({r["latency"].get("openvino fp32", {}).get("openvino_inference_precision") for r in rows} - {None})
    int8_notes = sorted({v.get("int8_kernels") for r in rows for v in r["latency"].values() if v.get("int8_kernels")})
    notes = [f"- {n}" for n in doc["notes"]]
    for r in rows:
        src, exp = r["latency"].get(SOURCE_ONNX), r["latency"].get("onnxruntime fp32", {})
        if src and src.get("status") == "measured" and exp.get("status") == "measured":
            notes.append(f"- {r['model']}: its source ONNX as shipped, timed in the same run through onnxruntime: "
                         f"{src['median_ms']:.2f} / {src['p90_ms']:.2f} ms (the project's fp32 export: "
                         f"{exp['median_ms']:.2f} / {exp['p90_ms']:.2f} ms)")
    missing: dict[str, list[str]] = {}
    for r in rows if lat.get("measured") else []:  # with --skip-latency every cell is missing, said above
        for c in COLUMNS:
            v = r["latency"].get(c, {})
            if v.get("status") == NOT_MEASURED:
                why = v.get("why", "").removeprefix(f"{NOT_MEASURED}: ")
                missing.setdefault(why, []).append(f"{r['model']} {c}")
    notes += [f"- Latency not measured for {', '.join(cells)}: {why}" for why, cells in missing.items()]
    notes = "\n".join(notes)
    return f"""# The accuracy / cost trade-off (issue 26, items 5-6)

Generated by `benchmarks/tradeoff.py` on {doc['created']}; every figure comes from `tradeoff.json` (which names,
per figure, the record or run that produced it and the model's sha256). Do not edit by hand: re-run the script.

![trade-off](tradeoff.png)

{markdown_tables(rows)}

## What produced these figures
- Models: the MobileFaceNet teacher (ONNX, imported into the project's network for MACs and exports) and every
  entry of `compress/zoo/` (found by `compress.zoo.list_entries`). Family (`compress models` shows it):
  mobilefacenet = the GDC-head network and what is pruned from it; paper = the paper's Table 2 and what is pruned
  from it (Table 3).
- Params / MACs: {rows[0]['complexity_counted_by'] if rows else ''} (as `compress models` counts them).
- LFW: deep-funneled View 2, 6000 pairs, 10-fold, flip fusion, through the project's aligner; read from each
  model's committed record (`reports/zoo/NAME-lfw.json`; the teacher: `reports/mfn/lfw-imported-teacher.json`).
- Rank-1 and DIR@FAR=1% at a gallery of 100 people (mean +- std over 10 random galleries), open set on all of LFW
  (`benchmarks/lfw_open_set.py` protocol): from `reports/zoo/NAME-open-set.json`, else the row of
  `reports/identify/lfw_open_set.json` whose sha256 is the model's; "not measured" where no record holds it.
- {lat_line}
  Each model is exported by the project's exporter (`compress.export.folders.export_artifact`: targets onnx,
  intel-nuc, raspberry-pi-4; int8 from the model quantized once by `compress quantize`'s defaults: PTQ, offline
  synthetic calibration faces) into `runs/tradeoff/exports/`, and timed through `compress.bench.latency`'s call per runtime. "openvino fp32"
  is the intel-nuc target's float IR (fp16-compressed weights; the CPU plugin's inference precision here:
  {', '.join(ov_prec) or 'not read'}).{' int8 on this host: ' + '; '.join(int8_notes) + '.' if int8_notes else ''}
- Per board: `compress.bench.estimate` (a per-layer model calibrated on published references), at each board's
  default precision; estimated, not measured (each estimate's label and leave-one-out error are in the JSON).
{notes}

## Reproduce
```
.venv/bin/python benchmarks/tradeoff.py --exports-only   # the exports (minutes, cached in runs/tradeoff/exports)
.venv/bin/python benchmarks/tradeoff.py                  # timing (~{max(1, round(lat.get('timing_wall_s', 60) / 60))} min) + records -> reports/tradeoff/
.venv/bin/python benchmarks/tradeoff.py --skip-latency   # tables and plot from the records only (seconds)
.venv/bin/python benchmarks/tradeoff.py --rerender       # README and plot again from tradeoff.json
```
Run the timing on an otherwise idle host (pause other CPU jobs; `--export-budget-s S` starts no new export after
S seconds, so a paused window stays short); a new zoo entry appears on the next run, and with it its records:
`reports/zoo/NAME-lfw.json` and `reports/zoo/NAME-open-set.json` (the `benchmarks/lfw_open_set.py` format: a
`models` row naming the entry's sha256, or a sole row, with `results["100"]` rank1 / dir@far=0.01).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, default=TEACHER, help="the teacher ONNX [../shared/models/...]")
    ap.add_argument("--skip-latency", action="store_true", help="no exports, no timing: records and estimates only")
    ap.add_argument("--quick", action="store_true", help="few, short rounds (a smoke test; the figures are rough)")
    ap.add_argument("--exports-only", action="store_true", help="make the cached exports and stop")
    ap.add_argument("--export-budget-s", type=float, help="start no new export after this many seconds; what is "
                    "missing then is 'not measured' (keeps a run with other jobs paused short) [no limit]")
    ap.add_argument("--rerender", action="store_true", help="rewrite README.md and tradeoff.png from the "
                    "existing tradeoff.json (no new figures)")
    ap.add_argument("--note", default="", help="recorded with the timing, e.g. what else ran on the host")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    if a.skip_latency and a.exports_only:
        raise SystemExit("--skip-latency and --exports-only contradict each other: pass one")
    t0 = time.perf_counter()
    if a.rerender:
        doc = _read(a.out / "tradeoff.json")
        if doc is None:
            raise SystemExit(f"--rerender needs {a.out / 'tradeoff.json'}: run without --rerender first")
        plot(doc["rows"], a.out / "tradeoff.png", doc["latency_run"].get("host", doc["host"]))
        atomic_write_text(a.out / "README.md", readme(doc))
        print(f"rewrote {_rel(a.out)}/README.md and tradeoff.png from tradeoff.json ({doc['created']})")
        return
    models, notes = discover(a.teacher)
    if a.exports_only:
        for _, _, _, target, prec in VARIANTS:  # runtime by runtime: an interrupted run leaves whole columns
            for m in models:
                ensure_export(m, target, prec, progress=True)
        print(f"exports ready in {_rel(EXPORTS)} ({time.perf_counter() - t0:.0f} s)")
        return
    if a.skip_latency:
        latency = {m.name: not_measured_latency("--skip-latency") for m in models}
        run: dict[str, Any] = {"why": "not measured (run with --skip-latency)"}
    else:
        mode = TIMING["quick" if a.quick else "full"]
        latency, run = measure_latency(models, mode["rounds"], mode["seconds"], progress=True,
                                       budget_s=a.export_budget_s)
        run["runtime_versions"] = {k: v for k, v in {
            "onnxruntime": _pkg_version("onnxruntime"), "openvino": _pkg_version("openvino"),
            "ai-edge-litert": _pkg_version("ai-edge-litert")}.items()}
        run["mode"] = "quick (rough: few short rounds)" if a.quick else "full"
        if a.note:
            run["note"] = a.note
    rows = [build_row(m, complexity(m), latency[m.name], board_estimates(m)) for m in models]
    doc = {"format": "compress.tradeoff/1", "created": now_iso(), "generated_by": "benchmarks/tradeoff.py",
           "host": host_description(), "columns": list(COLUMNS), "notes": notes, "latency_run": run,
           "rows": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    write_json(a.out / "tradeoff.json", doc)
    plot(rows, a.out / "tradeoff.png", doc["host"])
    atomic_write_text(a.out / "README.md", readme(doc))
    print(markdown_tables(rows))
    print(f"wrote {_rel(a.out)}/tradeoff.json, tradeoff.png, README.md ({doc['wall_s']} s)")


def _pkg_version(name: str) -> str:
    from compress.artifacts import _pkg

    return _pkg(name) or "not installed"


if __name__ == "__main__":
    main()
