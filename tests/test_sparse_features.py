"""Hashed TF-IDF featurizer, one-vs-rest linear baseline, LinearScores and the sparse text encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mlsupcon.evaluation import per_label_average_precision
from mlsupcon.models import Encoder, build_encoder
from mlsupcon.models.linear_baseline import LinearScores, constant_logit, fit_one_vs_rest, fit_vector_linear
from mlsupcon.models.sparse import SparseTextEncoder, pad_sparse_rows
from mlsupcon.models.text_features import TextFeaturizer

WORDS = [f"w{i}" for i in range(60)] + ["game", "editor", "library", "puzzle", "network", "audio"]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)  # Zipf-like: some words common, many rare
    p /= p.sum()
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 15), p=p)) for _ in range(n)]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return corpus(80)


@pytest.fixture(scope="module")
def encoder(texts) -> SparseTextEncoder:
    torch.manual_seed(0)
    return build_encoder("sparse", train_texts=texts, hidden_dims=[12, 6], featurizer={"n_features": 2**16})


# ---------------------------------------------------------------------------- featurizer
def test_featurizer_deterministic_and_unit_norm(texts):
    a = TextFeaturizer(n_features=2**16).fit(texts)
    b = TextFeaturizer(n_features=2**16).fit(list(texts))
    assert np.array_equal(a.kept_ids, b.kept_ids) and np.array_equal(a.idf, b.idf)
    Xa, Xb = a.transform(texts), b.transform(texts)
    assert Xa.dtype == np.float32 and Xa.shape == (len(texts), a.num_features)
    assert (Xa != Xb).nnz == 0
    norms = np.sqrt(np.asarray(Xa.multiply(Xa).sum(1)).ravel())
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    # Both families weigh the same: each block of a row has squared norm 1/2.
    start = a._family_starts()[1]
    word_sq = np.asarray(Xa[:, :start].multiply(Xa[:, :start]).sum(1)).ravel()
    np.testing.assert_allclose(word_sq, 0.5, rtol=1e-5)
    # A text with no kept n-gram is an empty row, not NaN.
    empty = a.transform(["", "§"])
    assert empty.shape == (2, a.num_features) and np.isfinite(empty.data).all()
    assert empty[0].nnz == 0


def test_featurizer_matches_sklearn_tfidf(texts):
    """Word-only features equal TfidfVectorizer's up to the column order (no collisions at 2**20)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    f = TextFeaturizer(char_ngram_range=None, min_df=2).fit(texts)
    ref = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32).fit(texts)
    assert f.num_features == len(ref.vocabulary_)
    X, R = f.transform(texts[:20]), ref.transform(texts[:20])
    for i in range(20):
        np.testing.assert_allclose(np.sort(X[i].data), np.sort(R[i].data), rtol=1e-5)


def test_featurizer_state_round_trip(texts, tmp_path):
    from safetensors.numpy import load_file, save_file

    f = TextFeaturizer(char_ngram_range=(3, 4), char_analyzer="char", n_features=2**16).fit(texts)
    config, arrays = f.state()
    assert arrays["kept_ids"].dtype == np.int64 and arrays["idf"].dtype == np.float32
    save_file(arrays, str(tmp_path / "f.safetensors"))
    g = TextFeaturizer.from_state(json.loads(json.dumps(config)), load_file(str(tmp_path / "f.safetensors")))
    new = corpus(10, seed=5)
    assert (f.transform(new) != g.transform(new)).nnz == 0
    with pytest.raises(ValueError, match="kept_ids"):
        TextFeaturizer.from_state(config, {"kept_ids": arrays["kept_ids"][::-1].copy(), "idf": arrays["idf"]})
    with pytest.raises(ValueError, match="transform"):
        TextFeaturizer().transform(["x"])


def test_min_df_and_max_features():
    docs = ["common alpha", "common beta", "common alpha gamma", "common delta"]
    word = {"char_ngram_range": None, "word_ngram_range": (1, 1)}
    f1 = TextFeaturizer(min_df=1, **word).fit(docs)
    f2 = TextFeaturizer(min_df=2, **word).fit(docs)
    assert (f1.num_features, f2.num_features) == (5, 2)  # min_df 2 keeps "common", "alpha"
    assert f2.transform(["beta gamma"]).nnz == 0 and f1.transform(["beta gamma"]).nnz == 2
    top = TextFeaturizer(min_df=1, max_features=1, **word).fit(docs)
    assert top.num_features == 1
    assert top.transform(["common"]).nnz == 1 and top.transform(["alpha beta"]).nnz == 0
    # idf: a term in every document gets the smallest idf.
    np.testing.assert_allclose(top.idf, [np.log(5 / 5) + 1.0])
    with pytest.raises(ValueError, match="min_df"):
        TextFeaturizer(min_df=10, **word).fit(docs)
    with pytest.raises(ValueError, match="char_ngram_range"):
        TextFeaturizer(char_ngram_range=(4, 2))


# ---------------------------------------------------------------------------- linear baseline
def synthetic_problem(n=300, k=40, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, k, density=0.2, format="csr", random_state=seed, dtype=np.float64)
    W = rng.normal(size=(k, 4))
    Z = X @ W
    Y = (Z > np.quantile(Z, 0.7, axis=0)).astype(np.uint8)
    Y = np.concatenate([Y, np.zeros((n, 1), np.uint8), np.ones((n, 1), np.uint8)], axis=1)  # constant labels
    return X, Y


@pytest.mark.parametrize("estimator", ["svm", "logreg"])
def test_one_vs_rest_separable(estimator):
    X, Y = synthetic_problem()
    coef, b = fit_one_vs_rest(X, Y, estimator=estimator, C=100.0)
    assert coef.dtype == np.float32 and coef.shape == (6, 40) and b.shape == (6,)
    scores = np.asarray(X @ coef.T) + b
    ap = per_label_average_precision(Y[:, :4], scores[:, :4])
    assert ap.min() > 0.95
    # Constant labels: no classifier, a constant score on the right side of zero.
    assert not coef[4:].any()
    assert b[4] == pytest.approx(constant_logit(0, 300)) and b[4] < -5 and b[5] > 5


def test_fit_vector_linear_folds_scaling():
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    X = rng.normal(loc=[5.0, -3.0, 100.0], scale=[1.0, 10.0, 0.01], size=(200, 3))
    Y = np.stack([X[:, 0] > 5, X[:, 2] > 100], 1).astype(np.uint8)
    coef, b = fit_vector_linear(X, Y, estimator="logreg", C=1.0)
    Xs = StandardScaler().fit_transform(X)
    ref_coef, ref_b = fit_one_vs_rest(Xs, Y, estimator="logreg", C=1.0)
    np.testing.assert_allclose(X @ coef.T + b, Xs @ ref_coef.T + ref_b, rtol=1e-4, atol=1e-3)


def test_linear_scores_dense_equals_padded_sparse():
    X, Y = synthetic_problem(n=50)
    coef, b = fit_one_vs_rest(X, Y, estimator="logreg")
    head = LinearScores(coef, b)
    Xf = sp.csr_matrix(X, dtype=np.float32)
    dense = head(torch.from_numpy(Xf.toarray()))
    sparse = head(pad_sparse_rows(Xf))
    torch.testing.assert_close(dense, sparse, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dense.detach().numpy(), np.asarray(Xf @ coef.T) + b, rtol=1e-4, atol=1e-5)
    assert set(head.state_dict()) == {"weight", "bias"}
    with pytest.raises(ValueError, match="inputs"):
        head(torch.zeros(2, 3))


# ---------------------------------------------------------------------------- encoder
def test_encoder_forward_equals_dense_reference(encoder, texts):
    batch = encoder.preprocess(texts[:7])
    assert batch["ids"].dtype == torch.long and batch["weights"].dtype == torch.float32
    X = encoder.featurizer.transform(texts[:7])
    assert batch["ids"].shape == (7, int(np.diff(X.indptr).max()))
    with torch.no_grad():
        h = torch.from_numpy(X.toarray()) @ encoder.weight + encoder.bias
        ref = encoder.net(encoder.first(h))
        out = encoder(batch)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert out.shape == (7, encoder.output_dim) == (7, 6)
    # The cached path and the uncached path give the same batch.
    again = encoder.preprocess(texts[:7])
    assert all(torch.equal(again[k], batch[k]) for k in batch)
    assert encoder._cache_used > 0


def test_encoder_linear_output_and_sparse_grad(texts):
    torch.manual_seed(1)
    dense = SparseTextEncoder(train_texts=texts, hidden_dims=[5], final_activation=False)
    sparse = build_encoder(**{**dense.config(), "sparse_grad": True})
    sparse.load_state_dict(dense.state_dict())
    batch = dense.preprocess(texts[:9])
    X = torch.from_numpy(dense.featurizer.transform(texts[:9]).toarray())
    torch.testing.assert_close(dense(batch), X @ dense.weight + dense.bias)
    dense(batch).square().sum().backward()
    sparse(batch).square().sum().backward()
    assert sparse.weight.grad.is_sparse and not dense.weight.grad.is_sparse
    torch.testing.assert_close(sparse.weight.grad.to_dense(), dense.weight.grad)


def test_encoder_config_state_round_trip(encoder, texts, tmp_path):
    from safetensors.torch import load_file, save_file

    config = json.loads(json.dumps(encoder.config()))
    assert len(json.dumps(config)) < 2000  # the featurizer state is in buffers, not the config
    rebuilt = build_encoder(**config)
    with pytest.raises(ValueError, match="load_state_dict"):
        rebuilt.preprocess(["w1 w2"])
    save_file(encoder.state_dict(), str(tmp_path / "enc.safetensors"))
    rebuilt.load_state_dict(load_file(str(tmp_path / "enc.safetensors")))
    new = corpus(6, seed=9)
    a, b = encoder.preprocess(new), rebuilt.preprocess(new)
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.testing.assert_close(rebuilt.encode(new), encoder.encode(new), rtol=0, atol=0)
    # As a submodule (state-dict keys get a prefix) the featurizer is rebuilt too.
    parent = torch.nn.ModuleDict({"enc": build_encoder(**config)})
    parent.load_state_dict(torch.nn.ModuleDict({"enc": encoder}).state_dict())
    assert np.array_equal(parent["enc"].featurizer.kept_ids, encoder.featurizer.kept_ids)


def test_encoder_encode_and_collate(encoder, texts):
    assert isinstance(encoder, Encoder) and encoder.modality == "text"
    out = encoder.encode(texts[:10], batch_size=3)
    encoder.eval()
    with torch.no_grad():
        ref = encoder(encoder.preprocess(texts[:10]))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    parts = [encoder.preprocess([t]) for t in texts[:4]]
    joint = encoder.collate(parts)
    with torch.no_grad():
        torch.testing.assert_close(encoder(joint), ref[:4], rtol=1e-5, atol=1e-6)
    uncached = build_encoder(**{**encoder.config(), "cache_nnz": 0})
    uncached.load_state_dict(encoder.state_dict())
    b1, b2 = uncached.preprocess(texts[:5]), encoder.preprocess(texts[:5])
    assert uncached._cache_used == 0 and all(torch.equal(b1[k], b2[k]) for k in b1)


def test_view_fn_drops_and_renormalises(encoder):
    docs = corpus(200, seed=3)
    batch = encoder.preprocess(docs)
    before = {k: v.clone() for k, v in batch.items()}
    torch.manual_seed(0)
    view = encoder.make_view_fn(p_drop=0.3, noise_std=0.1, crop_scale=0.5)  # other modalities' options ignored
    out = view(batch)
    assert all(torch.equal(batch[k], before[k]) for k in batch)  # input untouched
    assert torch.equal(out["ids"], batch["ids"])
    nonzero = batch["weights"] > 0
    dropped = ((out["weights"] == 0) & nonzero).sum().item() / nonzero.sum().item()
    assert abs(dropped - 0.3) < 0.03
    assert not (out["weights"][~nonzero]).any()  # padding stays padding
    norms = out["weights"].norm(dim=1)
    assert torch.all(((norms - 1).abs() < 1e-5) | (norms == 0))
    # Without drop and noise the view is the batch itself (rows already have unit norm).
    same = encoder.make_view_fn(p_drop=0.0)(batch)
    torch.testing.assert_close(same["weights"], batch["weights"])
    with pytest.raises(ValueError, match="p_drop"):
        encoder.make_view_fn(p_drop=1.5)


def test_encoder_user_errors(texts):
    with pytest.raises(ValueError, match="train_texts"):
        build_encoder("sparse")
    with pytest.raises(ValueError, match="featurizer"):
        build_encoder("sparse", num_features=10, featurizer={"bogus": 1})
    with pytest.raises(ValueError, match="hidden_dims"):
        build_encoder("sparse", train_texts=texts, hidden_dims=[])
    with pytest.raises(ValueError, match="not fitted"):
        build_encoder("sparse", featurizer=TextFeaturizer())
