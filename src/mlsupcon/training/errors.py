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


class TrainingInterrupted(Exception):
    """The run was stopped by SIGTERM (e.g. a preempted job); ``--resume`` continues it."""
