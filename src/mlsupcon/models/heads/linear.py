"""The ``linear`` head: one logit per label from the pooled features.

Example:
    >>> import torch
    >>> from mlsupcon.models import LinearClassifier
    >>> LinearClassifier(16, 5)(torch.randn(4, 16)).shape
    torch.Size([4, 5])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..base import check_positive_int, check_prob
from .base import ClassifierHead
from .registry import register_head

__all__ = ["LinearClassifier"]


@register_head
class LinearClassifier(ClassifierHead):
    """A linear layer producing one logit per label (multi-label: apply a sigmoid/BCE).

    Head kind ``"linear"``: reads the encoder's pooled features.

    Args:
        in_dim: Feature size.
        num_labels: Number of labels C.
        dropout: Dropout on the features before the linear layer (default 0).

    Example:
        >>> import torch
        >>> LinearClassifier(8, 3)(torch.randn(5, 8)).shape
        torch.Size([5, 3])
    """

    kind = "linear"
    input = "pooled"
    options = ("dropout",)

    def __init__(self, in_dim: int, num_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        self.num_labels = check_positive_int(num_labels, "num_labels")
        self.dropout = nn.Dropout(check_prob(dropout, "dropout"))
        self.linear = nn.Linear(self.in_dim, self.num_labels)

    @classmethod
    def create(cls, encoder: nn.Module, num_labels: int, **options: Any) -> "LinearClassifier":
        return cls(encoder.output_dim, num_labels, **options)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[n, in_dim]`` -> logits ``[n, num_labels]``."""
        return self.linear(self.dropout(h))

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "num_labels": self.num_labels, "dropout": float(self.dropout.p)}

    def init_prior(self, prior_logits: torch.Tensor) -> None:
        self._set_bias(self.linear.bias, prior_logits)
