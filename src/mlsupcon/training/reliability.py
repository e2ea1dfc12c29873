"""Deprecated: the failure handling of training runs now lives in the modules named for it.

* :mod:`mlsupcon.training.checkpoints`: checkpoint files (``AtomicCheckpointIO``,
  ``load_checkpoint_file``, ``save_checkpoint_file``);
* :mod:`mlsupcon.training.rng`: RNG states and seeding (``capture_rng``, ``restore_rng``, ``seed_rank_stream``);
* :mod:`mlsupcon.training.callbacks`: ``ResumableCheckpoint``;
* :mod:`mlsupcon.training.distributed`: ``is_distributed_failure``, ``distributed_failure``;
* :mod:`mlsupcon.training.errors`: the training errors and the out-of-memory guidance;
* :mod:`mlsupcon.training.logs`: the CSV log rows of a resumed stage;
* :mod:`mlsupcon.training.batches`: ``EpochSampler``, ``epoch_seed``.

This module re-exports those names for one release. Setting one of them here (e.g. a test's
``monkeypatch.setattr``) sets it in its home module too, so the code that uses it sees the change.
"""

from __future__ import annotations

import sys
import types
import warnings

from mlsupcon.training import batches, callbacks, checkpoints, distributed, errors, logs, rng
from mlsupcon.training.batches import EpochSampler, epoch_seed
from mlsupcon.training.callbacks import ResumableCheckpoint
from mlsupcon.training.checkpoints import AtomicCheckpointIO, load_checkpoint_file, save_checkpoint_file
from mlsupcon.training.distributed import distributed_failure, is_distributed_failure
from mlsupcon.training.errors import (
    CheckpointError,
    DistributedError,
    NonFiniteLossError,
    OutOfMemoryGuidance,
    TrainingError,
    TrainingInterrupted,
    is_out_of_memory,
)
from mlsupcon.training.logs import merge_resumed_log, read_log_rows, write_log_rows
from mlsupcon.training.rng import capture_rng, restore_rng, seed_rank_stream

warnings.warn("mlsupcon.training.reliability is deprecated; import from mlsupcon.training.checkpoints, "
              "callbacks, distributed, errors, logs or rng", DeprecationWarning, stacklevel=2)

__all__ = ["AtomicCheckpointIO", "CheckpointError", "DistributedError", "EpochSampler", "NonFiniteLossError",
           "OutOfMemoryGuidance", "ResumableCheckpoint", "TrainingError", "TrainingInterrupted", "capture_rng",
           "distributed_failure", "epoch_seed", "is_distributed_failure", "is_out_of_memory", "load_checkpoint_file",
           "merge_resumed_log", "oom_guidance", "oom_message", "read_log_rows", "restore_rng", "save_checkpoint_file",
           "seed_rank_stream", "write_log_rows"]


def oom_message(cfg, stage: str, exc: BaseException) -> str:
    """:func:`mlsupcon.training.errors.oom_message` with the hints of ``cfg``'s method."""
    from mlsupcon.training.methods import get_method

    return errors.oom_message(cfg, stage, exc, get_method(cfg.method).oom_hints(cfg))


def oom_guidance(cfg, stage: str):
    """``Method.oom_guidance`` of ``cfg``'s method (:func:`mlsupcon.training.errors.oom_guidance`)."""
    from mlsupcon.training.methods import get_method

    return get_method(cfg.method).oom_guidance(cfg, stage)


#: The home module of every name re-exported here.
_HOMES = {name: module for module in (batches, callbacks, checkpoints, distributed, errors, logs, rng)
          for name in __all__ if name not in ("oom_guidance", "oom_message") and hasattr(module, name)
          and getattr(module, name) is globals()[name]}


class _ForwardingModule(types.ModuleType):
    """Setting a re-exported name sets it in its home module as well."""

    def __setattr__(self, name: str, value) -> None:
        home = _HOMES.get(name)
        if home is not None:
            setattr(home, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _ForwardingModule
