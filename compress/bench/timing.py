"""Latency measurement of one callable: warm-up, then timed runs until the median is stable.

Machines are noisy, so a single mean says little: we time at least `min_runs` calls over at least
`min_seconds`, and keep going (up to `max_seconds`) while the medians of the two halves of the runs disagree
by more than `stable_within`. The record says whether it settled, so a reader knows how far to trust it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def measure(call: Callable[[], Any], *, warmup: int = 10, min_runs: int = 50, min_seconds: float = 2.0,
            max_seconds: float = 30.0, stable_within: float = 0.03) -> dict[str, Any]:
    """Time `call()`; return median/p90/mean/min in ms, runs, wall time, and whether the median was stable."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if len(times) >= min_runs and elapsed >= min_seconds:
            drift = _half_drift(times)
            if drift <= stable_within or elapsed >= max_seconds:
                break
    ms = np.asarray(times) * 1e3
    return {
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "runs": len(ms),
        "warmup": warmup,
        "seconds": round(float(time.perf_counter() - start), 3),
        "half_drift": round(_half_drift(times), 4),
        "stable": _half_drift(times) <= stable_within,
    }


def _half_drift(times: list[float]) -> float:
    """Relative difference of the medians of the first and second half of the runs."""
    h = len(times) // 2
    if h < 2:
        return float("inf")
    a, b = float(np.median(times[:h])), float(np.median(times[h:]))
    return abs(a - b) / max(min(a, b), 1e-12)
