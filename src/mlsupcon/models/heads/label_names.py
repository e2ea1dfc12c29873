"""The ``label-names`` head: each label a prototype that starts at its name's embedding.

A text encoder maps the label names (``works-with::image`` -> ``"works with: image"``) into the
same space as the texts. The head scores label ``j`` as ``s · cos(h, normalize(e_j + Δ_j)) + b_j``:
``e_j`` is the encoder's embedding of the name (fixed), ``Δ_j`` what training moves it by, ``s`` a
learnt scale. A label with few or no training examples keeps a prototype near its name (the
``penalty`` ``prior_strength · ‖Δ‖²`` pulls it back), so it is ranked by what its name says rather
than by noise: zero-shot knowledge for the long tail, learnt corrections where there is data.

On Debtags with 500 training texts (frozen MiniLM, 212 of the 473 test labels without a training
example) the names alone, untrained, rank the test labels at mAP 0.257, a linear head trained with
BCE at 0.152, this head at about 0.31 (docs/results.md, issue 22, session 9).

Example:
    >>> import torch
    >>> head = LabelNameHead(4, 2)
    >>> head.set_label_embeddings(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    >>> logits = head(torch.tensor([[2.0, 0, 0, 0]]))
    >>> bool(logits[0, 0] > logits[0, 1]), head.penalty().item()
    (True, 0.0)
    >>> label_name_text("works-with::image_file")
    'works with: image file'
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..base import Encoder, check_positive_int
from .base import ClassifierHead
from .registry import register_head

__all__ = ["LabelNameHead", "label_name_text"]


def label_name_text(label: str) -> str:
    """A label id as words for a sentence encoder: ``facet::tag`` -> ``facet: tag``; ``-``, ``_``
    and ``/`` become spaces."""
    text = str(label).replace("::", ": ")
    return " ".join(re.sub(r"[-_/]+", " ", text).split())


@register_head
class LabelNameHead(ClassifierHead):
    """Cosine classifier whose label prototypes start at the label names' embeddings.

    Head kind ``"label-names"``: reads the pooled features of a text encoder whose output space is
    that of its texts (e.g. ``frozen`` or ``partial`` without ``hidden_dims``, ``transformer``).

    Args:
        in_dim: Feature size.
        num_labels: Number of labels C.
        prior_strength: Weight of ``‖Δ‖²`` (summed over labels and dimensions) added to the loss;
            larger keeps the prototypes nearer the names. The default 3e-5 had the best validation
            micro-F1 and macro-F1 on Debtags with 500 and with 2,000 training texts, its mAP within
            0.4 and 1.5 points of the best (0, 1e-6 .. 3e-4 tried; docs/results.md).
        scale: Initial cosine scale ``s`` (learnt).
    """

    kind = "label-names"
    input = "pooled"
    options = ("prior_strength", "scale")

    def __init__(self, in_dim: int, num_labels: int, prior_strength: float = 3e-5, scale: float = 10.0) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        self.num_labels = check_positive_int(num_labels, "num_labels")
        if isinstance(prior_strength, bool) or not isinstance(prior_strength, (int, float)) or prior_strength < 0:
            raise ValueError(f"prior_strength must be a non-negative number, got {prior_strength!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.prior_strength, self.initial_scale = float(prior_strength), float(scale)
        # Unit rows; zeros until set_label_embeddings (a rebuilt head loads them with its weights).
        self.register_buffer("anchors", torch.zeros(self.num_labels, self.in_dim))
        self.delta = nn.Parameter(torch.zeros(self.num_labels, self.in_dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(self.initial_scale)))
        self.bias = nn.Parameter(torch.zeros(self.num_labels))

    @classmethod
    def check_encoder(cls, encoder: Encoder) -> None:
        if getattr(encoder, "modality", None) != "text":
            raise ValueError(f"head 'label-names' needs a text encoder (its label names are embedded like texts), "
                             f"got encoder {getattr(encoder, 'name', type(encoder).__name__)!r}")

    @classmethod
    def create(cls, encoder: Encoder, num_labels: int, **options: Any) -> LabelNameHead:
        cls.check_encoder(encoder)
        return cls(encoder.output_dim, num_labels, **options)

    def set_label_embeddings(self, embeddings: torch.Tensor) -> None:
        """Sets the prototypes' anchors ``e_j`` (``[C, in_dim]``, normalised here) and zeroes ``Δ``."""
        if tuple(embeddings.shape) != (self.num_labels, self.in_dim):
            raise ValueError(f"label embeddings: expected shape {(self.num_labels, self.in_dim)}, "
                             f"got {tuple(embeddings.shape)}")
        with torch.no_grad():
            self.anchors.copy_(F.normalize(embeddings.detach().float(), dim=1))
            self.delta.zero_()

    def init_label_names(self, label_names: Sequence[str], encoder: Encoder) -> None:
        """Embeds the label names with ``encoder`` (eval mode, no gradients) as the anchors."""
        if len(label_names) != self.num_labels:
            raise ValueError(f"label names: expected {self.num_labels}, got {len(label_names)}")
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                texts = [label_name_text(n) for n in label_names]
                rows = [encoder(encoder.preprocess(texts[i:i + 256])).float().cpu()
                        for i in range(0, len(texts), 256)]
        finally:
            encoder.train(was_training)
        self.set_label_embeddings(torch.cat(rows))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[n, in_dim]`` -> logits ``[n, num_labels]``."""
        protos = F.normalize(self.anchors + self.delta, dim=1)
        return self.log_scale.exp() * (F.normalize(h, dim=1) @ protos.T) + self.bias

    def penalty(self) -> torch.Tensor:
        """``prior_strength · ‖Δ‖²``: added to the training loss by the classifier module."""
        return self.prior_strength * self.delta.pow(2).sum()

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "num_labels": self.num_labels, "prior_strength": self.prior_strength,
                "scale": self.initial_scale}

    def init_prior(self, prior_logits: torch.Tensor) -> None:
        self._set_bias(self.bias, prior_logits)
