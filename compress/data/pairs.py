"""Verification pairs from a labelled face set, split into identity-disjoint folds like LFW's View 2."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def make_pairs(labels: np.ndarray, folds: int = 10, pairs_per_fold: int = 300, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (index_a, index_b, issame, fold) with pairs_per_fold/2 matched and mismatched pairs per fold.

    Identities are dealt to folds, so no identity is in two folds (thresholds never see test identities).
    """
    rng = np.random.default_rng(seed)
    ids = np.unique(labels[labels >= 0]) if len(labels) else np.unique(labels)
    if folds < 2:
        raise UserError(f"verification needs at least 2 folds (threshold chosen on the others), got {folds}; "
                        f"that takes at least 4 identities, the face set has {len(ids)}")
    if len(ids) < 2 * folds:
        raise UserError(f"{folds}-fold verification needs at least {2 * folds} identities (2 per fold, identity-"
                        f"disjoint folds), the face set has {len(ids)}; add more identity folders")
    rng.shuffle(ids)
    by_id = {i: np.flatnonzero(labels == i) for i in ids}
    a, b, same, fold = [], [], [], []
    half = pairs_per_fold // 2
    for k in range(folds):
        fold_ids = ids[k::folds]
        multi = [i for i in fold_ids if len(by_id[i]) >= 2]
        if not multi:
            n_multi = sum(len(v) >= 2 for v in by_id.values())
            raise UserError(f"fold {k + 1} of {folds}: every identity in it has a single image, so no matched pair "
                            f"can be made ({n_multi} of {len(ids)} identities have 2+ images); add a second image "
                            "of the same person to the identity folders")
        for _ in range(half):
            i = multi[rng.integers(len(multi))]
            x, y = rng.choice(by_id[i], 2, replace=False)
            a.append(x), b.append(y), same.append(True), fold.append(k)
        for _ in range(half):
            i, j = rng.choice(fold_ids, 2, replace=False)
            a.append(rng.choice(by_id[i])), b.append(rng.choice(by_id[j])), same.append(False), fold.append(k)
    return np.array(a), np.array(b), np.array(same), np.array(fold)
