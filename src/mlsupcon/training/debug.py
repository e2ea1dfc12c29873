"""Debug hooks switched on by environment variables (docs/scaling.md, "Checking a distributed run").

``MLSUPCON_DEBUG_FIRST_STEP=DIR``: every process saves, at the first optimiser step of every
stage it trains from the start, ``DIR/<stage>.rank<r>.pt``: the parameter gradients the
optimiser is about to apply (under DDP: averaged over the ranks) and the indices of the
examples of its batch. A distributed run and one process on the concatenated batches
(``batch_size`` × world size) must save the same gradients: tests/test_multinode.py checks it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

FIRST_STEP_ENV = "MLSUPCON_DEBUG_FIRST_STEP"


class FirstStepGradients(Callback):
    """Saves the first optimiser step's gradients and batch indices of each stage (see module doc)."""

    def __init__(self, folder: str | Path, stage: str) -> None:
        self.folder, self.stage = Path(folder), stage
        self._indices: torch.Tensor | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._indices = batch[2].detach().cpu() if trainer.global_step == 0 else None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step != 0 or self._indices is None:
            return
        grads = {name: p.grad.detach().cpu().clone() for name, p in pl_module.named_parameters()
                 if p.grad is not None}
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save({"grads": grads, "indices": self._indices, "world_size": int(trainer.world_size)},
                   self.folder / f"{self.stage}.rank{int(trainer.global_rank)}.pt")
        self._indices = None


def debug_callbacks(stage: str) -> list[Callback]:
    """The callbacks the ``MLSUPCON_DEBUG_*`` environment variables ask for (usually none)."""
    folder = os.environ.get(FIRST_STEP_ENV)
    return [FirstStepGradients(folder, stage)] if folder else []
