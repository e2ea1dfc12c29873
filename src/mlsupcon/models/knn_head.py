"""A k-nearest-neighbour classifier head on embeddings, and a head blending two heads.

Contrastive embeddings are trained so that examples sharing labels lie close together, so
the labels of an example's nearest training examples are a classifier of their own, one that
needs no training and helps rare labels. :class:`KNNHead` scores labels by similarity-weighted
votes of the ``k`` nearest training examples:

.. math::

    s_c(q) = \\sum_{j \\in \\mathrm{top}_k(q)} w_j \\, y_{jc}, \\qquad
    w_j = \\frac{\\exp(\\cos(q, x_j) / \\tau)}{\\sum_{i \\in \\mathrm{top}_k(q)} \\exp(\\cos(q, x_i) / \\tau)}

(cosine similarity, softmax over the ``k`` neighbours only, so the weights sum to 1 and every
score lies in ``[0, 1]``). Neighbours with equal similarity are taken in order of their
training index (the lower index first), so the result never depends on the sort routine.

:class:`BlendHead` mixes two heads reading the same pooled features on the probability
scale: ``p = w σ(a(h)) + (1 − w) σ(b(h))``. Both heads return logits, so either plugs in
where a :class:`~mlsupcon.models.LinearClassifier` does (prediction applies a sigmoid).

The chunked search below is also what :func:`mlsupcon.evaluation.knn_scores` runs (the
evaluation layer imports it, never the other way round).

Example:
    >>> import torch
    >>> from mlsupcon.models import KNNHead, LinearClassifier, BlendHead
    >>> emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    >>> labels = torch.tensor([[1, 0], [0, 1], [1, 1]])
    >>> knn = KNNHead.from_embeddings(emb, labels, k=2, temperature=0.1)
    >>> torch.sigmoid(knn(torch.tensor([[1.0, 0.05]]))).round(decimals=3)
    tensor([[1.0000, 0.4990]])
    >>> head = BlendHead(knn, LinearClassifier(2, 2), weight=0.7)
    >>> head(torch.randn(4, 2)).shape, head.config()["head_a"]["class"]
    (torch.Size([4, 2]), 'KNNHead')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import check_positive_int
from .heads import LinearClassifier

__all__ = ["BlendHead", "KNNHead", "knn_search", "knn_vote"]


def _check_positive_float(value: Any, arg: str) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{arg} must be a positive number, got {value!r}")
    return v


def _check_eps(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a float in (0, 0.5), got {value!r}") from None
    if not 0.0 < v < 0.5:
        raise ValueError(f"eps must be a float in (0, 0.5), got {value!r}")
    return v


def knn_search(
    train_emb: torch.Tensor,
    query_emb: torch.Tensor,
    k: int,
    exclude_self: bool = False,
    chunk_size: int = 2048,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """The ``k`` most similar training rows of every query row, one query chunk at a time.

    Both inputs must already be L2-normalised (the dot product is then the cosine
    similarity). At most ``chunk_size × N`` similarities exist at once.

    Args:
        train_emb: ``[N, D]`` L2-normalised training embeddings.
        query_emb: ``[n, D]`` L2-normalised queries (same dtype and device).
        k: Neighbours per query; ``min(k, N)`` are returned (``min(k, N − 1)`` with
            ``exclude_self``).
        exclude_self: Query ``i`` is training row ``i`` (``n == N``) and may not be its own
            neighbour (leave-one-out scoring of the training set). Exact duplicates of a
            row at other indices remain neighbours.
        chunk_size: Query rows per chunk.

    Yields:
        ``(start, sims, idx)``: for query rows ``start : start + len(sims)``, the neighbours'
        similarities and training indices, ``[q, k]`` each, ordered by similarity
        (descending) then index (ascending). Among neighbours tied with the ``k``-th
        similarity, the lower training indices are taken.

    Example:
        >>> import torch
        >>> train = torch.eye(3)[[0, 1, 0, 2]]        # rows 0 and 2 are equal
        >>> [(s, i.tolist()) for s, _, i in knn_search(train, torch.eye(3)[:1], k=2)]
        [(0, [[0, 2]])]
    """
    n_train = train_emb.shape[0]
    if exclude_self and query_emb.shape[0] != n_train:
        raise ValueError(
            "exclude_self needs the queries to be the training rows (n = N), "
            f"got n = {query_emb.shape[0]}, N = {n_train}"
        )
    k_eff = min(k, n_train - int(exclude_self))
    if k_eff < 1:
        raise ValueError(f"k: no neighbour to take (N = {n_train}, exclude_self = {exclude_self})")
    for start in range(0, query_emb.shape[0], chunk_size):
        q = query_emb[start : start + chunk_size]
        sims = q @ train_emb.T  # [q, N]
        if exclude_self:
            rows = torch.arange(q.shape[0], device=sims.device)
            sims = sims.index_put((rows, rows + start), torch.tensor(-math.inf, dtype=sims.dtype, device=sims.device))
        vals, idx = torch.topk(sims.detach(), k_eff, dim=1)
        kth = vals[:, -1:]
        # topk picks arbitrarily among values tied with the k-th one; redo only rows where
        # the tie straddles the cut (rare), taking the lower indices.
        n_tied = (sims.detach() == kth).sum(dim=1)
        ambiguous = torch.nonzero(n_tied > (vals == kth).sum(dim=1)).flatten()
        if ambiguous.numel():
            s = sims.detach()[ambiguous]
            above = s > kth[ambiguous]
            tied = s == kth[ambiguous]
            need = k_eff - above.sum(dim=1, keepdim=True)
            take = above | (tied & (torch.cumsum(tied, dim=1) <= need))
            idx = idx.clone()
            idx[ambiguous] = torch.nonzero(take)[:, 1].view(-1, k_eff)
        # canonical order: similarity descending, index ascending
        idx = torch.sort(idx, dim=1).values
        order = torch.sort(sims.detach().gather(1, idx), dim=1, descending=True, stable=True).indices
        idx = idx.gather(1, order)
        yield start, sims.gather(1, idx), idx


def knn_vote(sims: torch.Tensor, idx: torch.Tensor, train_labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Label scores ``Σ_j softmax(sims / τ)_j · y[idx_j]`` from one :func:`knn_search` chunk.

    Args:
        sims: ``[q, k]`` neighbour similarities.
        idx: ``[q, k]`` neighbour training indices.
        train_labels: ``[N, C]`` dense 0/1 labels (any dtype; gathered rows are cast to
            ``sims.dtype``, so a uint8 buffer is never copied whole).
        temperature: Softmax temperature τ > 0.

    Returns:
        ``[q, C]`` scores in ``[0, 1]`` (dtype of ``sims``).

    Example:
        >>> import torch
        >>> knn_vote(torch.tensor([[0.5, 0.5]]), torch.tensor([[0, 1]]), torch.tensor([[1, 0], [1, 1]]), 0.1)
        tensor([[1.0000, 0.5000]])
    """
    w = torch.softmax(sims / temperature, dim=1)
    out = torch.zeros(sims.shape[0], train_labels.shape[1], dtype=sims.dtype, device=sims.device)
    # one neighbour rank at a time: [q, C] temporaries instead of [q, k, C]
    for j in range(idx.shape[1]):
        out = out + w[:, j : j + 1] * train_labels[idx[:, j]].to(sims.dtype)
    return out.clamp_(0.0, 1.0)


def _dense_labels(labels: Any) -> torch.Tensor:
    if hasattr(labels, "toarray") and not isinstance(labels, torch.Tensor):  # scipy.sparse
        labels = labels.toarray()
    t = torch.as_tensor(labels)
    if t.dim() != 2:
        raise ValueError(f"train_labels must be 2-D [N, C], got shape {tuple(t.shape)}")
    if t.numel() and not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("train_labels must contain only 0/1 values")
    return t.to(torch.uint8)


class KNNHead(nn.Module):
    """kNN label votes over stored training embeddings, returned as logits.

    ``forward(h)`` is ``logit(clamp(s, eps, 1 − eps))`` with ``s`` the vote scores of the
    module docstring, so ``sigmoid(forward(h))`` gives the scores back (clamped) and the head
    plugs in where a linear head does. It has no parameters; everything lives in two
    buffers, saved by ``state_dict`` (safetensors-compatible):

    * ``train_emb``: ``[N, D]`` float32, L2-normalised, ``4·N·D`` bytes (25k × 768: 77 MB);
    * ``train_labels``: ``[N, C]`` uint8 0/1, ``N·C`` bytes (25k × 600: 15 MB).

    The dense label buffer suits hundreds to a few thousand labels; for a very large label
    space (MIMIC-full: ~1e5 notes × 1e4 codes = 1 GB) score with
    :func:`mlsupcon.evaluation.knn_scores` and scipy.sparse labels instead.

    Rebuild a saved head with ``KNNHead(**head.config())`` then ``load_state_dict``.

    Args:
        in_dim: Embedding size D.
        num_labels: Number of labels C.
        num_train: Number of stored training examples N (buffers start as zeros; fill them
            with :meth:`fit` or ``load_state_dict``).
        k: Neighbours per query (``min(k, N)`` are used).
        temperature: Softmax temperature τ of the neighbour weights.
        chunk_size: Query rows per chunk (memory ``chunk_size × N`` similarities).
        eps: Scores are clamped to ``[eps, 1 − eps]`` before the logit.

    Example:
        >>> import torch
        >>> head = KNNHead.from_embeddings(torch.randn(50, 8), torch.randint(0, 2, (50, 5)), k=10)
        >>> head(torch.randn(3, 8)).shape, head.config()["num_train"]
        (torch.Size([3, 5]), 50)
    """

    kind = "knn"  # registry name, for a head registry keyed by kind
    input = "pooled"  # reads the encoder's pooled features h

    def __init__(
        self,
        in_dim: int,
        num_labels: int,
        num_train: int,
        k: int = 20,
        temperature: float = 0.05,
        chunk_size: int = 2048,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        self.num_labels = check_positive_int(num_labels, "num_labels")
        num_train = check_positive_int(num_train, "num_train")
        self.k = check_positive_int(k, "k")
        self.temperature = _check_positive_float(temperature, "temperature")
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.eps = _check_eps(eps)
        self.register_buffer("train_emb", torch.zeros(num_train, self.in_dim))
        self.register_buffer("train_labels", torch.zeros(num_train, self.num_labels, dtype=torch.uint8))

    @property
    def num_train(self) -> int:
        """Number of stored training examples N."""
        return int(self.train_emb.shape[0])

    @classmethod
    def from_embeddings(cls, train_emb: Any, train_labels: Any, **options: Any) -> KNNHead:
        """A head storing ``train_emb`` ``[N, D]`` and 0/1 ``train_labels`` ``[N, C]``.

        Args:
            train_emb: Training embeddings (torch or numpy; normalised here).
            train_labels: Dense or scipy.sparse 0/1 labels.
            **options: ``k``, ``temperature``, ``chunk_size``, ``eps``.
        """
        emb = torch.as_tensor(train_emb)
        labels = _dense_labels(train_labels)
        if emb.dim() != 2:
            raise ValueError(f"train_emb must be 2-D [N, D], got shape {tuple(emb.shape)}")
        head = cls(emb.shape[1], labels.shape[1], max(emb.shape[0], 1), **options)
        return head.fit(emb, labels)

    def fit(self, train_emb: Any, train_labels: Any) -> KNNHead:
        """Replace the stored examples (N may change; D and C may not). Returns ``self``."""
        emb = torch.as_tensor(train_emb)
        labels = _dense_labels(train_labels)
        if emb.dim() != 2 or emb.shape[1] != self.in_dim:
            raise ValueError(f"train_emb must be [N, {self.in_dim}], got shape {tuple(emb.shape)}")
        if labels.shape != (emb.shape[0], self.num_labels):
            raise ValueError(
                f"train_labels must be [N, {self.num_labels}] with N = {emb.shape[0]} rows of train_emb, "
                f"got shape {tuple(labels.shape)}"
            )
        if emb.shape[0] == 0:
            raise ValueError("train_emb has no rows; a kNN head needs at least one training example")
        if not bool(torch.isfinite(emb).all()):
            raise ValueError("train_emb contains NaN or inf")
        device = self.train_emb.device
        self.train_emb = F.normalize(emb.detach().to(device=device, dtype=torch.float32), dim=1)
        self.train_labels = labels.to(device)
        return self

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Vote scores ``[n, C]`` in ``[0, 1]`` (float32) for pooled features ``h`` ``[n, D]``."""
        if h.dim() != 2 or h.shape[1] != self.in_dim:
            raise ValueError(f"h must be [n, {self.in_dim}], got {tuple(h.shape)}")
        q = F.normalize(h.to(self.train_emb.dtype), dim=1)
        parts = [
            knn_vote(sims, idx, self.train_labels, self.temperature)
            for _, sims, idx in knn_search(self.train_emb, q, self.k, chunk_size=self.chunk_size)
        ]
        if not parts:
            return q.new_zeros(0, self.num_labels)
        return torch.cat(parts, dim=0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, C]`` = ``logit(clamp(scores(h), eps, 1 − eps))``."""
        return torch.logit(self.scores(h).clamp(self.eps, 1.0 - self.eps))

    def config(self) -> dict[str, Any]:
        """JSON-able options: ``KNNHead(**config())`` rebuilds the module (then load the state_dict)."""
        return {
            "in_dim": self.in_dim,
            "num_labels": self.num_labels,
            "num_train": self.num_train,
            "k": self.k,
            "temperature": self.temperature,
            "chunk_size": self.chunk_size,
            "eps": self.eps,
        }

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, num_labels={self.num_labels}, num_train={self.num_train}, "
            f"k={self.k}, temperature={self.temperature}"
        )


def _sub_config(head: nn.Module) -> dict[str, Any]:
    if isinstance(head, LinearClassifier):  # has no config() of its own
        return {
            "class": "LinearClassifier",
            "in_dim": head.in_dim,
            "num_labels": head.num_labels,
            "dropout": float(head.dropout.p),
        }
    if not callable(getattr(head, "config", None)):
        raise ValueError(f"head {type(head).__name__} has no config(); BlendHead cannot describe it")
    return {"class": type(head).__name__, **head.config()}


def _build_sub(cfg: Mapping[str, Any], builders: Mapping[str, Callable[..., nn.Module]]) -> nn.Module:
    if not isinstance(cfg, Mapping) or "class" not in cfg:
        raise ValueError(f"head config must be a mapping with a 'class' key, got {cfg!r}")
    name = cfg["class"]
    kwargs = {k: v for k, v in cfg.items() if k not in ("class", "kind")}
    if name in builders:
        return builders[name](**kwargs)
    if name == "BlendHead":
        return BlendHead.from_config(kwargs, builders)
    if name == "SliceHead":  # a head that nests another one
        from .slice_head import SliceHead

        return SliceHead.from_config(kwargs)
    known = {"LinearClassifier": LinearClassifier, "KNNHead": KNNHead}
    if name not in known:
        from mlsupcon import models  # late: any head class exported with a config() convention

        cls = getattr(models, name, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module) and hasattr(cls, "config")):
            raise ValueError(f"head config: unknown head class {name!r} (pass builders={{{name!r}: ...}})")
        known[name] = cls
    return known[name](**kwargs)


class BlendHead(nn.Module):
    """``logit(w σ(a(h)) + (1 − w) σ(b(h)))``: two heads on the same features, mixed as probabilities.

    Choose ``weight`` on the validation split (:func:`mlsupcon.evaluation.choose_blend_weight`),
    never on the test split. The output is clamped to ``[eps, 1 − eps]`` before the logit.

    Rebuild a saved head with ``BlendHead.from_config(head.config())`` then ``load_state_dict``
    (keys ``head_a.*`` and ``head_b.*``).

    Args:
        head_a: A module mapping features ``[n, D]`` to logits ``[n, C]``.
        head_b: Another one, with the same ``C``.
        weight: Weight ``w`` of ``head_a``, in ``[0, 1]``.
        eps: Clamp before the logit.

    Example:
        >>> import torch
        >>> a, b = LinearClassifier(4, 3), LinearClassifier(4, 3)
        >>> h = torch.randn(2, 4)
        >>> torch.allclose(BlendHead(a, b, weight=1.0)(h), a(h), atol=1e-5)
        True
    """

    kind = "blend"
    input = "pooled"  # both heads read the same pooled features h

    def __init__(self, head_a: nn.Module, head_b: nn.Module, weight: float, eps: float = 1e-6) -> None:
        super().__init__()
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"weight must be a float in [0, 1], got {weight!r}") from None
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"weight must be a float in [0, 1], got {weight!r}")
        self.head_a, self.head_b, self.weight, self.eps = head_a, head_b, w, _check_eps(eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, C]`` of the blended probabilities."""
        p = self.weight * torch.sigmoid(self.head_a(h)) + (1.0 - self.weight) * torch.sigmoid(self.head_b(h))
        return torch.logit(p.clamp(self.eps, 1.0 - self.eps))

    def config(self) -> dict[str, Any]:
        """JSON-able: ``weight``, ``eps`` and each head's config under ``head_a`` / ``head_b`` (with its ``class``)."""
        return {
            "weight": self.weight,
            "eps": self.eps,
            "head_a": _sub_config(self.head_a),
            "head_b": _sub_config(self.head_b),
        }

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], builders: Mapping[str, Callable[..., nn.Module]] | None = None
    ) -> BlendHead:
        """Rebuild from :meth:`config` (weights still to load with ``load_state_dict``).

        Sub-heads named ``LinearClassifier``, ``KNNHead``, ``BlendHead`` or any class of
        :mod:`mlsupcon.models` with a ``config()`` are rebuilt as ``Class(**options)``;
        ``builders`` (class name → callable taking the options) covers any other.
        Keys ``class`` and ``kind`` at the top level are ignored.
        """
        missing = [k for k in ("weight", "head_a", "head_b") if k not in config]
        if missing:
            raise ValueError(f"BlendHead config lacks {missing}")
        builders = dict(builders or {})
        return cls(
            _build_sub(config["head_a"], builders),
            _build_sub(config["head_b"], builders),
            weight=config["weight"],
            eps=config.get("eps", 1e-6),
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
