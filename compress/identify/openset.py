"""Open-set 1:N identification metrics (pure numpy): closed-set rank-1 and the detection-and-identification
rate (DIR) at a false-accept rate, with the threshold set on impostor probes the way `compress enrol` sets it."""

from __future__ import annotations

import numpy as np

from .enrol import threshold_at_far


def open_set_metrics(gallery: np.ndarray, probes: np.ndarray, truth: np.ndarray, impostors: np.ndarray,
                     fars: tuple[float, ...] = (1e-2, 1e-3)) -> dict:
    """gallery (P, D) templates, probes (G, D) with truth (G,) row indices into gallery, impostors (I, D) of
    people not in the gallery; all L2-normalised. rank-1: best-scoring template is the right one. DIR at FAR f:
    rank-1 correct and score > the threshold that at most floor(f * I) impostors' best scores exceed."""
    s = probes @ gallery.T
    top = s.argmax(axis=1)
    best = s[np.arange(len(top)), top]
    correct = top == np.asarray(truth)
    imp_best = (impostors @ gallery.T).max(axis=1)
    out = {"gallery": int(len(gallery)), "genuine_probes": int(len(probes)), "impostor_probes": int(len(imp_best)),
           "rank1": float(correct.mean())}
    for far in fars:
        t = threshold_at_far(imp_best, far)
        out[f"dir@far={far:g}"] = float((correct & (best > t["threshold"])).mean())
        out[f"threshold@far={far:g}"] = t["threshold"]
        out[f"false_accepts_allowed@far={far:g}"] = t["false_accepts_allowed"]
    return out
