"""Asymmetric loss (ASL; Ridnik et al. 2021, "Asymmetric Loss For Multi-Label Classification")."""

from __future__ import annotations

import torch
from torch import nn

from mlsupcon.losses._validation import (
    check_bool,
    check_choice,
    check_logits_and_targets,
    check_multi_hot,
    check_number,
)
from mlsupcon.losses.relations import to_dense_multi_hot

__all__ = ["asymmetric_loss", "AsymmetricLoss"]


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    reduction: str = "sum",
    detach_focal: bool = False,
) -> torch.Tensor:
    r"""Asymmetric loss on multi-label logits.

    .. math::
        p = \sigma(\text{logit}),\quad p_m = \max(p - m, 0),\\
        L = -\sum_{i,k} y (1-p)^{\gamma_+}\log p + (1-y)\, p_m^{\gamma_-} \log(1-p_m)

    Probabilities are clamped to ``[eps, 1 - eps]`` before the logs.

    Args:
        logits: ``[B, C]`` raw scores (a torch tensor).
        targets: ``[B, C]`` multi-hot (0/1) targets, dense or sparse (a sparse tensor is
            densified: it has the size of ``logits``).
        gamma_pos: focusing exponent γ+ of the positive term.
        gamma_neg: focusing exponent γ− of the negative term.
        clip: probability margin m shifted off the negatives (0 disables it).
        eps: clamp for the probabilities inside the logarithms.
        reduction: ``"sum"`` (the paper) or ``"mean"`` (over all B·C entries).
        detach_focal: stop gradients through the focusing weights, as the ASL
            authors' training script does (``disable_torch_grad_focal_loss``).

    Returns:
        A scalar tensor; float32 for float16/bfloat16 logits (a float16 sum over B·C terms
        overflows past 65504), float64 for float64.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, -1.0]]); y = torch.tensor([[1.0, 0.0]])
        >>> loss = asymmetric_loss(logits, y)
        >>> bool(loss > 0)
        True
    """
    check_asl_options(gamma_pos, gamma_neg, clip, eps, reduction, detach_focal)
    check_logits_and_targets(logits, targets, "targets")
    targets = to_dense_multi_hot(targets)
    check_multi_hot(targets, "targets")

    dtype = torch.promote_types(logits.dtype, torch.float32)
    x = logits.to(dtype)
    y = targets.to(dtype)
    p = torch.sigmoid(x)
    p_m = (p - clip).clamp(min=0) if clip > 0 else p
    log_pos = torch.log(p.clamp(min=eps, max=1 - eps))
    log_neg = torch.log((1 - p_m).clamp(min=eps, max=1 - eps))
    w_pos = (1 - p) ** gamma_pos if gamma_pos else torch.ones_like(p)
    w_neg = p_m**gamma_neg if gamma_neg else torch.ones_like(p)
    if detach_focal:
        w_pos, w_neg = w_pos.detach(), w_neg.detach()
    loss = -(y * w_pos * log_pos + (1 - y) * w_neg * log_neg)
    return loss.sum() if reduction == "sum" else loss.mean()


def check_asl_options(gamma_pos, gamma_neg, clip, eps, reduction, detach_focal) -> None:
    """The options of :func:`asymmetric_loss`: a ValueError naming the first bad one."""
    check_number(gamma_pos, "gamma_pos", 0)
    check_number(gamma_neg, "gamma_neg", 0)
    check_number(clip, "clip", 0, 1, high_open=True)
    check_number(eps, "eps", 0, 0.5, low_open=True, high_open=True)  # clamps to [eps, 1 - eps]
    check_choice(reduction, "reduction", ("sum", "mean"))
    check_bool(detach_focal, "detach_focal")


class AsymmetricLoss(nn.Module):
    """Module form of :func:`asymmetric_loss`; called as ``loss(logits, targets)``.

    A classifier loss: ``label_format`` is ``"logits"`` (it scores a classifier's logits against
    multi-hot targets; it is not a contrastive loss on embeddings).

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> asl = build("asl", gamma_neg=4, clip=0.05)
        >>> float(asl(torch.zeros(2, 3), torch.ones(2, 3))) > 0
        True
    """

    label_format = "logits"

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        reduction: str = "sum",
        detach_focal: bool = False,
    ) -> None:
        super().__init__()
        check_asl_options(gamma_pos, gamma_neg, clip, eps, reduction, detach_focal)
        self.gamma_pos, self.gamma_neg, self.clip = gamma_pos, gamma_neg, clip
        self.eps, self.reduction, self.detach_focal = eps, reduction, detach_focal

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return asymmetric_loss(
            logits, targets, self.gamma_pos, self.gamma_neg, self.clip, self.eps,
            self.reduction, self.detach_focal,
        )
