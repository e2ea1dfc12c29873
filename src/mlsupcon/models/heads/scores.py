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

from ..base import Encoder, check_positive_int
from .base import ClassifierHead
from .registry import register_head

__all__ = ["ScoresHead"]


@register_head
class ScoresHead(ClassifierHead):
    """Identity head: pooled features ``[n, C]`` are the logits (no parameters)."""

    kind = "scores"
    input = "pooled"

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.num_labels = check_positive_int(num_labels, "num_labels")

    @classmethod
    def check_encoder(cls, encoder: Encoder) -> None:
        if encoder.output_dim is None:
            raise ValueError("head: 'scores' needs an encoder with output_dim = the number of labels")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-1] != self.num_labels:
            raise ValueError(f"scores head expects [n, {self.num_labels}] features, got {tuple(h.shape)}")
        return h

    def config(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels}
