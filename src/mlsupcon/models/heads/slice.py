"""The ``slice`` head: another head applied to a column range of the pooled features.

With a :class:`~mlsupcon.models.fusion.FusionEncoder` whose output concatenates several
branches, a head can read one branch's features alone: e.g. a wide & deep classifier blends
(:class:`~mlsupcon.models.heads.blend.BlendHead`) a trained head on the deep branch's columns
with the linear scores of the TF-IDF branch's columns.

Example:
    >>> import torch
    >>> from mlsupcon.models.heads.scores import ScoresHead
    >>> head = SliceHead(ScoresHead(2), start=3, stop=5)
    >>> head(torch.arange(10.0).view(2, 5)).tolist()
    [[3.0, 4.0], [8.0, 9.0]]
    >>> again = SliceHead.from_config(head.config())
    >>> again.start, again.stop, type(again.inner).__name__
    (3, 5, 'ScoresHead')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..base import check_positive_int
from .base import ClassifierHead
from .registry import head_from_config, nested_head_config, register_head

__all__ = ["SliceHead"]


@register_head
class SliceHead(ClassifierHead):
    """``inner(h[:, start:stop])``.

    Args:
        inner: a pooled-feature head (linear, kNN, scores, blend …) or any module mapping
            features to logits.
        start: first feature column it reads.
        stop: one past the last column.
    """

    kind = "slice"
    input = "pooled"
    built_by_method = True  # the wide & deep blend builds it on a fusion encoder after training

    def __init__(self, inner: nn.Module, start: int, stop: int) -> None:
        super().__init__()
        self.start = check_positive_int(start, "start", 0)
        self.stop = check_positive_int(stop, "stop", self.start + 1)
        self.inner = inner
        self.num_labels = getattr(inner, "num_labels", None)  # inner may be any module

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.inner(h[:, self.start:self.stop])

    def config(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "inner": nested_head_config(self.inner)}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], builders: Mapping[str, Callable[..., nn.Module]] | None = None
    ) -> "SliceHead":
        return cls(head_from_config(config["inner"], nested=True, builders=builders), config["start"], config["stop"])
