"""Validation-chosen blending (mlsupcon.evaluation.blend) and the BlendHead."""

from __future__ import annotations

import doctest
import importlib
import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from mlsupcon.evaluation import choose_blend_weight, micro_f1, selection_metric, tune_global_threshold
from mlsupcon.evaluation.blend import blend
from mlsupcon.models import BlendHead, KNNHead, LinearClassifier

WEIGHTS = np.linspace(0.0, 1.0, 11)


def _opposite_noise(seed, n=200, c=5):
    """a = base + e, b = base − e: the blend at w = 0.5 cancels the noise and ranks perfectly."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(np.int64)
    y[0] = 1  # every label present
    e = rng.uniform(-0.3, 0.3, size=(n, c))
    base = 0.5 + 0.02 * y
    return y, base + e, base - e


@pytest.mark.parametrize("metric", ["map", "micro_f1", "macro_f1", "micro_auc", "macro_auc"])
def test_known_best_weight(metric):
    y, a, b = _opposite_noise(0)
    w, table = choose_blend_weight(y, a, b, weights=WEIGHTS, metric=metric)
    assert w == pytest.approx(0.5)
    values = {round(r["weight"], 1): r["value"] for r in table}
    assert values[0.5] == pytest.approx(1.0)
    assert max(v for k, v in values.items() if k != 0.5) < 1.0


def test_map_table_matches_sklearn():
    rng = np.random.default_rng(1)
    y = (rng.random((80, 6)) < 0.3).astype(np.int64)
    y[:, 5] = 0  # an absent label: mAP skips it, as sklearn after dropping it
    a, b = rng.random((80, 6)), rng.random((80, 6))
    w, table = choose_blend_weight(y, a, b, metric="map")
    assert [r["weight"] for r in table] == pytest.approx(WEIGHTS.tolist())
    for r in table:
        p = r["weight"] * a + (1 - r["weight"]) * b
        assert r["value"] == pytest.approx(skm.average_precision_score(y[:, :5], p[:, :5], average="macro"), abs=1e-12)
        assert r["threshold"] is None
    assert w == table[int(np.argmax([r["value"] for r in table]))]["weight"]


@pytest.mark.parametrize("metric, average", [("micro_f1", "micro"), ("macro_f1", "macro")])
def test_f1_tunes_the_threshold_on_each_blend(metric, average):
    rng = np.random.default_rng(2)
    y = (rng.random((60, 4)) < 0.4).astype(np.int64)
    a = np.clip(0.6 * y + 0.5 * rng.random((60, 4)), 0, 1)
    b = rng.random((60, 4))
    _, table = choose_blend_weight(y, a, b, weights=[0.0, 0.3, 1.0], metric=metric)
    for r in table:
        p = blend(a, b, r["weight"])
        t = tune_global_threshold(y, p)
        assert r["threshold"] == t
        want = skm.f1_score(y, (p >= t).astype(int), average=average, zero_division=0)
        assert r["value"] == pytest.approx(want, abs=1e-12)
    assert table[2]["value"] > table[0]["value"]  # a is informative, b is noise


def test_ties_go_to_the_largest_weight_and_nan_never_wins():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    a = y * 0.8 + 0.1
    b = y * 0.6 + 0.2  # both rank perfectly: every weight has mAP 1
    w, table = choose_blend_weight(y, a, b, weights=[0.2, 0.9, 0.4], metric="map")
    assert w == 0.9 and all(r["value"] == 1.0 for r in table)
    # a callable that is undefined at some weights
    w, _ = choose_blend_weight(y, a, b, weights=[0.0, 0.5, 1.0], metric=lambda yy, s: np.nan if s[0, 0] > 0.87 else 1.0)
    assert w == 0.5
    with pytest.raises(ValueError, match="undefined"):
        choose_blend_weight(np.zeros_like(y), a, b, metric="map")


def test_callable_metric_and_purity():
    rng = np.random.default_rng(3)
    y = (rng.random((30, 3)) < 0.5).astype(np.int64)
    a, b = rng.random((30, 3)), rng.random((30, 3))
    copies = (y.copy(), a.copy(), b.copy())

    def closeness_to_a(yy, s):
        return -float(np.abs(s - a).sum())

    w, table = choose_blend_weight(y, a, b, weights=[0.25, 0.75], metric=closeness_to_a)
    assert w == 0.75 and len(table) == 2
    for x, c in zip((y, a, b), copies, strict=True):
        np.testing.assert_array_equal(x, c)
    assert choose_blend_weight(y, a, b, weights=[0.25, 0.75], metric=closeness_to_a) == (w, table)


def test_selection_metric_names():
    y = np.array([[1, 0], [0, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.3, 0.8], [0.1, 0.1]])
    assert selection_metric(y, s, "map") == (1.0, None)
    value, t = selection_metric(y, s, "micro_f1")
    assert value == 1.0 and 0.3 < t <= 0.8
    with pytest.raises(ValueError, match="metric"):
        selection_metric(y, s, "f1")


def test_blend_function():
    a = np.array([[0.2, 1.0]])
    b = np.array([[0.6, 0.0]])
    np.testing.assert_allclose(blend(a, b, 0.25), [[0.5, 0.25]])
    np.testing.assert_array_equal(blend(a, b, 1.0), a)
    np.testing.assert_array_equal(blend(a, b, 0.0), b)
    t = blend(torch.tensor(a), torch.tensor(b), 0.5)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([[0.4, 0.5]], dtype=torch.float64))
    with pytest.raises(ValueError, match="weights"):
        blend(a, b, 1.5)
    with pytest.raises(ValueError, match="shape"):
        blend(a, b[:, :1], 0.5)


def test_choose_blend_weight_errors():
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.1], [0.2, 0.7]])
    with pytest.raises(ValueError, match="probabilities"):
        choose_blend_weight(y, p * 4 - 2, p)  # logits
    with pytest.raises(ValueError, match="val_scores_b"):
        choose_blend_weight(y, p, p[:, :1])
    with pytest.raises(ValueError, match="weights"):
        choose_blend_weight(y, p, p, weights=[])
    with pytest.raises(ValueError, match="weights"):
        choose_blend_weight(y, p, p, weights=[-0.1, 0.5])
    with pytest.raises(ValueError, match="metric"):
        choose_blend_weight(y, p, p, metric="accuracy")


# ---------------------------------------------------------------------------
# BlendHead
# ---------------------------------------------------------------------------


def _heads(seed=0, d=6, c=4, n_train=30):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    knn = KNNHead.from_embeddings(rng.normal(size=(n_train, d)), (rng.random((n_train, c)) < 0.4), k=5, temperature=0.1)
    return knn, LinearClassifier(d, c).eval()


def test_blend_head_endpoints_and_middle():
    knn, lin = _heads()
    h = torch.randn(7, 6)
    with torch.no_grad():
        assert torch.allclose(BlendHead(lin, knn, weight=1.0)(h), lin(h), atol=1e-5)
        assert torch.allclose(BlendHead(knn, lin, weight=1.0)(h), knn(h), atol=1e-4)
        assert torch.allclose(BlendHead(knn, lin, weight=0.0)(h), lin(h), atol=1e-5)
        mid = torch.sigmoid(BlendHead(knn, lin, weight=0.3)(h))
        want = blend(torch.sigmoid(knn(h)), torch.sigmoid(lin(h)), 0.3)
        assert torch.allclose(mid, want, atol=1e-6)


def test_blend_head_config_and_safetensors_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    knn, lin = _heads(1)
    head = BlendHead(knn, BlendHead(lin, LinearClassifier(6, 4), weight=0.5), weight=0.4)
    save_file(head.state_dict(), str(tmp_path / "w.safetensors"))
    config = json.loads(json.dumps(head.config()))
    assert config["weight"] == 0.4 and config["head_a"]["class"] == "KNNHead"
    assert config["head_b"]["class"] == "BlendHead" and config["head_b"]["head_a"]["class"] == "LinearClassifier"
    rebuilt = BlendHead.from_config({"kind": "linear", "class": "BlendHead", **config}).eval()
    rebuilt.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    h = torch.randn(5, 6)
    with torch.no_grad():
        assert torch.equal(rebuilt(h), head.eval()(h))


def test_blend_head_errors():
    knn, lin = _heads(2)
    with pytest.raises(ValueError, match="weight"):
        BlendHead(knn, lin, weight=1.2)
    with pytest.raises(ValueError, match="unknown head class"):
        BlendHead.from_config({"weight": 0.5, "head_a": {"class": "Nope"}, "head_b": {"class": "Nope"}})
    rebuilt = BlendHead.from_config(
        {
            "weight": 0.5,
            "head_a": {"class": "Custom", "n": 4},
            "head_b": {"class": "LinearClassifier", "in_dim": 6, "num_labels": 4},
        },
        builders={"Custom": lambda n: LinearClassifier(6, n)},
    )
    assert isinstance(rebuilt.head_a, LinearClassifier) and rebuilt.head_a.num_labels == 4


@pytest.mark.parametrize("module", ["mlsupcon.evaluation.blend"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def _uncalibrated_case():
    # a ranks every label perfectly but on label-specific scales (high mAP, poor global-threshold F1);
    # b is calibrated but ranks worse.
    rng = np.random.default_rng(0)
    y = (rng.random((300, 20)) < 0.15).astype(int)
    a = rng.uniform(0, 0.9, 20) + 0.05 * y + 0.04 * rng.random((300, 20))
    b = np.clip(0.45 * y + 0.55 * rng.random((300, 20)), 0, 1)
    return y, a, b


def test_guard_keeps_the_f1_of_b_alone():
    y, a, b = _uncalibrated_case()
    assert choose_blend_weight(y, a, b, metric="map")[0] == 1.0  # mAP alone prefers a
    w, table = choose_blend_weight(y, a, b, metric="map", guard=("micro_f1", "macro_f1"))
    base = table[0]["guard"]
    assert table[0]["weight"] == 0.0 and table[0]["allowed"] is True
    chosen = next(r for r in table if r["weight"] == w)
    assert chosen["allowed"] and all(chosen["guard"][g] >= base[g] - 1e-12 for g in base)
    assert all(not r["allowed"] for r in table if r["value"] > chosen["value"])  # better mAP lost an F1
    assert micro_f1(y, blend(a, b, w), tune_global_threshold(y, blend(a, b, w))) >= base["micro_f1"] - 1e-12


def test_guard_changes_nothing_when_the_blend_loses_no_f1():
    y, a, b = _uncalibrated_case()
    good = np.clip(0.5 * y + 0.5 * np.random.default_rng(1).random(y.shape), 0, 1)  # calibrated and better
    plain = choose_blend_weight(y, good, b, metric="map")
    guarded = choose_blend_weight(y, good, b, metric="map", guard="micro_f1")
    assert plain[0] == guarded[0] and all(r["allowed"] for r in guarded[1] if r["weight"] == guarded[0])
