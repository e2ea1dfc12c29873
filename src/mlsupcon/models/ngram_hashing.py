"""Hashed n-gram counts, bit-identical to scikit-learn's ``HashingVectorizer``, without importing it.

Importing scikit-learn takes ~0.8 s on an idle 2-core machine (it pulls scipy.stats and pandas);
a saved TF-IDF model that scores ten new texts then spends most of its time importing.
:class:`NgramHasher` computes what ``HashingVectorizer(analyzer=..., ngram_range=...,
lowercase=..., alternate_sign=False, norm=None)`` computes — the same analyzers (scikit-learn's
default ``token_pattern``, its ``char_wb`` and ``char`` n-grams, white-space runs collapsed) and
the same hash (signed MurmurHash3 x86 32-bit of the UTF-8 bytes, seed 0, via the ``mmh3``
package; column ``|h| mod n_features``) — so models fitted with either give the same features.
The tests compare the two on Debtags texts and on Unicode, emoji and white-space edge cases.
When ``mmh3`` is not installed, scikit-learn's vectorizer is used.

Example:
    >>> h = NgramHasher("word", (1, 2), n_features=2**10)
    >>> X = h(["the cat sat", "the cat"])
    >>> X.shape, int(X[0].sum()), int(X[1].sum())   # 3 words + 2 bigrams; 2 words + 1 bigram
    ((2, 1024), 5, 3)
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

__all__ = ["NgramHasher"]

_WHITE_SPACES = re.compile(r"\s\s+")
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern


def _word_ngrams(doc: str, lo: int, hi: int) -> list[str]:
    tokens = _TOKEN.findall(doc)
    grams = list(tokens) if lo == 1 else []
    for n in range(max(lo, 2), min(hi, len(tokens)) + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


def _word_wb_ngrams(word: str, lo: int, hi: int) -> list[str]:
    """The ``char_wb`` n-grams of one white-space-free word, padded with a space on each side (a
    text's are those of its words in turn: :meth:`NgramHasher._char_wb_columns`)."""
    grams: list[str] = []
    w = f" {word} "
    size = len(w)
    for n in range(lo, hi + 1):
        offset = 0
        grams.append(w[:n])
        while offset + n < size:
            offset += 1
            grams.append(w[offset : offset + n])
        if offset == 0:  # a word shorter than n counts once
            break
    return grams


def _char_ngrams(doc: str, lo: int, hi: int) -> list[str]:
    doc = _WHITE_SPACES.sub(" ", doc)
    grams = list(doc) if lo == 1 else []
    for n in range(max(lo, 2), min(hi, len(doc)) + 1):
        grams += [doc[i : i + n] for i in range(len(doc) - n + 1)]
    return grams


_ANALYZERS = {"word": _word_ngrams, "char": _char_ngrams}  # char_wb: per word, NgramHasher._char_wb_columns


class NgramHasher:
    """Texts -> raw n-gram counts, ``scipy.sparse.csr_matrix`` float32 ``[n, n_features]``
    (duplicates summed, indices sorted), as ``HashingVectorizer`` with ``alternate_sign=False``
    and ``norm=None`` gives them. Picklable: its options travel, its cache of words' ``char_wb``
    hashes does not.

    Args:
        analyzer: ``"word"``, ``"char_wb"`` or ``"char"``.
        ngram_range: ``(min_n, max_n)``.
        lowercase: Lowercase before extracting n-grams.
        n_features: Columns (hash buckets).
    """

    def __init__(self, analyzer: str, ngram_range: Sequence[int], lowercase: bool = True,
                 n_features: int = 2**20) -> None:
        if analyzer not in (*_ANALYZERS, "char_wb"):
            raise ValueError(f"analyzer must be one of {sorted([*_ANALYZERS, 'char_wb'])}, got {analyzer!r}")
        self.analyzer, self.ngram_range = analyzer, (int(ngram_range[0]), int(ngram_range[1]))
        self.lowercase, self.n_features = bool(lowercase), int(n_features)
        self._word_cache: dict[str, tuple[int, ...]] = {}  # char_wb: a word's n-gram hashes

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_word_cache": {}}  # processes that hash chunks start empty

    def __call__(self, texts: Sequence[str]) -> Any:
        import scipy.sparse as sp

        try:
            import mmh3
        except ImportError:
            return self._sklearn(texts)
        lo, hi = self.ngram_range
        if self.analyzer == "char_wb":
            cols, indptr = self._char_wb_columns(texts, mmh3.hash)
        else:
            grams_of = _ANALYZERS[self.analyzer]
            hash32, indptr, chunks = mmh3.hash, [0], []
            for doc in texts:
                grams = grams_of(doc.lower() if self.lowercase else doc, lo, hi)
                chunks.append(np.fromiter(map(hash32, grams), dtype=np.int64, count=len(grams)))
                indptr.append(indptr[-1] + len(grams))
            cols = self._columns(np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64))
        X = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, np.asarray(indptr)),
                          shape=(len(texts), self.n_features))
        X.sum_duplicates()  # counts; sorts the indices
        return X

    def _columns(self, h: np.ndarray) -> np.ndarray:
        """Signed 32-bit hashes -> columns: ``|h| mod n_features``, with scikit-learn's value for
        ``h = -2**31`` (whose ``abs`` overflows int32 in its code)."""
        nf = self.n_features
        return np.where(h == -(2**31), (2**31 - 1 - (nf - 1)) % nf, np.abs(h) % nf).astype(np.int32)

    #: Words whose columns are kept (a word's n-grams never change; frequent words recur in every text).
    WORD_CACHE_SIZE = 200_000

    def _char_wb_columns(self, texts: Sequence[str], hash32: Any) -> tuple[np.ndarray, list[int]]:
        """char_wb n-grams are those of each white-space-separated word on its own, so each distinct
        word is analysed and hashed once and its hashes reused."""
        from itertools import chain

        lo, hi = self.ngram_range
        cache = self._word_cache
        if len(cache) > self.WORD_CACHE_SIZE:
            cache.clear()
        indptr, parts = [0], []
        total = 0
        for doc in texts:
            doc = doc.lower() if self.lowercase else doc
            for w in doc.split():  # split() collapses white-space runs as the analyzer's \s\s+ -> " " does
                hashes = cache.get(w)
                if hashes is None:
                    hashes = cache[w] = tuple(map(hash32, _word_wb_ngrams(w, lo, hi)))
                parts.append(hashes)
                total += len(hashes)
            indptr.append(total)
        h = np.fromiter(chain.from_iterable(parts), dtype=np.int64, count=total)
        return self._columns(h), indptr

    def _sklearn(self, texts: Sequence[str]) -> Any:
        from sklearn.feature_extraction.text import HashingVectorizer

        vec = HashingVectorizer(analyzer=self.analyzer, ngram_range=self.ngram_range, lowercase=self.lowercase,
                                n_features=self.n_features, alternate_sign=False, norm=None, dtype=np.float32)
        X = vec.transform(texts).tocsr()
        X.sum_duplicates()
        return X
