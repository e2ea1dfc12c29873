"""Failure handling of training runs: crash-safe checkpoints, exact resume, safe loading,
non-finite losses and out-of-memory guidance (docs/failures.md).

* :class:`AtomicCheckpointIO` writes Lightning checkpoints to a temporary file and renames it
  over the old one, so a killed process leaves the previous checkpoint intact; it loads them
  with ``torch.load(weights_only=True)`` (no code runs while loading) and turns a truncated,
  corrupt or unsafe file into a one-line :class:`CheckpointError`.
* :class:`EpochSampler` makes the training order a function of ``(seed, epoch)`` alone and can
  skip the batches of an epoch that were already consumed before an interruption.
* :class:`ResumableCheckpoint` saves every ``every_n_steps`` training steps and after every
  epoch, with the RNG states (torch, numpy, python) and the position in the epoch, and on
  resume restores both, so that a resumed run continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from mlsupcon.training.batches import EpochSampler, epoch_seed  # noqa: F401 - re-exported
from mlsupcon.training.errors import (  # noqa: F401 - re-exported
    CheckpointError,
    DistributedError,
    NonFiniteLossError,
    OutOfMemoryGuidance,
    TrainingError,
    TrainingInterrupted,
)
from mlsupcon.training.io import atomic_write

# ------------------------------------------------------------------------------ RNG states


def capture_rng() -> dict[str, Any]:
    """The global RNG states (torch CPU/CUDA, numpy, python) as tensors and plain containers,
    so that a checkpoint holding them loads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------ checkpoint files


def _first_line(exc: BaseException) -> str:
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    for line in lines:  # torch's weights_only refusal names the offending global on its own line
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line[:200]
    return (lines[0] if lines else type(exc).__name__)[:200]


def load_checkpoint_file(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU, with one-line errors.

    Only tensors and plain Python containers / numbers / strings are accepted: a pickle that
    would construct any other object (and so could run code) is refused, not executed.
    """
    path = Path(path)
    advice = ("delete it (or its folder) and rerun with --resume to restart that stage, "
              "or rerun without --resume to start over")
    if not path.is_file():
        raise CheckpointError(f"{what}: file not found: {path}")
    # torch.load does not check the archive's CRC-32s: a flipped byte in a tensor would load.
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what}: {path} is truncated or corrupt ({_first_line(exc)}); {advice}") from None
    if bad is not None:
        raise CheckpointError(f"{what}: {path} is damaged or was tampered with (entry {bad} fails its "
                              f"CRC-32 check); {advice}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = _first_line(exc)
        if "weights only" in str(exc).lower() or "unsupported" in str(exc).lower():
            raise CheckpointError(
                f"{what}: {path} contains objects other than tensors and plain containers "
                f"({msg}); refusing to load it, since unpickling it could run code. "
                f"If you did not write it, {advice}"
            ) from None
        raise CheckpointError(f"{what}: {path} is corrupt ({msg}); {advice}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as exc:
        raise CheckpointError(
            f"{what}: {path} is truncated or corrupt ({_first_line(exc)}); {advice}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what}: {path} does not hold a checkpoint (got {type(obj).__name__}); {advice}")
    return obj


def save_checkpoint_file(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` into a temporary file, fsync, rename over ``path`` (atomic)."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic saves, ``weights_only=True`` loads with one-line errors."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        # weights_only is always True here, whatever Lightning asks for.
        return load_checkpoint_file(path)


# ------------------------------------------------------------------------------ the callback


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
            **({"rng_by_rank": _gather_rng()} if _world_size(trainer) > 1 else {}),
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
        world = _world_size(self._trainer)
        if world > 1 and len(state.get("rng_by_rank") or ()) != world:
            raise CheckpointError(
                f"checkpoint: {self.path} does not hold the random states of {world} processes; resume it "
                "with the devices and nodes it was written with, or rerun without --resume"
            )
        if self.sampler is not None:  # under DDP a per-rank count: every rank took the same steps
            self.sampler.resume_at(int(state["epoch"]), int(state["batches_done"]) * self.batch_size)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is None and _world_size(trainer) > 1:
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
        restore_rng(by_rank[int(trainer.global_rank)] if by_rank and _world_size(trainer) > 1 else state["rng"])
        if state.get("should_stop") and trainer is not None:
            trainer.should_stop = True


def _world_size(trainer) -> int:
    return int(trainer.world_size) if trainer is not None else 1


def _gather_rng() -> list[dict[str, Any]]:
    """Every rank's RNG states, in rank order (a collective: every rank saves the checkpoint together)."""
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, capture_rng())
    return states


def seed_rank_stream(seed: int, stage: str, rank: int) -> None:
    """Seeds torch, numpy and python's RNGs from ``(seed, stage, rank)``: under DDP each rank
    draws its own random views and dropout (not copies of rank 0's)."""
    import zlib

    value = int(np.random.SeedSequence([int(seed) % 2**32, zlib.crc32(stage.encode()), int(rank)])
                .generate_state(1)[0])
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


# ------------------------------------------------------------------------------ out of memory


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(s in text for s in ("out of memory", "not enough memory", "can't allocate memory",
                                        "cannot allocate memory"))
    return False


def oom_message(cfg, stage: str, exc: BaseException) -> str:
    from mlsupcon.training.methods import get_method

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    device = "GPU" if "cuda" in str(exc).lower() or cfg.accelerator in ("gpu", "cuda") else "device"
    tips = [f"a smaller --batch-size (now {cfg.batch_size})", *get_method(cfg.method).oom_hints(cfg)]
    if cfg.encoder in ("cnn", "transformer"):
        tips.append(f"a shorter encoder_options.max_length (now {cfg.encoder_options.get('max_length', 'default')})")
    else:
        tips.append("for text encoders, a shorter encoder_options.max_length")
    if cfg.encoder == "transformer":
        tips.append("encoder_options: {gradient_checkpointing: true}")
    else:
        tips.append("for transformers, encoder_options: {gradient_checkpointing: true}")
    if cfg.precision == "32-true":
        tips.append("precision: bf16-mixed on a GPU that supports it")
    return (f"out of {device} memory in stage '{stage}' ({first}). Try " + "; ".join(tips)
            + ". --resume continues from the last checkpoint")


@contextlib.contextmanager
def oom_guidance(cfg, stage: str):
    """Turns an out-of-memory error into :class:`OutOfMemoryGuidance` naming what to change."""
    try:
        yield
    except TrainingError:
        raise
    except BaseException as exc:  # noqa: BLE001 - re-raised unless it is an OOM
        if not is_out_of_memory(exc):
            raise
        with contextlib.suppress(Exception):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        raise OutOfMemoryGuidance(oom_message(cfg, stage, exc)) from None


# ------------------------------------------------------------------------------ distributed failures

#: How torch's gloo / NCCL errors that are not ``DistError``s say that a peer went away or hangs
#: (gloo's name its source file: ".../gloo/transport/tcp/pair.cc:537] Read error ...").
_PEER_LOST = ("gloo", "nccl", "connection closed", "connection reset", "connection refused", "broken pipe")


def is_distributed_failure(exc: BaseException) -> bool:
    """A communication error of ``torch.distributed`` (a peer died, hung or became unreachable)."""
    import torch.distributed as dist

    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc).lower() for s in _PEER_LOST)


def distributed_failure(exc: BaseException, stage: str, rank: int, world_size: int, step: int, timeout_s: float,
                        resume_hint: str) -> DistributedError:
    """The one-line :class:`DistributedError` of a rank that lost contact with the others."""
    # gloo: "[.../pair.cc:537] Read error [127.0.0.1]:19894: Connection reset by peer. This is typically ..."
    what = re.sub(r"^\[[^\]]*\]\s*", "", _first_line(exc)).split(". ")[0].rstrip(".")[:160]
    return DistributedError(
        f"distributed: process {rank} of {world_size} lost contact with the others in stage '{stage}' "
        f"(step {step}: {what}); another process died or stopped answering (its own output says why; "
        f"one that hangs is given up on after distributed_timeout={timeout_s:g} s). {resume_hint}"
    )


# ------------------------------------------------------------------------------ CSV logs


def write_log_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """CSV rows (union of their keys as the header), written atomically; nothing if no rows."""
    import csv

    from mlsupcon.training.io import atomic_write_text

    if not rows:
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=sorted({k for r in rows for k in r}), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def merge_resumed_log(log_dir: Path, kept_rows: list[dict[str, str]]) -> None:
    """Puts the rows of the interrupted attempt (complete epochs only) before the new rows."""
    import csv

    path = log_dir / "metrics.csv"
    new_rows: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="") as fh:
            new_rows = list(csv.DictReader(fh))
    write_log_rows(path, kept_rows + new_rows)


def read_log_rows(log_dir: Path, before_epoch: int) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` (and of an earlier resume's saved rows) with epoch < ``before_epoch``."""
    import csv

    rows = []
    for name in ("metrics.before_resume.csv", "metrics.csv"):
        p = log_dir / name
        if not p.is_file():
            continue
        with open(p, newline="") as fh:
            for r in csv.DictReader(fh):
                try:
                    if int(r.get("epoch") or 0) < before_epoch:
                        rows.append(r)
                except ValueError:
                    continue
    # keep one copy of each row (the saved rows and the current file may overlap)
    seen, unique = set(), []
    for r in rows:
        key = tuple(sorted(r.items()))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique
