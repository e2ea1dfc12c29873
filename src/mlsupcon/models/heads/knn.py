"""The ``knn`` head: a k-nearest-neighbour classifier on embeddings.

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

The chunked search below is also what :func:`mlsupcon.evaluation.knn_scores` runs (the
evaluation layer imports it, never the other way round).

Example:
    >>> import torch
    >>> from mlsupcon.models import KNNHead
    >>> emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    >>> labels = torch.tensor([[1, 0], [0, 1], [1, 1]])
    >>> knn = KNNHead.from_embeddings(emb, labels, k=2, temperature=0.1)
    >>> torch.sigmoid(knn(torch.tensor([[1.0, 0.05]]))).round(decimals=3)
    tensor([[1.0000, 0.4990]])
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from ..base import check_positive_float, check_positive_int
from .base import ClassifierHead, check_eps
from .registry import register_head

__all__ = ["KNNHead", "knn_search", "knn_vote"]


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


@register_head
class KNNHead(ClassifierHead):
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

    kind = "knn"
    input = "pooled"  # reads the encoder's pooled features h
    built_by_method = True  # stores the trained encoder's embeddings of the training set

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
        self.temperature = check_positive_float(temperature, "temperature")
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.eps = check_eps(eps)
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
