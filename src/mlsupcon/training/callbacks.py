"""What runs alongside a stage's training: the resumable checkpoint (a Lightning callback) and the
kNN monitor that scores a contrastive encoder after every validation epoch.

:class:`ResumableCheckpoint` saves every ``every_n_steps`` training steps and after every epoch,
with the RNG states (torch, numpy, python) and the position in the epoch, and on resume restores
both, so that a resumed run continues exactly where the checkpoint was taken (docs/failures.md).
The training order itself is a function of ``(seed, epoch)`` alone
(:class:`~mlsupcon.training.batches.EpochSampler`), which can skip the batches of an epoch that
were consumed before an interruption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch import nn

from mlsupcon.evaluation import mean_average_precision
from mlsupcon.inference.scoring import embed_loader
from mlsupcon.training.batches import EpochSampler
from mlsupcon.training.distributed import gather_rng, world_size
from mlsupcon.training.errors import CheckpointError
from mlsupcon.training.rng import capture_rng, restore_rng, seed_rank_stream

__all__ = ["KNNMonitor", "ResumableCheckpoint"]


class ResumableCheckpoint(Checkpoint):
    """Saves ``<dirpath>/last.ckpt`` every ``every_n_steps`` training steps and after every epoch.

    The checkpoint records the RNG states and where in the epoch it was taken; on resume the
    sampler skips the batches already consumed and the RNG states are restored just before
    training continues (``on_train_start``), so the resumed run takes the same steps as an
    uninterrupted one. No step checkpoint is taken on the last batch of an epoch: the
    end-of-epoch one (after validation, early stopping and the best-epoch bookkeeping) follows.

    Under DDP (world size > 1) every rank draws its random views and dropout from its own
    stream, seeded by ``(seed, stage, rank)`` when the stage starts; the checkpoint (written by
    rank 0) holds every rank's RNG states (``rng_by_rank``) and each rank restores its own,
    and the sampler is the rank's :class:`~mlsupcon.training.batches.DistributedEpochSampler`,
    so a distributed run resumes as exactly as a single process.
    """

    STATE_KEY = "mlsupcon_resume"

    def __init__(self, dirpath: str | Path, every_n_steps: int, sampler: EpochSampler | None,
                 batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.every_n_steps = int(every_n_steps)
        # the training sampler (under DDP: the rank's DistributedEpochSampler, set once the ranks are known)
        self.sampler, self.batch_size = sampler, int(batch_size)
        self.seed = int(seed)
        self._position = (0, 0)  # (epoch, batches of it done) of the checkpoint being written
        self._last_step_saved = -1
        self._last_batch: tuple[int, int, bool] | None = None  # (epoch, batches done, last of epoch)
        self.saved_on_signal = False
        self._pending: dict[str, Any] | None = None  # loaded state whose RNG is not restored yet
        self._trainer = None

    @property
    def state_key(self) -> str:
        return self.STATE_KEY

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def setup(self, trainer, pl_module, stage) -> None:
        self._trainer = trainer

    # ---------------------------------------------------------------------- saving
    def _save(self, trainer, position: tuple[int, int]) -> None:
        self._position = position
        # The CSV logger buffers rows: write them now, so that a resumed run can keep the rows
        # of the epochs before its checkpoint.
        for logger in trainer.loggers:
            logger.save()
        trainer.save_checkpoint(str(self.path))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        is_last = bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        self._last_batch = (trainer.current_epoch, batch_idx + 1, is_last)
        if self.every_n_steps <= 0 or trainer.sanity_checking:
            return
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or step == self._last_step_saved or is_last:
            return
        self._last_step_saved = step
        self._save(trainer, (trainer.current_epoch, batch_idx + 1))

    def on_exception(self, trainer, pl_module, exception) -> None:
        """SIGTERM (preemption): Lightning stops after the current batch; save it if needed."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(exception, SIGTERMException) or self._last_batch is None:
            return
        epoch, done, is_last = self._last_batch
        # After the last batch of an epoch the end-of-epoch checkpoint is (or was) the one to use.
        if is_last or trainer.global_step == self._last_step_saved:
            return
        self._last_step_saved = trainer.global_step
        self._save(trainer, (epoch, done))
        self.saved_on_signal = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning calls this after validation, the module's epoch-end hook and early stopping
        # (checkpoint callbacks come last), as its own ModelCheckpoint does by default.
        self._save(trainer, (trainer.current_epoch + 1, 0))

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        return {
            "epoch": int(self._position[0]),
            "batches_done": int(self._position[1]),
            "batch_size": self.batch_size,
            "global_step": int(trainer.global_step) if trainer is not None else 0,
            "should_stop": bool(trainer.should_stop) if trainer is not None else False,
            "rng": capture_rng(),
            **({"rng_by_rank": gather_rng()} if world_size(trainer) > 1 else {}),
        }

    # ---------------------------------------------------------------------- resuming
    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("batch_size", self.batch_size)) != self.batch_size:
            raise CheckpointError(
                f"checkpoint: {self.path} was written with batch size {state.get('batch_size')}, "
                f"this run uses {self.batch_size}; resume with the same configuration"
            )
        self._pending = state
        self._last_step_saved = int(state.get("global_step", -1))
        world = world_size(self._trainer)
        if world > 1 and len(state.get("rng_by_rank") or ()) != world:
            raise CheckpointError(
                f"checkpoint: {self.path} does not hold the random states of {world} processes; resume it "
                "with the devices and nodes it was written with, or rerun without --resume"
            )
        if self.sampler is not None:  # under DDP a per-rank count: every rank took the same steps
            self.sampler.resume_at(int(state["epoch"]), int(state["batches_done"]) * self.batch_size)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is None and world_size(trainer) > 1:
            seed_rank_stream(self.seed, self.dirpath.name, int(trainer.global_rank))
        self.restore_pending(trainer)

    def restore_pending(self, trainer=None) -> None:
        """Restores the RNG states (this rank's, under DDP) and a pending early stop of the loaded
        checkpoint, once."""
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        by_rank = state.get("rng_by_rank")
        trainer = trainer if trainer is not None else self._trainer
        restore_rng(by_rank[int(trainer.global_rank)] if by_rank and world_size(trainer) > 1 else state["rng"])
        if state.get("should_stop") and trainer is not None:
            trainer.should_stop = True


class KNNMonitor:
    """Scores an encoder by kNN mAP: embeddings of a fixed reference set (training examples)
    vote for the labels of a fixed query set (validation examples).

    Used by :class:`~mlsupcon.training.modules.ContrastiveModule` to select its best epoch and
    stop early. Both loaders give batches ``(inputs, labels, indices)`` in a fixed order (no
    shuffling, no random views), so the score draws on no random number generator and a resumed
    run scores as an uninterrupted one. The scores are :func:`mlsupcon.evaluation.knn_scores` of
    the encoder outputs (L2-normalised, ``k`` neighbours, softmax weights at ``temperature``); the
    value is their :func:`mlsupcon.evaluation.mean_average_precision` (0 when no query label has a
    positive).

    Example:
        >>> import torch
        >>> from mlsupcon.training.modules import FeatureInput
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
        >>> y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
        >>> batches = lambda i: [({"x": x[i]}, y[i], torch.as_tensor(i))]
        >>> monitor = KNNMonitor(batches([0, 1]), batches([2, 3]), k=1)
        >>> monitor.score(FeatureInput(), "cpu")
        1.0
    """

    def __init__(self, reference_loader, query_loader, k: int = 20, temperature: float = 0.05) -> None:
        self.reference_loader, self.query_loader = reference_loader, query_loader
        self.k, self.temperature = int(k), float(temperature)

    @torch.no_grad()
    def score(self, encoder: nn.Module, device) -> float:
        """kNN mAP of ``encoder`` (put in eval mode; the caller restores its mode)."""
        from mlsupcon.evaluation import knn_scores

        ref, ref_y = embed_loader(encoder, self.reference_loader, device)
        query, query_y = embed_loader(encoder, self.query_loader, device)
        # the search on the training device (a GPU if there is one), in query chunks
        scores = knn_scores(ref, ref_y, query, k=self.k, temperature=self.temperature, device=device)
        value = mean_average_precision(query_y.numpy(), scores)
        return 0.0 if np.isnan(value) else float(value)
