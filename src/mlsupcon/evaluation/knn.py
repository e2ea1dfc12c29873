"""kNN classification on embeddings: similarity-weighted label votes, tuned on validation.

For a query ``q`` and L2-normalised training embeddings ``x_j`` with 0/1 labels ``y_j``:

.. math::

    s_c(q) = \\sum_{j \\in \\mathrm{top}_k(q)} w_j \\, y_{jc}, \\qquad
    w_j = \\operatorname{softmax}_{j \\in \\mathrm{top}_k(q)}\\big(\\cos(q, x_j) / \\tau\\big)

``top_k(q)`` are the ``k`` training rows most cosine-similar to ``q`` (ties with the
``k``-th similarity go to the lower training index). The weights are a softmax over those
``k`` neighbours only (not ``similarity^p``): they sum to 1, so ``s_c`` is the weighted
fraction of neighbours carrying label ``c``, in ``[0, 1]``; a small ``τ`` approaches a
1-nearest-neighbour vote, a large one a plain majority vote of the ``k``. This is the
weighting of the kNN monitor of InstDisc / MoCo / DINO on contrastive features.

The search runs in torch (CPU or GPU) in query chunks, so no more than
``chunk_size × N_train`` similarities exist at once; it is the same code as
:class:`mlsupcon.models.KNNHead`. Labels may be dense or ``scipy.sparse`` (the vote is then
a sparse product, so a 10⁴-label space costs little more than its nonzeros).

Tune ``k`` and ``τ`` on the validation split only (:func:`tune_knn`), never on test.

Example:
    >>> import numpy as np
    >>> emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    >>> y = np.array([[1, 0], [0, 1], [1, 1]])
    >>> knn_scores(emb, y, np.array([[1.0, 0.1]]), k=2, temperature=1.0).round(3)   # float64 in, float64 out
    array([[1.   , 0.465]])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ..models.heads.knn import knn_search, knn_vote
from .blend import Metric, check_metric, selection_metric
from .metrics import _validate_y

__all__ = ["knn_scores", "tune_knn"]

# Candidates whose validation values differ by less than this count as tied.
_TIE_TOL = 1e-12


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_temperature(value: Any, name: str = "temperature") -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return v


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array [n, D], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.double()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _prepare(
    train_emb: Any, query_emb: Any, device: Any, query_name: str = "query_emb"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both embeddings L2-normalised, on one device, in float64 if either is float64 else float32."""
    tr = _as_tensor(train_emb, "train_emb")
    qu = _as_tensor(query_emb, query_name)
    if qu.shape[1] != tr.shape[1]:
        raise ValueError(f"{query_name} must have D = {tr.shape[1]} columns like train_emb, got {qu.shape[1]}")
    dtype = torch.float64 if torch.float64 in (tr.dtype, qu.dtype) else torch.float32
    dev = torch.device(device) if device is not None else tr.device
    return (F.normalize(tr.to(device=dev, dtype=dtype), dim=1), F.normalize(qu.to(device=dev, dtype=dtype), dim=1))


class _Labels:
    """Training labels for voting: a torch tensor on the search device, or a CSR matrix."""

    def __init__(self, labels: Any, n_train: int, device: torch.device, name: str = "train_labels") -> None:
        if sp.issparse(labels):
            y = sp.csr_matrix(labels)
            data = y.data
        else:
            y = labels.detach() if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
            data = y
        if len(y.shape) != 2 or y.shape[1] == 0:
            raise ValueError(f"{name} must be 2-D [N, C] with C >= 1, got shape {tuple(y.shape)}")
        if y.shape[0] != n_train:
            raise ValueError(f"{name} must have one row per train_emb row ({n_train}), got {y.shape[0]}")
        ok = ((data == 0) | (data == 1)).all()
        if not bool(ok):
            raise ValueError(f"{name} must contain only 0/1 values")
        self.sparse = sp.issparse(y)
        self.y = y if self.sparse else y.to(device=device, dtype=torch.uint8)  # 1 byte per entry
        self.num_labels = int(y.shape[1])

    def vote(self, sims: torch.Tensor, idx: torch.Tensor, temperature: float) -> np.ndarray:
        if not self.sparse:
            return knn_vote(sims, idx, self.y, temperature).cpu().numpy()
        w = torch.softmax(sims / temperature, dim=1).cpu().numpy()
        q, k = w.shape
        wmat = sp.csr_matrix(
            (w.ravel(), idx.cpu().numpy().ravel(), np.arange(0, q * k + 1, k)), shape=(q, self.y.shape[0])
        )
        out = np.asarray((wmat @ self.y.astype(w.dtype)).toarray())
        return np.clip(out, 0.0, 1.0, out=out)


def knn_scores(
    train_emb: Any,
    train_labels: Any,
    query_emb: Any,
    k: int = 20,
    temperature: float = 0.05,
    exclude_self: bool = False,
    chunk_size: int = 2048,
    device: Any = None,
) -> np.ndarray:
    """kNN label scores ``s_c(q) = Σ_{j ∈ top_k(q)} softmax(cos(q, x_j) / τ) · y_jc``.

    Pure function of its arguments. See the module docstring for the formula and the tie
    rule.

    Args:
        train_emb: ``[N, D]`` training embeddings (numpy or torch; normalised here).
        train_labels: ``[N, C]`` 0/1 training labels, dense (numpy / torch) or scipy.sparse.
        query_emb: ``[n, D]`` embeddings to score.
        k: Neighbours per query. ``k > N`` uses all ``N`` training rows (``N − 1`` with
            ``exclude_self``).
        temperature: Softmax temperature τ > 0 of the neighbour weights.
        exclude_self: The queries *are* the training rows (``n == N``, same order); row
            ``i`` is not its own neighbour (leave-one-out scores of the training set).
            Duplicates of row ``i`` at other indices still count.
        chunk_size: Query rows per chunk: at most ``chunk_size × N`` similarities at once.
        device: Where to search (default: ``train_emb``'s device; CPU for numpy).

    Returns:
        A numpy array ``[n, C]`` in ``[0, 1]``, float64 if either embedding is float64,
        else float32.

    Raises:
        ValueError: naming the argument, for bad shapes, non-0/1 labels, NaN embeddings,
            ``k`` / ``chunk_size`` not integers >= 1, ``temperature`` not positive, or
            ``exclude_self`` with ``n != N`` or ``N == 1``.

    Example:
        >>> import numpy as np
        >>> emb = np.eye(3)
        >>> y = np.array([[1, 0], [0, 1], [1, 1]])
        >>> knn_scores(emb, y, emb, k=2, exclude_self=True)   # each row's two others tie
        array([[0.5, 1. ],
               [1. , 0.5],
               [0.5, 0.5]])
    """
    k = _check_int(k, "k")
    temperature = _check_temperature(temperature)
    chunk_size = _check_int(chunk_size, "chunk_size")
    tr, qu = _prepare(train_emb, query_emb, device)
    labels = _Labels(train_labels, tr.shape[0], tr.device)
    if exclude_self and (qu.shape[0] != tr.shape[0] or tr.shape[0] < 2):
        raise ValueError(
            "exclude_self needs query_emb to be the training rows (n = N >= 2), "
            f"got n = {qu.shape[0]}, N = {tr.shape[0]}"
        )
    out = np.empty((qu.shape[0], labels.num_labels), dtype=np.float64 if tr.dtype == torch.float64 else np.float32)
    with torch.no_grad():
        for start, sims, idx in knn_search(tr, qu, k, exclude_self=exclude_self, chunk_size=chunk_size):
            out[start : start + sims.shape[0]] = labels.vote(sims, idx, temperature)
    return out


def tune_knn(
    train_emb: Any,
    train_y: Any,
    val_emb: Any,
    val_y: Any,
    ks: Iterable[int] = (5, 10, 20, 50),
    temperatures: Iterable[float] = (0.02, 0.05, 0.1),
    metric: Metric = "map",
    chunk_size: int = 2048,
    device: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Choose ``k`` and ``τ`` of :func:`knn_scores` on the validation split.

    **Validation data only**: the training split is the neighbour pool, the validation split
    is scored; never pass test data. Pure and deterministic. The neighbours are searched
    once for the largest ``k``; every ``(k, τ)`` then re-weights a prefix of them.

    Args:
        train_emb: ``[N, D]`` training embeddings.
        train_y: ``[N, C]`` 0/1 training labels (dense or scipy.sparse).
        val_emb: ``[n, D]`` validation embeddings.
        val_y: ``[n, C]`` 0/1 validation labels.
        ks: Candidate ``k`` values (integers >= 1; ``k > N`` behaves as ``k = N``).
        temperatures: Candidate temperatures (> 0).
        metric: See :func:`mlsupcon.evaluation.selection_metric` (default ``"map"``).
        chunk_size: Query rows per chunk.
        device: Where to search (default: ``train_emb``'s device).

    Returns:
        ``(best, table)``: ``best = {"k": k, "temperature": τ}`` (pass it on as
        ``knn_scores(..., **best)``), and one row ``{"k", "temperature", "value",
        "threshold"}`` per candidate, ``ks`` outer, ``temperatures`` inner (``threshold`` is
        the tuned global threshold for F1 metrics, else ``None``). Ties (within 1e-12) go
        to the first candidate in that order; NaN values never win.

    Raises:
        ValueError: bad inputs (as :func:`knn_scores`), empty ``ks`` / ``temperatures``,
            an unknown ``metric``, or a metric undefined at every candidate.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> centres = np.eye(4) * 3
        >>> y_tr = rng.integers(0, 2, (80, 4)); y_tr[:, 0] = 1 - y_tr[:, 1]
        >>> y_va = rng.integers(0, 2, (40, 4)); y_va[:, 0] = 1 - y_va[:, 1]
        >>> emb = lambda y: y @ centres + rng.normal(size=(len(y), 4))
        >>> best, table = tune_knn(emb(y_tr), y_tr, emb(y_va), y_va, ks=(1, 10), temperatures=(0.1,))
        >>> best["k"], len(table), table[1]["value"] > table[0]["value"]
        (10, 2, True)
    """
    ks_t = tuple(_check_int(k, "ks entry") for k in ks)
    ts_t = tuple(_check_temperature(t, "temperatures entry") for t in temperatures)
    if not ks_t or not ts_t:
        raise ValueError("ks and temperatures must each hold at least one value")
    metric = check_metric(metric)
    chunk_size = _check_int(chunk_size, "chunk_size")
    tr, va = _prepare(train_emb, val_emb, device, "val_emb")
    labels = _Labels(train_y, tr.shape[0], tr.device, "train_y")
    y_val = _validate_y(val_y, "val_y")
    if y_val.shape != (va.shape[0], labels.num_labels):
        raise ValueError(f"val_y must have shape {(va.shape[0], labels.num_labels)}, got {tuple(y_val.shape)}")

    k_max = min(max(ks_t), tr.shape[0])
    with torch.no_grad():
        found = list(knn_search(tr, va, k_max, chunk_size=chunk_size))
    table: list[dict[str, Any]] = []
    for k in ks_t:
        kk = min(k, k_max)  # neighbours are sorted, so the top-kk are a prefix
        for t in ts_t:
            scores = np.concatenate([labels.vote(s[:, :kk], i[:, :kk], t) for _, s, i in found], axis=0)
            value, thr = selection_metric(y_val, scores, metric)
            table.append({"k": k, "temperature": t, "value": value, "threshold": thr})
    values = np.array([r["value"] for r in table], dtype=np.float64)
    if np.isnan(values).all():
        raise ValueError(f"metric {metric!r} is undefined (NaN) on val_y for every (k, temperature)")
    best_row = next(r for r in table if r["value"] >= np.nanmax(values) - _TIE_TOL)
    return {"k": best_row["k"], "temperature": best_row["temperature"]}, table
