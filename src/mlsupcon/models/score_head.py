"""The ``scores`` head: the encoder's output already is one logit per label.

Used where the last layer of the encoder is the classifier itself, e.g. the ``linear`` method,
whose encoder's single linear layer holds the fitted one-vs-rest weights.

Example:
    >>> import torch
    >>> head = ScoresHead(3)
    >>> x = torch.randn(2, 3)
    >>> bool(torch.equal(head(x), x)), head.config()
    (True, {'num_labels': 3})
"""

from __future__ import annotations

from typing import Any

import torch

from .base import check_positive_int
from .heads import ClassifierHead

__all__ = ["ScoresHead"]


class ScoresHead(ClassifierHead):
    """Identity head: pooled features ``[n, C]`` are the logits (no parameters)."""

    kind = "scores"
    input = "pooled"

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.num_labels = check_positive_int(num_labels, "num_labels")

    @classmethod
    def check_encoder(cls, encoder) -> None:
        if getattr(encoder, "output_dim", None) is None:
            raise ValueError("head: 'scores' needs an encoder with output_dim = the number of labels")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-1] != self.num_labels:
            raise ValueError(f"scores head expects [n, {self.num_labels}] features, got {tuple(h.shape)}")
        return h

    def config(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels}
