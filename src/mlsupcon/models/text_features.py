"""Hashed TF-IDF text features (word 1-2-grams + character n-grams) with a compact, pickle-free state.

:class:`TextFeaturizer` hashes each n-gram family as scikit-learn's ``HashingVectorizer`` does
(:mod:`~mlsupcon.models.ngram_hashing`: the same columns, without importing scikit-learn;
stateless, so nothing but a few numbers has to be saved), keeps the hashed columns whose
document frequency in the training texts is at least ``min_df`` (optionally only the
``max_features`` most frequent), remaps them to ``0..K-1`` and weights them with sublinear tf
times a smoothed idf fitted on the training texts. Each family's block is L2-normalised and
the row is then divided by ``sqrt(number of non-empty blocks)``, so every non-empty row has
unit norm and words and characters weigh the same whatever their n-gram counts (as a
FeatureUnion of two ``TfidfVectorizer`` would, up to that constant).

The state is ``config`` (a small JSON-able dict) plus two numpy arrays (kept hashed column ids
``int64`` and idf ``float32``), so it fits in a safetensors file and rebuilds the featurizer
exactly (scikit-learn's hash, MurmurHash3, does not depend on the process or version).

Example:
    >>> from mlsupcon.models.text_features import TextFeaturizer
    >>> f = TextFeaturizer(min_df=1).fit(["red apple pie", "green apple tart"])
    >>> X = f.transform(["apple pie", "unseen words"])
    >>> X.shape[1] == f.num_features, X.dtype.name
    (True, 'float32')
    >>> round(float(X[0].multiply(X[0]).sum()), 5)  # unit-norm rows
    1.0
    >>> config, arrays = f.state()
    >>> g = TextFeaturizer.from_state(config, arrays)
    >>> (g.transform(["apple pie"]) != f.transform(["apple pie"])).nnz
    0
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .base import check_choice, check_positive_int

__all__ = ["TextFeaturizer"]

# Texts hashed per call: bounds the temporary hashed-count matrices (character n-grams give
# thousands of entries per document) without a Python loop over n-grams.
_CHUNK = 2048


def _ngram_range(value: Any, arg: str) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be a pair (min_n, max_n) of positive ints or None, got {value!r}") from None
    if not 1 <= lo <= hi:
        raise ValueError(f"{arg} must satisfy 1 <= min_n <= max_n, got {value!r}")
    return (lo, hi)



def _hash_chunk(vectorizers: Sequence[Any], texts: list[str]):
    """Raw counts of ``texts`` over the vectorizers' concatenated hash spaces (CSR, summed, sorted)."""
    import scipy.sparse as sp

    blocks = [v(texts) for v in vectorizers]
    X = sp.hstack(blocks, format="csr", dtype=np.float32) if len(blocks) > 1 else blocks[0].tocsr()
    X.sum_duplicates()  # also sorts indices, so the family blocks are contiguous per row
    return X

class TextFeaturizer:
    """TF-IDF over hashed word and character n-grams, fitted on training texts.

    Args:
        word_ngram_range: ``(min_n, max_n)`` of word n-grams (default ``(1, 2)``); None for no
            word features. Words follow scikit-learn's default ``token_pattern`` (2+ word chars).
        char_ngram_range: ``(min_n, max_n)`` of character n-grams (default ``(2, 5)``); None for
            no character features.
        char_analyzer: ``"char_wb"`` (default; n-grams inside word boundaries, padded with
            spaces) or ``"char"`` (across word boundaries).
        lowercase: Lowercase before hashing (default True).
        min_df: Keep hashed columns present in at least this many training texts (default 2).
        max_features: Keep at most this many columns, the most frequent by document frequency
            (ties: lower hashed id first); None (default) keeps all that pass ``min_df``.
        n_features: Hash buckets per family (default ``2**20``). Collisions merge n-grams, so
            larger is more faithful; the kept columns only cost memory for those that pass.
        sublinear_tf: Use ``1 + log(tf)`` instead of raw counts (default True).
        use_idf: Multiply by ``log((1 + n) / (1 + df)) + 1`` (default True; scikit-learn's
            smoothed idf).
        max_chars: Characters of each text kept before hashing (default None: all). Bounds the
            cost of very long documents.

    Raises:
        ValueError: An invalid option (the message names it).

    Example:
        >>> f = TextFeaturizer(char_ngram_range=None, min_df=1).fit(["a cat", "the cat sat"])
        >>> f.num_features  # "cat", "the", "sat", "the cat", "cat sat"
        5
    """

    def __init__(
        self,
        word_ngram_range: Sequence[int] | None = (1, 2),
        char_ngram_range: Sequence[int] | None = (2, 5),
        char_analyzer: str = "char_wb",
        lowercase: bool = True,
        min_df: int = 2,
        max_features: int | None = None,
        n_features: int = 2**20,
        sublinear_tf: bool = True,
        use_idf: bool = True,
        max_chars: int | None = None,
    ) -> None:
        self.word_ngram_range = _ngram_range(word_ngram_range, "word_ngram_range")
        self.char_ngram_range = _ngram_range(char_ngram_range, "char_ngram_range")
        if self.word_ngram_range is None and self.char_ngram_range is None:
            raise ValueError("word_ngram_range and char_ngram_range cannot both be None (no features)")
        self.char_analyzer = check_choice(char_analyzer, "char_analyzer", ("char_wb", "char"))
        self.lowercase = bool(lowercase)
        self.min_df = check_positive_int(min_df, "min_df")
        self.max_features = None if max_features is None else check_positive_int(max_features, "max_features")
        self.n_features = check_positive_int(n_features, "n_features", 16)
        if self.n_features > 2**30:
            raise ValueError(f"n_features must be <= 2**30, got {n_features!r}")
        self.sublinear_tf = bool(sublinear_tf)
        self.use_idf = bool(use_idf)
        self.max_chars = None if max_chars is None else check_positive_int(max_chars, "max_chars")
        self.kept_ids: np.ndarray | None = None  # hashed column ids (family-offset), sorted, int64
        self.idf: np.ndarray | None = None  # float32 [K]
        self.n_train: int = 0
        self._lut: np.ndarray | None = None  # hashed id -> compact column, -1 if dropped
        self._vectorizer_list: list[Any] | None = None  # built on first use

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> TextFeaturizer:
        """An unfitted featurizer from a dict of options, e.g. a saved :meth:`config` (whose
        ``n_train`` describes the fit and is ignored); a ValueError names an unknown option.

        Example:
            >>> TextFeaturizer.from_options({"min_df": 1, "n_train": 5}).min_df
            1
        """
        try:
            return cls(**{k: v for k, v in dict(options or {}).items() if k != "n_train"})
        except TypeError as e:
            raise ValueError(f"featurizer: {e}") from None

    # ------------------------------------------------------------------ helpers
    @property
    def _vectorizers(self) -> list[Any]:
        if self._vectorizer_list is None:
            self._vectorizer_list = self._make_vectorizers()
        return self._vectorizer_list

    def _make_vectorizers(self) -> list[Any]:
        from .ngram_hashing import NgramHasher

        vecs = []
        if self.word_ngram_range is not None:
            vecs.append(NgramHasher("word", self.word_ngram_range, self.lowercase, self.n_features))
        if self.char_ngram_range is not None:
            vecs.append(NgramHasher(self.char_analyzer, self.char_ngram_range, self.lowercase, self.n_features))
        return vecs

    @property
    def num_families(self) -> int:
        return (self.word_ngram_range is not None) + (self.char_ngram_range is not None)

    @property
    def num_features(self) -> int:
        """K, the number of kept columns (0 before :meth:`fit`)."""
        return 0 if self.kept_ids is None else int(self.kept_ids.size)

    @property
    def fitted(self) -> bool:
        return self.kept_ids is not None

    def _texts(self, texts: Iterable[str] | str) -> list[str]:
        if isinstance(texts, str):
            raise ValueError("texts must be a list of documents, not one string")
        out = list(texts)
        for i, t in enumerate(out):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] must be a str, got {type(t).__name__}")
        if self.max_chars is not None:
            out = [t[: self.max_chars] for t in out]
        return out

    def _hashed(self, texts: list[str]):
        """Raw counts over the concatenated hash spaces ``[n, families * n_features]`` (CSR)."""
        return _hash_chunk(self._vectorizers, texts)

    # ------------------------------------------------------------------ fit / transform
    def _hashed_chunks(self, docs: list[str]) -> Iterator[Any]:
        """:meth:`_hashed` of each chunk of ``_CHUNK`` texts, in order; chunks are hashed on
        every core when there are several (the analyzers are Python code: processes, not threads)."""
        chunks = [docs[i : i + _CHUNK] for i in range(0, len(docs), _CHUNK)]
        jobs = min(len(chunks), os.cpu_count() or 1)
        if jobs < 2:
            yield from (self._hashed(c) for c in chunks)
            return
        from joblib import Parallel, delayed

        yield from Parallel(n_jobs=jobs, return_as="generator")(delayed(_hash_chunk)(self._vectorizers, c)
                                                                for c in chunks)

    def fit(self, texts: Iterable[str]) -> TextFeaturizer:
        """Choose the kept columns and their idf from the training texts.

        Raises:
            ValueError: ``texts`` is empty, not a list of strings, or no column passes ``min_df``.
        """
        self._fit_hashed(self._hashed_chunks(self._texts(texts)), keep=False)
        return self

    def _fit_hashed(self, hashed: Iterable[Any], keep: bool = True) -> list[Any]:
        """Fits on hashed chunks; returns them when ``keep`` (to transform without hashing again)."""
        width = self.num_families * self.n_features
        df = np.zeros(width, dtype=np.int64)
        kept, n = [], 0
        for X in hashed:
            df += np.bincount(X.indices, minlength=width)  # indices are unique per row after sum_duplicates
            if keep:
                kept.append(X)
            n += X.shape[0]
        if not n:
            raise ValueError("texts must contain at least one document to fit the featurizer")
        cols = np.flatnonzero(df >= self.min_df)
        if cols.size == 0:
            raise ValueError(f"min_df: no n-gram occurs in {self.min_df} or more of the {n} training texts")
        if self.max_features is not None and cols.size > self.max_features:
            order = np.argsort(-df[cols], kind="stable")[: self.max_features]  # stable: lower id wins ties
            cols = np.sort(cols[order])
        idf = np.log((1.0 + n) / (1.0 + df[cols])) + 1.0 if self.use_idf else np.ones(cols.size)
        self._set_state(cols.astype(np.int64), idf.astype(np.float32), n)
        return kept

    def _set_state(self, kept_ids: np.ndarray, idf: np.ndarray, n_train: int) -> None:
        width = self.num_families * self.n_features
        kept_ids = np.asarray(kept_ids, dtype=np.int64).ravel()
        idf = np.asarray(idf, dtype=np.float32).ravel()
        if kept_ids.size == 0 or kept_ids.size != idf.size:
            raise ValueError(f"kept_ids and idf must be non-empty and of equal length, got {kept_ids.size} "
                             f"and {idf.size}")
        if kept_ids[0] < 0 or kept_ids[-1] >= width or (kept_ids.size > 1 and np.any(np.diff(kept_ids) <= 0)):
            raise ValueError(f"kept_ids must be strictly increasing hashed ids in [0, {width}) for this config")
        lut = np.full(width, -1, dtype=np.int32 if kept_ids.size < 2**31 else np.int64)
        lut[kept_ids] = np.arange(kept_ids.size, dtype=lut.dtype)
        self.kept_ids, self.idf, self.n_train, self._lut = kept_ids, idf, int(n_train), lut

    def fit_transform(self, texts: Iterable[str]):
        """:meth:`fit` then :meth:`transform` on the same texts, hashing them once."""
        hashed = self._fit_hashed(self._hashed_chunks(self._texts(texts)))
        return self._stack([self._transform_hashed(X) for X in hashed])

    def transform(self, texts: Iterable[str]):
        """Texts -> TF-IDF rows, ``scipy.sparse.csr_matrix`` float32 ``[n, K]``.

        Column indices are sorted within each row; a text with no kept n-gram is an empty row.

        Raises:
            ValueError: Before :meth:`fit`, or for inputs that are not a list of strings.
        """

        if not self.fitted:
            raise ValueError("TextFeaturizer: call fit(train_texts) (or from_state) before transform")
        return self._stack([self._transform_hashed(X) for X in self._hashed_chunks(self._texts(texts))])

    def _stack(self, parts: list[Any]):
        import scipy.sparse as sp

        if not parts:
            return sp.csr_matrix((0, self.num_features), dtype=np.float32)
        return parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")

    def _transform_hashed(self, X):
        import scipy.sparse as sp

        n = X.shape[0]
        cols = self._lut[X.indices]
        keep = cols >= 0
        rows = np.repeat(np.arange(n), np.diff(X.indptr))[keep]
        cols = cols[keep].astype(np.int32)
        data = X.data[keep]
        if self.sublinear_tf:
            data = 1.0 + np.log(data)
        data = (data * self.idf[cols]).astype(np.float32)
        # Kept ids are sorted, so the remap preserves the sorted order within each row and the
        # family blocks stay contiguous: family = compact column >= first column of the family.
        fam = np.searchsorted(self._family_starts(), cols, side="right") - 1
        seg = rows * self.num_families + fam
        sq = np.bincount(seg, weights=data.astype(np.float64) ** 2, minlength=n * self.num_families)
        norm = np.sqrt(sq)
        norm[norm == 0] = 1.0
        data = data / norm[seg]
        # Each non-empty family block now has norm 1; dividing by sqrt(number of non-empty
        # blocks) gives the row unit norm with the families weighted equally.
        blocks = (sq.reshape(n, self.num_families) > 0).sum(axis=1)
        data = (data / np.sqrt(np.maximum(blocks, 1))[rows]).astype(np.float32)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return sp.csr_matrix((data, cols, indptr), shape=(n, self.num_features))

    def _family_starts(self) -> np.ndarray:
        """First compact column of each family's block."""
        bounds = np.arange(self.num_families, dtype=np.int64) * self.n_features
        return np.searchsorted(self.kept_ids, bounds, side="left")

    # ------------------------------------------------------------------ state
    def config(self) -> dict[str, Any]:
        """The constructor options (JSON-able)."""
        return {
            "word_ngram_range": None if self.word_ngram_range is None else list(self.word_ngram_range),
            "char_ngram_range": None if self.char_ngram_range is None else list(self.char_ngram_range),
            "char_analyzer": self.char_analyzer,
            "lowercase": self.lowercase,
            "min_df": self.min_df,
            "max_features": self.max_features,
            "n_features": self.n_features,
            "sublinear_tf": self.sublinear_tf,
            "use_idf": self.use_idf,
            "max_chars": self.max_chars,
        }

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(config, arrays)``: JSON-able options (plus ``n_train``) and ``{"kept_ids", "idf"}``.

        Raises:
            ValueError: Before :meth:`fit`.
        """
        if not self.fitted:
            raise ValueError("TextFeaturizer: nothing to save before fit")
        return {**self.config(), "n_train": self.n_train}, {"kept_ids": self.kept_ids.copy(), "idf": self.idf.copy()}

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, Any]) -> TextFeaturizer:
        """Rebuild a fitted featurizer from :meth:`state` (arrays may be numpy or torch tensors).

        Raises:
            ValueError: Unknown config keys, missing arrays, or arrays that do not fit the config.
        """
        cfg = dict(config)
        n_train = int(cfg.pop("n_train", 0))
        import inspect

        unknown = sorted(set(cfg) - set(inspect.signature(cls.__init__).parameters) - {"self"})
        if unknown:
            raise ValueError(f"config: unknown TextFeaturizer option(s) {unknown}")
        missing = [k for k in ("kept_ids", "idf") if k not in arrays]
        if missing:
            raise ValueError(f"arrays: missing {missing} (expected 'kept_ids' and 'idf')")
        f = cls(**cfg)
        f._set_state(_numpy(arrays["kept_ids"]), _numpy(arrays["idf"]), n_train)
        return f

    def __repr__(self) -> str:
        return f"TextFeaturizer({self.config()}, num_features={self.num_features})"


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)
