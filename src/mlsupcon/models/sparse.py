"""Sparse TF-IDF text encoder: a trainable linear map over hashed word/char n-gram features, then an MLP.

:class:`SparseTextEncoder` featurises texts with a
:class:`~mlsupcon.models.text_features.TextFeaturizer` (fitted on the training texts), hands
each row's nonzero columns and tf-idf values to the model as a padded batch, and computes
``F.embedding_bag(ids, W, per_sample_weights=weights, mode="sum") + b`` — exactly
``X @ W + b`` for the sparse TF-IDF matrix ``X``, without ever building it densely — followed
by an activation and optional further ``Linear -> activation -> dropout`` blocks.

The featurizer's state (kept hashed column ids, idf) lives in buffers, so ``config()`` stays a
small JSON dict and ``build_encoder(**enc.config())`` + ``load_state_dict`` rebuilds the same
encoder. Contrastive views (:meth:`SparseTextEncoder.make_view_fn`) drop features at random
and re-normalise the rows.

Example:
    >>> import torch
    >>> from mlsupcon.models import build_encoder
    >>> texts = ["a free strategy game", "a text editor for programmers", "a puzzle game"]
    >>> enc = build_encoder("sparse", train_texts=texts, hidden_dims=[16], featurizer={"min_df": 1})
    >>> batch = enc.preprocess(["a strategy puzzle"])
    >>> sorted(batch), enc(batch).shape
    (['ids', 'weights'], torch.Size([1, 16]))
    >>> same = build_encoder(**enc.config())
    >>> _ = same.load_state_dict(enc.state_dict())
    >>> bool(torch.equal(same.encode(["a strategy puzzle"]), enc.encode(["a strategy puzzle"])))
    True
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Encoder, check_choice, check_positive_int, check_prob
from .factory import register_encoder
from .text_features import TextFeaturizer

__all__ = ["SparseTextEncoder", "pad_sparse_rows"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def pad_sparse_rows(X: Any) -> dict[str, torch.Tensor]:
    """CSR rows -> ``{"ids": int64 [n, L], "weights": float32 [n, L]}`` right-padded with id 0 / weight 0.

    ``L`` is the largest row nnz (at least 1, so an all-empty batch still has a column).

    Example:
        >>> import scipy.sparse as sp
        >>> b = pad_sparse_rows(sp.csr_matrix([[0.0, 0.6, 0.8], [1.0, 0.0, 0.0]]))
        >>> b["ids"].tolist(), b["weights"].tolist()
        ([[1, 2], [0, 0]], [[0.6000000238418579, 0.800000011920929], [1.0, 0.0]])
    """
    return _pad(np.diff(X.indptr), X.indices, X.data)


def _pad(lengths: np.ndarray, indices: np.ndarray, data: np.ndarray) -> dict[str, torch.Tensor]:
    n = len(lengths)
    width = max(int(lengths.max()) if n else 0, 1)
    ids = np.zeros((n, width), dtype=np.int64)
    wts = np.zeros((n, width), dtype=np.float32)
    # Vectorised scatter: position of each entry inside its row.
    rows = np.repeat(np.arange(n), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    pos = np.arange(len(indices)) - starts
    ids[rows, pos] = indices
    wts[rows, pos] = data
    return {"ids": torch.from_numpy(ids), "weights": torch.from_numpy(wts)}


@register_encoder
class SparseTextEncoder(Encoder):
    """TF-IDF (hashed word 1-2-grams + char n-grams) -> trainable sparse linear layer -> MLP.

    The featurizer comes from ``train_texts`` (fitted here, ~30 s on Debtags' 23k texts) or a
    fitted :class:`TextFeaturizer` passed as ``featurizer``; when rebuilt from :meth:`config`
    (``featurizer`` a dict and ``num_features`` given, no texts) its state arrives with
    ``load_state_dict``.

    Args:
        train_texts: Training documents to fit the featurizer on.
        featurizer: :class:`TextFeaturizer` options (dict; defaults: word 1-2-grams, char_wb
            2-5-grams, min_df 2), or a fitted :class:`TextFeaturizer`.
        num_features: Number of TF-IDF columns K (only when rebuilding from :meth:`config`).
        hidden_dims: Width of the sparse layer, then of each further block; the last one is
            ``output_dim`` (default ``(512,)``).
        activation: ``"relu"`` (default), ``"gelu"`` or ``"tanh"``.
        dropout: Dropout after each activation (default 0).
        final_activation: Apply the activation (and dropout) after the last layer too
            (default True); False leaves the output linear.
        init_std: Standard deviation of the sparse layer's normal init (default 0.5: rows
            have unit norm, so pre-activations start with about this scale).
        sparse_grad: Sparse gradients for the sparse layer (default False). They need an
            optimizer that accepts them (``torch.optim.SparseAdam``/``SGD``); AdamW does not.
        cache_nnz: Keep featurised rows per text in memory up to this many stored entries in
            total (default 50 million, ~400 MB); 0 disables the cache. Re-featurising a
            Debtags epoch costs ~20 s of CPU, more than a training epoch on a GPU.

    Raises:
        ValueError: No featurizer source (or an unfitted one), or an invalid option.

    Example:
        >>> enc = SparseTextEncoder(train_texts=["x y", "y z"], featurizer={"min_df": 1}, hidden_dims=(8, 4))
        >>> enc.output_dim, enc.num_features == enc.featurizer.num_features
        (4, True)
    """

    name = "sparse"
    modality = "text"
    input_keys = ("ids", "weights")

    def __init__(
        self,
        train_texts: Iterable[str] | None = None,
        featurizer: Mapping[str, Any] | TextFeaturizer | None = None,
        num_features: int | None = None,
        hidden_dims: Sequence[int] = (512,),
        activation: str = "relu",
        dropout: float = 0.0,
        final_activation: bool = True,
        init_std: float = 0.5,
        sparse_grad: bool = False,
        cache_nnz: int = 50_000_000,
    ) -> None:
        super().__init__()
        if isinstance(hidden_dims, (int, np.integer)):
            hidden_dims = (int(hidden_dims),)
        try:
            dims = [check_positive_int(d, "hidden_dims") for d in hidden_dims]
        except TypeError:
            raise ValueError(f"hidden_dims must be a sequence of positive ints, got {hidden_dims!r}") from None
        if not dims:
            raise ValueError("hidden_dims must contain at least one width")
        self.hidden_dims = tuple(dims)
        self.activation = check_choice(activation, "activation", tuple(_ACTIVATIONS))
        self.dropout = check_prob(dropout, "dropout")
        self.final_activation = bool(final_activation)
        try:
            self.init_std = float(init_std)
        except (TypeError, ValueError):
            raise ValueError(f"init_std must be a positive float, got {init_std!r}") from None
        if not self.init_std > 0 or not math.isfinite(self.init_std):
            raise ValueError(f"init_std must be a positive float, got {init_std!r}")
        self.sparse_grad = bool(sparse_grad)
        self.cache_nnz = check_positive_int(cache_nnz, "cache_nnz", 0)

        self._featurizer: TextFeaturizer | None = None
        if isinstance(featurizer, TextFeaturizer):
            if train_texts is not None or num_features is not None:
                raise ValueError("sparse encoder: pass a fitted featurizer alone (no train_texts or num_features)")
            if not featurizer.fitted:
                raise ValueError("featurizer: the TextFeaturizer is not fitted; call fit(train_texts) first")
            fz = featurizer
        elif featurizer is not None and not isinstance(featurizer, Mapping):
            raise ValueError("featurizer must be a dict of TextFeaturizer options or a TextFeaturizer, "
                             f"got {type(featurizer).__name__}")
        elif train_texts is not None:
            if num_features is not None:
                raise ValueError("sparse encoder takes train_texts or num_features (rebuilding from config), not both")
            if isinstance(train_texts, str):
                raise ValueError("train_texts must be a list of documents, not one string")
            fz = TextFeaturizer.from_options(featurizer).fit(train_texts)
        elif num_features is None:
            raise ValueError("sparse encoder requires train_texts (to fit the TF-IDF featurizer), a fitted "
                             "featurizer, or num_features with a featurizer config (from config())")
        else:
            fz = None
            TextFeaturizer.from_options(featurizer)  # fail now, not at load_state_dict, on a bad config
        self._featurizer_config = dict(featurizer) if isinstance(featurizer, Mapping) else {}
        if fz is not None:
            cfg, arrays = fz.state()
            self._featurizer_config = cfg
            k = fz.num_features
            kept, idf = torch.from_numpy(arrays["kept_ids"]), torch.from_numpy(arrays["idf"])
        else:
            k = check_positive_int(num_features, "num_features")
            # Placeholders with the right shapes; load_state_dict fills them and rebuilds the featurizer.
            kept, idf = torch.zeros(k, dtype=torch.long), torch.zeros(k, dtype=torch.float32)
        self.num_features = k
        self.register_buffer("kept_ids", kept)
        self.register_buffer("idf", idf)
        self._featurizer = fz
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_used = 0
        self.register_load_state_dict_post_hook(_rebuild_featurizer)

        self.weight = nn.Parameter(torch.empty(k, dims[0]))
        self.bias = nn.Parameter(torch.zeros(dims[0]))
        nn.init.normal_(self.weight, std=self.init_std)
        act = _ACTIVATIONS[self.activation]
        first: list[nn.Module] = []
        if len(dims) > 1 or self.final_activation:
            first = [act()] + ([nn.Dropout(self.dropout)] if self.dropout > 0 else [])
        self.first = nn.Sequential(*first)
        layers: list[nn.Module] = []
        for i in range(1, len(dims)):
            layers.append(nn.Linear(dims[i - 1], dims[i]))
            if i < len(dims) - 1 or self.final_activation:
                layers.append(act())
                if self.dropout > 0:
                    layers.append(nn.Dropout(self.dropout))
        self.net = nn.Sequential(*layers)
        self.output_dim = dims[-1]

    # ------------------------------------------------------------------ featurizer
    @property
    def featurizer(self) -> TextFeaturizer:
        """The fitted :class:`TextFeaturizer`.

        Raises:
            ValueError: When the encoder was rebuilt from ``config()`` and its state not loaded yet.
        """
        if self._featurizer is None:
            raise ValueError("sparse encoder: load_state_dict(...) first (rebuilt from config() without its "
                             "featurizer state)")
        return self._featurizer

    def _set_featurizer_from_buffers(self) -> None:
        cfg = dict(self._featurizer_config)
        self._featurizer = TextFeaturizer.from_state(cfg, {"kept_ids": self.kept_ids, "idf": self.idf})
        self._cache.clear()
        self._cache_used = 0

    # ------------------------------------------------------------------ data
    def preprocess(self, raw: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Texts -> ``{"ids": int64 [n, L], "weights": float32 [n, L]}``.

        Each row holds a document's nonzero TF-IDF columns (ascending) and values (the row has
        unit L2 norm), right-padded with id 0 / weight 0 to the batch's largest nnz ``L``.
        """
        texts = [raw] if isinstance(raw, str) else list(raw)
        fz = self.featurizer
        if not self.cache_nnz:
            return pad_sparse_rows(fz.transform(texts))
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if missing:
            X = fz.transform(missing)
            for i, t in enumerate(missing):
                a, b = X.indptr[i], X.indptr[i + 1]
                fresh[t] = (X.indices[a:b].astype(np.int32), X.data[a:b].copy())
                if self._cache_used + (b - a) <= self.cache_nnz:  # once full, new texts are not kept
                    self._cache[t] = fresh[t]
                    self._cache_used += int(b - a)
        rows = [self._cache[t] if t in self._cache else fresh[t] for t in texts]
        lengths = np.array([len(r[0]) for r in rows], dtype=np.int64)
        indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
        data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
        return _pad(lengths, indices, data)

    def collate(self, batches: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-pad preprocessed batches to a common width and concatenate them."""
        if not batches:
            raise ValueError("collate: batches must not be empty")
        width = max(int(b["ids"].shape[1]) for b in batches)
        out = {}
        for k in self.input_keys:
            out[k] = torch.cat([F.pad(b[k], (0, width - b[k].shape[1])) for b in batches], dim=0)
        return out

    # ------------------------------------------------------------------ model
    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{"ids", "weights"}`` -> ``[n, output_dim]``; the first layer is ``X @ W + b``."""
        batch = self._batch_to_device(batch)
        ids, wts = batch["ids"], batch["weights"].to(self.weight.dtype)
        if ids.shape[1] == 0:
            h = self.bias.expand(ids.shape[0], -1)
        else:
            h = F.embedding_bag(ids, self.weight, per_sample_weights=wts, mode="sum", sparse=self.sparse_grad)
            h = h + self.bias
        return self.net(self.first(h))

    def make_view_fn(self, p_drop: float = 0.2, noise_std: float = 0.0, **_: Any) -> Callable[[dict], dict]:
        """A random contrastive view of a preprocessed batch (new tensors; the input is untouched).

        Each nonzero feature is dropped (weight -> 0) with probability ``p_drop``; the kept
        weights are optionally multiplied by ``max(0, 1 + noise_std * N(0, 1))``; every row is
        then re-L2-normalised (a row that lost all its features stays zero). Uses the global
        torch RNG, like the other view makers.

        Args:
            p_drop: Drop probability per feature, in [0, 1) (default 0.2).
            noise_std: Multiplicative Gaussian noise on kept weights (default 0).
            **_: Options of other modalities' views, ignored.

        Example:
            >>> import torch
            >>> enc = SparseTextEncoder(train_texts=["a b", "b c"], featurizer={"min_df": 1}, hidden_dims=[4])
            >>> view = enc.make_view_fn(p_drop=0.5)
            >>> w = view(enc.preprocess(["a b c"]))["weights"]
            >>> bool(torch.isclose(w.norm(), torch.tensor(1.0)) or w.norm() == 0)
            True
        """
        p = check_prob(p_drop, "p_drop")
        try:
            noise = float(noise_std)
        except (TypeError, ValueError):
            raise ValueError(f"noise_std must be a float >= 0, got {noise_std!r}") from None
        if not noise >= 0 or not math.isfinite(noise):
            raise ValueError(f"noise_std must be a float >= 0, got {noise_std!r}")

        def view(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            w = batch["weights"]
            keep = torch.rand(w.shape, device=w.device) >= p if p > 0 else torch.ones_like(w, dtype=torch.bool)
            w = w * keep
            if noise > 0:
                w = w * (1.0 + noise * torch.randn(w.shape, device=w.device)).clamp_min(0.0)
            norm = w.norm(dim=1, keepdim=True)
            w = w / torch.where(norm > 0, norm, torch.ones_like(norm))
            return {**batch, "weights": w}

        return view

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "featurizer": dict(self._featurizer_config),
            "num_features": self.num_features,
            "hidden_dims": list(self.hidden_dims),
            "activation": self.activation,
            "dropout": self.dropout,
            "final_activation": self.final_activation,
            "init_std": self.init_std,
            "sparse_grad": self.sparse_grad,
            "cache_nnz": self.cache_nnz,
        }

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_features={self.num_features}, hidden_dims={list(self.hidden_dims)}"


def _rebuild_featurizer(module: SparseTextEncoder, incompatible_keys: Any) -> None:
    # Runs after load_state_dict: the buffers now hold the saved featurizer state.
    # (Keys carry the parent's prefix when the encoder is a submodule.)
    if any(k.rsplit(".", 1)[-1] in ("kept_ids", "idf") for k in incompatible_keys.missing_keys):
        return
    try:
        module._set_featurizer_from_buffers()
    except ValueError as e:
        raise ValueError(f"state_dict: kept_ids/idf are not a fitted featurizer state ({e})") from None
