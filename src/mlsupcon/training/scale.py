"""Scale-out glue for the training layer: memory queue, momentum keys, distributed gathering.

The maths lives in :mod:`mlsupcon.losses.queue` and :mod:`mlsupcon.losses.distributed`; this
module only decides, from a run's config, how the contrastive criterion is wrapped and how the
Lightning strategy is built.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlsupcon.losses import FLAT_LOSSES, PROTOTYPE_LOSSES, MomentumEncoder, QueueLoss
from mlsupcon.losses.queue import LABEL_FORMATS


def check_queue_loss(loss_name: str, label_format: str | None) -> None:
    """A memory queue stores labels in one of :data:`~mlsupcon.losses.queue.LABEL_FORMATS`: a loss
    taking another format (hierarchy levels, logits …) cannot have one; ValueError naming ``loss_name``."""
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"queue_size: memory queues work with the flat losses {sorted(FLAT_LOSSES)} and the "
                         f"prototype losses {sorted(PROTOTYPE_LOSSES)}, not '{loss_name}'")


def check_momentum(cfg) -> None:
    """A momentum (key) encoder fills a memory queue: ``momentum`` needs ``queue_size > 0``."""
    if cfg.momentum is not None and not cfg.queue_size:
        raise ValueError("momentum: a momentum (key) encoder fills a memory queue; set queue_size > 0 too")


def wrap_criterion(cfg, loss_fn: nn.Module, loss_name: str, num_labels: int) -> nn.Module:
    """The contrastive criterion of a run: the loss, or the loss inside a memory queue."""
    if not cfg.queue_size:
        return loss_fn
    label_format = getattr(loss_fn, "label_format", None)
    check_queue_loss(loss_name, label_format)
    return QueueLoss(loss_fn, size=cfg.queue_size, dim=cfg.projection_dim,
                     num_labels=num_labels if label_format == "multi_hot" else None)


def enable_distributed_gather(criterion: nn.Module, world_size: int) -> None:
    """Under DDP (world size > 1) every rank contrasts its anchors against all ranks' rows."""
    if world_size <= 1:
        return
    inner = criterion.loss_fn if isinstance(criterion, QueueLoss) else criterion
    inner = getattr(inner, "base", inner)  # a hierarchical loss applies a flat base per level
    if hasattr(inner, "gather_distributed"):
        inner.gather_distributed = True


class KeyEncoder(nn.Module):
    """encoder → projection, as one module so a :class:`MomentumEncoder` can copy both."""

    def __init__(self, encoder: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.encoder, self.projection = encoder, projection

    def forward(self, batch) -> torch.Tensor:
        return self.projection(self.encoder(batch))


def make_momentum(cfg, encoder: nn.Module, projection: nn.Module) -> MomentumEncoder | None:
    """The EMA key encoder (encoder + projection) of a run with ``momentum``, else None."""
    if cfg.momentum is None:
        return None
    check_momentum(cfg)
    return MomentumEncoder(KeyEncoder(encoder, projection), momentum=cfg.momentum)


def lightning_strategy(cfg) -> Any:
    """``ddp`` with the config's ``distributed_timeout``, and without buffer broadcasting when a
    queue lives in the module (it would be re-sent every step; every rank already enqueues the
    same gathered rows)."""
    if cfg.strategy == "ddp":
        from datetime import timedelta

        from lightning.pytorch.strategies import DDPStrategy

        options = {"broadcast_buffers": False} if cfg.queue_size else {}
        return DDPStrategy(timeout=timedelta(seconds=cfg.distributed_timeout), **options)
    return cfg.strategy
