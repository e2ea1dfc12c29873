"""One checkpointed, resumable Lightning stage of a run (``checkpoints/<stage>/``, ``logs/<stage>/``).

A training method fits its Lightning modules through :meth:`FitContext.fit_stage
<mlsupcon.training.methods.base.FitContext.fit_stage>`, which lands in :func:`fit_stage`: the
trainer, atomic checkpoints every ``checkpoint_every_n_steps`` steps and every epoch, resume from
``last.ckpt`` (or skipping a stage that had finished), the non-finite loss and out-of-memory
policies, and the stage's CSV log. docs/failures.md describes the behaviour.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from mlsupcon.runs.folder import is_primary_process
from mlsupcon.runs.io import write_json
from mlsupcon.training.batches import EpochSampler, shard_loader
from mlsupcon.training.callbacks import ResumableCheckpoint
from mlsupcon.training.checkpoints import AtomicCheckpointIO, load_checkpoint_file
from mlsupcon.training.distributed import distributed_failure, is_distributed_failure
from mlsupcon.training.errors import CheckpointError, TrainingInterrupted, oom_guidance
from mlsupcon.training.logs import merge_resumed_log, quiet_lightning, read_log_rows, write_log_rows
from mlsupcon.training.rng import restore_rng, seed_everything
from mlsupcon.training.scale import lightning_strategy

# is_primary_process, quiet_lightning and seed_everything live in runs.folder, logs and rng; they stay
# importable from here for the callers that import them from this module.
__all__ = ["RunState", "fit_stage", "is_primary_process", "quiet_lightning", "seed_everything"]


class RunState:
    """Per-run bookkeeping of the stages: non-finite step counts, notes (resume, epoch caps),
    which the runner records in metrics.json (``notes``)."""

    def __init__(self) -> None:
        self.nonfinite: dict[str, int] = {}
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)
        if is_primary_process():  # rank 0 speaks for a distributed run
            print(f"mlsupcon: {message}", file=sys.stderr, flush=True)


#: Validation examples a contrastive stage scores its loss on each epoch. That loss is only logged
#: (the stage selects its epoch by kNN mAP, on its own query subset); on the full split it cost
#: two thirds of an epoch of a 500-text run with 2,892 validation texts (Debtags, partial encoder).
CONTRASTIVE_VALIDATION_EXAMPLES = 1024


def _val_batch_limit(stage: str, val_loader) -> int | float:
    """Lightning's ``limit_val_batches``: all batches, or the first ones of a contrastive stage."""
    size = getattr(val_loader, "batch_size", None)
    if stage != "contrastive" or not size:
        return 1.0
    return max(1, -(-CONTRASTIVE_VALIDATION_EXAMPLES // int(size)))


def _trainer(cfg, out: Path, stage: str, max_epochs: int, monitor: str | None, checkpoint,
             limit_val_batches: int | float = 1.0):
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers import CSVLogger

    from mlsupcon.progress import is_interactive
    from mlsupcon.training.debug import debug_callbacks
    from mlsupcon.training.progress import progress_callbacks

    # The stage's progress: a bar named after it on a terminal, else (a log file, --no-progress) one
    # line per epoch.
    bars = bool(cfg.progress) and is_interactive()
    callbacks = [checkpoint, *progress_callbacks(stage, bars), *debug_callbacks(stage)]
    if monitor is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode="max", patience=cfg.patience))
    try:
        return L.Trainer(
            max_epochs=max_epochs,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=lightning_strategy(cfg),
            num_nodes=cfg.num_nodes,
            precision=cfg.precision,
            logger=CSVLogger(str(out), name="logs", version=stage),
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],
            enable_progress_bar=bars,
            enable_model_summary=False,
            enable_checkpointing=True,
            num_sanity_val_steps=0,
            limit_val_batches=limit_val_batches,
            log_every_n_steps=10,
            deterministic=False,
        )
    except (MisconfigurationException, TypeError, ValueError, ImportError) as exc:
        # Bad accelerator / devices / strategy / precision values (or a backend that is not
        # installed): a user mistake, reported in one line rather than as a Lightning traceback.
        raise ValueError(
            f"trainer: accelerator={cfg.accelerator!r}, devices={cfg.devices!r}, strategy={cfg.strategy!r}, "
            f"precision={cfg.precision!r}: {' '.join(str(exc).split())}"
        ) from None


def _check_stage_checkpoint(ckpt: dict[str, Any], path: Path, module) -> dict[str, Any]:
    """The checkpoint is one of ours and fits the module; returns its resume state."""
    state = (ckpt.get("callbacks") or {}).get(ResumableCheckpoint.STATE_KEY)
    weights = ckpt.get("state_dict")
    if not isinstance(state, dict) or not isinstance(weights, dict) or "rng" not in state:
        raise CheckpointError(
            f"checkpoint: {path} was not written by this version of mlsupcon (no resume state); "
            "delete it and rerun with --resume to restart that stage, or rerun without --resume"
        )
    own = module.state_dict()
    bad = sorted(set(own) ^ set(weights))[:5] or [
        k for k in own if tuple(own[k].shape) != tuple(getattr(weights[k], "shape", ()))][:5]
    if bad:
        raise CheckpointError(
            f"checkpoint: {path} does not match the model of this configuration (e.g. {bad}); "
            "resume with the configuration of the interrupted run, or rerun without --resume"
        )
    return state


def _note_epoch_cap(run: RunState, stage: str, module, max_epochs: int, epochs_option: str) -> None:
    """One note when the stage's best epoch (by its monitored metric) was its last allowed one:
    it stopped at the cap while still improving."""
    monitor, best = getattr(module, "monitor", None), getattr(module, "best_epoch", -1)
    if monitor is None or max_epochs < 2 or best != max_epochs - 1:
        return
    run.note(f"stage '{stage}' reached {epochs_option}={max_epochs} while {monitor} was still improving "
             f"(best at the last epoch); a larger --{epochs_option.replace('_', '-')} may help")


def fit_stage(cfg, out: Path, stage: str, module, train_loader, val_loader, max_epochs: int,
              early_stop: bool, run: RunState, epochs_option: str = "epochs", oom_hints: Sequence[str] = ()) -> None:
    """Fits one stage: checkpoints, resume (or skipping a finished stage), non-finite and OOM policies.

    Every stage trains with AdamW and the config's learning-rate schedule (``lr_schedule``,
    ``warmup_epochs``, ``min_lr_ratio``: :mod:`mlsupcon.training.schedule`), per step over
    ``max_epochs``. A stage whose best epoch (by the module's ``monitor``) is its last one
    ends with a note (:attr:`RunState.notes`, metrics.json) that ``max_epochs`` cut it short.

    Args:
        cfg: the run's :class:`~mlsupcon.training.TrainConfig` (``resume``, trainer settings).
        out: the run folder.
        stage: the stage's name (its ``checkpoints/`` and ``logs/`` subfolder).
        module: a Lightning module of :mod:`mlsupcon.training.modules`.
        train_loader, val_loader: its data.
        max_epochs: epochs of this stage (a cap when it stops early).
        early_stop: stop when the module's ``monitor`` (validation mAP of a classifier, kNN mAP
            of a contrastive encoder) has not improved for ``cfg.patience`` epochs.
        run: the run's bookkeeping (non-finite step counts, notes).
        epochs_option: the config field that set ``max_epochs`` (named in the note).
        oom_hints: the method's advice when memory runs out (``Method.oom_hints``).
    """
    module.stage, module.max_nonfinite_steps = stage, cfg.max_nonfinite_steps
    for name in ("lr_schedule", "warmup_epochs", "min_lr_ratio"):
        setattr(module, name, getattr(cfg, name))
    monitor = getattr(module, "monitor", None) if early_stop else None
    if early_stop and monitor is None:
        raise ValueError(f"stage '{stage}': early stopping needs a module with a validation metric (monitor)")
    ckpt_dir = out / "checkpoints" / stage
    last, done = ckpt_dir / "last.ckpt", ckpt_dir / "done.json"
    sampler = train_loader.sampler if isinstance(train_loader.sampler, EpochSampler) else None
    checkpoint = ResumableCheckpoint(ckpt_dir, cfg.checkpoint_every_n_steps, sampler, train_loader.batch_size,
                                     seed=cfg.seed)
    ckpt_path, kept_rows, log_dir = None, None, None
    if cfg.resume and last.is_file():
        ckpt = load_checkpoint_file(last)
        state = _check_stage_checkpoint(ckpt, last, module)
        if done.is_file():
            _load_finished_stage(ckpt, state, module, run, stage, last)
            _note_epoch_cap(run, stage, module, max_epochs, epochs_option)
            return
        del ckpt
        run.note(f"resuming stage '{stage}' from {last} (epoch {state['epoch']}, batch {state['batches_done']} "
                 f"of it, step {state['global_step']})")
        ckpt_path, log_dir = str(last), out / "logs" / stage
        if is_primary_process():  # the logs are rank 0's
            kept_rows = _set_log_rows_aside(log_dir, int(state["epoch"]))
    trainer = _trainer(cfg, out, stage, max_epochs, monitor, checkpoint, _val_batch_limit(stage, val_loader))
    if trainer.world_size > 1 and sampler is not None:
        # Each rank its block of every global batch (resumable mid-epoch), instead of Lightning's sharding.
        train_loader = shard_loader(train_loader, trainer.world_size, trainer.global_rank)
        checkpoint.sampler = train_loader.sampler
    _fit(trainer, cfg, out, stage, module, train_loader, val_loader, ckpt_path, last, list(oom_hints))
    checkpoint.restore_pending(trainer)  # a stage that had ended just before the kill
    if kept_rows is not None:
        merge_resumed_log(log_dir, kept_rows)
        (log_dir / "metrics.before_resume.csv").unlink(missing_ok=True)
    if is_primary_process():
        write_json(done, {"stage": stage, "finished": True, "nonfinite_steps": int(module.nonfinite_steps)})
    run.nonfinite[stage] = module.nonfinite_steps
    _note_epoch_cap(run, stage, module, max_epochs, epochs_option)


def _load_finished_stage(ckpt: dict[str, Any], state: dict[str, Any], module, run: RunState, stage: str,
                         last: Path) -> None:
    """A stage that had finished before: its weights, best epoch and RNG states as they were at its end
    (rank 0's: under DDP what follows draws on rank 0's, e.g. a new head, or on seed_rank_stream)."""
    module.load_state_dict(ckpt["state_dict"])
    module.on_load_checkpoint(ckpt)
    restore_rng(state["rng"])
    run.nonfinite[stage] = module.nonfinite_steps
    run.note(f"stage '{stage}' had finished; loaded it from {last}")


def _set_log_rows_aside(log_dir: Path, before_epoch: int) -> list[dict[str, str]]:
    """The log rows of the complete epochs before the checkpoint, also saved to
    ``metrics.before_resume.csv``: Lightning's CSV logger deletes metrics.csv when it starts."""
    kept_rows = read_log_rows(log_dir, before_epoch)
    (log_dir / "metrics.before_resume.csv").unlink(missing_ok=True)
    write_log_rows(log_dir / "metrics.before_resume.csv", kept_rows)
    return kept_rows


def _fit(trainer, cfg, out: Path, stage: str, module, train_loader, val_loader, ckpt_path: str | None, last: Path,
         oom_hints: list[str]) -> None:
    """``trainer.fit``, with SIGTERM, Ctrl-C, out of memory and a lost distributed peer reported in one line."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        with oom_guidance(cfg, stage, oom_hints):
            trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        # Lightning stops at a batch boundary on SIGTERM and exits "successfully"; say what happened.
        raise _interrupted("stopped by SIGTERM", stage, trainer, last, out, exit_status=143) from None
    except SystemExit as exc:
        # Lightning turns Ctrl-C into a "graceful shutdown" and sys.exit(1), silently: say what happened.
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning left Ctrl-C ignored
        raise _interrupted("interrupted (Ctrl-C)", stage, trainer, last, out, exit_status=130) from None
    except Exception as exc:
        if _caused_by_ctrl_c(exc):  # Ctrl-C inside a checkpoint write: torch re-raises it as its own error
            raise _interrupted("interrupted (Ctrl-C)", stage, trainer, last, out, exit_status=130) from None
        # A process of a distributed run died or hangs: one line, not a traceback from torch.distributed.
        if trainer.world_size < 2 or not is_distributed_failure(exc):
            raise
        launcher = getattr(trainer.strategy, "launcher", None)
        if hasattr(launcher, "kill"):  # rank 0 of Lightning's launcher: stop the ranks it started, even hung ones
            launcher.kill(signal.SIGKILL)
        raise distributed_failure(
            exc, stage, trainer.global_rank, trainer.world_size, trainer.global_step, cfg.distributed_timeout,
            f"Last checkpoint: {_last_checkpoint(last)}; continue with `mlsupcon train --output {out} --resume` "
            "(with torchrun: on every node)",
        ) from None


def _last_checkpoint(last: Path) -> str:
    return f"{last}" if last.is_file() else "no checkpoint yet"


def _interrupted(what: str, stage: str, trainer, last: Path, out: Path, exit_status: int) -> TrainingInterrupted:
    """The one-line :class:`TrainingInterrupted` of a stage stopped by a signal: where to continue from."""
    return TrainingInterrupted(
        f"{what} in stage '{stage}' (step {trainer.global_step}; last checkpoint: {_last_checkpoint(last)}); "
        f"continue with `mlsupcon train --output {out} --resume`", exit_status=exit_status
    )


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in ``exc``'s chain of causes and contexts."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
