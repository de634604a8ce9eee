"""Verification pairs from a labelled face set, split into identity-disjoint folds like LFW's View 2."""

from __future__ import annotations

import numpy as np


def make_pairs(labels: np.ndarray, folds: int = 10, pairs_per_fold: int = 300, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (index_a, index_b, issame, fold) with pairs_per_fold/2 matched and mismatched pairs per fold.

    Identities are dealt to folds, so no identity is in two folds (thresholds never see test identities).
    """
    rng = np.random.default_rng(seed)
    ids = np.unique(labels)
    if len(ids) < 2 * folds:
        raise ValueError(f"need at least {2 * folds} identities for {folds} folds, got {len(ids)}")
    rng.shuffle(ids)
    by_id = {i: np.flatnonzero(labels == i) for i in ids}
    a, b, same, fold = [], [], [], []
    half = pairs_per_fold // 2
    for k in range(folds):
        fold_ids = ids[k::folds]
        multi = [i for i in fold_ids if len(by_id[i]) >= 2]
        if not multi:
            raise ValueError("every identity has a single image: cannot make matched pairs")
        for _ in range(half):
            i = multi[rng.integers(len(multi))]
            x, y = rng.choice(by_id[i], 2, replace=False)
            a.append(x), b.append(y), same.append(True), fold.append(k)
        for _ in range(half):
            i, j = rng.choice(fold_ids, 2, replace=False)
            a.append(rng.choice(by_id[i])), b.append(rng.choice(by_id[j])), same.append(False), fold.append(k)
    return np.array(a), np.array(b), np.array(same), np.array(fold)
