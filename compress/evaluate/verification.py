"""Face-verification protocol: k-fold accuracy, TAR@FAR and ROC over scored pairs (pure numpy).

Conventions used throughout:

- A pair is predicted "same person" when ``score > threshold`` (strictly greater).
- k-fold accuracy (the LFW protocol): for each fold k, the threshold is the one that maximises accuracy on the
  *other* folds; the reported number for fold k is the accuracy of that threshold on fold k alone. The result
  is the mean and the population standard deviation (``np.std``, ddof=0, as in the usual LFW code) of the
  per-fold accuracies. Candidate thresholds are every midpoint between consecutive distinct training scores
  plus one below the lowest and one at the highest score, so every distinct split of the training scores is
  tried; the search is vectorised (sort + searchsorted, O(n log n) per fold). When several thresholds tie on
  training accuracy, the middle of the first (lowest) run of tied candidates is taken.
- TAR@FAR and the ROC/AUC are computed over *all* pairs at once, not per fold. TAR@FAR=f uses the threshold
  that lets at most ``floor(f * n_impostor)`` impostor pairs through (FAR <= f) and reports the fraction of
  genuine pairs accepted. With few impostor pairs a small FAR is only a handful of false accepts (LFW's 3000
  impostor pairs at FAR=1e-3 allow 3), and below ``1 / n_impostor`` it allows none: the number is reported
  anyway, and ``far_false_accepts`` says how many false accepts each FAR allowed, so readers can judge it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compress.artifacts import atomic_write
from compress.errors import UserError

__all__ = ["VerificationResult", "kfold_verification", "cosine_scores", "plot_roc", "far_key"]

# Fewer allowed false accepts than this and TAR@FAR is flagged as statistically weak in summaries.
_FEW_FALSE_ACCEPTS = 10
_ROC_POINTS_IN_DICT = 64


def far_key(far: float) -> str:
    """The dictionary key for a FAR value: 1e-3 -> "1e-3", 0.01 -> "1e-2", 5e-4 -> "5e-4"."""
    mantissa, exponent = f"{far:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


@dataclass
class VerificationResult:
    """Outcome of :func:`kfold_verification`.

    ``accuracy_mean``/``accuracy_std``/``fold_accuracies`` are fractions in [0, 1] from the k-fold protocol
    (threshold chosen on the other folds, ``thresholds[k]`` is the one used on fold k). ``tar_at_far``,
    ``auc``, ``fpr`` and ``tpr`` are computed over all pairs together (no folds); ``far_false_accepts`` gives,
    per FAR key, how many impostor pairs that FAR allows to be accepted (``floor(far * n_impostor)``): when it
    is small (e.g. 3 for LFW's 3000 impostors at 1e-3) the TAR is a coarse estimate, and 0 means the FAR is
    below what the data can resolve.
    """

    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    thresholds: list[float]
    tar_at_far: dict[str, float]
    auc: float
    n_pairs: int
    n_folds: int
    fpr: np.ndarray
    tpr: np.ndarray
    n_genuine: int = 0
    n_impostor: int = 0
    far_false_accepts: dict[str, int] = field(default_factory=dict)
    tar_thresholds: dict[str, float] = field(default_factory=dict)

    def roc_points(self, n: int = _ROC_POINTS_IN_DICT) -> tuple[np.ndarray, np.ndarray]:
        """The ROC downsampled to about ``n`` points, log-spaced in FAR (plus the curve's ends)."""
        fpr, tpr = np.asarray(self.fpr, float), np.asarray(self.tpr, float)
        if fpr.size <= n:
            return fpr, tpr
        positive = fpr[fpr > 0]
        lo = positive.min() if positive.size else 1.0
        grid = np.unique(np.concatenate([[0.0], np.logspace(np.log10(lo), 0.0, n - 1)]))
        # For each grid FAR, the best TPR reachable at FPR <= grid value (a step ROC read from the left).
        idx = np.searchsorted(fpr, grid, side="right") - 1
        return fpr[idx], tpr[idx]

    def to_dict(self) -> dict:
        """JSON-friendly summary; the ROC is downsampled to at most 64 points under ``roc``."""
        roc_fpr, roc_tpr = self.roc_points()
        return {
            "accuracy_mean": float(self.accuracy_mean),
            "accuracy_std": float(self.accuracy_std),
            "fold_accuracies": [float(a) for a in self.fold_accuracies],
            "thresholds": [float(t) for t in self.thresholds],
            "tar_at_far": {k: float(v) for k, v in self.tar_at_far.items()},
            "tar_at_far_scope": "all pairs (no folds)",
            "far_false_accepts": {k: int(v) for k, v in self.far_false_accepts.items()},
            "tar_thresholds": {k: float(v) for k, v in self.tar_thresholds.items()},
            "auc": float(self.auc),
            "n_pairs": int(self.n_pairs),
            "n_genuine": int(self.n_genuine),
            "n_impostor": int(self.n_impostor),
            "n_folds": int(self.n_folds),
            "roc": {"fpr": [float(x) for x in roc_fpr], "tpr": [float(x) for x in roc_tpr],
                    "note": f"downsampled to <= {_ROC_POINTS_IN_DICT} points, all pairs"},
        }

    def summary(self) -> str:
        """One line, e.g. ``97.53% +- 0.71 (10-fold, 6000 pairs), TAR@FAR=1e-3 91.20% (3 FA allowed)``."""
        text = (f"{100 * self.accuracy_mean:.2f}% +- {100 * self.accuracy_std:.2f} "
                f"({self.n_folds}-fold, {self.n_pairs} pairs)")
        for key, tar in self.tar_at_far.items():
            text += f", TAR@FAR={key} {100 * tar:.2f}%"
            allowed = self.far_false_accepts.get(key)
            if allowed is not None and allowed < _FEW_FALSE_ACCEPTS:
                text += f" ({allowed} FA allowed)"
        return text


def _fold_ids(folds: int | np.ndarray, n: int) -> np.ndarray:
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        k = int(folds)
        if k < 2 or k > n:
            raise UserError(f"folds must be between 2 and the number of pairs ({n}), got {k}")
        # Contiguous blocks in the given pair order (np.array_split: sizes differ by at most one).
        return np.repeat(np.arange(k), [len(b) for b in np.array_split(np.arange(n), k)])
    ids = np.asarray(folds)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise UserError(f"fold ids must be a 1-D array with one id per pair ({n}), got shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
            ids = ids.astype(np.int64)
        else:
            raise UserError(f"fold ids must be integers, got dtype {ids.dtype}")
    if np.unique(ids).size < 2:
        raise UserError("fold ids must name at least 2 folds")
    return ids


def _validate(scores, issame) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    issame = np.asarray(issame)
    if scores.ndim != 1 or issame.ndim != 1:
        raise UserError(f"scores and issame must be 1-D, got shapes {scores.shape} and {issame.shape}")
    if scores.shape[0] != issame.shape[0]:
        raise UserError(f"scores ({scores.shape[0]}) and issame ({issame.shape[0]}) have different lengths")
    if scores.dtype.kind not in "iuf":
        raise UserError(f"scores must be numeric, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        raise UserError(f"{bad} of {scores.size} scores are NaN or infinite; check the embeddings")
    if issame.dtype != bool:
        if issame.dtype.kind not in "iuf" or not np.all(np.isin(issame, (0, 1))):
            raise UserError("issame must be booleans (or 0/1)")
        issame = issame.astype(bool)
    if not issame.any():
        raise UserError("no genuine (same-person) pairs: verification needs both genuine and impostor pairs")
    if issame.all():
        raise UserError("no impostor (different-person) pairs: verification needs both genuine and impostor pairs")
    return scores, issame


def _candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """One threshold per distinct split of ``scores`` under the rule ``score > t``, in increasing order."""
    u = np.unique(scores)
    mid = u[:-1] + (u[1:] - u[:-1]) / 2.0
    mid = np.where(mid >= u[1:], u[:-1], mid)  # adjacent floats: keep the split between them
    below = np.nextafter(u[0], -np.inf)
    return np.concatenate([[below], mid, [u[-1]]])


def _accepted_counts(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of ``sorted_scores`` are > each threshold."""
    return sorted_scores.size - np.searchsorted(sorted_scores, thresholds, side="right")


def _best_threshold(scores: np.ndarray, issame: np.ndarray) -> float:
    cands = _candidate_thresholds(scores)
    pos = np.sort(scores[issame])
    neg = np.sort(scores[~issame])
    correct = _accepted_counts(pos, cands) + (neg.size - _accepted_counts(neg, cands))
    best = correct.max()
    first = int(np.argmax(correct == best))
    # End of the first run of tied maxima; take its middle for a margin on both sides.
    rest = correct[first:] != best
    last = first + (int(np.argmax(rest)) - 1 if rest.any() else rest.size - 1)
    return float(cands[(first + last) // 2])


def _roc(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC over all pairs: (fpr, tpr, thresholds), from (0, 0) to (1, 1), one point per distinct score."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], issame[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last_of_value = np.r_[np.diff(s) != 0, True]
    tp, fp, thr = tp[last_of_value], fp[last_of_value], s[last_of_value]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, thr]


def _tar_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> tuple[float, int, float]:
    """(TAR, allowed false accepts, threshold) at FAR <= far, over all pairs, rule ``score > threshold``."""
    if not 0.0 < far <= 1.0:
        raise UserError(f"FAR values must be in (0, 1], got {far}")
    neg_desc = np.sort(scores[~issame])[::-1]
    allowed = int(math.floor(far * neg_desc.size + 1e-9))
    if allowed >= neg_desc.size:
        threshold = float(np.nextafter(scores.min(), -np.inf))
    else:
        # Accepting only scores above the (allowed+1)-th highest impostor score lets <= allowed impostors in.
        threshold = float(neg_desc[allowed])
    tar = float(np.mean(scores[issame] > threshold))
    return tar, allowed, threshold


def kfold_verification(scores: np.ndarray, issame: np.ndarray, folds: int | np.ndarray = 10,
                       fars: tuple[float, ...] = (1e-3, 1e-2)) -> VerificationResult:
    """Run the k-fold verification protocol on pair scores (higher = more likely the same person).

    ``folds``: an int splits the pairs, in the order given, into that many contiguous folds of equal size
    (sizes differ by at most one when they do not divide evenly; LFW's pairs.txt is 10 contiguous blocks of
    600), or an array of one integer fold id per pair. For each fold the threshold is chosen on the other
    folds only and accuracy is measured on the fold. ``fars``: the false-accept rates for TAR@FAR, computed
    over all pairs (see the module docstring for when a FAR is too small for the number of impostor pairs).
    Raises :class:`~compress.errors.UserError` on mismatched lengths, NaN/inf scores, or a lack of genuine
    or impostor pairs.
    """
    scores, issame = _validate(scores, issame)
    n = scores.size
    ids = _fold_ids(folds, n)
    fold_values = np.unique(ids)

    accuracies: list[float] = []
    thresholds: list[float] = []
    for f in fold_values:
        test = ids == f
        train = ~test
        threshold = _best_threshold(scores[train], issame[train])
        acc = float(np.mean((scores[test] > threshold) == issame[test]))
        thresholds.append(threshold)
        accuracies.append(acc)

    fpr, tpr, _ = _roc(scores, issame)
    auc = float(np.trapezoid(tpr, fpr))
    tar, allowed, tar_thr = {}, {}, {}
    for far in fars:
        key = far_key(far)
        tar[key], allowed[key], tar_thr[key] = _tar_at_far(scores, issame, float(far))

    acc_arr = np.asarray(accuracies)
    return VerificationResult(
        accuracy_mean=float(acc_arr.mean()), accuracy_std=float(acc_arr.std()),
        fold_accuracies=accuracies, thresholds=thresholds, tar_at_far=tar, auc=auc,
        n_pairs=int(n), n_folds=int(fold_values.size), fpr=fpr, tpr=tpr,
        n_genuine=int(issame.sum()), n_impostor=int((~issame).sum()),
        far_false_accepts=allowed, tar_thresholds=tar_thr,
    )


def cosine_scores(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) embedding arrays; rows are L2-normalised first (float64)."""
    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise UserError(f"embeddings must be two (N, D) arrays of the same shape, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise UserError("embeddings contain NaN or infinite values; check the model and its input")
    eps = 1e-12
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), eps)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), eps)
    return np.einsum("nd,nd->n", a, b)


def plot_roc(curves: dict[str, VerificationResult], path: str | Path, title: str = "") -> Path:
    """Write a PNG of ROC curves (TAR vs FAR, log-scale FAR) with each curve's k-fold accuracy in the legend.

    Uses matplotlib's Agg canvas directly (no global backend change) and writes atomically (a temporary
    file in the target folder, then ``os.replace``). Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise UserError("plot_roc needs at least one curve")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    min_far, min_tar = 1.0, 1.0
    for name, res in curves.items():
        fpr, tpr = np.asarray(res.fpr, float), np.asarray(res.tpr, float)
        keep = fpr > 0
        if keep.any():
            min_far = min(min_far, float(fpr[keep].min()))
            min_tar = min(min_tar, float(tpr[keep].min()))
        label = (f"{name}: {100 * res.accuracy_mean:.2f}% +- {100 * res.accuracy_std:.2f} "
                 f"({res.n_folds}-fold), AUC {res.auc:.4f}")
        ax.step(fpr[keep], tpr[keep], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlim(min_far, 1.0)
    # Zoom the TAR axis onto the curves (good models sit near 1), in steps of 0.05.
    ax.set_ylim(max(0.0, float(np.floor((min_tar - 0.005) * 20) / 20)), 1.002)
    ax.set_xlabel("false accept rate (FAR, log scale)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()

    from ..outputs import PNG_SOFTWARE  # the tag that lets a later run replace this file

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": PNG_SOFTWARE}))
    return path
