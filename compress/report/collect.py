"""collect(run_dir): everything a pipeline run measured, per target board, as one JSON-able dict.

Nothing is computed that was not measured, except MACs/params (counted from the stage models) and ratios of
two measured numbers. A missing input is an explicit {"status": "not run"} / {"status": "not measured"} entry,
and every number carries a "provenance" string: "measured on <host>", "estimated (...)", "measured on board
(<host>)", or the dataset + protocol of an accuracy. The layout of the run folder is documented in
compress.report.schema (the names: compress.run_folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import host_description, now_iso
from ..errors import UserError
from ..run_folder import (ACCURACY, BENCH, BOARD, ESTIMATES, EXPORTS, REFERENCE, STAGES, reference_accuracy_file,
                          stage_dir)
from ..targets import Target, list_targets
from .schema import (BENCH_FORMAT, BIN_PREFIX, EXPORTED_PREFIX, REFERENCE_STAGE, REPORT_FORMAT, STAGE_DIRS,
                     STAGE_ORDER, exported_stage, read_json, runtime_label, validate_accuracy)

NOT_RUN = "not run"
NOT_MEASURED = "not measured"
MEASURED_HERE = "measured"
MEASURED_BOARD = "measured on board"
# `compress emulate`: the bundle's runner on an emulated Arm CPU (QEMU). Its parity is the Arm kernels'; its
# timing is the emulator's, so it is never shown, gated, plotted or compared as a latency.
EMULATED = "emulated arm64 (QEMU)"
ESTIMATED = "estimated"
_EXCLUDED_FILES = {"manifest.json", "parity.json"}


# ---------------------------------------------------------------- small helpers
def _rel(path: Path, run: Path) -> str:
    try:
        return str(path.resolve().relative_to(run.resolve()))
    except ValueError:
        return str(path)


def _json_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _key_from_name(stem: str, targets: list[Target]) -> tuple[str | None, str | None]:
    """'<target>-<precision>' -> (target, precision) for a known target; (None, None) otherwise."""
    for t in sorted(targets, key=lambda t: -len(t.name)):
        if stem.startswith(t.name + "-"):
            return t.name, stem[len(t.name) + 1:]
    return None, None


def _bench_records(folder: Path, run: Path, targets: list[Target], warnings: list[str]) -> list[dict[str, Any]]:
    """compress.bench/1 records in folder, flattened (a `bench_compare` file gives one record per row), each
    with "_file" and "_target"/"_precision" (from the record, else from the file name)."""
    out = []
    for f in _json_files(folder):
        r = read_json(f)
        if r.get("format") != BENCH_FORMAT:
            warnings.append(f"{_rel(f, run)}: not a {BENCH_FORMAT} record (format {r.get('format')!r}); ignored")
            continue
        rows = [{**{k: v for k, v in r.items() if k != "rows"}, **row} for row in r["rows"]] if "rows" in r else [r]
        ft, fp = _key_from_name(f.stem, targets)
        for row in rows:
            if "median_ms" not in row:
                warnings.append(f"{_rel(f, run)}: bench record without median_ms; ignored")
                continue
            row["_file"] = _rel(f, run)
            row["_target"] = row.get("target") or ft
            row["_precision"] = row.get("precision") or fp
            out.append(row)
    return out


def _latency(rec: dict[str, Any] | None, status: str) -> dict[str, Any]:
    if rec is None:
        return {"status": NOT_MEASURED}
    host = rec.get("measured_on") or "unknown host"
    prov = {MEASURED_BOARD: f"measured on board ({host})", EMULATED: f"{rec.get('measured')} ({host})"}.get(
        status, f"measured on {host}")
    out = {"status": status, "provenance": prov, "median_ms": float(rec["median_ms"]),
           "p90_ms": None if rec.get("p90_ms") is None else float(rec["p90_ms"]),
           "runtime": rec.get("runtime"), "runtime_version": rec.get("runtime_version"), "host": host,
           "precision": rec.get("_precision") or rec.get("precision"),
           "threads": rec.get("threads"), "batch": rec.get("batch", 1), "runs": rec.get("runs"),
           "stable": rec.get("stable"), "timed": rec.get("timed"), "created": rec.get("created"),
           "model_sha256": rec.get("model_sha256"), "file": rec["_file"]}
    if rec.get("stable") is False:
        out["warning"] = f"median not settled (halves differ by {rec.get('half_drift')})"
    if status == EMULATED:
        out.update(emulated=rec.get("emulated"), timing="not meaningful (QEMU's translated code on the host)")
    if status in (MEASURED_BOARD, EMULATED):
        _board_fields(rec, out, "emulated_arm64" if status == EMULATED else "on_board")
    return out


def _board_fields(rec: dict[str, Any], out: dict[str, Any], check: str = "on_board") -> None:
    """What run_on_board.py adds to a board record: the board's identity and the parity measured there."""
    board = rec.get("board") if isinstance(rec.get("board"), dict) else {}
    if board:
        out["board"] = board
    if board.get("on_target") is False:  # the runner found another machine than the target board
        out["provenance"] = rec.get("measured") or "NOT measured on the target board"
        out["warning"] = f"{rec['_file']}: {out['provenance']}"
    frame = rec.get("frame")
    if isinstance(frame, dict) and isinstance(frame.get("stages"), dict) and isinstance(frame.get("total"), dict):
        # run_on_board.py --frame: the robot's whole frame (detect, align, embed, match), per stage
        out["frame"] = {**frame, "provenance": f"{out['provenance']}: run_on_board.py --frame"}
    par = rec.get("parity") if isinstance(rec.get("parity"), dict) else {}
    if isinstance(par.get("cosine_mean"), (int, float)) and isinstance(par.get("cosine_min"), (int, float)):
        out["parity"] = {"check": check, **{k: par.get(k) for k in (
            "cosine_mean", "cosine_min", "n", "reference", "runtime", "images")},
            "provenance": f"{out['provenance']}: {par.get('runtime')} vs the PyTorch float embeddings stored in "
                          f"the bundle (run_on_board.py)"}


def _estimate(rec: dict[str, Any] | None, file: str | None) -> dict[str, Any]:
    if rec is None:
        return {"status": NOT_MEASURED, "note": "no estimate in estimates/"}
    loo = rec.get("loo") if isinstance(rec.get("loo"), dict) else {}
    err = loo.get("mean_abs_rel_error")
    label = rec.get("label") or "latency model"
    loo_text = (f"leave-one-out mean |rel. error| {100 * err:.0f}% over n={loo.get('n')}" if isinstance(err, (int, float))
                else f"leave-one-out error unknown (n={loo.get('n', 0)})")
    ref = rec.get("reference_estimate") if isinstance(rec.get("reference_estimate"), dict) else None
    if rec.get("latency_ms") is None:  # the estimator refused (no calibration data): say why, show no number
        reason = label[len("no estimate: "):] if label.startswith("no estimate: ") else label
        return {"status": NOT_MEASURED, "note": f"not estimated: {reason}", "file": file, "raw": rec,
                "reference": ref}
    if label.startswith("estimated (") and label.endswith(")"):
        label = label[len("estimated ("):-1]
    return {"status": ESTIMATED, "provenance": f"estimated ({label}; {loo_text})",
            "latency_ms": rec.get("latency_ms"), "label": rec.get("label"), "loo": loo or None,
            "file": file, "raw": rec, "reference": ref}


def _pick(records: list[dict[str, Any]], target: str, precision: str) -> dict[str, Any] | None:
    hits = [r for r in records if r["_target"] == target and r["_precision"] == precision]
    return max(hits, key=lambda r: str(r.get("created") or "")) if hits else None


# ---------------------------------------------------------------- stage models
def _layer_dict(row) -> dict[str, Any]:
    return {"operator": row.operator, "input": list(row.input_shape), "output": list(row.output_shape),
            "t": row.t, "c": row.c, "n": row.n, "s": row.s, "params": row.params, "macs": row.macs}


def _stage_models(run: Path, warnings: list[str]) -> list[dict[str, Any]]:
    from ..model.complexity import MAC_SOURCE, layer_table, totals
    from ..model.io import MODEL_FILE, load_model

    out = []
    for folder, stage in STAGE_DIRS.items():
        d = stage_dir(run, folder)
        entry: dict[str, Any] = {"stage": stage, "dir": f"{STAGES}/{folder}"}
        if not (d / MODEL_FILE).is_file():
            out.append({**entry, "status": NOT_RUN})
            continue
        try:
            model = load_model(d)
        except UserError as e:
            warnings.append(f"{STAGES}/{folder}: {e}")
            out.append({**entry, "status": NOT_RUN, "error": str(e)})
            continue
        rows = layer_table(model)
        params, macs = totals(rows)
        manifest = read_json(d / "manifest.json") or {}
        out.append({**entry, "status": "present", "schedule": model.schedule.name,
                    "input_size": model.schedule.input_size, "params": params, "macs": macs,
                    "provenance": f"counted from {STAGES}/{folder}/{MODEL_FILE} ({MAC_SOURCE})",
                    "manifest_format": manifest.get("format"), "layers": [_layer_dict(r) for r in rows],
                    **({"quantized": True} if stage == "quantized" else {})})
    return out


def _source_stage(manifest: dict[str, Any], run: Path) -> str | None:
    """Which RUN/stages/<folder> the export was made from (by path), as an accuracy stage name."""
    src = (manifest.get("source") or {}).get("path")
    if not src:
        return None
    p = Path(src)
    stages = (run / STAGES).resolve()
    for cand in (p, p.parent):
        try:
            rel = cand.resolve().relative_to(stages)
        except (ValueError, OSError):
            continue
        if rel.parts and rel.parts[0] in STAGE_DIRS:
            return STAGE_DIRS[rel.parts[0]]
    parts = p.parts
    for i in range(len(parts) - 1):  # a run folder that has moved since the export
        if parts[i] == STAGES and parts[i + 1] in STAGE_DIRS:
            return STAGE_DIRS[parts[i + 1]]
    return None


# ---------------------------------------------------------------- accuracy
def _accuracy_entry(rec, file: str) -> dict[str, Any]:
    d = rec.to_dict()
    d.pop("format", None)
    synth = " (SYNTHETIC data)" if rec.synthetic else ""
    return {**d, "status": "measured", "file": file,
            "provenance": f"{rec.dataset}; {rec.protocol}{synth}; run in {rec.runtime}"}


def _accuracies(run: Path, warnings: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in _json_files(run / ACCURACY):
        raw = read_json(f)
        try:
            rec = validate_accuracy(raw, _rel(f, run))
        except UserError as e:
            warnings.append(str(e))
            continue
        if rec.stage in out:
            warnings.append(f"{_rel(f, run)}: a second record for stage {rec.stage!r} "
                            f"(first: {out[rec.stage]['file']}); the first is kept")
            continue
        out[rec.stage] = _accuracy_entry(rec, _rel(f, run))
    return out


def _resolve_roc(roc: str | None, run: Path, acc_file: Path) -> Path | None:
    if not roc:
        return None
    p = Path(roc)
    for cand in ([p] if p.is_absolute() else [run / p, acc_file.parent / p, p]):
        if cand.is_file():
            return cand
    return None


def roc_points(obj: Any) -> tuple[list[float], list[float]] | None:
    """(fpr, tpr) from the ROC JSON shapes the accuracy schema accepts; None when there is none."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("fpr"), list) and isinstance(obj.get("tpr"), list):
        return [float(x) for x in obj["fpr"]], [float(x) for x in obj["tpr"]]
    for path in (("roc",), ("result", "roc"), ("results", "flip", "roc"), ("results", "no_flip", "roc")):
        cur = obj
        for k in path:
            cur = cur.get(k) if isinstance(cur, dict) else None
        if isinstance(cur, dict) and isinstance(cur.get("fpr"), list):
            return [float(x) for x in cur["fpr"]], [float(x) for x in cur["tpr"]]
    return None


def _attach_roc(entry: dict[str, Any], run: Path, warnings: list[str]) -> None:
    roc = entry.get("roc")
    if not roc:
        entry["roc_data"] = None
        return
    p = _resolve_roc(roc, run, run / entry["file"])
    if p is None:
        warnings.append(f"{entry['file']}: roc {roc!r} not found; the ROC is not shown")
        entry["roc_data"] = None
    elif p.suffix.lower() == ".png":
        entry["roc_data"] = {"kind": "png", "path": str(p)}
    else:
        pts = roc_points(read_json(p)) if p.suffix.lower() == ".json" else None
        if pts is None:
            warnings.append(f"{entry['file']}: roc {roc!r} has no fpr/tpr; the ROC is not shown")
        entry["roc_data"] = None if pts is None else {"kind": "points", "path": str(p), "fpr": pts[0], "tpr": pts[1]}


# ---------------------------------------------------------------- exports
def _export(run: Path, key: str) -> dict[str, Any]:
    d = run / EXPORTS / key
    manifest = read_json(d / "manifest.json")
    if manifest is None:
        return {"status": NOT_RUN, "dir": f"{EXPORTS}/{key}", "artifact_bytes": None, "files": [],
                "parity": [{"status": NOT_RUN}]}
    files = []
    for name in manifest.get("files", []):
        if name in _EXCLUDED_FILES or name in (manifest.get("bundle") or {}).get("files", []):
            continue
        p = d / name
        files.append({"name": name, "bytes": p.stat().st_size if p.is_file() else None})
    present = [f["bytes"] for f in files if f["bytes"] is not None]
    parity = read_json(d / "parity.json") or {}
    checks = []
    for name, c in (parity.get("checks") or {}).items():
        checks.append({"check": name, "cosine_mean": c.get("cosine_mean"), "cosine_min": c.get("cosine_min"),
                       "cosine_p01": c.get("cosine_p01"), "n": c.get("n"), "reference": c.get("reference"),
                       "runtime": runtime_label(c), "images": c.get("images"), "method": c.get("method"),
                       "warning": c.get("warning"),
                       "provenance": f"measured on {manifest.get('host', 'the export host')} "
                                     f"({runtime_label(c)} vs {c.get('reference')}, {c.get('n')} faces: "
                                     f"{c.get('images')})"})
    return {"status": "exported", "dir": f"{EXPORTS}/{key}", "model_file": manifest.get("model_file"),
            "export_format": manifest.get("export_format"), "runtime": manifest.get("runtime"),
            "checked_here_by": manifest.get("checked_here_by"), "opset": manifest.get("opset"),
            "host": manifest.get("host"), "created": manifest.get("created"),
            "source": {k: (manifest.get("source") or {}).get(k) for k in ("kind", "path", "sha256", "schedule")},
            "files": files,
            "artifact_bytes": sum(present) if present else None,
            "artifact_bytes_provenance": f"sum of the exported model file sizes in {EXPORTS}/{key} "
                                         f"(manifest.json, parity.json and the board bundle's runner files excluded)",
            "missing_files": [f["name"] for f in files if f["bytes"] is None],
            "parity": checks if checks else [{"status": NOT_MEASURED}],
            "_manifest": manifest}


def _ratio(ours: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    if ours.get("status") not in (MEASURED_HERE, MEASURED_BOARD) or ref.get("status") != ours.get("status"):
        return {"status": NOT_MEASURED, "note": "needs our model and the reference measured the same way"}
    same_host = ours.get("host") == ref.get("host")
    same_rt = ours.get("runtime") == ref.get("runtime")
    if not (same_host and same_rt):
        return {"status": NOT_MEASURED,
                "note": f"not comparable: ours {ours.get('runtime')} on {ours.get('host')}, "
                        f"reference {ref.get('runtime')} on {ref.get('host')}"}
    precisions = f" (ours {ours.get('precision')}, reference {ref.get('precision')})" \
        if ours.get("precision") != ref.get("precision") else ""
    return {"status": "measured", "ratio": ours["median_ms"] / ref["median_ms"],
            "provenance": f"our median / reference median, both {ours.get('runtime')} on {ours.get('host')}"
                          + precisions}


def _ref_pick(records: list[dict[str, Any]], target: str, precision: str, runtime: str | None):
    hit = _pick(records, target, precision)
    if hit is None and runtime:
        hits = [r for r in records if r.get("runtime") == runtime and r["_precision"] == precision]
        # Same runtime at another precision (e.g. our int8 vs the float reference): still the comparison a user
        # wants ("how much faster is the deployed model than the reference"), and the precisions are shown.
        hits = hits or [r for r in records if r.get("runtime") == runtime]
        hit = hits[-1] if hits else None
    return hit


# ---------------------------------------------------------------- collect
def collect(run_dir: str | Path) -> dict[str, Any]:
    """The report for the run folder `run_dir` (layout: compress.report.schema), JSON-able, schema
    "compress.report/1"; see the module docstring for what is measured, estimated and missing."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"run folder {run} does not exist; pass the folder the pipeline wrote")
    warnings: list[str] = []
    targets = list_targets()

    stages = _stage_models(run, warnings)
    by_stage = {s["stage"]: s for s in stages}
    acc = _accuracies(run, warnings)
    for e in acc.values():
        _attach_roc(e, run, warnings)
    stage_acc = [acc.get(s, {"stage": s, "status": NOT_RUN if by_stage[s]["status"] == NOT_RUN else NOT_MEASURED})
                 for s in STAGE_ORDER]
    exported_acc = [e for s, e in sorted(acc.items()) if s.startswith(EXPORTED_PREFIX)]
    bin_acc = [e for s, e in sorted(acc.items()) if s.startswith(BIN_PREFIX)]  # extra data sets, not compared
    protocols = sorted({(e["dataset"], e["protocol"]) for e in acc.values()
                        if e["stage"] != REFERENCE_STAGE and not e["stage"].startswith(BIN_PREFIX)})
    if len(protocols) > 1:
        warnings.append(f"accuracy records use {len(protocols)} different dataset/protocol combinations; "
                        "stages are not directly comparable")

    here = _bench_records(run / BENCH, run, targets, warnings)
    board = _bench_records(run / BOARD, run, targets, warnings)
    emulated = [r for r in board if r.get("emulated")]  # written by `compress emulate`, not by a board
    on_board = [r for r in board if not r.get("emulated")]
    ref_here = _bench_records(run / REFERENCE / BENCH, run, targets, warnings)
    ref_board = _bench_records(run / REFERENCE / BOARD, run, targets, warnings)
    estimates: list[tuple[dict[str, Any], str]] = []
    for f in _json_files(run / ESTIMATES):
        r = read_json(f)
        ft, fp = _key_from_name(f.stem, targets)
        r.setdefault("target", ft)
        r.setdefault("precision", fp)
        estimates.append((r, _rel(f, run)))

    ref_acc_file = reference_accuracy_file(run)
    ref_acc: dict[str, Any] = {"status": NOT_MEASURED}
    if ref_acc_file.is_file():
        try:
            rec = validate_accuracy(read_json(ref_acc_file), _rel(ref_acc_file, run))
            ref_acc = _accuracy_entry(rec, _rel(ref_acc_file, run))
            _attach_roc(ref_acc, run, warnings)
        except UserError as e:
            warnings.append(str(e))

    used: set[str] = set()
    out_targets = []
    for t in targets:
        variants = []
        for prec in t.precisions:
            key = f"{t.name}-{prec}"
            exp = _export(run, key)
            manifest = exp.pop("_manifest", {})
            src_stage = _source_stage(manifest, run) if manifest else None
            if src_stage is None and manifest:
                src_stage = "quantized" if (manifest.get("source") or {}).get("kind") == "quantized" else None
            model = by_stage.get(src_stage) if src_stage else None
            model_entry = ({"stage": src_stage, "status": NOT_RUN} if model is None or model["status"] != "present"
                           else {"stage": src_stage, "status": "counted", "params": model["params"],
                                 "macs": model["macs"], "provenance": model["provenance"]})
            if exp["status"] == NOT_RUN:
                model_entry = {"stage": None, "status": NOT_RUN}
            b_here, b_board = _pick(here, t.name, prec), _pick(on_board, t.name, prec)
            b_emulated = _pick(emulated, t.name, prec)
            if b_emulated and b_board:  # a record from the board itself wins over its emulation
                used.add(b_emulated["_file"])
                warnings.append(f"{b_emulated['_file']}: emulated record not shown; the board's own "
                                f"{b_board['_file']} is")
                b_emulated = None
            est = next(((r, f) for r, f in estimates if r.get("target") == t.name and r.get("precision") == prec),
                       (None, None))
            for rec in (b_here, b_board, b_emulated):
                if rec is not None:
                    used.add(rec["_file"])
            if est[1]:
                used.add(est[1])
            lat_here = _latency(b_here, MEASURED_HERE)
            lat_board = _latency(b_emulated, EMULATED) if b_emulated else _latency(b_board, MEASURED_BOARD)
            if (lat_board.get("board") or {}).get("on_target") is False:
                warnings.append(lat_board["warning"])
            r_here = _latency(_ref_pick(ref_here, t.name, prec, lat_here.get("runtime")), MEASURED_HERE)
            r_board = _latency(_ref_pick(ref_board, t.name, prec, lat_board.get("runtime")), MEASURED_BOARD)
            exp_acc = acc.get(exported_stage(t.name, prec), {"stage": exported_stage(t.name, prec),
                                                             "status": NOT_RUN if exp["status"] == NOT_RUN
                                                             else NOT_MEASURED})
            variants.append({
                "key": key, "precision": prec, "default": prec == t.default_precision,
                "export": exp, "model": model_entry,
                "latency": {"here": lat_here, "estimate": _estimate(*est), "board": lat_board},
                "reference": {"here": r_here, "board": r_board,
                              "ratio_here": _ratio(lat_here, r_here), "ratio_board": _ratio(lat_board, r_board),
                              "ratio_meaning": "our model's median latency / the reference's (below 1 = faster)"},
                "accuracy": exp_acc,
            })
        hw = t.hardware
        out_targets.append({"name": t.name, "description": t.description, "runtime": t.runtime,
                            "runtime_version": t.runtime_version, "precisions": list(t.precisions),
                            "default_precision": t.default_precision,
                            "device": hw.device if hw else None, "compute_unit": hw.compute_unit if hw else None,
                            "variants": variants})

    unmatched = sorted({r["_file"] for r in here + board if r["_file"] not in used}
                       | {f for _, f in estimates if f not in used})
    for f in unmatched:
        warnings.append(f"{f}: matches no target/precision in targets/; not shown")
    hosts = sorted({r.get("measured_on") for r in here + ref_here if r.get("measured_on")})
    return {
        "format": REPORT_FORMAT,
        "created": now_iso(),
        "run_dir": str(run),
        "report_host": host_description(),
        "hosts": hosts,
        "labels": {MEASURED_HERE: "measured on the named host (the pipeline's machine), `compress bench`",
                   ESTIMATED: "estimated by the per-layer latency model, with its leave-one-out error",
                   MEASURED_BOARD: "measured on the board itself (the export bundle's run_on_board.py, or "
                                   "`compress bench`, run there)",
                   EMULATED: "the export bundle's run_on_board.py on an emulated arm64 board (`compress emulate`, "
                             "QEMU with the board's CPU): parity from the Arm kernels; timing not meaningful",
                   NOT_MEASURED: "no input for this number in the run folder",
                   NOT_RUN: "the stage/export did not run (no artifact in the run folder)"},
        "stages": stages,
        "accuracy": {"stages": stage_acc, "exported": exported_acc, "extra_sets": bin_acc,
                     "same_protocol": len(protocols) <= 1,
                     "protocols": [{"dataset": d, "protocol": p} for d, p in protocols]},
        "reference": {"name": "MobileFaceNet (reference model)", "accuracy": ref_acc,
                      "bench_files": sorted({r["_file"] for r in ref_here + ref_board})},
        "targets": out_targets,
        "warnings": warnings,
    }
