"""Training failures the CLI reports in one line (docs/failures.md); no heavy imports here."""

from __future__ import annotations


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


#: errno values of a full disk or an exhausted quota.
_DISK_FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT


def disk_full_error(exc: BaseException) -> OSError | None:
    """The "no space left on device" ``OSError`` behind ``exc`` (itself, or in its chain of causes
    and contexts: torch, safetensors and Lightning re-raise it as other errors), else None.

    Example:
        >>> import errno
        >>> try:
        ...     try:
        ...         raise OSError(errno.ENOSPC, "No space left on device")
        ...     except OSError:
        ...         raise RuntimeError("file write failed")
        ... except RuntimeError as exc:
        ...     disk_full_error(exc).errno == errno.ENOSPC
        True
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


#: What writers that do not raise an OSError (safetensors' Rust writer) say of a full disk.
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "StorageFull", "os error 28")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or the quota is full:
    an ``OSError`` with ``ENOSPC`` / ``EDQUOT`` (:func:`disk_full_error`), or only its message (a
    ``SafetensorError`` ``... IoError(Os { code: 28, kind: StorageFull ...``).

    Example:
        >>> is_disk_full(RuntimeError("IoError(Os { code: 28, kind: StorageFull })")), is_disk_full(ValueError("x"))
        (True, False)
    """
    if disk_full_error(exc) is not None:
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(text in str(exc) for text in _DISK_FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
