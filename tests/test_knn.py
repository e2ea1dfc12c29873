"""kNN label scores (mlsupcon.evaluation.knn) and the KNNHead (mlsupcon.models.knn_head).

The reference is a plain loop written from the docstring's formula, in float64: cosine
similarity, neighbours sorted by (similarity desc, index asc), softmax weights over the k.
"""

from __future__ import annotations

import doctest
import importlib
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn import metrics as skm

from mlsupcon.evaluation import knn_scores, tune_global_threshold, tune_knn
from mlsupcon.models import KNNHead


def naive_knn(train, labels, query, k, temperature, exclude_self=False):
    train = np.asarray(train, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    out = np.zeros((len(query), labels.shape[1]))
    for i, q in enumerate(np.asarray(query, dtype=np.float64)):
        qn = q / max(np.linalg.norm(q), 1e-12)
        sims = {}
        for j, x in enumerate(train):
            if exclude_self and j == i:
                continue
            sims[j] = float(sum(a * b for a, b in zip(qn, x / max(np.linalg.norm(x), 1e-12), strict=True)))
        nearest = sorted(sims, key=lambda j: (-sims[j], j))[:k]
        logits = [sims[j] / temperature for j in nearest]
        top = max(logits)
        w = [math.exp(v - top) for v in logits]
        total = sum(w)
        for wj, j in zip(w, nearest, strict=True):
            out[i] += (wj / total) * labels[j]
    return out


def _data(seed, n_train=40, n_query=15, dim=6, c=5):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, dim))
    query = rng.normal(size=(n_query, dim))
    labels = (rng.random((n_train, c)) < 0.3).astype(np.int64)
    return train, labels, query


# ---------------------------------------------------------------------------
# knn_scores against the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed, k, temperature", [(0, 1, 0.05), (1, 5, 0.05), (2, 12, 0.5), (3, 40, 0.02)])
def test_matches_naive_reference_float64(seed, k, temperature):
    train, labels, query = _data(seed)
    got = knn_scores(train, labels, query, k=k, temperature=temperature)
    assert got.dtype == np.float64 and got.shape == (15, 5)
    np.testing.assert_allclose(got, naive_knn(train, labels, query, k, temperature), atol=1e-10)


def test_float32_inputs_give_float32_close_to_reference():
    train, labels, query = _data(4)
    got = knn_scores(train.astype(np.float32), labels, torch.tensor(query, dtype=torch.float32), k=7, temperature=0.1)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, naive_knn(train, labels, query, 7, 0.1), atol=1e-5)
    assert got.min() >= 0.0 and got.max() <= 1.0


@pytest.mark.parametrize("k", [3, 39, 100])
def test_exclude_self_is_leave_one_out(k):
    train, labels, _ = _data(5)
    got = knn_scores(train, labels, train, k=k, temperature=0.1, exclude_self=True)
    np.testing.assert_allclose(got, naive_knn(train, labels, train, k, 0.1, exclude_self=True), atol=1e-10)
    # independently: row i scored against the training set without row i
    for i in (0, 17, 39):
        keep = np.arange(len(train)) != i
        want = knn_scores(train[keep], labels[keep], train[i : i + 1], k=k, temperature=0.1)
        np.testing.assert_allclose(got[i : i + 1], want, atol=1e-12)
    # and it differs from scoring with self included (the own labels get the biggest weight)
    assert not np.allclose(got, knn_scores(train, labels, train, k=k, temperature=0.1))


def test_k_larger_than_train_uses_every_row():
    train, labels, query = _data(6, n_train=9)
    big = knn_scores(train, labels, query, k=50, temperature=0.2)
    np.testing.assert_allclose(big, knn_scores(train, labels, query, k=9, temperature=0.2), atol=1e-12)
    np.testing.assert_allclose(big, naive_knn(train, labels, query, 9, 0.2), atol=1e-10)
    assert not np.allclose(big, knn_scores(train, labels, query, k=8, temperature=0.2))


def test_ties_go_to_the_lower_training_index():
    # rows 0, 2 and 3 point the same way (cosine 1 with the query; norms differ); row 4 is orthogonal
    train = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = np.eye(5, dtype=np.int64)  # one label per row: the scores show who was picked
    query = np.array([[3.0, 0.0, 0.0]])
    for dtype in (np.float64, np.float32):
        got = knn_scores(train.astype(dtype), labels, query.astype(dtype), k=2, temperature=0.1)
        np.testing.assert_allclose(got, [[0.5, 0.0, 0.5, 0.0, 0.0]], atol=1e-6)
        got3 = knn_scores(train.astype(dtype), labels, query.astype(dtype), k=3, temperature=0.1)
        np.testing.assert_allclose(got3, [[1 / 3, 0.0, 1 / 3, 1 / 3, 0.0]], atol=1e-6)
    # many tied rows straddling the cut, in every chunk layout
    rng = np.random.default_rng(7)
    train = np.eye(4)[rng.integers(0, 4, 60)] * rng.integers(1, 4, (60, 1))
    labels = (rng.random((60, 6)) < 0.4).astype(np.int64)
    query = np.eye(4)[rng.integers(0, 4, 25)]
    want = naive_knn(train, labels, query, 5, 0.05)
    for chunk in (1, 4, 1000):
        np.testing.assert_allclose(
            knn_scores(train, labels, query, k=5, temperature=0.05, chunk_size=chunk), want, atol=1e-12
        )


def test_chunked_equals_unchunked():
    train, labels, query = _data(8, n_train=50, n_query=23)
    ref = knn_scores(train, labels, query, k=6, temperature=0.05, chunk_size=10_000)
    # equal up to the rounding of differently shaped matrix products
    for chunk in (1, 5, 22, 23):
        got = knn_scores(train, labels, query, k=6, temperature=0.05, chunk_size=chunk)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    loo = knn_scores(train, labels, train, k=6, temperature=0.05, exclude_self=True, chunk_size=10_000)
    got = knn_scores(train, labels, train, k=6, temperature=0.05, exclude_self=True, chunk_size=7)
    np.testing.assert_allclose(got, loo, rtol=0, atol=1e-12)


def test_sparse_and_torch_labels_equal_dense():
    train, labels, query = _data(9)
    ref = knn_scores(train, labels, query, k=8, temperature=0.1)
    for y in (sp.csr_matrix(labels), sp.csc_matrix(labels), labels.astype(bool), torch.tensor(labels)):
        np.testing.assert_allclose(knn_scores(train, y, query, k=8, temperature=0.1), ref, atol=1e-12)
    np.testing.assert_allclose(
        knn_scores(train, sp.csr_matrix(labels), train, k=8, temperature=0.1, exclude_self=True),
        knn_scores(train, labels, train, k=8, temperature=0.1, exclude_self=True),
        atol=1e-12,
    )


def test_temperature_limits():
    train, labels, query = _data(10)
    # tiny temperature: the single nearest neighbour's labels; huge: the plain mean of the k
    np.testing.assert_allclose(
        knn_scores(train, labels, query, k=10, temperature=1e-6), knn_scores(train, labels, query, k=1), atol=1e-9
    )
    sims = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        train / np.linalg.norm(train, axis=1, keepdims=True)
    ).T
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(
        knn_scores(train, labels, query, k=10, temperature=1e6), labels[nearest].mean(axis=1), atol=1e-5
    )


def test_inputs_not_modified():
    train, labels, query = _data(11)
    copies = [a.copy() for a in (train, labels, query)]
    knn_scores(train, labels, query, k=3)
    for a, b in zip((train, labels, query), copies, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be"),
        ({"k": 2.5}, "k must be"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"exclude_self": True}, "exclude_self"),
    ],
)
def test_argument_errors(kwargs, match):
    train, labels, query = _data(12)
    with pytest.raises(ValueError, match=match):
        knn_scores(train, labels, query, **kwargs)


def test_input_errors():
    train, labels, query = _data(13)
    with pytest.raises(ValueError, match="query_emb"):
        knn_scores(train, labels, query[:, :3])
    with pytest.raises(ValueError, match="train_labels"):
        knn_scores(train, labels[:5], query)
    with pytest.raises(ValueError, match="0/1"):
        knn_scores(train, labels * 2, query)
    with pytest.raises(ValueError, match="0/1"):
        knn_scores(train, sp.csr_matrix(labels * 3), query)
    bad = train.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="train_emb"):
        knn_scores(bad, labels, query)
    with pytest.raises(ValueError, match="train_emb"):
        knn_scores(train[0], labels, query)
    with pytest.raises(ValueError, match="exclude_self"):
        knn_scores(train[:1], labels[:1], train[:1], exclude_self=True)


# ---------------------------------------------------------------------------
# tune_knn
# ---------------------------------------------------------------------------


def _clustered(seed, n_train=120, n_val=60, c=4, noise=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, 8)) * 2

    def make(n):
        y = (rng.random((n, c)) < 0.35).astype(np.int64)
        y[y.sum(1) == 0, 0] = 1
        return y @ centres + noise * rng.normal(size=(n, 8)), y

    (xt, yt), (xv, yv) = make(n_train), make(n_val)
    return xt, yt, xv, yv


@pytest.mark.parametrize("metric", ["map", "micro_f1", "macro_f1"])
def test_tune_knn_table_is_the_brute_force_grid(metric):
    xt, yt, xv, yv = _clustered(0)
    ks, ts = (1, 5, 20, 500), (0.02, 0.2)
    best, table = tune_knn(xt, yt, xv, yv, ks=ks, temperatures=ts, metric=metric)
    assert [(r["k"], r["temperature"]) for r in table] == [(k, t) for k in ks for t in ts]
    for row in table:
        s = knn_scores(xt, yt, xv, k=row["k"], temperature=row["temperature"])
        if metric == "map":
            want = skm.average_precision_score(yv, s, average="macro")  # every label present here
            assert row["threshold"] is None
        else:
            t = tune_global_threshold(yv, s)
            assert row["threshold"] == pytest.approx(t, abs=1e-12)
            want = skm.f1_score(yv, (s >= t).astype(int), average=metric.split("_")[0], zero_division=0)
        assert row["value"] == pytest.approx(want, abs=1e-10), row
    values = [r["value"] for r in table]
    first_best = table[int(np.argmax(values))]
    assert best == {"k": first_best["k"], "temperature": first_best["temperature"]}


def test_tune_knn_prefers_enough_neighbours_on_noisy_clusters():
    xt, yt, xv, yv = _clustered(1, noise=2.5)
    best, table = tune_knn(xt, yt, xv, yv, ks=(1, 15), temperatures=(0.1,))
    assert best["k"] == 15 and table[1]["value"] > table[0]["value"]


def _neg_mae(y, s):
    return -float(np.abs(np.asarray(y.toarray() if sp.issparse(y) else y, dtype=float) - s).mean())


def test_tune_knn_callable_metric_sparse_labels_and_errors():
    xt, yt, xv, yv = _clustered(2)
    grid = {"ks": (3, 9), "temperatures": (0.05,), "metric": _neg_mae}
    best, table = tune_knn(xt, sp.csr_matrix(yt), xv, yv, **grid)
    dense_best, dense_table = tune_knn(xt, yt, xv, yv, **grid)
    assert best == dense_best
    assert [r["value"] for r in table] == pytest.approx([r["value"] for r in dense_table], abs=1e-12)
    assert table[0]["value"] == pytest.approx(_neg_mae(yv, knn_scores(xt, yt, xv, k=3, temperature=0.05)))
    with pytest.raises(ValueError, match="metric"):
        tune_knn(xt, yt, xv, yv, metric="accuracy")
    with pytest.raises(ValueError, match="ks"):
        tune_knn(xt, yt, xv, yv, ks=())
    with pytest.raises(ValueError, match="val_y"):
        tune_knn(xt, yt, xv, yv[:, :2])
    with pytest.raises(ValueError, match="undefined"):
        tune_knn(xt, yt, xv, np.zeros_like(yv), metric="map")


# ---------------------------------------------------------------------------
# KNNHead
# ---------------------------------------------------------------------------


def test_knn_head_equals_knn_scores():
    train, labels, query = _data(14)
    head = KNNHead.from_embeddings(torch.tensor(train), labels, k=6, temperature=0.1, chunk_size=4)
    assert head.train_emb.dtype == torch.float32 and head.train_labels.dtype == torch.uint8
    h = torch.tensor(query, dtype=torch.float32)
    want = knn_scores(train.astype(np.float32), labels, h, k=6, temperature=0.1)
    np.testing.assert_allclose(head.scores(h).numpy(), want, atol=1e-6)
    logits = head(h)
    assert logits.shape == (15, 5) and torch.isfinite(logits).all()
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), np.clip(want, 1e-6, 1 - 1e-6), atol=1e-5)
    assert list(head.parameters()) == []  # nothing to train


def test_knn_head_state_dict_round_trip_through_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    train, labels, query = _data(15)
    head = KNNHead.from_embeddings(train, sp.csr_matrix(labels), k=4, temperature=0.07)
    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    config = json.loads(json.dumps(head.config()))
    assert config == {"in_dim": 6, "num_labels": 5, "num_train": 40, "k": 4, "temperature": 0.07,
                      "chunk_size": 2048, "eps": 1e-6}  # fmt: skip
    rebuilt = KNNHead(**config)
    h = torch.tensor(query, dtype=torch.float32)
    assert not torch.equal(rebuilt(h), head(h))  # empty buffers before loading
    rebuilt.load_state_dict(load_file(str(tmp_path / "head.safetensors")))
    assert torch.equal(rebuilt(h), head(h))
    assert torch.equal(rebuilt.train_labels, torch.tensor(labels, dtype=torch.uint8))


def test_knn_head_errors():
    train, labels, _ = _data(16)
    head = KNNHead.from_embeddings(train, labels)
    with pytest.raises(ValueError, match="h must be"):
        head(torch.randn(3, 4))
    with pytest.raises(ValueError, match="train_labels"):
        head.fit(train, labels[:, :2])
    with pytest.raises(ValueError, match="0/1"):
        KNNHead.from_embeddings(train, labels * 2)
    with pytest.raises(ValueError, match="temperature"):
        KNNHead(6, 5, 10, temperature=-1)
    with pytest.raises(ValueError, match="k must"):
        KNNHead(6, 5, 10, k=0)


@pytest.mark.parametrize("module", ["mlsupcon.evaluation.knn", "mlsupcon.models.knn_head"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
