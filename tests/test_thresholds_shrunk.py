"""tune_shrunk_thresholds: per-label thresholds pulled towards the global one by validation support."""

import numpy as np
import pytest

from mlsupcon.evaluation import tune_global_threshold, tune_per_label_thresholds, tune_shrunk_thresholds


def _data(seed=0, n=200, c=12):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < np.linspace(0.005, 0.3, c)).astype(np.uint8)
    y[:, 0] = 0  # a label without a validation positive
    s = np.clip(0.35 * y + rng.random((n, c)) * 0.8, 0, 1)
    return y, s


def test_limits_are_the_per_label_and_the_global_rule():
    y, s = _data()
    g = tune_global_threshold(y, s)
    np.testing.assert_array_equal(tune_shrunk_thresholds(y, s, strength=0),
                                  tune_per_label_thresholds(y, s, fallback=g))
    np.testing.assert_array_equal(tune_shrunk_thresholds(y, s, strength=float("inf")), np.full(y.shape[1], g))


def test_each_threshold_is_the_support_weighted_mean_and_absent_labels_get_the_global_one():
    y, s = _data(1)
    g = tune_global_threshold(y, s)
    own = tune_per_label_thresholds(y, s, fallback=g)
    t = tune_shrunk_thresholds(y, s, strength=3)
    n = y.sum(0)
    for j in range(y.shape[1]):
        assert t[j] == pytest.approx((n[j] * own[j] + 3 * g) / (n[j] + 3), abs=1e-12)
        lo, hi = sorted((own[j], g))
        assert lo - 1e-12 <= t[j] <= hi + 1e-12
    assert t[0] == g


@pytest.mark.parametrize("bad", [-1, float("nan"), "x", None])
def test_strength_must_be_a_number_at_least_zero(bad):
    y, s = _data()
    with pytest.raises(ValueError, match="strength"):
        tune_shrunk_thresholds(y, s, strength=bad)


def test_a_global_threshold_given_is_the_one_tuned_here():
    y, s = _data(2)
    g = tune_global_threshold(y, s)
    np.testing.assert_array_equal(tune_shrunk_thresholds(y, s, global_threshold=g), tune_shrunk_thresholds(y, s))


# ----------------------------------------------------------------- choose_threshold_rule (threshold: auto)


def _scaled(seed=0, n=400, c=4, spread=(0.2, 1.0, 0.5, 0.3), shift=(0.1, 0.5, 0.3, 0.2)):
    """Labels whose scores live on different scales: one global threshold suits none of them."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(np.uint8)
    return y, np.clip(y * np.array(shift) + rng.random((n, c)) * np.array(spread), 0, 1)


def _one_scale(seed=0, n=400, c=30):
    """One scale for all labels, most of them rare: per-label optima are fitted to a few positives."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < np.linspace(0.005, 0.05, c)).astype(np.uint8)
    return y, np.clip(0.3 * y + rng.random((n, c)) * 0.7, 0, 1)


def _heldout_f1(y, s, rule, folds, seed):
    """The naive cross-validation written out: tune on the other folds, decide the held-out one."""
    from mlsupcon.evaluation.metrics import macro_f1, micro_f1

    order = np.random.default_rng(seed).permutation(len(y))
    fold = np.empty(len(y), int)
    fold[order] = np.arange(len(y)) % folds
    pred = np.zeros(y.shape, bool)
    for k in range(folds):
        fit = fold != k
        g = tune_global_threshold(y[fit], s[fit])
        t = g if rule == "tune" else tune_shrunk_thresholds(y[fit], s[fit])[None, :]
        pred[fold == k] = s[fold == k] >= t
    return micro_f1(y, pred.astype(float), 0.5), macro_f1(y, pred.astype(float), 0.5)


@pytest.mark.parametrize("make, expected", [(_scaled, "tune-per-label"), (_one_scale, "tune")])
def test_the_rule_follows_its_cross_validated_f1s(make, expected):
    from mlsupcon.evaluation import choose_threshold_rule

    y, s = make()
    rule, table = choose_threshold_rule(y, s, folds=5, seed=3)
    assert rule == expected, table
    for name in ("tune", "tune-per-label"):  # the table is the held-out F1s of each rule
        micro, macro = _heldout_f1(y, s, name, 5, 3)
        assert table[name] == {"micro_f1": pytest.approx(micro), "macro_f1": pytest.approx(macro)}
    per_label, single = table["tune-per-label"], table["tune"]
    assert (rule == "tune-per-label") == (per_label["micro_f1"] >= single["micro_f1"]
                                         and per_label["macro_f1"] > single["macro_f1"])
    # deterministic, and the inputs are not modified
    y0, s0 = y.copy(), s.copy()
    assert choose_threshold_rule(y, s, folds=5, seed=3) == (rule, table)
    np.testing.assert_array_equal(y, y0) and np.testing.assert_array_equal(s, s0)


@pytest.mark.parametrize("folds", [1, 0, 401, 2.5, True])
def test_folds_must_fit_the_validation_split(folds):
    from mlsupcon.evaluation import choose_threshold_rule

    y, s = _scaled()
    with pytest.raises(ValueError, match=r"folds must be an integer in \[2, 400\]"):
        choose_threshold_rule(y, s, folds=folds)
    with pytest.raises(ValueError, match="no positive label"):
        choose_threshold_rule(np.zeros_like(y), s)
