"""The CI benchmark gate: compare a run's report ("compress.report/1") against a committed baseline.

CI runs a small pipeline, writes RUN/report/report.json, then `run_gate(report, baseline)` fails when a tracked
metric regressed past its tolerance. After an intended change a maintainer refreshes the baseline with
`update_baseline(report, baseline)` (`compress gate --update`) and commits it.

Metric keys (stable, dotted; <key> is "<target>-<precision>" as in the report):

    accuracy.<stage>                         percent, higher is better; <stage> is trained | pruned | fine-tuned |
                                             quantized | exported:<key>; accuracy.reference is the reference
                                             model (tracked, not gated: it is not what the pipeline produces)
    parity.<key>.<check>.cosine_min          export parity (e.g. vs_float, vs_nncf_fake_quant), higher is better
    size.<key>.bytes                         exported model file(s), lower is better
    macs.<stage> / params.<stage>            counted from the stage model, exact
    latency.<key>.<here|board>.median_ms     absolute latency: tracked, never gated by default (too noisy on CI
                                             machines; a board record is not produced by CI)
    latency.<key>.estimate.ms                the per-board latency estimate (tracked, not gated)
    latency_ratio.<target>.<p>_vs_<base>.<here|board>
                                             median latency of precision <p> / that of the target's float
                                             precision <base> (fp32, else fp16), both measured in the same run on
                                             the same host and runtime; tracked, not gated by default
    latency_ratio.<key>.vs_reference.<here|board>
                                             our median / the reference model's (the report's ratio_here/board)

Baseline file ("compress.gate-baseline/1")::

    {"format": "compress.gate-baseline/1", "created": iso time,
     "source": {"report": path, "run_dir": ..., "recipe": ..., "host": ...},
     "metrics": {key: {"value": number, "unit": str, "direction": "higher_is_better" | "lower_is_better" | "exact",
                       "tolerance_abs": number >= 0  OR  "tolerance_rel": number >= 0 (fraction of |value|),
                       "gate": bool, "provenance": optional str}}}

Statuses of a compared metric: "ok" (within tolerance), "regressed" (worse than the tolerance allows, or any change
of an "exact" metric, or a changed unit), "improved" (better by more than the tolerance: consider updating the
baseline), "missing" (in the baseline, not in the report: a failure when gated), "new" (in the report only: reported,
never a failure). Only gated rows can fail the gate.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import host_description, now_iso, write_json
from ..errors import UserError
from ..run_folder import REPORT, REPORT_FILES, report_file
from .schema import REPORT_FORMAT

BASELINE_FORMAT = "compress.gate-baseline/1"
GATE_RESULT_FORMAT = "compress.gate-result/1"
DIRECTIONS = ("higher_is_better", "lower_is_better", "exact")
STATUSES = ("ok", "regressed", "improved", "missing", "new")
UPDATE_HINT = "create it with `compress gate --update` (update_baseline) from a report you trust"

# Default tolerances by metric family. Override per family, per key or per glob pattern via make_baseline(tolerances).
DEFAULT_TOLERANCES: dict[str, dict[str, Any]] = {
    # Accuracy in percentage points. 2 pp is loose on purpose: CI evaluates a few-epoch model on a small SYNTHETIC
    # pair set (tens of pairs per fold), where one flipped pair moves the k-fold mean by ~1 pp and thread/BLAS
    # nondeterminism alone can flip a pair. Tighten it (e.g. 0.3 pp) for a baseline made on LFW with a full model.
    "accuracy": {"tolerance_abs": 2.0, "gate": True},
    # Export parity: minimum cosine between the exported model and its PyTorch source. Float exports should match
    # to ~1e-5; 1e-3 leaves room for runtime/kernel differences. int8 exports are compared with quantization noise
    # in the loop (and a 16-face minimum is rough), hence 2e-2.
    "parity": {"tolerance_abs": 1e-3, "gate": True},
    "parity:int8": {"tolerance_abs": 2e-2, "gate": True},
    # Artifact size: 10% relative (serialisation / exporter version changes move it a little).
    "size": {"tolerance_rel": 0.10, "gate": True},
    # MACs / params are counted from the architecture: any change is a change of the model.
    "macs": {"tolerance_abs": 0, "gate": True},
    "params": {"tolerance_abs": 0, "gate": True},
    # Absolute latency depends on the CI machine of the day: tracked only.
    "latency": {"tolerance_rel": 0.50, "gate": False},
    # Ratios of two latencies measured in one run cancel most of the machine speed, but shared CI runners are still
    # noisy: 50% relative and not gated until a baseline proves stable (set "gate": true in the baseline to gate).
    "latency_ratio": {"tolerance_rel": 0.50, "gate": False},
}
_UNGATED_KEYS = {"accuracy.reference"}  # tracked for context, not a product of the pipeline


# ---------------------------------------------------------------- extraction
def _num(x: Any) -> float | int | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return x


def _metric(value: float | int, unit: str, direction: str, provenance: str | None, **extra: Any) -> dict[str, Any]:
    return {"value": value, "unit": unit, "direction": direction, "provenance": provenance or "", **extra}


def _float_base(precisions: list[str]) -> str | None:
    for p in ("fp32", "fp16"):
        if p in precisions:
            return p
    return None


def _same_measurement(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("status") == b.get("status") and a.get("status") in ("measured", "measured on board")
            and _num(a.get("median_ms")) is not None and _num(b.get("median_ms")) is not None and b["median_ms"] > 0
            and a.get("host") == b.get("host") and a.get("runtime") == b.get("runtime"))


def extract_metrics(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tracked metrics of a "compress.report/1" dict: {key: {"value", "unit", "direction", "provenance",
    "family", "precision"?}} (keys in the module docstring). Only measured/counted numbers are extracted; a
    "not run" / "not measured" entry gives no metric (so a gated metric that stops being produced is "missing")."""
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        got = report.get("format") if isinstance(report, dict) else type(report).__name__
        raise UserError(f"not a {REPORT_FORMAT} report (format {got!r}); write it with `compress report RUN`")
    out: dict[str, dict[str, Any]] = {}

    def add(key: str, family: str, m: dict[str, Any]) -> None:
        out[key] = {**m, "family": family}

    # accuracy, per stage and per export
    acc = report.get("accuracy") or {}
    for e in list(acc.get("stages") or []) + list(acc.get("exported") or []):
        v = _num(e.get("accuracy"))
        if e.get("status") == "measured" and v is not None:
            add(f"accuracy.{e['stage']}", "accuracy", _metric(v, "%", "higher_is_better", e.get("provenance")))
    ref = (report.get("reference") or {}).get("accuracy") or {}
    if ref.get("status") == "measured" and _num(ref.get("accuracy")) is not None:
        add("accuracy.reference", "accuracy", _metric(ref["accuracy"], "%", "higher_is_better", ref.get("provenance")))

    # MACs / params per stage model
    for s in report.get("stages") or []:
        if s.get("status") != "present":
            continue
        for fam in ("macs", "params"):
            v = _num(s.get(fam))
            if v is not None:
                add(f"{fam}.{s['stage']}", fam, _metric(v, fam, "exact", s.get("provenance")))

    # per export: parity, size, latency, ratios
    for t in report.get("targets") or []:
        variants = t.get("variants") or []
        for var in variants:
            key, prec = var["key"], var.get("precision")
            exp = var.get("export") or {}
            if exp.get("status") == "exported":
                for c in exp.get("parity") or []:
                    v = _num(c.get("cosine_min"))
                    if c.get("check") and v is not None:
                        add(f"parity.{key}.{c['check']}.cosine_min", "parity",
                            _metric(v, "cosine", "higher_is_better", c.get("provenance"), precision=prec))
                b = _num(exp.get("artifact_bytes"))
                if b is not None:
                    add(f"size.{key}.bytes", "size",
                        _metric(b, "bytes", "lower_is_better", exp.get("artifact_bytes_provenance"), precision=prec))
            lat = var.get("latency") or {}
            for where in ("here", "board"):
                m = lat.get(where) or {}
                if m.get("status") in ("measured", "measured on board") and _num(m.get("median_ms")) is not None:
                    add(f"latency.{key}.{where}.median_ms", "latency",
                        _metric(m["median_ms"], "ms", "lower_is_better",
                                f"{m.get('provenance')} ({m.get('runtime')}, {m.get('threads')} thread(s))"))
            est = lat.get("estimate") or {}
            if est.get("status") == "estimated" and _num(est.get("latency_ms")) is not None:
                add(f"latency.{key}.estimate.ms", "latency",
                    _metric(est["latency_ms"], "ms", "lower_is_better", est.get("provenance")))
            refd = var.get("reference") or {}
            for where in ("here", "board"):
                r = refd.get(f"ratio_{where}") or {}
                if r.get("status") == "measured" and _num(r.get("ratio")) is not None:
                    add(f"latency_ratio.{key}.vs_reference.{where}", "latency_ratio",
                        _metric(r["ratio"], "ratio", "lower_is_better", r.get("provenance")))
        # precision ratio within the target, same host + runtime, same run
        by_prec = {v.get("precision"): v for v in variants}
        base = _float_base(list(by_prec))
        if base is None:
            continue
        for prec, var in by_prec.items():
            if prec == base:
                continue
            for where in ("here", "board"):
                a = ((var.get("latency") or {}).get(where)) or {}
                b = ((by_prec[base].get("latency") or {}).get(where)) or {}
                if _same_measurement(a, b):
                    add(f"latency_ratio.{t['name']}.{prec}_vs_{base}.{where}", "latency_ratio",
                        _metric(a["median_ms"] / b["median_ms"], "ratio", "lower_is_better",
                                f"{prec} median / {base} median, both {a.get('runtime')} on {a.get('host')} "
                                f"({a.get('file')}, {b.get('file')})"))
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- baseline
def default_tolerance(key: str, metric: dict[str, Any]) -> dict[str, Any]:
    """The default {"tolerance_abs"|"tolerance_rel", "gate"} for a metric, by family (DEFAULT_TOLERANCES)."""
    family = metric.get("family") or key.split(".", 1)[0]
    if family == "parity" and metric.get("precision") == "int8":
        tol = DEFAULT_TOLERANCES["parity:int8"]
    else:
        tol = DEFAULT_TOLERANCES.get(family, {"tolerance_rel": 0.10, "gate": False})
    tol = dict(tol)
    if key in _UNGATED_KEYS:
        tol["gate"] = False
    return tol


def _override(key: str, metric: dict[str, Any], tolerances: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Override lookup: the exact key, else the first glob pattern (fnmatch) that matches, else the family name."""
    if not tolerances:
        return {}
    if key in tolerances:
        return dict(tolerances[key])
    for pat, spec in tolerances.items():
        if any(ch in pat for ch in "*?[") and fnmatch.fnmatchcase(key, pat):
            return dict(spec)
    return dict(tolerances.get(metric.get("family") or key.split(".", 1)[0], {}))


def make_baseline(report: dict[str, Any], tolerances: dict[str, dict[str, Any]] | None = None,
                  source: dict[str, Any] | None = None) -> dict[str, Any]:
    """A "compress.gate-baseline/1" dict from a report: every extracted metric with its default tolerance
    (default_tolerance), overridden by `tolerances` ({key | glob | family: {"tolerance_abs"|"tolerance_rel", "gate"}};
    an override giving one kind of tolerance replaces the default's other kind)."""
    metrics = {}
    for key, m in extract_metrics(report).items():
        tol = default_tolerance(key, m)
        over = _override(key, m, tolerances)
        if "tolerance_abs" in over or "tolerance_rel" in over:
            tol.pop("tolerance_abs", None)
            tol.pop("tolerance_rel", None)
        tol.update(over)
        entry = {"value": m["value"], "unit": m["unit"], "direction": m["direction"], **tol,
                 "provenance": m["provenance"]}
        metrics[key] = entry
    baseline = {"format": BASELINE_FORMAT, "created": now_iso(),
                "source": {"run_dir": report.get("run_dir"), "report_created": report.get("created"),
                           "report_host": report.get("report_host"), "hosts": report.get("hosts"),
                           "made_on": host_description(), **(source or {})},
                "metrics": metrics}
    validate_baseline(baseline)
    return baseline


def validate_baseline(b: Any, origin: str = "<baseline>") -> dict[str, Any]:
    """Check a baseline dict; raise UserError (one line, naming origin, the field and the fix) when malformed."""
    def bad(msg: str) -> UserError:
        return UserError(f"{origin}: {msg}; fix it, or {UPDATE_HINT}")

    if not isinstance(b, dict):
        raise bad(f"a baseline must be a JSON object, got {type(b).__name__}")
    if b.get("format") != BASELINE_FORMAT:
        raise bad(f"format must be {BASELINE_FORMAT!r}, got {b.get('format')!r}")
    metrics = b.get("metrics")
    if not isinstance(metrics, dict):
        raise bad("'metrics' must be an object {key: {value, unit, direction, tolerance_abs|tolerance_rel, gate}}")
    for key, m in metrics.items():
        if not isinstance(m, dict):
            raise bad(f"metric {key!r} must be an object")
        if _num(m.get("value")) is None:
            raise bad(f"metric {key!r}: value must be a finite number, got {m.get('value')!r}")
        if m.get("direction") not in DIRECTIONS:
            raise bad(f"metric {key!r}: direction must be one of {list(DIRECTIONS)}, got {m.get('direction')!r}")
        if not isinstance(m.get("unit"), str):
            raise bad(f"metric {key!r}: unit must be a string, got {m.get('unit')!r}")
        tols = [k for k in ("tolerance_abs", "tolerance_rel") if k in m]
        if len(tols) != 1:
            raise bad(f"metric {key!r}: give exactly one of tolerance_abs / tolerance_rel, got {tols or 'none'}")
        t = _num(m[tols[0]])
        if t is None or t < 0:
            raise bad(f"metric {key!r}: {tols[0]} must be a number >= 0, got {m[tols[0]]!r}")
        if not isinstance(m.get("gate"), bool):
            raise bad(f"metric {key!r}: gate must be true or false, got {m.get('gate')!r}")
    return b


# ---------------------------------------------------------------- check
@dataclass
class GateResult:
    passed: bool
    rows: list[dict[str, Any]]
    baseline_source: dict[str, Any] = field(default_factory=dict)
    report_path: str | None = None
    baseline_path: str | None = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["fails"]]

    def by_status(self, status: str) -> list[str]:
        return [r["key"] for r in self.rows if r["status"] == status]

    def to_dict(self) -> dict[str, Any]:
        return {"format": GATE_RESULT_FORMAT, "created": now_iso(), "passed": self.passed,
                "failed": [r["key"] for r in self.failures],
                "counts": {s: len(self.by_status(s)) for s in STATUSES},
                "report": self.report_path, "baseline": self.baseline_path,
                "baseline_source": self.baseline_source, "rows": self.rows}


def _tolerance(m: dict[str, Any]) -> tuple[dict[str, float], float]:
    if "tolerance_rel" in m:
        return {"tolerance_rel": m["tolerance_rel"]}, float(m["tolerance_rel"]) * abs(float(m["value"]))
    return {"tolerance_abs": m["tolerance_abs"]}, float(m["tolerance_abs"])


def _compare(key: str, base: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    tol, allowed = _tolerance(base)
    b, c = base["value"], cur["value"]
    delta = c - b
    row = {"key": key, "unit": base["unit"], "direction": base["direction"], "gate": base["gate"], "baseline": b,
           "current": c, "delta": delta, "delta_rel": (delta / abs(b)) if b else None, "tolerance": tol,
           "allowed": allowed, "provenance": cur.get("provenance", ""), "note": ""}
    if cur.get("unit") != base["unit"]:
        return {**row, "status": "regressed",
                "note": f"unit changed from {base['unit']!r} to {cur.get('unit')!r}: values are not comparable"}
    direction = base["direction"]
    eps = 1e-12 * max(1.0, abs(b))  # float noise of JSON round trips
    if direction == "exact":
        status = "ok" if abs(delta) <= allowed + eps else "regressed"
        if status == "regressed":
            row["note"] = "exact metric changed"
    else:
        worse = -delta if direction == "higher_is_better" else delta
        status = "regressed" if worse > allowed + eps else "improved" if -worse > allowed + eps else "ok"
    bp, cp = base.get("provenance"), cur.get("provenance")
    if bp and cp and bp != cp and key.startswith("accuracy."):
        row["note"] = (row["note"] + "; " if row["note"] else "") + "dataset/protocol differs from the baseline's"
    return {**row, "status": status}


def check(report: dict[str, Any], baseline: dict[str, Any]) -> GateResult:
    """Compare a report with a baseline. Fails (passed=False) when a gated metric regressed past its tolerance or is
    missing from the report; non-gated and new metrics are reported only."""
    validate_baseline(baseline)
    current = extract_metrics(report)
    rows = []
    for key, base in baseline["metrics"].items():
        if key not in current:
            rows.append({"key": key, "unit": base["unit"], "direction": base["direction"], "gate": base["gate"],
                         "baseline": base["value"], "current": None, "delta": None, "delta_rel": None,
                         "tolerance": _tolerance(base)[0], "allowed": _tolerance(base)[1], "provenance": "",
                         "status": "missing",
                         "note": ("gated metric not in the report: the stage/export/measurement did not run"
                                  if base["gate"] else "not in the report (not gated)")})
        else:
            rows.append(_compare(key, base, current[key]))
    for key, m in current.items():
        if key not in baseline["metrics"]:
            tol = default_tolerance(key, m)
            rows.append({"key": key, "unit": m["unit"], "direction": m["direction"], "gate": False,
                         "baseline": None, "current": m["value"], "delta": None, "delta_rel": None,
                         "tolerance": None, "allowed": None, "provenance": m["provenance"], "status": "new",
                         "note": "not in the baseline (update it to track this metric"
                                 + (", gated by default)" if tol.get("gate") else ")")})
    for r in rows:
        r["fails"] = bool(r["gate"] and r["status"] in ("regressed", "missing"))
    rows.sort(key=lambda r: (not r["fails"], r["key"]))
    return GateResult(passed=not any(r["fails"] for r in rows), rows=rows,
                      baseline_source=dict(baseline.get("source") or {}))


# ---------------------------------------------------------------- formatting
def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("bytes", "macs", "params") and float(v).is_integer():
        return f"{int(v):,}"
    if unit == "cosine":
        return f"{v:.6f}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fmt_delta(r: dict[str, Any]) -> str:
    if r["delta"] is None:
        return "-"
    d = r["delta"]
    s = f"{d:+,}" if r["unit"] in ("bytes", "macs", "params") and float(d).is_integer() else f"{d:+.4g}"
    if r.get("delta_rel") is not None and r["unit"] not in ("%",):
        s += f" ({100 * r['delta_rel']:+.1f}%)"
    return s


def _fmt_tol(r: dict[str, Any]) -> str:
    t = r.get("tolerance")
    if not t:
        return "-"
    if "tolerance_rel" in t:
        return f"±{100 * t['tolerance_rel']:g}%"
    return "exact" if t["tolerance_abs"] == 0 else f"±{t['tolerance_abs']:g}"


def format_gate(result: GateResult) -> str:
    """A plain-text table (failures first) and a one-line verdict."""
    head = ("metric", "baseline", "current", "delta", "tolerance", "gate", "status")
    body = [(r["key"], _fmt(r["baseline"], r["unit"]), _fmt(r["current"], r["unit"]), _fmt_delta(r), _fmt_tol(r),
             "yes" if r["gate"] else "no", r["status"].upper() if r["fails"] else r["status"]) for r in result.rows]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    for r, row in zip(result.rows, body):
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        lines.append(line + (f"  ({r['note']})" if r.get("note") else ""))
    fails = result.failures
    counts = ", ".join(f"{len(result.by_status(s))} {s}" for s in STATUSES if result.by_status(s))
    if result.passed:
        verdict = f"GATE PASSED: {len(result.rows)} metrics ({counts or 'none'})"
    else:
        verdict = (f"GATE FAILED: {len(fails)} gated metric(s) regressed or missing: "
                   f"{', '.join(r['key'] + ' (' + r['status'] + ')' for r in fails)}")
    return "\n".join(lines + ["", verdict])


# ---------------------------------------------------------------- files
def _read_json(path: Path, what: str, hint: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; {hint}")
    try:
        obj = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{what} {path} is not valid JSON ({str(e).splitlines()[0]}); {hint}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{what} {path} must hold a JSON object; {hint}")
    return obj


def _read_report(report_path: str | Path) -> dict[str, Any]:
    p = Path(report_path)
    if p.is_dir():  # a run folder or its report/ folder
        p = p / REPORT_FILES["json"] if (p / REPORT_FILES["json"]).is_file() else report_file(p / REPORT, "json")
    rep = _read_json(p, "report", "write it with `compress report RUN` (RUN/report/report.json)")
    if rep.get("format") != REPORT_FORMAT:
        raise UserError(f"report {p}: format must be {REPORT_FORMAT!r}, got {rep.get('format')!r}; "
                        "write it with `compress report RUN`")
    return rep


def read_baseline(baseline_path: str | Path) -> dict[str, Any]:
    p = Path(baseline_path)
    b = validate_baseline(_read_json(p, "baseline", UPDATE_HINT), f"baseline {p}")
    if not b["metrics"]:
        raise UserError(f"baseline {p} tracks no metrics, so it cannot gate anything; {UPDATE_HINT}")
    return b


def run_gate(report_path: str | Path, baseline_path: str | Path, out_path: str | Path | None = None) -> GateResult:
    """Read the report (a report.json, or a run folder holding report/report.json) and the baseline, check, and
    write the result JSON ("compress.gate-result/1") atomically to out_path when given. Missing or malformed
    files raise UserError with a one-line message."""
    report = _read_report(report_path)
    baseline = read_baseline(baseline_path)
    result = check(report, baseline)
    result.report_path, result.baseline_path = str(report_path), str(baseline_path)
    if out_path is not None:
        write_json(out_path, result.to_dict())
    return result


def update_baseline(report_path: str | Path, baseline_path: str | Path,
                    tolerances: dict[str, dict[str, Any]] | None = None, recipe: str | None = None,
                    keep_tolerances: bool = True) -> dict[str, Any]:
    """Write a new baseline from the report, atomically (what a maintainer runs after an intended change).
    With keep_tolerances, the tolerance / gate a maintainer hand-edited into an existing, valid baseline is kept
    for metrics that are still there; `tolerances` (make_baseline) wins over both."""
    report = _read_report(report_path)
    src = {"report": str(report_path), **({"recipe": recipe} if recipe else {})}
    baseline = make_baseline(report, tolerances, source=src)
    bp = Path(baseline_path)
    if keep_tolerances and bp.is_file():
        try:
            old = read_baseline(bp)["metrics"]
        except UserError:
            old = {}
        current = extract_metrics(report)
        for k, m in baseline["metrics"].items():
            if k in old and not _override(k, current[k], tolerances):
                for x in ("tolerance_abs", "tolerance_rel"):
                    m.pop(x, None)
                m.update({x: old[k][x] for x in ("tolerance_abs", "tolerance_rel", "gate") if x in old[k]})
        validate_baseline(baseline)
    write_json(bp, baseline)
    return baseline
