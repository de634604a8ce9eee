"""Verification accuracy of an embedder on pairs drawn from a labelled face set (e.g. held-out synthetic)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..artifacts import host_description
from ..data.folder import FaceSet
from ..data.pairs import make_pairs
from ..errors import UserError
from .embed import Embedder, execution_notes
from .verification import cosine_scores, kfold_verification


def folds_for(labels: np.ndarray, source: str, most: int = 10) -> int:
    """How many identity-disjoint folds a labelled face set supports (2 identities per fold, up to `most`). Too
    few identities, or no identity with two images, is a UserError saying what the set has and what to add."""
    labels = np.asarray(labels)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    n = int(ids.size)
    if n < 4:
        raise UserError(f"{source} has {n} identit{'y' if n == 1 else 'ies'}; pair verification needs at least "
                        "4 (2 identity-disjoint folds of 2 people): add more identity folders")
    if counts.max() < 2:
        raise UserError(f"{source}: every one of its {n} identities has a single image, so no matched pair can be "
                        "made; add a second image of the same person to the identity folders")
    return min(most, n // 2)


def evaluate_pairs(embedder: Embedder, faces: FaceSet, folds: int = 10, pairs_per_fold: int = 200, seed: int = 0,
                   flip: bool = True, progress: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    a, b, same, fold = make_pairs(faces.labels, folds, pairs_per_fold, seed)
    used = np.unique(np.concatenate([a, b]))
    e = embedder.embed(faces.images[used], flip=flip, progress=progress)
    emb = np.zeros((len(faces), e.shape[1]), np.float32)
    emb[used] = e
    res = kfold_verification(cosine_scores(emb[a], emb[b]), same, fold)
    return {
        "dataset": faces.describe(),
        "protocol": f"{folds}-fold verification, threshold chosen on {folds - 1} folds, identity-disjoint folds, "
                    f"{len(same)} distinct pairs ({int(same.sum())} matched)"
                    + (f", every pair the set has (fewer than the {folds * pairs_per_fold} asked)"
                       if len(same) < folds * (pairs_per_fold // 2) * 2 else "") + ", cosine score"
                    + (", flip fusion" if flip else ""),
        "model": embedder.name,
        "runtime": embedder.runtime,
        **execution_notes(embedder),
        "host": host_description(),
        "accuracy": res.accuracy_mean,
        "accuracy_std": res.accuracy_std,
        "result": res.to_dict(),
        "summary": res.summary(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
