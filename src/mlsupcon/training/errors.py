"""Training failures the CLI reports in one line (docs/failures.md), and the out-of-memory guidance;
no heavy imports here (torch is imported only once an error is being examined)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

# A full disk is recognised where files are written (runs.io); the CLI reads it from here too.
from mlsupcon.runs.io import disk_full_error, is_disk_full  # noqa: F401 - re-exported


class TrainingError(ValueError):
    """A training failure the user can act on (the CLI prints it as one line, exit 2)."""


class NonFiniteLossError(TrainingError):
    """Too many consecutive training steps with a NaN / infinite loss."""


class OutOfMemoryGuidance(TrainingError):
    """Out of (GPU or CPU) memory, with what to change."""


class CheckpointError(TrainingError):
    """A checkpoint that cannot (or must not) be loaded."""


class DistributedError(TrainingError):
    """Another process of a distributed run died or stopped answering (docs/failures.md)."""


class TrainingInterrupted(Exception):
    """The run was stopped by SIGTERM (e.g. a preempted job) or Ctrl-C; ``--resume`` continues it.

    ``exit_status``: what the CLI exits with, 128 + the signal (143: SIGTERM, 130: SIGINT).
    """

    def __init__(self, message: str, exit_status: int = 143) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def first_error_line(exc: BaseException) -> str:
    """The line of ``exc``'s message that says what went wrong (at most 200 characters).

    torch's ``weights_only`` refusal names the offending global on a line of its own: that line;
    else the first non-empty line, or the exception's type name.

    Example:
        >>> first_error_line(RuntimeError("\\n  bad header\\nmore detail")), first_error_line(ValueError())
        ('bad header', 'ValueError')
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line[:200]
    return (lines[0] if lines else type(exc).__name__)[:200]


# ------------------------------------------------------------------------------ out of memory


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is Python's ``MemoryError``, torch's out-of-memory error, or a ``RuntimeError``
    saying that memory ran out."""
    if isinstance(exc, MemoryError):
        return True
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(s in text for s in ("out of memory", "not enough memory", "can't allocate memory",
                                        "cannot allocate memory"))
    return False


def oom_message(cfg: Any, stage: str, exc: BaseException, method_hints: list[str]) -> str:
    """The one-line advice of an out-of-memory error in ``stage``: what of ``cfg`` to make smaller.

    Args:
        cfg: the run's config.
        stage: where memory ran out (a stage name, ``evaluation`` …).
        exc: the out-of-memory error.
        method_hints: the run's method's own advice (``Method.oom_hints(cfg)``), listed after the
            batch size.
    """
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    device = "GPU" if "cuda" in str(exc).lower() or cfg.accelerator in ("gpu", "cuda") else "device"
    tips = [f"a smaller --batch-size (now {cfg.batch_size})", *method_hints]
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
def oom_guidance(cfg: Any, stage: str, method_hints: list[str]) -> Iterator[None]:
    """Turns an out-of-memory error into :class:`OutOfMemoryGuidance` naming what to change
    (:func:`oom_message`); other errors pass through unchanged."""
    try:
        yield
    except TrainingError:
        raise
    except BaseException as exc:  # noqa: BLE001 - re-raised unless it is an OOM
        if not is_out_of_memory(exc):
            raise
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        raise OutOfMemoryGuidance(oom_message(cfg, stage, exc, method_hints)) from None
