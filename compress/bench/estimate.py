"""Per-layer latency estimate for a board that is not here, calibrated on published reference latencies.

Layer time (one Conv2d / Linear layer of compress.bench.reference_nets, batch 1):

    t_layer = max(MACs / throughput[kind], bytes / bandwidth) + overhead          network time = sum over layers

    throughput[kind] = peak MAC/s of the precision x efficiency[kind]   ("efficiency vs peak" mode, when the
                       target file publishes a peak for the precision; efficiency is bounded to (0, 1])
                     = a fitted effective MAC/s                          ("effective throughput" mode, when it
                       does not: the parameters are then throughputs, not fractions of a peak)
    bytes / bandwidth  only when the file publishes memory_bandwidth_gbps (the published peak, not fitted);
                       otherwise there is no memory term and the fitted throughputs absorb memory stalls
    overhead           fixed cost per layer (µs), fitted, bounded to [0, 2000] µs

Calibration fits log-latency error (scipy.optimize.least_squares) on the target's usable [[reference]]
entries of the same precision. The number of free parameters follows the number of references n: at most
n - 1, so the fit is over-determined and leave-one-out (LOO) refits are determined:

    n = 1  one shared throughput (no LOO possible)      n = 2  shared throughput + overhead
    n = 3  shared throughput + overhead                 n = 4  depthwise / other throughput + overhead
    n >= 5 depthwise / pointwise / dense + overhead
A kind-specific parameter is only freed when that kind has >= 5% of the MACs of at least one reference;
otherwise it is tied to the shared value, and an estimate whose network leans on an unconstrained kind gets a
warning.

Leave-one-out: every usable reference is predicted by a fit on the others; the table and mean / max absolute
relative error are reported next to every estimate. They measure how well the model transfers between the
published networks, not the error on our network.

Precision: references at fp32 calibrate fp32 only. An estimate at a precision without references is
extrapolated only when the file publishes peaks for both precisions (throughput scaled by their ratio,
memory bytes at the new element size, overhead unchanged), and says so; otherwise it is refused with the reason.
A target without usable references gets status "no calibration data" and estimate_ms None: never a number
dressed as calibrated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..targets import Reference, Target, load_target
from .reference_nets import (
    ELEMENT_BYTES,
    ELEMENTWISE_POLICY,
    KINDS,
    LayerSpec,
    face_layers,
    lookup,
    reference_layers,
)

MIN_KIND_SHARE = 0.05
OVERHEAD_MAX_US = 2000.0
MIN_EFF = 1e-4
THROUGHPUT_BOUNDS = (1e6, 1e15)  # MAC/s, effective-throughput mode
NOT_MODELLED = (ELEMENTWISE_POLICY + "; host<->device copies, pre/post-processing, runtime start-up and "
                "threading effects beyond the per-layer overhead are not modelled; layers run one after another "
                "(no concurrency); the memory term uses the published peak bandwidth with no cache model")

# tied-parameter structures: group name -> kinds sharing one throughput
STRUCTURES = {
    "shared": {"all": KINDS},
    "depthwise/other": {"depthwise": ("depthwise",), "other": ("pointwise", "dense")},
    "per-kind": {k: (k,) for k in KINDS},
}


# ---------------------------------------------------------------- network arrays
@dataclass(frozen=True)
class NetArrays:
    """One network at one precision, as arrays for the vectorised time model."""
    macs: np.ndarray
    nbytes: np.ndarray
    kind: np.ndarray      # index into KINDS
    n_layers: int

    @classmethod
    def of(cls, layers: list[LayerSpec], precision: str) -> "NetArrays":
        return cls(np.array([ly.macs for ly in layers], float),
                   np.array([ly.bytes(precision) for ly in layers], float),
                   np.array([KINDS.index(ly.kind) for ly in layers], int), len(layers))

    def kind_share(self) -> np.ndarray:
        tot = self.macs.sum() or 1.0
        return np.array([self.macs[self.kind == i].sum() / tot for i in range(len(KINDS))])


@dataclass
class Params:
    """Time-model parameters: MAC/s per kind, per-layer overhead, bandwidth (bytes/s, None = no memory term)."""
    throughput: dict[str, float]
    overhead_us: float
    bandwidth: float | None = None

    def layer_times(self, net: NetArrays) -> tuple[np.ndarray, np.ndarray]:
        thr = np.array([self.throughput[k] for k in KINDS])[net.kind]
        compute = net.macs / thr
        mem = net.nbytes / self.bandwidth if self.bandwidth else np.zeros_like(compute)
        return np.maximum(compute, mem) + self.overhead_us * 1e-6, mem > compute

    def predict_ms(self, net: NetArrays) -> float:
        return float(self.layer_times(net)[0].sum() * 1e3)


def predict_ms(layers: list[LayerSpec], params: Params, precision: str) -> float:
    """Latency (ms) of `layers` under explicit parameters (used to build synthetic boards in tests)."""
    return params.predict_ms(NetArrays.of(layers, precision))


# ---------------------------------------------------------------- references
@dataclass
class RefData:
    ref: Reference
    key: str
    net: NetArrays


def _usable(target: Target) -> tuple[dict[str, list[RefData]], list[dict[str, Any]]]:
    """Usable references grouped by precision, and the unusable ones with their reason."""
    by_prec: dict[str, list[RefData]] = {}
    bad: list[dict[str, Any]] = []
    for r in target.references:
        net = lookup(r.network)
        reason = None
        if r.batch != 1:
            reason = f"batch {r.batch}; the model is for batch 1"
        elif net is None:
            reason = "network not recognised by compress.bench.reference_nets (no layer model)"
        elif net.build is None:
            reason = f"not modelled: {net.not_modelled}"
        if reason:
            bad.append({"network": r.network, "precision": r.precision, "latency_ms": r.latency_ms,
                        "source": r.source, "reason": reason})
            continue
        layers = reference_layers(r.network, r.input_size)
        by_prec.setdefault(r.precision, []).append(RefData(r, net.key, NetArrays.of(layers, r.precision)))
    return by_prec, bad


# ---------------------------------------------------------------- fitting
@dataclass
class Fit:
    structure: str
    groups: dict[str, tuple[str, ...]]
    free_overhead: bool
    params: Params
    mode: str
    peak_macs: float | None
    n_free: int
    tied: list[str] = field(default_factory=list)   # kinds tied to the shared value for lack of data

    @property
    def description(self) -> str:
        g = " / ".join(self.groups) if self.structure != "shared" else "one shared"
        what = "efficiency" if self.mode == "efficiency vs peak" else "effective throughput"
        return f"{g} {what}{' + per-layer overhead' if self.free_overhead else ''} ({self.n_free} free parameters)"


def choose_structure(refs: list[RefData]) -> tuple[str, bool, list[str]]:
    """(structure, free overhead?, kinds tied for lack of data) for n references (see module docstring)."""
    n = len(refs)
    shares = np.max([r.net.kind_share() for r in refs], axis=0) if refs else np.zeros(len(KINDS))
    present = {k for k, s in zip(KINDS, shares) if s >= MIN_KIND_SHARE}
    if n >= 5 and present == set(KINDS):
        return "per-kind", True, []
    if n >= 4 and "depthwise" in present and present & {"pointwise", "dense"}:
        return "depthwise/other", True, []
    tied = [k for k in KINDS if k not in present]
    return "shared", n >= 2, tied


def fit(refs: list[RefData], peak_macs: float | None, bandwidth: float | None,
        structure: str | None = None, free_overhead: bool | None = None) -> Fit:
    """Least-squares fit of log latency on `refs` (all at one precision)."""
    from scipy.optimize import least_squares

    auto_s, auto_o, tied = choose_structure(refs)
    structure = structure or auto_s
    free_overhead = auto_o if free_overhead is None else free_overhead
    groups = STRUCTURES[structure]
    mode = "efficiency vs peak" if peak_macs else "effective throughput"
    lo, hi = ((math.log(peak_macs * MIN_EFF), math.log(peak_macs)) if peak_macs
              else tuple(math.log(b) for b in THROUGHPUT_BOUNDS))
    meas = np.log([r.ref.latency_ms for r in refs])
    ng = len(groups)

    def unpack(x: np.ndarray) -> Params:
        thr = {}
        for (g, kinds), v in zip(groups.items(), x[:ng]):
            for k in kinds:
                thr[k] = math.exp(v)
        return Params(thr, float(x[ng]) if free_overhead else 0.0, bandwidth)

    def resid(x: np.ndarray) -> np.ndarray:
        p = unpack(x)
        return np.log([max(p.predict_ms(r.net), 1e-9) for r in refs]) - meas

    # starting points: the median MAC/s the references imply, a few overhead guesses
    implied = np.median([r.net.macs.sum() / (r.ref.latency_ms * 1e-3) for r in refs])
    best = None
    for scale in (1.0, 3.0, 0.3):
        for ovh_frac in ((0.0, 0.2, 0.5) if free_overhead else (0.0,)):
            t0 = min(max(math.log(implied * scale), lo + 1e-9), hi - 1e-9)
            x0 = [t0] * ng
            xl, xh = [lo] * ng, [hi] * ng
            if free_overhead:
                o0 = min(ovh_frac * min(r.ref.latency_ms * 1e3 / r.net.n_layers for r in refs), OVERHEAD_MAX_US)
                x0, xl, xh = x0 + [o0], xl + [0.0], xh + [OVERHEAD_MAX_US]
            res = least_squares(resid, np.array(x0), bounds=(np.array(xl), np.array(xh)), x_scale="jac",
                                xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
            if best is None or res.cost < best.cost:
                best = res
    assert best is not None
    return Fit(structure, groups, free_overhead, unpack(best.x), mode, peak_macs, ng + int(free_overhead),
               tied if structure == "shared" else [])


def leave_one_out(refs: list[RefData], peak_macs: float | None, bandwidth: float | None,
                  structure: str, free_overhead: bool) -> dict[str, Any]:
    """Predict every reference from a fit on the others (same structure, fewer parameters if needed)."""
    if len(refs) < 2:
        return {"possible": False, "rows": [], "mean_abs_rel_error": None, "max_abs_rel_error": None,
                "note": f"leave-one-out needs at least 2 usable references; this calibration has {len(refs)}"}
    rows = []
    for i, r in enumerate(refs):
        others = refs[:i] + refs[i + 1:]
        # the held-out fit must stay determined: never more free parameters than remaining references
        s, o = structure, free_overhead
        n_free = len(STRUCTURES[s]) + int(o)
        if n_free > len(others):
            s2, o2, _ = choose_structure(others)
            s, o = s2, o2 if len(STRUCTURES[s2]) + int(o2) <= len(others) else False
        f = fit(others, peak_macs, bandwidth, s, o)
        pred = f.params.predict_ms(r.net)
        rows.append({"network": r.ref.network, "published_ms": r.ref.latency_ms, "predicted_ms": round(pred, 3),
                     "rel_error": round((pred - r.ref.latency_ms) / r.ref.latency_ms, 4), "fit_on": len(others),
                     "fit_structure": f.description})
    errs = [abs(x["rel_error"]) for x in rows]
    return {"possible": True, "rows": rows, "mean_abs_rel_error": round(float(np.mean(errs)), 4),
            "max_abs_rel_error": round(float(np.max(errs)), 4),
            "note": "each reference predicted by a fit on the other references of the same precision"}


# ---------------------------------------------------------------- calibration per target / precision
def _hw(target: Target) -> tuple[float | None, dict[str, float | None]]:
    hw = target.hardware
    bw = hw.memory_bandwidth_gbps * 1e9 if hw and hw.memory_bandwidth_gbps else None
    peaks = {p: (hw.peak_for(p).macs_per_s if hw and hw.peak_for(p) else None) for p in ("fp32", "fp16", "int8")}
    return bw, peaks


def _ref_entry(r: RefData) -> dict[str, Any]:
    x = r.ref
    return {"network": x.network, "input_size": list(x.input_size), "precision": x.precision,
            "latency_ms": x.latency_ms, "runtime": x.runtime, "source": x.source, "measured": x.measured,
            "conditions": x.conditions, "macs": int(r.net.macs.sum())}


def calibrate(target: Target | str, precision: str) -> dict[str, Any]:
    """Fit + LOO for one precision of a target, from that precision's own references only."""
    t = load_target(target) if isinstance(target, str) else target
    bw, peaks = _hw(t)
    by_prec, bad = _usable(t)
    refs = by_prec.get(precision, [])
    out: dict[str, Any] = {"target": t.name, "precision": precision, "n_references": len(refs),
                           "references_used": [_ref_entry(r) for r in refs],
                           "references_unusable": bad,
                           "references_other_precision": [
                               {"network": r.ref.network, "precision": p} for p, rs in by_prec.items()
                               if p != precision for r in rs],
                           "warnings": []}
    if not refs:
        out.update(calibrated=False, reason=f"no usable published reference latency at {precision}")
        return out
    f = fit(refs, peaks[precision], bw)
    params = f.params
    out.update(calibrated=True, mode=f.mode, model=f.description, structure=f.structure,
               params=_params_out(f), memory_term=bw is not None,
               in_sample=[{"network": r.ref.network, "published_ms": r.ref.latency_ms,
                           "fitted_ms": round(params.predict_ms(r.net), 3)} for r in refs],
               loo=leave_one_out(refs, peaks[precision], bw, f.structure, f.free_overhead),
               _fit=f)
    if len(refs) < 5:
        out["warnings"].append(f"only {len(refs)} usable reference(s): free parameters reduced to "
                               f"{f.n_free} ({f.description})")
    if f.tied:
        out["warnings"].append(f"no reference has >= {MIN_KIND_SHARE:.0%} of its MACs in {', '.join(f.tied)} "
                               "layers: their throughput is tied to the shared value, not calibrated")
    if bw is None:
        out["warnings"].append("no published memory bandwidth: no memory term, throughputs absorb memory stalls")
    if peaks[precision] is None:
        out["warnings"].append(f"no published {precision} peak: parameters are effective MAC/s per kind, "
                               "not efficiencies")
    runtimes = sorted({r.ref.runtime for r in refs})
    if any(rt.split()[0].lower() not in (t.runtime, "xnnpack") for rt in runtimes) or len(runtimes) > 1:
        out["warnings"].append(f"references ran on {'; '.join(runtimes)} (target runtime: {t.runtime}); "
                               "runtime differences are absorbed into the fit")
    return out


def _params_out(f: Fit) -> dict[str, Any]:
    p = f.params
    d: dict[str, Any] = {"overhead_us": round(p.overhead_us, 3), "overhead_free": f.free_overhead,
                         "throughput_macs_per_s": {k: float(f"{v:.4g}") for k, v in p.throughput.items()},
                         "bandwidth_bytes_per_s": p.bandwidth}
    if f.peak_macs:
        d["peak_macs_per_s"] = f.peak_macs
        d["efficiency"] = {k: round(v / f.peak_macs, 4) for k, v in p.throughput.items()}
    return d


def calibration_report(target: Target | str) -> dict[str, Any]:
    """Calibration (fitted parameters + LOO table) of every precision that has references, plus the
    unusable references with their reasons."""
    t = load_target(target) if isinstance(target, str) else target
    by_prec, bad = _usable(t)
    precs = [p for p in ("fp32", "fp16", "int8") if p in by_prec]
    cals = {p: _public(calibrate(t, p)) for p in precs}
    return {"target": t.name, "hardware": None if t.hardware is None else t.hardware.device,
            "precisions": cals, "references_unusable": bad,
            "uncalibrated_precisions": [p for p in t.precisions if p not in cals],
            "not_modelled": NOT_MODELLED}


def _public(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_")}


# ---------------------------------------------------------------- the estimate
def _layers_of(model_or_layers: Any) -> tuple[list[LayerSpec], str]:
    if isinstance(model_or_layers, (list, tuple)) and all(isinstance(x, LayerSpec) for x in model_or_layers):
        return list(model_or_layers), f"{len(model_or_layers)} given layers"
    name = getattr(getattr(model_or_layers, "schedule", None), "name", None) or getattr(model_or_layers, "name", None)
    layers = face_layers(model_or_layers)
    return layers, f"FaceMobileNet {name or model_or_layers}"


def estimate_latency(model_or_layers: Any, target: Target | str, precision: str | None = None) -> dict[str, Any]:
    """Estimated batch-1 latency of a network on `target` at `precision` (default: the target's default).

    model_or_layers: a FaceMobileNet, a Schedule, a schedule name/path ("table3"), or a list of LayerSpec.
    Returns a dict: status ("estimated" | "extrapolated" | "no calibration data" | "no hardware"),
    estimate_ms (None unless calibrated), label, breakdown_ms per kind + overhead, params, loo table,
    references used (with sources) / unusable (with reasons), warnings."""
    t = load_target(target) if isinstance(target, str) else target
    precision = precision or t.default_precision
    if precision not in ELEMENT_BYTES:
        raise ValueError(f"precision must be one of {list(ELEMENT_BYTES)}, got {precision!r}")
    layers, what = _layers_of(model_or_layers)
    net = NetArrays.of(layers, precision)
    bw, peaks = _hw(t)
    out: dict[str, Any] = {"target": t.name, "precision": precision, "network": what,
                           "macs": int(net.macs.sum()), "layers": net.n_layers, "estimate_ms": None,
                           "not_modelled": NOT_MODELLED, "warnings": []}
    if precision not in t.precisions:
        out["warnings"].append(f"{t.name} does not list {precision} among its precisions {list(t.precisions)}")
    if t.hardware is None:
        by_prec, bad = _usable(t)
        out.update(status="no hardware", label="no estimate: board-less target (no hardware figures, no "
                   "references); measure on the host with `compress bench`", references_used=[],
                   references_unusable=bad, loo={"possible": False, "rows": [], "mean_abs_rel_error": None,
                                                 "max_abs_rel_error": None, "note": "no calibration"})
        return out
    cal = calibrate(t, precision)
    src_prec = precision
    if not cal.get("calibrated"):
        others = [p for p in ("fp32", "fp16", "int8") if p != precision]
        cands = [p for p in others if calibrate(t, p).get("calibrated")]
        ok = [p for p in cands if peaks.get(p) and peaks.get(precision)]
        if ok:
            src_prec = ok[0]
            cal = calibrate(t, src_prec)
        else:
            why = cal.get("reason", "no usable references")
            if cands:
                missing = [p for p in (precision, cands[0]) if not peaks.get(p)]
                why += (f"; references exist at {', '.join(cands)}, but the target file publishes no "
                        f"{' / '.join(missing)} peak, so the {precision}:{cands[0]} throughput ratio is unknown and "
                        "the estimate is refused rather than guessed")
            out.update(status="no calibration data", label=f"no estimate: no calibration data for {precision} "
                       f"on {t.name} ({why})", references_used=[], references_unusable=cal["references_unusable"],
                       references_other_precision=cal["references_other_precision"],
                       loo={"possible": False, "rows": [], "mean_abs_rel_error": None, "max_abs_rel_error": None,
                            "note": "no calibration"})
            if peaks.get(precision):
                pk = Params({k: peaks[precision] for k in KINDS}, 0.0, bw)
                out["uncalibrated_peak_bound_ms"] = round(pk.predict_ms(net), 4)
                out["warnings"].append("uncalibrated_peak_bound_ms is every layer at 100% of the published peak "
                                       "(and bandwidth) with no overhead: a lower bound, not an estimate")
            return out
    f: Fit = cal["_fit"]
    params = f.params
    if src_prec != precision:
        ratio = peaks[precision] / peaks[src_prec]
        params = Params({k: v * ratio for k, v in params.throughput.items()}, params.overhead_us, bw)
        out["warnings"].append(f"EXTRAPOLATED: no {precision} reference; calibrated at {src_prec} and throughput "
                               f"scaled by the published {precision}:{src_prec} peak ratio {ratio:.3g}, overhead "
                               "kept, memory bytes at the new element size")
    times, membound = params.layer_times(net)
    compute_part = times - params.overhead_us * 1e-6
    breakdown = {k: round(float(compute_part[net.kind == i].sum() * 1e3), 4) for i, k in enumerate(KINDS)}
    breakdown["overhead"] = round(params.overhead_us * net.n_layers * 1e-3, 4)
    est = float(times.sum() * 1e3)
    loo = cal["loo"]
    refs_txt = "; ".join(f"{r['network']} {r['latency_ms']:g} ms" for r in cal["references_used"])
    loo_txt = (f"LOO mean |err| {loo['mean_abs_rel_error']:.0%}, max {loo['max_abs_rel_error']:.0%}"
               if loo["possible"] else "LOO impossible (fewer than 2 references)")
    status = "estimated" if src_prec == precision else "extrapolated"
    label = (f"{status} (per-layer model calibrated on {cal['n_references']} published {src_prec} measurement"
             f"{'s' if cal['n_references'] != 1 else ''}: {refs_txt}; {loo_txt}; {f.mode} mode, {f.description})")
    share = net.kind_share()
    warnings = out["warnings"] + cal["warnings"]
    for k in f.tied:
        i = KINDS.index(k)
        if share[i] >= MIN_KIND_SHARE:
            warnings.append(f"{share[i]:.0%} of this network's MACs are {k} layers, a kind no reference "
                            "constrains: their time uses the shared calibrated throughput")
    if membound.any():
        warnings.append(f"{int(membound.sum())} of {net.n_layers} layers are memory-bound under the model")
    out.update(status=status, estimate_ms=round(est, 4), label=label, calibrated_at=src_prec, mode=f.mode,
               model=f.description, params=_params_out(Fit(f.structure, f.groups, f.free_overhead, params, f.mode,
                                                            peaks.get(precision), f.n_free, f.tied)),
               breakdown_ms=breakdown, memory_bound_layers=int(membound.sum()), loo=loo,
               references_used=cal["references_used"], references_unusable=cal["references_unusable"],
               references_other_precision=cal["references_other_precision"], warnings=warnings)
    return out


def format_estimate(d: dict[str, Any]) -> str:
    """Readable lines for one estimate_latency result."""
    lines = [f"{d['target']} {d['precision']}: " + (f"{d['estimate_ms']:.3f} ms" if d["estimate_ms"] is not None
                                                    else "no estimate"), f"  {d['label']}"]
    for r in d["loo"]["rows"]:
        lines.append(f"    LOO {r['network']}: published {r['published_ms']:g} ms, predicted {r['predicted_ms']:g}"
                     f" ms ({r['rel_error']:+.0%})")
    for u in d.get("references_unusable", []):
        lines.append(f"  unusable: {u['network']} ({u['precision']}): {u['reason']}")
    for w in d["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


__all__ = ["NOT_MODELLED", "NetArrays", "Params", "calibrate", "calibration_report", "estimate_latency", "fit",
           "format_estimate", "leave_one_out", "predict_ms"]
