"""Verification pairs from a labelled face set, split into identity-disjoint folds like LFW's View 2."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def make_pairs(labels: np.ndarray, folds: int = 10, pairs_per_fold: int = 300, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (index_a, index_b, issame, fold) with pairs_per_fold/2 matched and mismatched pairs per fold, each
    pair distinct (drawn without replacement); a fold with fewer distinct pairs gives all it has.

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
        def matched() -> tuple[int, int]:
            i = multi[rng.integers(len(multi))]
            x, y = rng.choice(by_id[i], 2, replace=False)
            return x, y

        def mismatched() -> tuple[int, int]:
            i, j = rng.choice(fold_ids, 2, replace=False)
            return rng.choice(by_id[i]), rng.choice(by_id[j])

        sizes = np.array([len(by_id[i]) for i in fold_ids])
        n_matched = int((sizes * (sizes - 1) // 2).sum())
        n_mismatched = int((sizes.sum() ** 2 - (sizes ** 2).sum()) // 2)
        for draw, avail, issame in ((matched, n_matched, True), (mismatched, n_mismatched, False)):
            for x, y in _distinct(draw, min(half, avail)):
                a.append(x), b.append(y), same.append(issame), fold.append(k)
    return np.array(a), np.array(b), np.array(same), np.array(fold)


def _distinct(draw, n: int) -> list[tuple[int, int]]:
    """n pairs from `draw`, none twice (either order): a small set yields each of its pairs once, not 400 pairs
    of which most are repeats that would count one face pair many times in the accuracy."""
    seen: set[tuple[int, int]] = set()
    out = []
    while len(out) < n:
        x, y = draw()
        key = (min(int(x), int(y)), max(int(x), int(y)))
        if key not in seen:
            seen.add(key)
            out.append((x, y))
    return out
