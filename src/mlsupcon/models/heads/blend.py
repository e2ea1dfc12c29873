"""The ``blend`` head: two heads on the same pooled features, mixed as probabilities.

:class:`BlendHead` computes ``p = w σ(a(h)) + (1 − w) σ(b(h))`` and returns its logit. Both
heads return logits, so it plugs in where a :class:`~mlsupcon.models.LinearClassifier` does
(prediction applies a sigmoid).

Example:
    >>> import torch
    >>> from mlsupcon.models import BlendHead, KNNHead, LinearClassifier
    >>> knn = KNNHead.from_embeddings(torch.eye(2), torch.tensor([[1, 0], [0, 1]]), k=1)
    >>> head = BlendHead(knn, LinearClassifier(2, 2), weight=0.7)
    >>> head(torch.randn(4, 2)).shape, head.config()["head_a"]["class"]
    (torch.Size([4, 2]), 'KNNHead')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .base import ClassifierHead, check_eps
from .registry import head_from_config, nested_head_config, register_head

__all__ = ["BlendHead"]


@register_head
class BlendHead(ClassifierHead):
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
        >>> from mlsupcon.models import LinearClassifier
        >>> a, b = LinearClassifier(4, 3), LinearClassifier(4, 3)
        >>> h = torch.randn(2, 4)
        >>> torch.allclose(BlendHead(a, b, weight=1.0)(h), a(h), atol=1e-5)
        True
    """

    kind = "blend"
    input = "pooled"  # both heads read the same pooled features h
    built_by_method = True  # its weight is chosen on the validation split after training

    def __init__(self, head_a: nn.Module, head_b: nn.Module, weight: float, eps: float = 1e-6) -> None:
        super().__init__()
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"weight must be a float in [0, 1], got {weight!r}") from None
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"weight must be a float in [0, 1], got {weight!r}")
        self.head_a, self.head_b, self.weight, self.eps = head_a, head_b, w, check_eps(eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, C]`` of the blended probabilities."""
        p = self.weight * torch.sigmoid(self.head_a(h)) + (1.0 - self.weight) * torch.sigmoid(self.head_b(h))
        return torch.logit(p.clamp(self.eps, 1.0 - self.eps))

    def config(self) -> dict[str, Any]:
        """JSON-able: ``weight``, ``eps`` and each head's config under ``head_a`` / ``head_b`` (with its ``class``)."""
        return {
            "weight": self.weight,
            "eps": self.eps,
            "head_a": nested_head_config(self.head_a),
            "head_b": nested_head_config(self.head_b),
        }

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], builders: Mapping[str, Callable[..., nn.Module]] | None = None
    ) -> BlendHead:
        """Rebuild from :meth:`config` (weights still to load with ``load_state_dict``).

        Sub-heads of a registered class (:data:`~mlsupcon.models.heads.registry.HEADS`) are rebuilt
        by :func:`~mlsupcon.models.heads.registry.head_from_config` from their class name;
        ``builders`` (class name → callable taking the options) covers any other.
        Keys ``class`` and ``kind`` at the top level are ignored.
        """
        missing = [k for k in ("weight", "head_a", "head_b") if k not in config]
        if missing:
            raise ValueError(f"BlendHead config lacks {missing}")
        builders = dict(builders or {})
        return cls(
            head_from_config(config["head_a"], nested=True, builders=builders),
            head_from_config(config["head_b"], nested=True, builders=builders),
            weight=config["weight"],
            eps=config.get("eps", 1e-6),
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
