r"""Label-anchored InfoNCE on a classifier's logits (``label_nce``): each label ranks the batch.

mlsupcon's own term (no paper): the contrastive direction of CLIP-style text–label matching,
from the label's side. Label k is the anchor (its classifier row, or its prototype in the
``label-names`` head); each text of the batch that has k is a positive, contrasted with the
texts that do not:

.. math:: \ell_k = \frac{1}{|P_k|}\sum_{i \in P_k}
          -\log \frac{e^{z_{ik}/\tau}}{e^{z_{ik}/\tau} + \sum_{j \in N_k} e^{z_{jk}/\tau}},
          \qquad L = \frac{1}{|K|}\sum_{k \in K} \ell_k

with ``P_k`` / ``N_k`` the batch rows with / without label k and ``K`` the labels with at least
one of each in the batch (L = 0 when there is none). Each positive meets only the negatives (not
the other positives), so the term is a smooth surrogate of how many negatives outrank it — the
quantity a label's average precision counts. Every label present weighs the same, rare or
frequent; under BCE's mean a rare label's few positive logits are a vanishing share of the
gradient. The term is invariant to a per-label shift of the logits, so the classifier loss it is
added to (BCE) keeps setting the calibration the decision threshold needs.

Cost: O(B·C), one masked log-sum-exp per label column; no second view.

Example:
    >>> import torch
    >>> from mlsupcon.losses import build
    >>> logits = torch.tensor([[2.0, -1.0], [1.0, 0.0], [-1.0, 1.5]], requires_grad=True)
    >>> y = torch.tensor([[1, 0], [0, 0], [0, 1]])
    >>> loss = build("label_nce")(logits, y)
    >>> round(loss.item(), 4)  # label 0: log(1 + e^-1 + e^-3); label 1: log(1 + e^-2.5 + e^-1.5)
    0.3077
    >>> loss.backward()
    >>> logits.grad.shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlsupcon.losses._validation import check_logits_and_targets, check_multi_hot, check_positive

__all__ = ["LabelNCELoss", "label_nce_loss"]


def label_nce_loss(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The label-anchored InfoNCE of :class:`LabelNCELoss` (module docstring), as a pure function.

    Args:
        logits: ``[B, C]`` classifier outputs.
        labels: ``[B, C]`` multi-hot targets (any dtype; nonzero = positive).
        temperature: τ > 0; the logits are divided by it.

    Returns:
        A scalar tensor, in the logits' dtype.
    """
    s = logits / temperature
    pos = labels.to(torch.bool)
    n_pos = pos.sum(0)
    has_neg = (~pos).any(0)
    valid = (n_pos > 0) & has_neg
    # log Σ_{j ∈ N_k} e^{s_jk}; a column without negatives gets 0s (it is left out below) so that
    # its log-sum-exp, and its gradient, stay finite.
    negatives = s.masked_fill(pos, float("-inf"))
    negatives = torch.where(has_neg.unsqueeze(0), negatives, torch.zeros_like(s))
    lse_neg = torch.logsumexp(negatives, dim=0)
    per_pair = F.softplus(lse_neg.unsqueeze(0) - s) * pos.to(s.dtype)
    per_label = per_pair.sum(0) / n_pos.clamp(min=1).to(s.dtype)
    k = valid.sum()
    if int(k) == 0:
        return (s * 0.0).sum()
    return (per_label * valid.to(s.dtype)).sum() / k.to(s.dtype)


class LabelNCELoss(nn.Module):
    """``loss(logits, labels)``: :func:`label_nce_loss` as a module (a classifier loss,
    ``label_format = "logits"``; ``end-to-end`` adds it to BCE as its contrastive term with weight
    ``contrastive_weight``).

    Args:
        temperature: τ > 0 dividing the logits (1.0: the classifier's own scale; with the
            ``label-names`` head the logits are already a learnt scale times cosines).

    Example:
        >>> import torch
        >>> loss_fn = LabelNCELoss(temperature=0.5)
        >>> float(loss_fn(torch.zeros(4, 3), torch.eye(4, 3)))  # one positive vs 3 equal negatives
        1.3862943649291992
    """

    label_format = "logits"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_logits_and_targets(logits, labels, "labels")
        check_multi_hot(labels, "labels")
        return label_nce_loss(logits, labels.to(logits.device), self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
