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
