"""The ``kmcl`` method: encoder → KMCL head (π, μ, σ²) trained end to end with KMCLLoss.

Predictions are p = sigmoid(π), so thresholds, metrics and export are those of any classifier.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from mlsupcon.losses.kmcl import KMCLLoss
from mlsupcon.models.kmcl import KMCLHead
from mlsupcon.training.modules import ClassifierModule


class KMCLClassifier(nn.Module):
    """Wraps a :class:`KMCLHead` so that ``head(h)`` gives the logits π (for prediction/export)."""

    def __init__(self, kmcl: KMCLHead) -> None:
        super().__init__()
        self.kmcl = kmcl

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.kmcl(h).pi

    def config(self) -> dict[str, Any]:
        k = self.kmcl
        return {"in_dim": k.in_dim, "num_classes": k.num_classes, "mode": k.mode,
                "reduce_dim": k.reduce_dim, "isotropic_mean": k.isotropic_mean}


class KMCLModule(ClassifierModule):
    """ClassifierModule whose training loss is the KMCL objective (ASL + reconstruction + contrastive)."""

    def __init__(self, encoder, head: KMCLClassifier, loss_fn: KMCLLoss, lr: float, weight_decay: float) -> None:
        super().__init__(encoder, head, "linear", lr, weight_decay)
        self.kmcl_loss = loss_fn

    def training_step(self, batch, _):
        inputs, y, _ = batch
        out = self.head.kmcl(self.encoder(inputs))
        total, terms = self.kmcl_loss(out.x, out.pi, out.mu, out.sigma2, y, return_terms=True)
        # The paper sums ASL over the batch; dividing the total by B keeps the step size
        # independent of the batch size (Adam is nearly scale-free, the logs are comparable).
        total = total / y.shape[0]
        b = y.shape[0]
        if self._finite_or_skip(total) is None:
            return None
        self.log("train/kmcl_loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=b)
        for name, value in terms.items():
            self.log(f"train/kmcl_{name}", value, on_step=False, on_epoch=True, batch_size=b)
        return total


def run_kmcl(cfg, ds, encoder, loaders, fit_stage, timings):
    """Trains encoder + KMCL head; returns (classifier head, head kind, encoder).

    ``fit_stage(stage, module, train_loader, val_loader, max_epochs, early_stop=...)`` runs
    one checkpointed, resumable stage (runner._fit_stage).
    """
    t0 = time.perf_counter()
    head_opts = {"mode": "isotropic", **cfg.head_options}
    head = KMCLClassifier(KMCLHead(encoder.output_dim, ds.num_labels, **head_opts))
    loss_fn = KMCLLoss(**cfg.loss_options)
    module = KMCLModule(encoder, head, loss_fn, cfg.lr, cfg.weight_decay)
    fit_stage("end_to_end", module, loaders["train"], loaders["validation"], cfg.epochs, early_stop=True)
    module.restore_best()
    timings["train_s"] = time.perf_counter() - t0
    return head, "linear", encoder
