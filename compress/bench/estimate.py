"""Per-layer latency estimate for a board that is not here, calibrated on published reference latencies.

Layer time (one Conv2d / Linear layer of compress.bench.reference_nets, batch 1), default model:

    t_layer = MACs / throughput + bytes / bandwidth_eff + overhead        network time = sum over layers

    throughput     = peak MAC/s of the precision x efficiency   ("efficiency vs peak" mode, when the target file
                     publishes a peak for the precision; efficiency bounded to (0, 1])
                   = a fitted effective MAC/s                   ("effective throughput" mode, when it does not)
    bandwidth_eff  fitted effective bytes/s for the layer's weights + input + output (bounded by the published
                   memory_bandwidth_gbps when the file has one): what makes depthwise and small layers cost more
                   than their MACs say, without a per-kind throughput
    overhead       fixed cost per layer (µs), fitted, bounded to [0, 2000] µs

Calibration fits log-latency error (scipy.optimize.least_squares) on the target's usable [[reference]] entries of
the same precision. The free parameters follow the number of references n, chosen before any fit (never by
the LOO error), at most n - 1 so leave-one-out (LOO) refits stay determined:

    n >= 4  throughput + effective bandwidth + overhead (3)     n = 2, 3  throughput + overhead (2)
    n = 1   throughput only (no LOO possible)
Why this model: on the shipped boards it transfers between networks better than per-kind throughputs with the
published bandwidth as a roofline (LOO mean on jetson-nano fp16 0.11 vs 0.16, jetson-orin-nano fp16 0.10 vs
0.39, raspberry-pi-5 fp32 0.11 vs 0.49; benchmarks/estimator_loo.py). The older structures (one throughput per
kind: "depthwise/other", "per-kind", with the published bandwidth as a roofline max) stay available through
fit(structure=...). A kind no reference has >= 5% of its MACs in is flagged when the estimated network leans on it.

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
LOO_GOAL = 0.25        # a calibration whose LOO mean |error| is above this gets a warning on every estimate
OVERHEAD_MAX_US = 2000.0
MIN_EFF = 1e-4
THROUGHPUT_BOUNDS = (1e6, 1e15)  # MAC/s, effective-throughput mode
BANDWIDTH_BOUNDS = (1e6, 1e13)   # bytes/s, fitted effective bandwidth when no peak is published
NOT_MODELLED = (ELEMENTWISE_POLICY + "; host<->device copies, pre/post-processing, runtime start-up and "
                "threading effects beyond the per-layer overhead are not modelled; layers run one after another "
                "(no concurrency); the memory term is one effective bandwidth over all bytes, with no cache model")

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
    """Time-model parameters: MAC/s per kind, per-layer overhead, bandwidth (bytes/s, None = no memory term).
    additive: memory time adds to compute time (fitted effective bandwidth); else roofline max (peak bandwidth)."""
    throughput: dict[str, float]
    overhead_us: float
    bandwidth: float | None = None
    additive: bool = False

    def layer_times(self, net: NetArrays) -> tuple[np.ndarray, np.ndarray]:
        thr = np.array([self.throughput[k] for k in KINDS])[net.kind]
        compute = net.macs / thr
        mem = net.nbytes / self.bandwidth if self.bandwidth else np.zeros_like(compute)
        t = compute + mem if self.additive else np.maximum(compute, mem)
        return t + self.overhead_us * 1e-6, mem > compute

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
    fit_bandwidth: bool = False                      # effective bandwidth fitted (additive memory term)

    @property
    def description(self) -> str:
        g = " / ".join(self.groups) if self.structure != "shared" else "one"
        what = "efficiency" if self.mode == "efficiency vs peak" else "effective throughput"
        bw = " + effective bandwidth" if self.fit_bandwidth else ""
        ovh = " + per-layer overhead" if self.free_overhead else ""
        return f"{g} {what}{bw}{ovh} ({self.n_free} free parameters)"


@dataclass(frozen=True)
class Structure:
    """Which parameters a fit frees: throughput groups, per-layer overhead, effective bandwidth."""
    name: str
    free_overhead: bool
    fit_bandwidth: bool

    @property
    def n_free(self) -> int:
        return len(STRUCTURES[self.name]) + int(self.free_overhead) + int(self.fit_bandwidth)


def choose_structure(refs: list[RefData]) -> tuple[Structure, list[str]]:
    """The default structure for n references (module docstring), and the kinds no reference constrains."""
    n = len(refs)
    shares = np.max([r.net.kind_share() for r in refs], axis=0) if refs else np.zeros(len(KINDS))
    tied = [k for k, sh in zip(KINDS, shares) if sh < MIN_KIND_SHARE]
    return Structure("shared", n >= 2, n >= 4), tied


def _bounds(peak: float | None, lo_frac: float, default: tuple[float, float]) -> tuple[float, float]:
    return (math.log(peak * lo_frac), math.log(peak)) if peak else tuple(math.log(b) for b in default)


def fit(refs: list[RefData], peak_macs: float | None, bandwidth: float | None,
        structure: str | Structure | None = None, free_overhead: bool | None = None) -> Fit:
    """Least-squares fit of log latency on `refs` (all at one precision). `structure` a Structure, or a
    throughput-group name ("shared" | "depthwise/other" | "per-kind") using the published bandwidth as a roofline."""
    from scipy.optimize import least_squares

    auto, tied = choose_structure(refs)
    if structure is None:
        st = auto if free_overhead is None else Structure(auto.name, free_overhead, auto.fit_bandwidth)
    elif isinstance(structure, str):
        st = Structure(structure, auto.free_overhead if free_overhead is None else free_overhead, False)
    else:
        st = structure
    groups = STRUCTURES[st.name]
    ng = len(groups)
    mode = "efficiency vs peak" if peak_macs else "effective throughput"
    lo, hi = _bounds(peak_macs, MIN_EFF, THROUGHPUT_BOUNDS)
    blo, bhi = _bounds(bandwidth, MIN_EFF, BANDWIDTH_BOUNDS)
    meas = np.log([r.ref.latency_ms for r in refs])

    def unpack(x: np.ndarray) -> Params:
        thr = {k: math.exp(v) for (_, kinds), v in zip(groups.items(), x[:ng]) for k in kinds}
        bw = math.exp(x[ng]) if st.fit_bandwidth else bandwidth
        ovh = float(x[-1]) if st.free_overhead else 0.0
        return Params(thr, ovh, bw, additive=st.fit_bandwidth)

    # every reference's layers stacked once, so one residual evaluation is a handful of numpy calls
    macs = np.concatenate([r.net.macs for r in refs])
    nbytes = np.concatenate([r.net.nbytes for r in refs])
    kind = np.concatenate([r.net.kind for r in refs])
    seg = np.concatenate([np.full(r.net.n_layers, i) for i, r in enumerate(refs)])

    def resid(x: np.ndarray) -> np.ndarray:
        p = unpack(x)
        thr = np.array([p.throughput[k] for k in KINDS])[kind]
        comp = macs / thr
        mem = nbytes / p.bandwidth if p.bandwidth else np.zeros_like(comp)
        t = (comp + mem if p.additive else np.maximum(comp, mem)) + p.overhead_us * 1e-6
        return np.log(np.maximum(np.bincount(seg, weights=t, minlength=len(refs)) * 1e3, 1e-9)) - meas

    # starting points: the median MAC/s and bytes/s the references imply, a few overhead guesses
    implied = np.median([r.net.macs.sum() / (r.ref.latency_ms * 1e-3) for r in refs])
    implied_bw = np.median([r.net.nbytes.sum() / (r.ref.latency_ms * 1e-3) for r in refs])
    best = None
    for scale in (1.0, 3.0, 0.3):
        for ovh_frac in ((0.0, 0.2, 0.5) if st.free_overhead else (0.0,)):
            x0 = [min(max(math.log(implied * scale), lo + 1e-9), hi - 1e-9)] * ng
            xl, xh = [lo] * ng, [hi] * ng
            if st.fit_bandwidth:
                x0.append(min(max(math.log(implied_bw * scale), blo + 1e-9), bhi - 1e-9))
                xl, xh = xl + [blo], xh + [bhi]
            if st.free_overhead:
                o0 = min(ovh_frac * min(r.ref.latency_ms * 1e3 / r.net.n_layers for r in refs), OVERHEAD_MAX_US)
                x0, xl, xh = x0 + [o0], xl + [0.0], xh + [OVERHEAD_MAX_US]
            res = least_squares(resid, np.array(x0), bounds=(np.array(xl), np.array(xh)), x_scale="jac",
                                xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
            if best is None or res.cost < best.cost:
                best = res
    assert best is not None
    return Fit(st.name, groups, st.free_overhead, unpack(best.x), mode, peak_macs, st.n_free,
               tied if st.name == "shared" else [], st.fit_bandwidth)


def _fits_in(st: Structure, n: int) -> Structure:
    """`st`, or the default structure for n references when st has more free parameters than n."""
    return st if st.n_free <= n else Structure("shared", n >= 2, n >= 4 and st.fit_bandwidth)


def leave_one_out(refs: list[RefData], peak_macs: float | None, bandwidth: float | None,
                  structure: Structure) -> dict[str, Any]:
    """Predict every reference from a fit on the others (same structure, fewer parameters if needed)."""
    if len(refs) < 2:
        return {"possible": False, "rows": [], "mean_abs_rel_error": None, "max_abs_rel_error": None,
                "note": f"leave-one-out needs at least 2 usable references; this calibration has {len(refs)}"}
    rows = []
    for i, r in enumerate(refs):
        others = refs[:i] + refs[i + 1:]
        # the held-out fit must stay determined: never more free parameters than remaining references
        f = fit(others, peak_macs, bandwidth, _fits_in(structure, len(others)))
        pred = f.params.predict_ms(r.net)
        rows.append({"network": r.ref.network, "published_ms": r.ref.latency_ms, "predicted_ms": round(pred, 3),
                     "rel_error": round((pred - r.ref.latency_ms) / r.ref.latency_ms, 4), "fit_on": len(others),
                     "fit_structure": f.description})
    errs = [abs(x["rel_error"]) for x in rows]
    return {"possible": True, "rows": rows, "mean_abs_rel_error": round(float(np.mean(errs)), 4),
            "max_abs_rel_error": round(float(np.max(errs)), 4),
            "note": "each reference predicted by a fit on the other references of the same precision"}


def _structure_of(f: Fit) -> Structure:
    return Structure(f.structure, f.free_overhead, f.fit_bandwidth)


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


_CALIBRATIONS: dict[tuple[str, str], dict[str, Any]] = {}


def calibrate(target: Target | str, precision: str) -> dict[str, Any]:
    """Fit + LOO for one precision of a target, from that precision's own references only. Memoised on the
    target's full content (a LOO over 15 references is a few hundred fits); callers must not mutate the result."""
    t = load_target(target) if isinstance(target, str) else target
    key = (repr(t), precision)
    if key not in _CALIBRATIONS:
        _CALIBRATIONS[key] = _calibrate(t, precision)
    return _CALIBRATIONS[key]


def _calibrate(t: Target, precision: str) -> dict[str, Any]:
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
               loo=leave_one_out(refs, peaks[precision], bw, _structure_of(f)),
               _fit=f)
    if len(refs) < 4:
        out["warnings"].append(f"only {len(refs)} usable reference(s): free parameters reduced to "
                               f"{f.n_free} ({f.description})")
    if f.tied:
        out["warnings"].append(f"no reference has >= {MIN_KIND_SHARE:.0%} of its MACs in {', '.join(f.tied)} "
                               "layers: their time rests on the shared throughput, not on a reference of that kind")
    loo_mean = out["loo"]["mean_abs_rel_error"]
    if loo_mean is not None and loo_mean > LOO_GOAL:
        out["warnings"].append(f"leave-one-out mean |error| {loo_mean:.0%} is above {LOO_GOAL:.0%}: the published "
                               "references disagree with one another under this model; treat the estimate as rough")
    if bw is None:
        out["warnings"].append("no published memory bandwidth: " + (
            "the effective bandwidth is fitted without a peak bound" if f.fit_bandwidth else
            "no memory term, throughputs absorb memory stalls"))
    if peaks[precision] is None:
        out["warnings"].append(f"no published {precision} peak: parameters are effective MAC/s, not efficiencies")
    runtimes = sorted({r.ref.runtime for r in refs})
    if any(rt.split()[0].lower() not in (t.runtime, "xnnpack") for rt in runtimes) or len(runtimes) > 1:
        out["warnings"].append(f"references ran on {'; '.join(runtimes)} (target runtime: {t.runtime}); "
                               "runtime differences are absorbed into the fit")
    return out


def _params_out(f: Fit) -> dict[str, Any]:
    p = f.params
    d: dict[str, Any] = {"overhead_us": round(p.overhead_us, 3), "overhead_free": f.free_overhead,
                         "throughput_macs_per_s": {k: float(f"{v:.4g}") for k, v in p.throughput.items()},
                         "bandwidth_bytes_per_s": p.bandwidth and float(f"{p.bandwidth:.4g}"),
                         "bandwidth": "fitted effective (additive memory term)" if f.fit_bandwidth else
                         ("published peak (roofline)" if p.bandwidth else "none")}
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
        params = Params({k: v * ratio for k, v in params.throughput.items()}, params.overhead_us, params.bandwidth,
                        params.additive)
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
                                                            peaks.get(precision), f.n_free, f.tied,
                                                            f.fit_bandwidth)),
               breakdown_ms=breakdown, memory_bound_layers=int(membound.sum()), loo=loo,
               references_used=cal["references_used"], references_unusable=cal["references_unusable"],
               references_other_precision=cal["references_other_precision"], warnings=warnings)
    return out


REFERENCE_NETWORK = "MobileFaceNet"   # the project's reference face model, rebuilt from its paper (reference_nets)


def reference_estimate(target: Target | str, precision: str) -> dict[str, Any]:
    """The reference face model (MobileFaceNet, 112x112, arXiv:1804.07573 Table 1) estimated on the same board,
    precision and calibration as ours, so a report can say "N x faster than MobileFaceNet (estimated)"."""
    from .reference_nets import NETWORKS, reference_layers

    net = NETWORKS["mobilefacenet"]
    d = estimate_latency(reference_layers(REFERENCE_NETWORK, net.published_size), target, precision)
    return {"network": f"{net.title} ({net.mac_source.split(':')[0]}, {net.published_size}x{net.published_size})",
            "macs": d["macs"], "latency_ms": d["estimate_ms"], "status": d["status"], "label": d["label"]}


def format_estimate(d: dict[str, Any]) -> str:
    """Readable lines for one estimate_latency result."""
    lines = [f"{d['target']} {d['precision']}: " + (f"{d['estimate_ms']:.3f} ms" if d["estimate_ms"] is not None
                                                    else "no estimate"), f"  {d['label']}"]
    ref = d.get("reference_estimate") or {}
    if d["estimate_ms"] and ref.get("latency_ms"):
        lines.append(f"  reference {ref['network']}: {ref['latency_ms']:.3f} ms estimated alike; ours is "
                     f"{ref['latency_ms'] / d['estimate_ms']:.1f}x faster (estimated)")
    for r in d["loo"]["rows"]:
        lines.append(f"    LOO {r['network']}: published {r['published_ms']:g} ms, predicted {r['predicted_ms']:g}"
                     f" ms ({r['rel_error']:+.0%})")
    for u in d.get("references_unusable", []):
        lines.append(f"  unusable: {u['network']} ({u['precision']}): {u['reason']}")
    for w in d["warnings"]:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


__all__ = ["NOT_MODELLED", "NetArrays", "Params", "REFERENCE_NETWORK", "Structure", "calibrate", "calibration_report",
           "estimate_latency", "fit", "format_estimate", "leave_one_out", "predict_ms", "reference_estimate"]
