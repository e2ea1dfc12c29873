"""Checkpoint files: crash-safe writes and safe, checked loads (docs/failures.md).

:class:`AtomicCheckpointIO` writes Lightning checkpoints to a temporary file and renames it over
the old one, so a killed process leaves the previous checkpoint intact; it loads them with
``torch.load(weights_only=True)`` (no code runs while loading) and turns a truncated, corrupt or
unsafe file into a one-line :class:`~mlsupcon.training.errors.CheckpointError`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mlsupcon.runs.io import atomic_write
from mlsupcon.training.errors import CheckpointError, first_error_line

__all__ = ["AtomicCheckpointIO", "load_checkpoint_file", "save_checkpoint_file"]


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
        raise CheckpointError(f"{what}: {path} is truncated or corrupt ({first_error_line(exc)}); {advice}") from None
    if bad is not None:
        raise CheckpointError(f"{what}: {path} is damaged or was tampered with (entry {bad} fails its "
                              f"CRC-32 check); {advice}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = first_error_line(exc)
        if "weights only" in str(exc).lower() or "unsupported" in str(exc).lower():
            raise CheckpointError(
                f"{what}: {path} contains objects other than tensors and plain containers "
                f"({msg}); refusing to load it, since unpickling it could run code. "
                f"If you did not write it, {advice}"
            ) from None
        raise CheckpointError(f"{what}: {path} is corrupt ({msg}); {advice}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as exc:
        raise CheckpointError(
            f"{what}: {path} is truncated or corrupt ({first_error_line(exc)}); {advice}"
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
