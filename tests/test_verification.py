"""The face-verification protocol: k-fold accuracy, threshold selection, TAR@FAR, ROC/AUC, plotting, errors."""

import json
import time

import numpy as np
import pytest

from compress.errors import UserError
from compress.evaluate.verification import (
    VerificationResult,
    cosine_scores,
    far_key,
    kfold_verification,
    plot_roc,
)


def _separated(n_per_fold=20, folds=5, seed=0):
    rng = np.random.default_rng(seed)
    scores, issame = [], []
    for _ in range(folds):
        half = n_per_fold // 2
        scores += list(rng.uniform(0.6, 0.9, half)) + list(rng.uniform(-0.5, 0.2, half))
        issame += [True] * half + [False] * half
    return np.array(scores), np.array(issame)


def test_perfect_separation_is_100_percent():
    scores, issame = _separated()
    res = kfold_verification(scores, issame, folds=5)
    assert res.accuracy_mean == 1.0
    assert res.accuracy_std == 0.0
    assert res.fold_accuracies == [1.0] * 5
    assert res.n_folds == 5 and res.n_pairs == 100
    assert res.auc == pytest.approx(1.0)
    assert all(0.2 < t < 0.6 for t in res.thresholds)
    assert res.tar_at_far["1e-2"] == 1.0


def test_unavoidable_errors_give_exact_accuracy():
    # Fold f holds f genuine pairs scored below every impostor: no threshold can save them, and moving the
    # threshold under them would accept 40+ impostors in training, so each fold loses exactly f pairs.
    scores, issame = _separated(n_per_fold=20, folds=5, seed=1)
    for f in range(5):
        scores[f * 20: f * 20 + f] = -0.9
    res = kfold_verification(scores, issame, folds=5)
    expected = np.array([1.0, 0.95, 0.90, 0.85, 0.80])
    np.testing.assert_allclose(res.fold_accuracies, expected)
    assert res.accuracy_mean == pytest.approx(0.90)
    assert res.accuracy_std == pytest.approx(float(expected.std()))


def test_random_scores_are_near_chance():
    rng = np.random.default_rng(123)
    scores = rng.normal(size=6000)
    issame = np.repeat([True, False], 3000)
    rng.shuffle(issame)
    res = kfold_verification(scores, issame, folds=10)
    assert abs(res.accuracy_mean - 0.5) < 0.04
    assert abs(res.auc - 0.5) < 0.04


def test_threshold_is_chosen_on_training_folds_only():
    # Folds 0 and 1 want a threshold in (0.2, 0.8); fold 2 alone would want one in (0.2, 0.3).
    scores = np.array([0.9, 0.8, 0.2, 0.1,  # fold 0
                       0.9, 0.8, 0.2, 0.1,  # fold 1
                       0.35, 0.3, 0.2, 0.1])  # fold 2
    issame = np.array([True, True, False, False] * 3)
    res = kfold_verification(scores, issame, folds=3)
    assert res.thresholds[2] == pytest.approx(0.5)  # midpoint of the training gap (0.2, 0.8)
    assert res.fold_accuracies[2] == 0.5  # its genuine pairs at 0.3/0.35 fall under the training threshold
    assert res.fold_accuracies[:2] == [1.0, 1.0]
    assert 0.2 < res.thresholds[0] < 0.3  # with fold 2 in training the gap is (0.2, 0.3)


def test_explicit_fold_ids_match_contiguous_int_folds():
    scores, issame = _separated(n_per_fold=20, folds=4, seed=2)
    scores[::7] = -scores[::7]
    a = kfold_verification(scores, issame, folds=4)
    b = kfold_verification(scores, issame, folds=np.repeat(np.arange(4), 20))
    assert a.fold_accuracies == b.fold_accuracies and a.thresholds == b.thresholds
    # Non-contiguous fold ids are honoured as given.
    c = kfold_verification(scores, issame, folds=np.tile(np.arange(4), 20))
    assert c.n_folds == 4


def test_tar_at_far_on_constructed_case():
    impostor = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    genuine = np.r_[np.full(30, 0.9995), np.full(20, 0.995), np.full(50, 0.5)]
    scores = np.r_[genuine, impostor]
    issame = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    res = kfold_verification(scores, issame, folds=2, fars=(1e-4, 1e-3, 1e-2))
    # FAR 1e-2 allows 10 false accepts: threshold 0.989 accepts 0.990..0.999 and the 50 top genuines.
    assert res.far_false_accepts == {"1e-4": 0, "1e-3": 1, "1e-2": 10}
    assert res.tar_at_far["1e-2"] == pytest.approx(0.5)
    assert res.tar_at_far["1e-3"] == pytest.approx(0.3)
    assert res.tar_at_far["1e-4"] == pytest.approx(0.3)
    # The false-accept rate actually reached respects the bound.
    for key, far in (("1e-3", 1e-3), ("1e-2", 1e-2)):
        assert np.mean(impostor > res.tar_thresholds[key]) <= far


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(size=300), 1)  # ties on purpose
    issame = rng.random(300) < 0.4
    res = kfold_verification(scores, issame, folds=3)
    pos, neg = scores[issame], scores[~issame]
    diff = pos[:, None] - neg[None, :]
    expected = np.mean(diff > 0) + 0.5 * np.mean(diff == 0)
    assert res.auc == pytest.approx(expected)
    assert res.fpr[0] == 0 and res.tpr[0] == 0 and res.fpr[-1] == 1 and res.tpr[-1] == 1


def test_to_dict_is_json_and_summary_reads_well():
    scores, issame = _separated()
    res = kfold_verification(scores, issame, folds=5)
    d = res.to_dict()
    json.dumps(d)
    assert d["n_pairs"] == 100 and set(d["tar_at_far"]) == {"1e-3", "1e-2"}
    assert len(d["roc"]["fpr"]) <= 64
    assert "fpr" not in d and "tpr" not in d
    assert res.summary().startswith("100.00% +- 0.00 (5-fold, 100 pairs), TAR@FAR=1e-3")
    assert far_key(1e-3) == "1e-3" and far_key(0.01) == "1e-2" and far_key(5e-4) == "5e-4"


def test_six_thousand_pairs_is_fast():
    rng = np.random.default_rng(0)
    issame = np.tile(np.repeat([True, False], 300), 10)
    scores = rng.normal(size=6000) + 2.0 * issame
    t = time.perf_counter()
    res = kfold_verification(scores, issame)
    assert time.perf_counter() - t < 2.0
    assert 0.8 < res.accuracy_mean < 0.9  # Bayes accuracy for unit-variance classes 2 apart is 84.1%


def test_cosine_scores():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 8))
    b = rng.normal(size=(10, 8))
    expected = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(cosine_scores(a, b), expected)
    np.testing.assert_allclose(cosine_scores(3 * a, 0.5 * b), expected)
    np.testing.assert_allclose(cosine_scores(a, a), 1.0)
    with pytest.raises(UserError):
        cosine_scores(a, b[:5])
    with pytest.raises(UserError):
        cosine_scores(a[0], b[0])


def test_plot_roc_writes_png(tmp_path):
    scores, issame = _separated()
    rng = np.random.default_rng(0)
    noisy = scores + rng.normal(scale=0.3, size=scores.size)
    curves = {"clean": kfold_verification(scores, issame, 5), "noisy": kfold_verification(noisy, issame, 5)}
    out = plot_roc(curves, tmp_path / "sub" / "roc.png", title="test")
    assert out == tmp_path / "sub" / "roc.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["roc.png"]  # no temp file left behind
    with pytest.raises(UserError):
        plot_roc({}, tmp_path / "x.png")


@pytest.mark.parametrize(
    "scores, issame, folds, match",
    [
        (np.zeros(10), np.zeros(9, bool), 2, "different lengths"),
        (np.arange(10.0), np.ones(10, bool), 2, "no impostor"),
        (np.arange(10.0), np.zeros(10, bool), 2, "no genuine"),
        (np.r_[np.nan, np.arange(9.0)], np.arange(10) % 2 == 0, 2, "NaN"),
        (np.arange(10.0), np.arange(10) % 2 == 0, 1, "folds"),
        (np.arange(10.0), np.arange(10) % 2 == 0, 11, "folds"),
        (np.arange(10.0), np.arange(10) % 2 == 0, np.zeros(9, int), "fold ids"),
        (np.arange(10.0), np.arange(10) % 2 == 0, np.zeros(10, int), "at least 2"),
        (np.arange(10.0), np.arange(10) * 2, 2, "issame"),
        (np.zeros((5, 2)), np.zeros(5, bool), 2, "1-D"),
    ],
)
def test_bad_input_raises_user_error(scores, issame, folds, match):
    with pytest.raises(UserError, match=match):
        kfold_verification(scores, issame, folds=folds)


def test_result_type():
    scores, issame = _separated()
    assert isinstance(kfold_verification(scores, issame, 5), VerificationResult)
