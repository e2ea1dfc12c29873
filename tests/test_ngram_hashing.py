"""NgramHasher gives exactly scikit-learn's HashingVectorizer counts, so TF-IDF models fitted before
it existed (with scikit-learn's vectorizer) featurise new texts as they were trained."""

import random

import numpy as np
import pytest

pytest.importorskip("mmh3", reason="NgramHasher's own path needs mmh3 (else it uses scikit-learn's vectorizer)")

from sklearn.feature_extraction.text import HashingVectorizer  # noqa: E402

from mlsupcon.data import load_dataset  # noqa: E402
from mlsupcon.models.ngram_hashing import NgramHasher  # noqa: E402

EDGE = ["", " ", "a", "ab", "A B  C", "Ünïcödé  ÄÖ straße ǅ", "日本語のテキスト、句読点。",
        "emoji 👍🏽 family 👨‍👩‍👧 ok",
        "tab\tand\n\nnewlines   many\u00a0nbsp", "x" * 12, "don't stop-words e-mail 3.14 _under_score",
        "İstanbul ΣΊΣΥΦΟΣ", "a\u0301e\u0301 combining", "\u200bzero\u200bwidth"]


def _random_texts(n, seed=0):
    rng = random.Random(seed)
    alphabet = "abcdeé xyz  \t\nÄ日本👍🏽-'.,_0123"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(n)]


@pytest.mark.parametrize("analyzer, ngram_range, lowercase", [
    ("word", (1, 2), True), ("word", (1, 1), True), ("word", (2, 3), False),
    ("char_wb", (2, 5), True), ("char_wb", (1, 3), False), ("char", (1, 3), True), ("char", (2, 4), True),
])
def test_same_counts_as_scikit_learn(analyzer, ngram_range, lowercase):
    texts = EDGE + _random_texts(200) + list(load_dataset("debtags").splits["test"].inputs[:150])
    nf = 2**18
    ours = NgramHasher(analyzer, ngram_range, lowercase, nf)(texts)
    ref = HashingVectorizer(analyzer=analyzer, ngram_range=ngram_range, lowercase=lowercase, n_features=nf,
                            alternate_sign=False, norm=None, dtype=np.float32).transform(texts).tocsr()
    ref.sum_duplicates()
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert ours.nnz == ref.nnz and (ours != ref).nnz == 0
    assert ours.has_sorted_indices


def test_the_most_negative_hash_maps_as_in_scikit_learn(monkeypatch):
    import mmh3

    # Force h = -2**31 for one n-gram: scikit-learn maps it to (2**31 - 1 - (nf - 1)) % nf.
    monkeypatch.setattr(mmh3, "hash", lambda g: -(2**31) if g == "zz" else 5)
    X = NgramHasher("word", (1, 1), True, n_features=1000)(["zz yy"])
    assert sorted(X.indices.tolist()) == sorted([(2**31 - 1 - 999) % 1000, 5])


def test_without_mmh3_it_falls_back_to_scikit_learn(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mmh3(name, *args, **kwargs):
        if name == "mmh3":
            raise ImportError("no mmh3")
        return real(name, *args, **kwargs)

    texts = EDGE[:8]
    expected = NgramHasher("char_wb", (2, 4), True, 2**16)(texts)
    monkeypatch.setattr(builtins, "__import__", no_mmh3)
    assert (NgramHasher("char_wb", (2, 4), True, 2**16)(texts) != expected).nnz == 0
