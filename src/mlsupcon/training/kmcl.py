"""The ``kmcl`` method: encoder → KMCL head (π, μ, σ²) trained end to end with KMCLLoss.

Predictions are p = sigmoid(π), so thresholds, metrics and export are those of any classifier.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from mlsupcon.losses.kmcl import KMCLLoss
from mlsupcon.models import Classifier, KMCLClassifier
from mlsupcon.training.modules import KMCLModule


def run_kmcl(cfg, ds, encoder, loaders, fit_stage, timings):
    """Trains encoder + KMCL head; returns (classifier head, head kind, encoder).

    ``fit_stage(stage, module, train_loader, val_loader, max_epochs, early_stop=...)`` runs
    one checkpointed, resumable stage (runner._fit_stage).
    """
    t0 = time.perf_counter()
    head_opts = {"mode": "isotropic", **cfg.head_options}
    head = KMCLClassifier(encoder.output_dim, ds.num_labels, **head_opts)
    loss_fn = KMCLLoss(**cfg.loss_options)
    module = KMCLModule(encoder, head, loss_fn, cfg.lr, cfg.weight_decay)
    fit_stage("end_to_end", module, loaders["train"], loaders["validation"], cfg.epochs, early_stop=True)
    module.restore_best()
    timings["train_s"] = time.perf_counter() - t0
    return Classifier(encoder, head)
