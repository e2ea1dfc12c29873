"""What a person sees while a stage trains: a progress bar named after the stage, or one line per epoch.

:func:`progress_callbacks` gives the Lightning callbacks of a stage (``contrastive``,
``classifier``, ``end_to_end``): with ``progress`` on, a :class:`StageProgressBar` on stderr
(``[contrastive] epoch 3/40``, epochs counted from 1, the full names of the logged metrics and
the learning rate); with ``--no-progress``, an :class:`EpochSummary` that prints one line per
finished epoch to stderr, e.g.::

    mlsupcon: [contrastive] epoch 3/40  train/contrastive_loss 4.123  val/knn_map 0.4123  lr 9.1e-04  (12.3 s)

Both show the metrics a module logs with ``prog_bar=True`` (:mod:`mlsupcon.training.modules`).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Mapping

from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf

__all__ = ["EpochSummary", "StageProgressBar", "format_epoch_summary", "progress_callbacks"]


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def format_epoch_summary(stage: str, epoch: int, max_epochs: int, metrics: Mapping[str, float],
                         lr: float | None = None, seconds: float | None = None) -> str:
    """The one-line summary of a finished epoch (``epoch`` counted from 1).

    Example:
        >>> format_epoch_summary("contrastive", 3, 40, {"train/contrastive_loss": 4.12345, "val/knn_map": 0.412345},
        ...                      lr=9.1e-4, seconds=12.34)
        'mlsupcon: [contrastive] epoch 3/40  train/contrastive_loss 4.123  val/knn_map 0.4123  lr 9.1e-04  (12.3 s)'
    """
    parts = [f"mlsupcon: [{stage}] epoch {epoch}/{max_epochs}"]
    parts += [f"{name} {_number(float(value))}" for name, value in metrics.items()]
    if lr is not None:
        parts.append(f"lr {lr:.1e}")
    if seconds is not None:
        parts.append(f"({seconds:.1f} s)")
    return "  ".join(parts)


def _metrics(trainer) -> dict[str, float]:
    """The progress-bar metrics (train first, then validation), as plain floats."""
    items = {k: float(v) for k, v in trainer.progress_bar_metrics.items() if k != "v_num"}
    return dict(sorted(items.items(), key=lambda kv: not kv[0].startswith("train/")))


def _lr(trainer) -> float | None:
    optimizers = trainer.optimizers
    return float(optimizers[0].param_groups[0]["lr"]) if optimizers else None


class StageProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar on stderr, described as ``[stage] epoch E/N`` (E from 1), with the full
    metric names and the learning rate (no ``v_num``)."""

    def __init__(self, stage: str, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.stage = stage

    @property
    def train_description(self) -> str:
        return f"[{self.stage}]"

    @property
    def validation_description(self) -> str:
        return f"[{self.stage}] validation"

    def init_train_tqdm(self) -> Tqdm:
        return Tqdm(desc=self.train_description, position=2 * self.process_position, disable=self.is_disabled,
                    leave=True, dynamic_ncols=True, file=sys.stderr, smoothing=0, bar_format=self.BAR_FORMAT)

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(desc=self.validation_description, position=2 * self.process_position + 1,
                    disable=self.is_disabled, leave=False, dynamic_ncols=True, file=sys.stderr,
                    bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer, *args: Any) -> None:
        # Lightning's, with the stage and the epoch counted from 1 in the description.
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset()
        self.train_progress_bar.total = convert_inf(self.total_train_batches)
        self.train_progress_bar.initial = 0
        epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        self.train_progress_bar.set_description(f"[{self.stage}] {epoch}")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Lightning's, without " DataLoader 0" in the description (a stage has one validation loader).
        if not self.has_dataloader_changed(dataloader_idx):
            return
        self.val_progress_bar.reset()
        self.val_progress_bar.total = convert_inf(self.total_val_batches_current_dataloader)
        self.val_progress_bar.initial = 0
        self.val_progress_bar.set_description(self.validation_description)

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        items: dict[str, Any] = {k: _number(v) for k, v in _metrics(trainer).items()}
        lr = _lr(trainer)
        if lr is not None:
            items["lr"] = f"{lr:.1e}"
        return items


class EpochSummary(Callback):
    """Prints :func:`format_epoch_summary` to stderr after every training epoch (its validation
    included), on the main process only: the progress report of ``--no-progress``."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._start: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Runs after the epoch's validation loop, so the validation metrics are this epoch's.
        if not trainer.is_global_zero:
            return
        seconds = time.perf_counter() - self._start if self._start is not None else None
        metrics = _metrics(trainer)
        skipped = int(getattr(pl_module, "nonfinite_steps", 0) or 0)
        if skipped:
            metrics["skipped_nonfinite"] = skipped
        line = format_epoch_summary(self.stage, trainer.current_epoch + 1, trainer.max_epochs, metrics,
                                    _lr(trainer), seconds)
        print(line, file=sys.stderr, flush=True)  # sys.stderr looked up now: redirections apply


def progress_callbacks(stage: str, progress: bool) -> list[Callback]:
    """The callbacks that report a stage's progress: a bar (``progress``) or one line per epoch.

    Example:
        >>> [type(c).__name__ for c in progress_callbacks("classifier", progress=False)]
        ['EpochSummary']
    """
    return [StageProgressBar(stage)] if progress else [EpochSummary(stage)]
