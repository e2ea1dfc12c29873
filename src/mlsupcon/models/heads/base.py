"""The base class of every classifier head, and option checks the heads share.

A head maps encoder features to one logit per label. :class:`ClassifierHead` declares what
:class:`~mlsupcon.models.Classifier` and the registry (:mod:`mlsupcon.models.heads.registry`)
rely on: what the head reads from the encoder (``input``), its registry name (``kind``), how a
run builds it for an encoder (``create``, ``options``) and how it is described and rebuilt
(``config``, ``from_config``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ..base import Encoder

__all__ = ["ClassifierHead", "HEAD_INPUTS", "check_eps"]

#: What a classifier head reads from the encoder (:attr:`ClassifierHead.input`).
HEAD_INPUTS = ("pooled", "sequence", "batch")


class ClassifierHead(nn.Module):
    """Base class of the classifier heads: encoder features -> one logit per label.

    A head declares what it reads from the encoder in ``input``:

    * ``"pooled"``: ``forward(h)`` with the pooled features ``encoder(batch)`` ``[n, D]``;
    * ``"sequence"``: ``forward(seq, mask)`` with ``encoder.encode_sequence(batch)``;
    * ``"batch"``: ``forward(encoder, batch)``, for heads that combine several inputs (e.g. a
      blend of two heads, each evaluated with :func:`mlsupcon.models.classifier.head_logits`).

    Attributes:
        kind: Registry name (``HEADS`` in :mod:`mlsupcon.models.heads.registry`), stored in exports.
        input: ``"pooled"``, ``"sequence"`` or ``"batch"`` (see above).
        options: Names of the options a run's ``head_options`` may set for this head; the other
            constructor arguments come from the encoder and the labels (:meth:`create`).
        built_by_method: True for a head that a training method fills in (the kNN head stores the
            trained encoder's embeddings): a run's ``head`` option cannot name it.
        num_labels: Number of labels C (logits ``[n, C]``).
    """

    kind: ClassVar[str] = ""
    input: ClassVar[str] = "pooled"
    options: ClassVar[tuple[str, ...]] = ()
    built_by_method: ClassVar[bool] = False
    num_labels: int

    @classmethod
    def check_encoder(cls, encoder: Encoder) -> None:
        """Raises ValueError (naming the head) if this head cannot sit on ``encoder``."""

    @classmethod
    def create(cls, encoder: Encoder, num_labels: int, **options: Any) -> "ClassifierHead":
        """A new (randomly initialised) head for ``encoder``'s features and ``num_labels`` labels."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON options such that ``type(head).from_config(head.config())`` rebuilds it (without the weights)."""
        raise NotImplementedError

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], builders: Mapping[str, Callable[..., nn.Module]] | None = None
    ) -> "ClassifierHead":
        """The head :meth:`config` describes (random weights; load them with ``load_state_dict``).

        Args:
            config: The options of :meth:`config`.
            builders: For heads holding other heads: class name -> callable taking the options, for
                nested heads outside the registry (unused here).
        """
        return cls(**config)

    def init_prior(self, prior_logits: torch.Tensor) -> None:
        """Starts label l's logit at ``prior_logits[l]`` (its training log-odds), where the head
        has a per-label bias; a no-op otherwise."""

    def _set_bias(self, bias: torch.Tensor, prior_logits: torch.Tensor) -> None:
        with torch.no_grad():
            bias.copy_(prior_logits.to(bias.dtype))


def check_eps(value: Any) -> float:
    """Validate the clamp ``eps`` of a head that returns ``logit(clamp(p, eps, 1 − eps))``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a float in (0, 0.5), got {value!r}") from None
    if not 0.0 < v < 0.5:
        raise ValueError(f"eps must be a float in (0, 0.5), got {value!r}")
    return v
