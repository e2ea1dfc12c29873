"""ZLPR (Su et al. 2022): the zero-bounded log-sum-exp & pairwise rank-based multi-label loss."""

from __future__ import annotations

import torch
from torch import nn

from mlsupcon.losses._validation import check_choice, check_logits_and_targets, check_multi_hot
from mlsupcon.losses.relations import to_dense_multi_hot

__all__ = ["zlpr_loss", "ZLPRLoss"]

REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(logits, labels) -> None:
    check_logits_and_targets(logits, labels, "labels")
    if logits.shape[1] == 0:
        raise ValueError("logits: no label columns (C = 0)")


def zlpr_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""ZLPR loss on multi-label logits (decision: label j iff its logit is > 0).

    .. math::
        L_i = \log\Big(1 + \sum_{j: y_{ij} = 0} e^{s_{ij}}\Big)
            + \log\Big(1 + \sum_{j: y_{ij} = 1} e^{-s_{ij}}\Big)

    computed as LSE({0} ∪ {s_ij}_neg) + LSE({0} ∪ {−s_ij}_pos), so any finite logits are safe.
    A row without positives (or without negatives) only has the other term; it is never NaN.

    Source: Su et al. 2022, "ZLPR: A Novel Loss for Multi-label Classification" (bert4keras
    ``multilabel_categorical_crossentropy``). The upstream ``zlpr.py`` of Audibert et al.
    subtracts a detached max shift that it never adds back (a constant offset, same gradient,
    NaN for a row without positive or negative); that offset is not reproduced.

    Args:
        logits: ``[B, C]`` scores s (B ≥ 1, C ≥ 1, finite).
        labels: ``[B, C]`` multi-hot 0/1 targets, dense or sparse.
        reduction: ``"mean"`` over B (default), ``"sum"``, or ``"none"`` (``[B]``).

    Returns:
        The loss; float32 for half-precision logits, float64 for float64.

    Example:
        >>> import torch
        >>> s = torch.tensor([[2.0, -1.0, 0.5]]); y = torch.tensor([[1, 0, 1]])
        >>> round(float(zlpr_loss(s, y)), 6)
        0.868219
    """
    check_choice(reduction, "reduction", REDUCTIONS)
    _check_inputs(logits, labels)
    labels = to_dense_multi_hot(labels)
    check_multi_hot(labels, "labels")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    s = logits.to(dtype)
    pos = labels.to(device=s.device) != 0
    ninf = torch.tensor(float("-inf"), dtype=dtype, device=s.device)
    zero = s.new_zeros(s.shape[0], 1)
    neg_term = torch.logsumexp(torch.cat([zero, torch.where(pos, ninf, s)], 1), 1)
    pos_term = torch.logsumexp(torch.cat([zero, torch.where(pos, -s, ninf)], 1), 1)
    per = neg_term + pos_term
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    return per


class ZLPRLoss(nn.Module):
    """ZLPR (Su et al. 2022): a classifier loss on logits, called as ``loss(logits, labels)``.

    See :func:`zlpr_loss` for the formula. ``label_format`` is ``"logits"``: it scores a
    classifier's ``[B, C]`` logits against multi-hot labels. The loss is built around the
    threshold 0: label j is predicted iff s_ij > 0 (:meth:`predict`; equivalently
    ``sigmoid(s) > 0.5``).

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> zlpr = build("zlpr")
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
        >>> round(float(zlpr(logits, torch.tensor([[1, 0, 1], [0, 0, 0]]))), 6)
        1.127256
        >>> zlpr.predict(logits).tolist()
        [[True, False, True], [False, False, False]]
    """

    label_format = "logits"
    #: logit above which a label is predicted
    decision_threshold = 0.0

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        check_choice(reduction, "reduction", REDUCTIONS)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return zlpr_loss(logits, labels, self.reduction)

    @staticmethod
    def predict(logits: torch.Tensor) -> torch.Tensor:
        """Boolean predictions: s > 0."""
        return logits > ZLPRLoss.decision_threshold

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
