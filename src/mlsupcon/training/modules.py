"""Lightning modules: contrastive pretraining, classifiers (optionally with a contrastive term), KMCL.

The training methods (:mod:`mlsupcon.training.methods`) build these and fit them one stage at a
time; prediction works on the :class:`~mlsupcon.models.Classifier` a method returns
(:mod:`mlsupcon.inference.scoring`). The kNN monitor a contrastive stage selects its best epoch
with is :class:`mlsupcon.training.callbacks.KNNMonitor`.
"""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlsupcon.evaluation import mean_average_precision, micro_f1

# The scoring loops' home is mlsupcon.inference.scoring; kept importable here under their old names.
from mlsupcon.inference.scoring import embed_loader as embed_all  # noqa: F401 - re-exported
from mlsupcon.inference.scoring import predict_scores as predict  # noqa: F401 - re-exported
from mlsupcon.models import head_logits
from mlsupcon.training.batches import LossLabels, concat_batches
from mlsupcon.training.callbacks import KNNMonitor
from mlsupcon.training.distributed import all_gather_cpu
from mlsupcon.training.errors import NonFiniteLossError
from mlsupcon.training.scale import enable_distributed_gather
from mlsupcon.training.schedule import build_scheduler


class _Base(L.LightningModule):
    """Optimiser + the non-finite loss policy shared by every training module.

    A training step whose loss is NaN or infinite is skipped (``training_step`` returns None,
    so Lightning runs no backward pass and the optimiser updates nothing) and counted
    (``nonfinite_steps``, logged as ``train/skipped_nonfinite``). ``max_nonfinite_steps``
    consecutive ones stop training with :class:`NonFiniteLossError` (0: never stop).

    Best-epoch tracking: a module that scores its epochs (``monitor``) calls
    :meth:`_keep_if_best` with each epoch's score; the best epoch's weights are kept in memory
    (``best_state``, saved in checkpoints) and :meth:`restore_best` puts them back, so a stage
    that stops early or goes on past its best epoch returns the best one.
    """

    #: The validation metric this module's stage selects its best epoch and stops early on
    #: (None: the module does not select epochs).
    monitor: str | None = None

    def __init__(self, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.max_nonfinite_steps = 10
        self.stage = "training"
        self.nonfinite_steps = 0
        self._nonfinite_run = 0
        # The learning-rate schedule (mlsupcon.training.schedule); fit_stage sets the run's.
        self.lr_schedule, self.warmup_epochs, self.min_lr_ratio = "cosine", None, 0.0
        self.best_score = -float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_fit_start(self) -> None:
        # Lightning (>= 2.2) trains modules in the mode they come in, and a Hugging Face
        # ``from_pretrained`` model comes in eval mode (dropout off): put every part in train
        # mode; frozen parts go back to eval in their ``train()`` (the encoders' ``freeze``,
        # ``ClassifierModule``'s ``freeze_encoder``).
        self.train()

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.param_groups(), lr=self.lr, weight_decay=self.weight_decay)
        trainer = self.trainer
        scheduler = build_scheduler(optimizer, self.lr_schedule, trainer.estimated_stepping_batches,
                                    trainer.max_epochs, self.warmup_epochs, self.min_lr_ratio)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups (one, at ``lr``; subclasses may give parts their own rate)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def _finite_or_skip(self, loss: torch.Tensor) -> torch.Tensor | None:
        """``loss`` if finite; else None (skip the step), counting it and stopping after too many."""
        if bool(torch.isfinite(loss.detach()).all()):
            self._nonfinite_run = 0
            return loss
        self.nonfinite_steps += 1
        self._nonfinite_run += 1
        if self.max_nonfinite_steps and self._nonfinite_run >= self.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"training: the loss was NaN or infinite in {self._nonfinite_run} consecutive steps "
                f"(stage '{self.stage}', epoch {self.current_epoch}, step {self.global_step}; "
                f"{self.nonfinite_steps} non-finite steps skipped in all), so training stopped. "
                f"Likely causes: a learning rate too high (lr={self.lr:g}; try 10x smaller), a contrastive "
                "temperature too small, or bad inputs (NaN/inf features, empty texts). "
                "max_nonfinite_steps in the config sets how many consecutive ones are tolerated"
            )
        return None

    def on_train_epoch_end(self) -> None:
        self.log("train/skipped_nonfinite", float(self.nonfinite_steps), on_step=False, on_epoch=True)
        optimizers = self.trainer.optimizers
        if optimizers:  # the learning rate the schedule has reached at the end of the epoch
            self.log("train/lr", float(optimizers[0].param_groups[0]["lr"]), on_step=False, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mlsupcon_module"] = self.extra_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("mlsupcon_module")
        if state is not None:
            self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        """What a checkpoint holds besides the weights and optimiser (plain types and tensors)."""
        return {"nonfinite_steps": int(self.nonfinite_steps), "nonfinite_run": int(self._nonfinite_run),
                "best_score": float(self.best_score), "best_epoch": int(self.best_epoch),
                "best_state": self.best_state}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.nonfinite_steps = int(state.get("nonfinite_steps", 0))
        self._nonfinite_run = int(state.get("nonfinite_run", 0))
        self.best_score = float(state.get("best_score", -float("inf")))
        self.best_epoch = int(state.get("best_epoch", -1))
        self.best_state = state.get("best_state")

    # ---------------------------------------------------------------------- best epoch
    def _keep_if_best(self, value: float) -> None:
        """Records this epoch's score of the monitored metric: a new best keeps the epoch and its weights."""
        if value > self.best_score:
            self.best_score, self.best_epoch = value, self.current_epoch
            self.best_state = self._best_weights()

    def _best_weights(self) -> dict[str, torch.Tensor]:
        """A copy of the weights :meth:`restore_best` puts back (here: the whole module's)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def restore_best(self) -> None:
        """Puts the weights of the best epoch back (nothing if no epoch was scored)."""
        if self.best_state is not None:
            self.load_state_dict(self.best_state)


def embed_views(encoder: nn.Module, projection: nn.Module, view_fn, inputs, views: int) -> torch.Tensor:
    """``[B, V, D]`` projections of V random views of a batch (one encoder pass over V·B rows)."""
    batch = concat_batches([view_fn(inputs) for _ in range(views)])
    z = projection(encoder(batch))
    b = z.shape[0] // views
    return z.view(views, b, -1).transpose(0, 1)


class ContrastiveModule(_Base):
    """Stage 1: encoder + projection head trained with a contrastive loss.

    The validation contrastive loss is logged every epoch (``val/contrastive_loss``). With a
    :class:`~mlsupcon.training.callbacks.KNNMonitor` the encoder is also scored after every
    validation epoch by kNN mAP (``val/knn_map``); the encoder and projection weights of the best
    epoch are kept in memory
    (``best_state``, saved in checkpoints) and :meth:`restore_best` puts them back, so a stage
    that stops early (on ``val/knn_map``) or goes on past its best epoch returns the best one.

    ``prototypes``: the :class:`~mlsupcon.losses.LabelPrototypes` of a prototype loss (bound to
    ``loss_fn``, :class:`~mlsupcon.losses.BoundPrototypeLoss`). A submodule, so they are trained
    with the projection head (same learning rate and weight decay), checkpointed, resumed and,
    like the projection, kept at their best epoch.
    """

    def __init__(self, encoder, projection, loss_fn, loss_labels: LossLabels, view_fn: Callable,
                 views: int, lr: float, weight_decay: float, momentum_encoder=None,
                 knn_monitor: KNNMonitor | None = None, prototypes: nn.Module | None = None) -> None:
        super().__init__(lr, weight_decay)
        self.encoder, self.projection, self.loss_fn = encoder, projection, loss_fn
        self.prototypes = prototypes
        self.loss_labels, self.view_fn, self.views = loss_labels, view_fn, views
        # MoCo-style key encoder (an EMA copy of encoder + projection) whose keys fill the queue.
        self.momentum_encoder = momentum_encoder
        self.knn_monitor = knn_monitor
        self.monitor = "val/knn_map" if knn_monitor is not None else None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        enable_distributed_gather(self.loss_fn, self.trainer.world_size)

    def _loss(self, batch):
        inputs, y, _ = batch
        labels = self.loss_labels(y)
        if self.momentum_encoder is None:
            feats = embed_views(self.encoder, self.projection, self.view_fn, inputs, self.views)
            return self.loss_fn(feats, labels), y.shape[0]
        # The official MulSupCon recipe: EMA step, queries from one view, keys from another.
        if self.training:
            self.momentum_encoder.update()
        queries = self.projection(self.encoder(self.view_fn(inputs)))
        keys = self.momentum_encoder(self.view_fn(inputs))
        return self.loss_fn(queries, labels, keys=keys), y.shape[0]

    def training_step(self, batch, _):
        loss, b = self._loss(batch)
        loss = self._finite_or_skip(loss)
        if loss is None:
            return None
        self.log("train/contrastive_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=b)
        return loss

    def validation_step(self, batch, _):
        loss, b = self._loss(batch)
        self.log("val/contrastive_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=b)

    def on_validation_epoch_end(self) -> None:
        if self.knn_monitor is None or self.trainer.sanity_checking:
            return
        value = self.knn_monitor.score(self.encoder, self.device)
        self.log("val/knn_map", value, prog_bar=True)
        self._keep_if_best(value)

    def _kept_parts(self) -> tuple[str, ...]:
        return ("encoder", "projection") + (("prototypes",) if self.prototypes is not None else ())

    def _best_weights(self) -> dict[str, torch.Tensor]:
        # Only what the next stages use (not a momentum encoder or queue), on the CPU.
        return {f"{name}.{k}": v.detach().to("cpu", copy=True)
                for name in self._kept_parts()
                for k, v in getattr(self, name).state_dict().items()}

    def restore_best(self) -> None:
        """Puts the encoder, projection (and prototype) weights of the best ``val/knn_map`` epoch back."""
        if self.best_state is None:
            return
        for name in self._kept_parts():
            prefix = f"{name}."
            getattr(self, name).load_state_dict(
                {k[len(prefix):]: v for k, v in self.best_state.items() if k.startswith(prefix)})


class ClassifierModule(_Base):
    """Encoder + classifier head; BCE, ASL or ZLPR; optionally + λ · contrastive loss (end-to-end).

    ``contrastive`` (:func:`~mlsupcon.training.methods.base.contrastive_parts`): the contrastive
    term, on projected views, with the label prototypes of a prototype loss (a submodule here
    too), or, with ``on_logits`` (cl_jspcl), on the classifier's logits.

    Keeps the weights of the best validation epoch (by validation mAP) in memory and restores
    them with :meth:`restore_best`, so early stopping returns the best model, not the last.
    """

    monitor = "val/map"

    def __init__(self, encoder, head, lr: float, weight_decay: float,
                 classifier_loss: str = "bce", classifier_loss_options: dict | None = None,
                 freeze_encoder: bool = False, contrastive: dict | None = None,
                 encoder_lr_ratio: float = 1.0) -> None:
        super().__init__(lr, weight_decay)
        self.encoder, self.head = encoder, head
        self.encoder_lr_ratio = float(encoder_lr_ratio)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
        if classifier_loss == "asl":
            from mlsupcon.losses import build

            self._asl = build("asl", **(classifier_loss_options or {}))
        elif classifier_loss == "zlpr":
            from mlsupcon.losses import build

            self._zlpr = build("zlpr")  # mean over the batch; it has no other option
        elif classifier_loss != "bce":
            raise ValueError(f"classifier_loss: expected 'bce', 'asl' or 'zlpr', got {classifier_loss!r}")
        self.classifier_loss = classifier_loss
        self.contrastive = contrastive
        if contrastive is not None:
            self.projection = contrastive["projection"]
            self.prototypes = contrastive.get("prototypes")
            self.contrastive_fn = contrastive["loss_fn"]
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self._val_indices: list[torch.Tensor] = []

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.contrastive is not None:
            enable_distributed_gather(self.contrastive_fn, self.trainer.world_size)

    def logits(self, inputs):
        return head_logits(self.head, self.encoder, inputs)

    def param_groups(self) -> list[dict[str, Any]]:
        if self.encoder_lr_ratio == 1.0:
            return super().param_groups()
        # A pretrained encoder fine-tuned more gently than the fresh head (the schedule scales both).
        enc = {id(p) for p in self.encoder.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in trainable if id(p) not in enc]},
                {"params": [p for p in trainable if id(p) in enc], "lr": self.lr * self.encoder_lr_ratio}]

    def train(self, mode: bool = True) -> "ClassifierModule":
        super().train(mode)
        if getattr(self, "freeze_encoder", False):
            self.encoder.eval()  # no dropout / batch-norm updates in a frozen encoder
        return self

    def _cls_loss(self, logits, y):
        if self.classifier_loss == "asl":
            # The paper's sum over labels, averaged over the batch so the step size does not
            # depend on the batch size.
            return self._asl(logits, y) / y.shape[0]
        if self.classifier_loss == "zlpr":
            return self._zlpr(logits, y)  # mean over the batch
        return F.binary_cross_entropy_with_logits(logits, y)

    def training_step(self, batch, _):
        inputs, y, _ = batch
        logits = self.logits(inputs)
        cls = self._cls_loss(logits, y)
        loss, con = cls, None
        if self.contrastive is not None:
            c = self.contrastive
            if c.get("on_logits"):  # CL-MTC's JSPCL: the classifier's logits are the features
                con = self.contrastive_fn(logits, c["loss_labels"](y))
            else:
                feats = embed_views(self.encoder, self.projection, c["view_fn"], inputs, c["views"])
                con = self.contrastive_fn(feats, c["loss_labels"](y))
            loss = cls + c["weight"] * con
        penalty = getattr(self.head, "penalty", None)
        if callable(penalty):  # a head's pull towards its initial state (label-names prototypes)
            loss = loss + penalty()
        if self._finite_or_skip(loss) is None:
            return None
        self.log("train/classifier_loss", cls, on_step=False, on_epoch=True, prog_bar=True, batch_size=y.shape[0])
        if con is not None:
            self.log("train/contrastive_loss", con, on_step=False, on_epoch=True, batch_size=y.shape[0])
        return loss

    def validation_step(self, batch, _):
        inputs, y, idx = batch
        self._val_scores.append(torch.sigmoid(self.logits(inputs)).float().cpu())
        self._val_labels.append(y.cpu())
        self._val_indices.append(idx.cpu())

    def _gathered_validation(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores and labels of this epoch's validation; under DDP those of every rank (each
        validated a share), each example once, so that every rank scores the whole split."""
        scores, labels = torch.cat(self._val_scores), torch.cat(self._val_labels)
        indices = torch.cat(self._val_indices)
        for part in (self._val_scores, self._val_labels, self._val_indices):
            part.clear()
        if self.trainer.world_size > 1:
            scores, labels, indices = (all_gather_cpu(t, self.device, self.trainer.world_size)
                                       for t in (scores, labels, indices))
            # Lightning's sampler pads the shares to equal sizes with repeated examples.
            indices, first = np.unique(indices.numpy(), return_index=True)
            scores, labels = scores[torch.from_numpy(first)], labels[torch.from_numpy(first)]
        return scores.numpy(), labels.numpy()

    def on_validation_epoch_end(self) -> None:
        if not self._val_scores:
            return
        scores, labels = self._gathered_validation()
        value = mean_average_precision(labels, scores)
        value = 0.0 if np.isnan(value) else value
        self.log("val/map", value, prog_bar=True)
        self.log("val/micro_f1@0.5", micro_f1(labels, scores, 0.5))
        if not self.trainer.sanity_checking:
            self._keep_if_best(value)


class FeatureInput(nn.Module):
    """The 'encoder' of a classifier trained on cached embeddings: returns ``batch['x']``."""

    modality = "vector"

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["x"]

    @property
    def device(self):
        return torch.device("cpu")


class KMCLModule(ClassifierModule):
    """ClassifierModule whose training loss is the KMCL objective (ASL + reconstruction + contrastive).

    ``head`` is a :class:`~mlsupcon.models.KMCLClassifier`; its ``kmcl`` gives the loss's inputs.
    """

    def __init__(self, encoder, head, loss_fn, lr: float, weight_decay: float) -> None:
        super().__init__(encoder, head, lr, weight_decay)
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
