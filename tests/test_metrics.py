"""Tests for mlsupcon.evaluation: metrics and validation-only threshold tuning."""

from __future__ import annotations

import doctest
import inspect
import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import metrics as skm

from mlsupcon import evaluation as ev
from mlsupcon.evaluation import (
    compute_metrics,
    tune_global_threshold,
    tune_per_label_thresholds,
)
from mlsupcon.evaluation import metrics as M
from mlsupcon.evaluation import thresholds as T

REQUIRED_KEYS = {
    "micro_f1", "macro_f1", "macro_f1_all", "macro_f1_pr",
    "micro_precision", "micro_recall", "macro_precision", "macro_recall",
    "micro_auc", "micro_auc_present", "macro_auc", "map", "micro_ap",
    "example_f1", "hamming_loss", "subset_accuracy",
    "p@1", "p@5", "p@8", "p@15", "r@1", "r@5", "r@8", "r@15",
    "threshold",
}  # fmt: skip


# ---------------------------------------------------------------------------
# hand-computed case
# ---------------------------------------------------------------------------
# 5 examples x 4 labels; label 2 never positive (absent), example 2 has a
# prediction but no label, example 4 has neither.
Y_HAND = np.array(
    [
        [1, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
        [1, 0, 0, 1],
        [0, 0, 0, 0],
    ]
)
S_HAND = np.array(
    [
        [0.9, 0.6, 0.7, 0.1],
        [0.2, 0.4, 0.8, 0.3],
        [0.3, 0.1, 0.2, 0.6],
        [0.6, 0.7, 0.3, 0.55],
        [0.1, 0.2, 0.3, 0.4],
    ]
)
# predictions at 0.5:
#   ex0 [1 1 1 0]  ex1 [0 0 1 0]  ex2 [0 0 0 1]  ex3 [1 1 0 1]  ex4 [0 0 0 0]
# per label (tp, fp, fn) -> P, R, F1:
#   L0 (2,0,0) -> 1, 1, 1
#   L1 (1,1,1) -> 1/2, 1/2, 1/2
#   L2 (0,2,0) -> 0, 0, 0          (absent: no positive)
#   L3 (1,1,0) -> 1/2, 1, 2/3
# micro: TP=4, FP=4, FN=1 -> P=1/2, R=4/5, F1=8/13
# macro over present {0,1,3}: F1=(1+1/2+2/3)/3=13/18, P=(1+1/2+1/2)/3=2/3, R=(1+1/2+1)/3=5/6
# macro_f1_all = (1+1/2+0+2/3)/4 = 13/24;  macro_f1_pr = 2(2/3)(5/6)/(2/3+5/6) = 20/27
# example F1: ex0 2*2/(3+2)=4/5, ex1 0, ex2 0 (pred but no label), ex3 4/5, ex4 1 (empty/empty)
#   -> (4/5+0+0+4/5+1)/5 = 13/25
# hamming: wrong decisions 1+2+1+1+0 = 5 of 20 -> 1/4; subset accuracy: only ex4 -> 1/5
# top-k (ex0 order L0 L2 L1 L3; ex1 L2 L1 L3 L0; ex3 L1 L0 L3 L2):
#   hits@1 = [1,0,0,0,0], hits@2 = [1,1,0,1,0], hits@3 = [2,1,0,2,0]
#   P@1 = 1/5, P@2 = (3/2)/5 = 3/10, P@3 = (5/3)/5 = 1/3
#   R@k over ex0, ex1, ex3 (|true| = 2, 1, 2): R@1 = (1/2)/3 = 1/6, R@2 = (1/2+1+1/2)/3 = 2/3, R@3 = 1
#   k=5 > C=4: all labels taken, hits = |true| -> P@5 = (2+1+2)/(5*5) = 1/5, R@5 = 1
# AUC (present labels with a negative: 0, 1, 3):
#   L0 pos {.9,.6} vs neg {.2,.3,.1}: 6/6 = 1
#   L1 pos {.6,.4} vs neg {.1,.7,.2}: 4/6 = 2/3
#   L3 pos {.55} vs neg {.1,.3,.6,.4}: 3/4
#   macro = (1 + 2/3 + 3/4)/3 = 29/36
# AP: L0 ranks + + -> 1; L1 desc .7(-) .6(+) .4(+) -> (1/2 + 2/3)/2 = 7/12;
#   L3 desc .6(-) .55(+) -> 1/2;  mAP = (1 + 7/12 + 1/2)/3 = 25/36
HAND_EXPECTED = {
    "micro_f1": 8 / 13,
    "micro_precision": 1 / 2,
    "micro_recall": 4 / 5,
    "macro_f1": 13 / 18,
    "macro_f1_all": 13 / 24,
    "macro_f1_pr": 20 / 27,
    "macro_precision": 2 / 3,
    "macro_recall": 5 / 6,
    "example_f1": 13 / 25,
    "hamming_loss": 1 / 4,
    "subset_accuracy": 1 / 5,
    "p@1": 1 / 5,
    "p@2": 3 / 10,
    "p@3": 1 / 3,
    "p@5": 1 / 5,
    "r@1": 1 / 6,
    "r@2": 2 / 3,
    "r@3": 1.0,
    "r@5": 1.0,
    "macro_auc": 29 / 36,
    "map": 25 / 36,
    "threshold": 0.5,
}


def test_hand_computed_case():
    m = compute_metrics(Y_HAND, S_HAND, threshold=0.5, ks=(1, 2, 3, 5))
    for key, want in HAND_EXPECTED.items():
        assert m[key] == pytest.approx(want, abs=1e-12), key


def test_hand_computed_individual_functions():
    y, s = Y_HAND, S_HAND
    assert ev.micro_f1(y, s) == pytest.approx(8 / 13)
    assert ev.micro_precision(y, s) == pytest.approx(1 / 2)
    assert ev.micro_recall(y, s) == pytest.approx(4 / 5)
    assert ev.macro_f1(y, s) == pytest.approx(13 / 18)
    assert ev.macro_f1_all(y, s) == pytest.approx(13 / 24)
    assert ev.macro_f1_pr(y, s) == pytest.approx(20 / 27)
    assert ev.macro_precision(y, s) == pytest.approx(2 / 3)
    assert ev.macro_recall(y, s) == pytest.approx(5 / 6)
    assert ev.example_f1(y, s) == pytest.approx(13 / 25)
    assert ev.hamming_loss(y, s) == pytest.approx(1 / 4)
    assert ev.subset_accuracy(y, s) == pytest.approx(1 / 5)
    assert ev.precision_at_k(y, s, k=2) == pytest.approx(3 / 10)
    assert ev.recall_at_k(y, s, k=1) == pytest.approx(1 / 6)
    assert ev.macro_auc(y, s) == pytest.approx(29 / 36)
    assert ev.mean_average_precision(y, s) == pytest.approx(25 / 36)
    np.testing.assert_allclose(ev.per_label_f1(y, s), [1, 0.5, 0, 2 / 3])
    np.testing.assert_allclose(ev.per_label_auc(y, s), [1, 2 / 3, np.nan, 0.75])
    np.testing.assert_allclose(ev.per_label_average_precision(y, s), [1, 7 / 12, np.nan, 0.5])


def test_compute_metrics_keys_and_types():
    m = compute_metrics(Y_HAND, S_HAND)
    assert REQUIRED_KEYS <= set(m)
    assert all(type(v) is float for v in m.values())
    assert all(math.isfinite(v) for v in m.values())  # everything is defined here


def test_logits_with_threshold_zero_match_probabilities():
    rng = np.random.default_rng(3)
    y = rng.random((40, 7)) < 0.3
    logits = rng.normal(size=(40, 7)) * 3
    probs = 1 / (1 + np.exp(-logits))
    a = compute_metrics(y, probs, threshold=0.5)
    b = compute_metrics(y, logits, threshold=0.0)
    for key in a:
        if key != "threshold":
            assert a[key] == pytest.approx(b[key], abs=1e-12), key


# ---------------------------------------------------------------------------
# agreement with scikit-learn on random data (with ties and absent labels)
# ---------------------------------------------------------------------------


def _random_case(seed, n=60, c=12, float32=False):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.02, 0.5, size=c)
    y = (rng.random((n, c)) < rates).astype(np.int64)
    y[:, 0] = 0  # absent label
    y[:, 1] = 1  # label positive everywhere (AUC undefined, AP = 1)
    y[: n // 3, 2] = 0
    y[n // 3 :, 2] = 0
    y[5, 2] = 1  # single positive
    s = rng.random((n, c))
    s[:, 3:5] = np.round(s[:, 3:5], 1)  # heavy ties
    s[:10, c - 1] = 0.5  # a tied block
    if float32:
        s = s.astype(np.float32)
    return y, s


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("float32", [False, True])
def test_agreement_with_sklearn(seed, float32):
    y, s = _random_case(seed, float32=float32)
    thr = 0.4
    pred = (s >= thr).astype(np.int64)
    present = np.flatnonzero(y.sum(0) > 0)
    both = np.flatnonzero((y.sum(0) > 0) & (y.sum(0) < y.shape[0]))
    m = compute_metrics(y, s, threshold=thr, ks=(1, 3, 5))
    s64 = s.astype(np.float64)

    want = {
        "micro_f1": skm.f1_score(y, pred, average="micro", zero_division=0),
        "micro_precision": skm.precision_score(y, pred, average="micro", zero_division=0),
        "micro_recall": skm.recall_score(y, pred, average="micro", zero_division=0),
        "macro_f1": skm.f1_score(y, pred, average="macro", labels=present, zero_division=0),
        "macro_f1_all": skm.f1_score(y, pred, average="macro", zero_division=0),
        "macro_precision": skm.precision_score(
            y, pred, average="macro", labels=present, zero_division=0
        ),
        "macro_recall": skm.recall_score(y, pred, average="macro", labels=present, zero_division=0),
        "example_f1": skm.f1_score(y, pred, average="samples", zero_division=1),
        "hamming_loss": skm.hamming_loss(y, pred),
        "subset_accuracy": skm.accuracy_score(y, pred),
        "micro_auc": skm.roc_auc_score(y, s64, average="micro"),
        "macro_auc": skm.roc_auc_score(y[:, both], s64[:, both], average="macro"),
        "map": skm.average_precision_score(y[:, present], s64[:, present], average="macro"),
        "micro_ap": skm.average_precision_score(y, s64, average="micro"),
    }
    mp, mr = want["macro_precision"], want["macro_recall"]
    want["macro_f1_pr"] = 2 * mp * mr / (mp + mr)
    for key, value in want.items():
        assert m[key] == pytest.approx(value, abs=1e-10), key

    # per-label values against sklearn's per-label functions
    np.testing.assert_allclose(
        ev.per_label_auc(y, s)[both], skm.roc_auc_score(y[:, both], s64[:, both], average=None)
    )
    np.testing.assert_allclose(
        ev.per_label_average_precision(y, s)[present],
        skm.average_precision_score(y[:, present], s64[:, present], average=None),
    )
    assert np.isnan(ev.per_label_auc(y, s)[[0, 1]]).all()
    np.testing.assert_allclose(
        ev.per_label_f1(y, s, thr), skm.f1_score(y, pred, average=None, zero_division=0)
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_micro_auc_conventions_against_sklearn(seed):
    y, s = _random_case(seed)  # label 0 is absent from this split
    present = y.sum(0) > 0
    assert not present.all()
    pooled = skm.roc_auc_score(y, s, average="micro")
    dropped = skm.roc_auc_score(y[:, present], s[:, present], average="micro")
    m = compute_metrics(y, s)
    assert m["micro_auc"] == pytest.approx(pooled, abs=1e-12)
    assert m["micro_auc_present"] == pytest.approx(dropped, abs=1e-12)
    assert ev.micro_auc(y, s) == m["micro_auc"] and ev.micro_auc_present(y, s) == m["micro_auc_present"]
    assert abs(pooled - dropped) > 1e-6  # the absent column really changes the pooled value
    # every label present: the two conventions coincide
    y2 = y[:, present]
    assert ev.micro_auc_present(y2, s[:, present]) == ev.micro_auc(y2, s[:, present])


def test_micro_auc_present_hand_case_and_undefined():
    # absent label 2 scored high on example 1: pooled micro AUC counts it, the present one does not
    y = np.array([[1, 0, 0], [0, 1, 0]])
    s = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.95]])
    # present columns: positives .9 .8 vs negatives .3 .2 -> 1; pooled: + vs .1 and .95 adds losses
    assert ev.micro_auc_present(y, s) == 1.0
    assert ev.micro_auc(y, s) == pytest.approx(6 / 8)
    assert math.isnan(ev.micro_auc_present(np.zeros((3, 2), dtype=int), np.random.default_rng(0).random((3, 2))))
    # the only present label is positive everywhere: no negative among present columns
    y_all = np.array([[1, 0], [1, 0]])
    assert math.isnan(ev.micro_auc_present(y_all, [[0.2, 0.9], [0.4, 0.1]]))
    assert ev.micro_auc(y_all, [[0.2, 0.9], [0.4, 0.1]]) == pytest.approx(0.5)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_at_k_against_bruteforce(k):
    y, s = _random_case(4)
    # P@k / R@k with a stable descending sort (ties -> lower label index)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(y, order, axis=1).sum(1)
    n_true = y.sum(1)
    assert ev.precision_at_k(y, s, k) == pytest.approx(np.mean(hits / k))
    assert ev.recall_at_k(y, s, k) == pytest.approx(np.mean(hits[n_true > 0] / n_true[n_true > 0]))
    # sklearn's top_k_accuracy-like check for k=1: precision@1 == fraction whose argmax is true
    if k == 1:
        assert ev.precision_at_k(y, s, 1) == pytest.approx(np.mean(y[np.arange(len(y)), s.argmax(1)]))


def test_top_k_ties_go_to_lower_label_index():
    y = np.array([[0, 1, 1, 0]])
    s = np.array([[0.5, 0.5, 0.5, 0.9]])
    # top-2: L3 (0.9) then L0 (lowest index among the tied 0.5s) -> 0 hits
    assert ev.precision_at_k(y, s, 2) == 0.0
    # top-3: L3, L0, L1 -> 1 hit
    assert ev.precision_at_k(y, s, 3) == pytest.approx(1 / 3)


def test_per_label_thresholds_in_compute_metrics():
    y, s = _random_case(5)
    t = np.linspace(0.2, 0.8, y.shape[1])
    pred = (s >= t).astype(int)
    m = compute_metrics(y, s, threshold=t)
    assert m["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert math.isnan(m["threshold"])
    assert m["threshold_mean"] == pytest.approx(t.mean())


# ---------------------------------------------------------------------------
# label-absent / undefined conventions
# ---------------------------------------------------------------------------


def test_absent_label_conventions():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    s = np.array([[0.9, 0.1, 0.8], [0.2, 0.05, 0.3], [0.7, 0.6, 0.9]])
    # L0 (tp2): F1 1. L1 absent, one false positive: F1 0. L2 all positive, pred [1,0,1]: F1 4/5.
    assert ev.macro_f1(y, s) == pytest.approx((1 + 0.8) / 2)  # L1 ignored
    assert ev.macro_f1_all(y, s) == pytest.approx((1 + 0 + 0.8) / 3)  # L1 counted as 0
    # an absent label with no prediction is still 0 in macro_f1_all (zero_division=0), not 1
    s2 = s.copy()
    s2[:, 1] = 0.0
    assert ev.macro_f1_all(y, s2) == pytest.approx((1 + 0 + 0.8) / 3)
    # AUC only over labels with both classes (L0); L2 is all-positive, L1 all-negative
    assert ev.macro_auc(y, s) == pytest.approx(1.0)
    # mAP over labels with a positive (L0: 1, L2: all positive -> 1)
    assert ev.mean_average_precision(y, s) == pytest.approx(1.0)


def test_example_f1_empty_empty_is_one():
    y = np.array([[0, 0], [0, 0], [1, 0]])
    s = np.array([[0.1, 0.2], [0.3, 0.9], [0.8, 0.1]])
    # ex0: nothing true, nothing predicted -> 1; ex1: predicted L1, nothing true -> 0; ex2 -> 1
    assert ev.example_f1(y, s) == pytest.approx(2 / 3)


def test_undefined_metrics_are_nan():
    y = np.zeros((4, 3), dtype=int)
    s = np.random.default_rng(0).random((4, 3))
    m = compute_metrics(y, s, ks=(1, 2))
    for key in ("macro_f1", "macro_precision", "macro_recall", "macro_f1_pr", "macro_auc", "map",
                "micro_auc", "micro_auc_present", "micro_ap", "r@1", "r@2"):  # fmt: skip
        assert math.isnan(m[key]), key
    for key in ("micro_f1", "micro_precision", "micro_recall", "macro_f1_all", "p@1",
                "example_f1", "hamming_loss", "subset_accuracy"):  # fmt: skip
        assert math.isfinite(m[key]), key
    assert m["micro_f1"] == 0.0

    ones = np.ones((4, 3), dtype=int)
    m1 = compute_metrics(ones, s)
    assert math.isnan(m1["micro_auc"]) and math.isnan(m1["macro_auc"])
    assert m1["map"] == pytest.approx(1.0) and m1["micro_ap"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# input types
# ---------------------------------------------------------------------------


def test_sparse_and_torch_inputs():
    y, s = _random_case(7)
    ref = compute_metrics(y, s)
    for yy in (sp.csr_matrix(y), sp.csc_matrix(y), y.astype(bool), y.astype(np.float32)):
        got = compute_metrics(yy, s)
        assert got == pytest.approx(ref, nan_ok=True)
    torch = pytest.importorskip("torch")
    st = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    got = compute_metrics(torch.tensor(y), st)
    assert got == pytest.approx(ref, nan_ok=True)
    assert tune_global_threshold(torch.tensor(y), st) == tune_global_threshold(y, s)


# ---------------------------------------------------------------------------
# threshold tuning
# ---------------------------------------------------------------------------

# Flattened: positives at 0.9, 0.8, 0.35; negatives at 0.7, 0.3, 0.1.
Y_T = np.array([[1, 0], [0, 1], [1, 0]])
S_T = np.array([[0.9, 0.7], [0.3, 0.35], [0.8, 0.1]])
# micro-F1 = 2TP / (#pred + #pos) for each cut "score >= v":
#   0.9: 2/4 = .5   0.8: 4/5 = .8   0.7: 4/6   0.35: 6/7 (best)   0.3: 6/8   0.1: 6/9


def test_global_threshold_constructed_case():
    t = tune_global_threshold(Y_T, S_T)
    assert 0.3 < t <= 0.35
    assert t == pytest.approx(0.325)  # midpoint of the winning gap
    assert ev.micro_f1(Y_T, S_T, t) == pytest.approx(6 / 7)
    assert tune_global_threshold(Y_T, S_T, grid=[0.2, 0.32, 0.5]) == 0.32
    assert tune_global_threshold(Y_T, S_T, grid=[0.5, 0.2]) == 0.2  # 6/8 > 4/6; order irrelevant


def _brute_force_best_micro_f1(y, s):
    return max(ev.micro_f1(y, s, v) for v in np.unique(s))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_threshold_is_exact_maximiser(seed):
    y, s = _random_case(seed, n=30, c=6)
    t = tune_global_threshold(y, s)
    best = _brute_force_best_micro_f1(y, s)
    assert ev.micro_f1(y, s, t) == pytest.approx(best)
    grid = np.linspace(0.01, 0.99, 99)
    tg = tune_global_threshold(y, s, grid=grid)
    assert tg in grid
    f_grid = [ev.micro_f1(y, s, g) for g in grid]
    assert ev.micro_f1(y, s, tg) == pytest.approx(max(f_grid))
    assert tg == grid[int(np.argmax(f_grid))]  # ties -> smallest grid value
    assert ev.micro_f1(y, s, t) >= ev.micro_f1(y, s, tg) - 1e-12



@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_macro_threshold_is_exact_maximiser(seed):
    y, s = _random_case(seed, n=40, c=7)
    y[:, 0] = 0  # a label absent from validation: not part of macro-F1
    s = np.round(s, 1)  # ties between scores
    t = T.tune_global_threshold_macro_f1(y, s)
    best = max(ev.macro_f1(y, s, v) for v in np.unique(s))
    assert ev.macro_f1(y, s, t) == pytest.approx(best)
    assert not any(ev.macro_f1(y, s, v) > best + 1e-12 for v in np.unique(s) - 1e-9)
    grid = np.linspace(0.01, 0.99, 99)
    tg = T.tune_global_threshold_macro_f1(y, s, grid=grid)
    f_grid = [ev.macro_f1(y, s, g) for g in grid]
    assert tg == grid[int(np.argmax(f_grid))]


def test_macro_threshold_subsampled_sweep_stays_near_the_best(monkeypatch):
    y, s = _random_case(5, n=200, c=8)
    exact = ev.macro_f1(y, s, T.tune_global_threshold_macro_f1(y, s))
    monkeypatch.setattr(T, "MACRO_SWEEP_MAX_ENTRIES", 8 * 50)  # 50 quantile cuts instead of ~400
    approx = ev.macro_f1(y, s, T.tune_global_threshold_macro_f1(y, s))
    assert approx <= exact + 1e-12 and approx > exact - 0.02


def test_macro_threshold_needs_a_positive():
    with pytest.raises(ValueError, match="no positive"):
        T.tune_global_threshold_macro_f1(np.zeros((3, 2)), np.full((3, 2), 0.5))

def test_global_threshold_all_predicted_and_ties():
    # every entry positive except one low negative tied with a positive -> predict all
    y = np.array([[1, 1], [1, 0]])
    s = np.array([[0.2, 0.9], [0.2, 0.2]])
    t = tune_global_threshold(y, s)
    assert t == 0.2 and ev.micro_f1(y, s, t) == pytest.approx(6 / 7)


def test_threshold_tuning_is_pure():
    y, s = _random_case(8, n=20, c=5)
    y_ro, s_ro = y.copy(), s.copy()
    y_ro.flags.writeable = False  # any in-place write would raise
    s_ro.flags.writeable = False
    t1 = tune_global_threshold(y_ro, s_ro)
    t2 = tune_global_threshold(y_ro, s_ro)
    p1 = tune_per_label_thresholds(y_ro, s_ro)
    p2 = tune_per_label_thresholds(y_ro, s_ro)
    assert t1 == t2 and np.array_equal(p1, p2)
    assert np.array_equal(y_ro, y) and np.array_equal(s_ro, s)
    # its only inputs are the validation arrays (and the candidate grid)
    assert list(inspect.signature(tune_global_threshold).parameters) == [
        "y_true_val",
        "scores_val",
        "grid",
    ]
    assert "never" in tune_global_threshold.__doc__.lower()
    assert "test data" in tune_global_threshold.__doc__.lower()
    assert "test data" in tune_per_label_thresholds.__doc__.lower()


def test_per_label_thresholds_maximise_each_label():
    y, s = _random_case(9, n=40, c=8)
    t = tune_per_label_thresholds(y, s, fallback=0.77)
    assert t.shape == (8,)
    assert t[0] == 0.77  # label 0 has no positive -> fallback
    f_at_t = ev.per_label_f1(y, s, t)
    for j in range(1, 8):
        cands = np.unique(s[:, j])
        f_all = [ev.per_label_f1(y[:, [j]], s[:, [j]], v)[0] for v in cands]
        assert f_at_t[j] == pytest.approx(max(f_all)), j
        # ties -> smallest maximising cut; t[j] lies in the gap just below it
        best_cut = cands[np.isclose(f_all, max(f_all), rtol=0, atol=1e-12)].min()
        below = cands[cands < best_cut]
        assert t[j] <= best_cut
        if below.size:
            assert t[j] > below.max()
    # default fallback = global threshold
    t_default = tune_per_label_thresholds(y, s)
    assert t_default[0] == tune_global_threshold(y, s)
    np.testing.assert_array_equal(t_default[1:], t[1:])


def test_per_label_thresholds_constructed_and_grid():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    s = np.array([[0.9, 0.2, 0.5], [0.6, 0.3, 0.4], [0.4, 0.8, 0.1]])
    # L0 cuts: >=.9 F1 2/3, >=.6 F1 1/2, >=.4 F1 4/5 -> 0.4 (smallest score: predict all)
    # L1 cuts: >=.8 F1 2/3, >=.3 F1 1, >=.2 F1 4/5 -> midpoint of (.2, .3]
    t = tune_per_label_thresholds(y, s, fallback=0.5)
    np.testing.assert_allclose(t, [0.4, 0.25, 0.5])
    tg = tune_per_label_thresholds(y, s, grid=[0.1, 0.35, 0.5, 0.85], fallback=0.5)
    # L0: .1 -> 4/5, .35 -> 4/5, .5 -> 1/2 ... -> 0.1 (tie, smallest); L1: .35 -> 2/3, .1 -> 4/5
    np.testing.assert_allclose(tg, [0.1, 0.1, 0.5])


def test_threshold_grid_agrees_with_bruteforce_per_label():
    y, s = _random_case(10, n=30, c=6)
    grid = np.linspace(0.05, 0.95, 19)
    t = tune_per_label_thresholds(y, s, grid=grid, fallback=0.5)
    for j in range(1, 6):
        f = [ev.per_label_f1(y[:, [j]], s[:, [j]], g)[0] for g in grid]
        assert t[j] == grid[int(np.argmax(f))], j


def test_threshold_errors():
    with pytest.raises(ValueError, match="y_true_val"):
        tune_global_threshold(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="y_true_val"):
        tune_per_label_thresholds(np.zeros((3, 2)), np.ones((3, 2)))
    assert tune_per_label_thresholds(np.zeros((3, 2)), np.ones((3, 2)), fallback=0.3).tolist() == [
        0.3,
        0.3,
    ]
    with pytest.raises(ValueError, match="scores_val"):
        tune_global_threshold(Y_T, S_T[:2])
    with pytest.raises(ValueError, match="scores_val"):
        tune_global_threshold(Y_T, np.where(S_T > 0.5, np.nan, S_T))
    with pytest.raises(ValueError, match="grid"):
        tune_global_threshold(Y_T, S_T, grid=[])
    with pytest.raises(ValueError, match="grid"):
        tune_global_threshold(Y_T, S_T, grid=[0.5, np.nan])


def test_threshold_tuning_scales():
    # sort-based sweep: 4e5 entries must be quick
    rng = np.random.default_rng(0)
    y = rng.random((400, 1000)) < 0.01
    s = rng.random((400, 1000)).astype(np.float32)
    t = tune_global_threshold(y, s)
    assert 0.0 <= t <= 1.0
    tl = tune_per_label_thresholds(y, s)
    assert tl.shape == (1000,) and np.isfinite(tl).all()


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "y, s, kwargs, match",
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), {}, "same shape"),
        (np.zeros((3, 2)), np.zeros((2, 2)), {}, "same shape"),
        (np.array([[0, 2], [1, 0]]), np.zeros((2, 2)), {}, "y_true.*0/1"),
        (np.array([[0, 0.5], [1, 0]]), np.zeros((2, 2)), {}, "y_true.*0/1"),
        (np.array([[0, -1], [1, 0]]), np.zeros((2, 2)), {}, "y_true.*0/1"),
        (sp.csr_matrix(np.array([[0, 3], [1, 0]])), np.zeros((2, 2)), {}, "y_true.*0/1"),
        (np.zeros((2, 2)), np.array([[0.1, np.nan], [0.2, 0.3]]), {}, "scores.*NaN"),
        (np.zeros((0, 3)), np.zeros((0, 3)), {}, "y_true.*empty"),
        (np.zeros((3, 0)), np.zeros((3, 0)), {}, "y_true.*empty"),
        (np.zeros((2, 2)), np.zeros((0, 2)), {}, "scores.*empty"),
        (np.zeros(3), np.zeros(3), {}, "y_true.*2-D"),
        (np.zeros((2, 2)), np.zeros(4), {}, "scores.*2-D"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {"ks": (1, 0)}, "ks"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {"ks": (-3,)}, "ks"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {"ks": (1.5,)}, "ks"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {"threshold": np.nan}, "threshold"),
        (np.zeros((2, 2)), np.zeros((2, 2)), {"threshold": [0.1, 0.2, 0.3]}, "threshold"),
    ],
)
def test_bad_input_errors(y, s, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(y, s, **kwargs)


def test_bad_k_in_single_functions():
    with pytest.raises(ValueError, match="k"):
        ev.precision_at_k(Y_HAND, S_HAND, k=0)
    with pytest.raises(ValueError, match="k"):
        ev.recall_at_k(Y_HAND, S_HAND, k=-1)
    with pytest.raises(ValueError, match="y_true"):
        ev.macro_auc([[0, 5]], [[0.1, 0.2]])


# ---------------------------------------------------------------------------
# docstring examples run
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", [ev, M, T])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
