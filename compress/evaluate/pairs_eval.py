"""Verification accuracy of an embedder on pairs drawn from a labelled face set (e.g. held-out synthetic)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..artifacts import host_description
from ..data.folder import FaceSet
from ..data.pairs import make_pairs
from .embed import Embedder
from .verification import cosine_scores, kfold_verification


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
                    f"{len(same)} pairs ({int(same.sum())} matched), cosine score"
                    + (", flip fusion" if flip else ""),
        "model": embedder.name,
        "runtime": embedder.runtime,
        "host": host_description(),
        "accuracy": res.accuracy_mean,
        "accuracy_std": res.accuracy_std,
        "result": res.to_dict(),
        "summary": res.summary(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
