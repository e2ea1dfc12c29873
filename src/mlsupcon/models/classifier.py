"""A trained model as one object: :class:`Classifier` = encoder + classifier head (+ projection).

Training methods return a :class:`Classifier`; prediction, export and ``mlsupcon evaluate`` use
it without knowing which method or head produced it.

Heads derive from :class:`~mlsupcon.models.heads.ClassifierHead` and are looked up by kind in
the one head registry, :data:`~mlsupcon.models.heads.registry.HEADS`. A head returns logits
``[n, C]``, says what it reads from the encoder with ``input`` (``"pooled"`` features; the
token ``"sequence"``; or ``"batch"``: ``forward(encoder, batch)``) and describes itself with
``config()`` (JSON options); :func:`~mlsupcon.models.heads.registry.head_from_config` rebuilds it
from an export (``cls.from_config(options)``). Heads that a run builds from its config
(``head``, ``head_options``) implement ``create(encoder, num_labels, **options)``, ``options``
(the names ``head_options`` may set) and, optionally, ``check_encoder`` and ``init_prior``.

Adding a head is one module in ``mlsupcon/models/heads/`` whose class is decorated with
``@register_head``, imported by the package. A kNN head keeps the training embeddings as
buffers, so they travel in the weights file and ``config()`` needs only their count
(``KNNHead(in_dim, num_labels, num_train, k, ...)``); a blend of two heads holds both as
submodules, puts both heads' configs into its own and rebuilds them in ``from_config``. A head
that a training method fills in (the kNN head stores the embeddings of the trained encoder)
declares ``built_by_method = True``: the method builds it and returns it in its
:class:`Classifier`.

Example:
    >>> import numpy as np, torch
    >>> from mlsupcon.models import Classifier, ProjectionHead, build_encoder, build_head
    >>> enc = build_encoder("mlp", in_dim=6, hidden_dims=(8,))
    >>> model = Classifier(enc, build_head("linear", enc, 3), ProjectionHead(8, out_dim=4))
    >>> batch = model.preprocess(np.random.rand(5, 6))
    >>> model.logits(batch).shape, model.embed(batch).shape, model.embed(batch, "encoder").shape
    (torch.Size([5, 3]), torch.Size([5, 4]), torch.Size([5, 8]))
    >>> again = Classifier.from_config(model.config())
    >>> _ = again.load_state_dict(model.state_dict())
    >>> bool(torch.equal(again.logits(batch), model.logits(batch)))
    True
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .base import Encoder
from .factory import build_encoder
from .heads.base import ClassifierHead
from .heads.projection import ProjectionHead
from .heads.registry import HEADS, build_head, head_class, head_from_config

# HEADS, build_head and head_class live in mlsupcon.models.heads.registry; they are also names of
# this module, as before.
__all__ = ["Classifier", "HEADS", "build_head", "head_class", "head_logits"]


def head_logits(head: ClassifierHead, encoder: Encoder, batch: Mapping[str, torch.Tensor],
                pooled: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``[n, C]`` of ``head`` on ``encoder``'s view of ``batch`` (by ``head.input``).

    Args:
        head: a classifier head (its ``input`` says what it reads).
        encoder: the encoder (any module mapping a batch to pooled features; text encoders also
            have ``encode_sequence``).
        batch: a preprocessed batch.
        pooled: ``encoder(batch)`` when the caller has it already (saves an encoder pass).
    """
    kind = head.input
    if kind == "sequence":
        seq, mask = encoder.encode_sequence(batch)
        return head(seq, mask)
    if kind == "batch":
        return head(encoder, batch)
    return head(encoder(batch) if pooled is None else pooled)


class Classifier(nn.Module):
    """Encoder + classifier head, and optionally the contrastive projection head of the run.

    Its weights (``state_dict``) are those of ``encoder``, ``head``, ``projection`` and
    ``prototypes``, with these prefixes; :meth:`config` and :meth:`from_config` rebuild the
    architecture.

    Args:
        encoder: an :class:`~mlsupcon.models.Encoder`.
        head: a classifier head (:data:`~mlsupcon.models.heads.registry.HEADS`).
        projection: the projection head trained with the contrastive loss, if the run had one.
        prototypes: the :class:`~mlsupcon.losses.LabelPrototypes` (one learnt embedding per label,
            in the projection space) trained with a prototype loss (``msc``, ``proto_only``,
            ``mscwrg``, ``mscrg``), if the run had one; prediction does not read them.
    """

    def __init__(self, encoder: Encoder, head: ClassifierHead, projection: ProjectionHead | None = None,
                 prototypes: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.head, self.projection = encoder, head, projection
        self.prototypes = prototypes

    @property
    def head_kind(self) -> str:
        """The head's registry kind (``linear``, ``attention``, ``kmcl`` …)."""
        return self.head.kind or type(self.head).__name__  # a registered head always has its kind

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def preprocess(self, raw: Any) -> dict[str, torch.Tensor]:
        """Raw inputs -> a batch, as the encoder does it."""
        return self.encoder.preprocess(raw)

    def logits(self, batch: Mapping[str, torch.Tensor], pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[n, C]`` (scores are their sigmoid). ``pooled``: see :func:`head_logits`."""
        return head_logits(self.head, self.encoder, batch, pooled)

    forward = logits

    def embed(self, batch: Mapping[str, torch.Tensor], space: str = "projection") -> torch.Tensor:
        """Embeddings ``[n, D]``: ``"projection"`` (the contrastive space; the encoder output when
        the run had no projection head) or ``"encoder"`` (pooled encoder features)."""
        if space not in ("projection", "encoder"):
            raise ValueError(f"space: expected 'projection' or 'encoder', got {space!r}")
        h = self.encoder(batch)
        part = self.encoder.embedding_slice
        if part is not None:  # a fusion encoder whose contrastive branch is one of several
            h = h[:, part]
        if space == "projection" and self.projection is not None:
            return self.projection(h)
        return h

    def config(self) -> dict[str, Any]:
        """JSON: ``{"encoder": ..., "head": {"kind", "class", **options}, "projection": ... | None}``,
        plus ``"prototypes": {"num_labels", "dim"}`` when the model has label prototypes."""
        config = {
            "encoder": self.encoder.config(),
            "head": {"kind": self.head_kind, "class": type(self.head).__name__, **self.head.config()},
            "projection": self.projection.config() if self.projection is not None else None,
        }
        if self.prototypes is not None:
            config["prototypes"] = {"num_labels": int(self.prototypes.num_labels), "dim": int(self.prototypes.dim)}
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Classifier":
        """Rebuilds the architecture of :meth:`config` (random weights; load them separately)."""
        head = head_from_config(config["head"])
        projection = config.get("projection")
        prototypes = config.get("prototypes")  # absent in models saved before prototype losses
        if prototypes:
            from mlsupcon.losses import LabelPrototypes

            prototypes = LabelPrototypes(int(prototypes["num_labels"]), int(prototypes["dim"]))
        return cls(build_encoder(**config["encoder"]), head, ProjectionHead(**projection) if projection else None,
                   prototypes or None)
