"""Argument checks shared by every loss: each failure is a ValueError that names the argument."""

from __future__ import annotations

import math
import numbers
from typing import Iterable

import torch


def check_number(value, name: str, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number (not a bool) in [low, high] (an open end with ``low_open`` /
    ``high_open``); returns it as a float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            span = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            span = f" {'>' if low_open else '>='} {low}"
        elif high is not None:
            span = f" {'<' if high_open else '<='} {high}"
        else:
            span = ""
        raise ValueError(f"{name}: expected a finite number{span}, got {value!r}")
    return float(value)


def check_positive(value, name: str) -> float:
    """A finite number > 0 (bools, NaN and inf are refused)."""
    return check_number(value, name, low=0, low_open=True)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return value


def check_chunk_size(chunk_size) -> None:
    """None (the engine chooses) or a positive int; bools are not sizes."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected None or an int >= 1, got {chunk_size!r}")


def check_choice(value: str, name: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


def check_finite(t: torch.Tensor, name: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")


def check_logits_and_targets(logits: torch.Tensor, targets: torch.Tensor, targets_name: str = "targets") -> None:
    """A classifier loss's inputs: float logits ``[B, C]`` (B >= 1, finite) and targets of their shape."""
    for t, name in ((logits, "logits"), (targets, targets_name)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"logits: expected a floating-point tensor, got dtype {logits.dtype}")
    if logits.ndim != 2:
        raise ValueError(f"logits: expected a [B, C] tensor, got shape {tuple(logits.shape)}")
    if tuple(targets.shape) != tuple(logits.shape):
        raise ValueError(
            f"{targets_name}: expected shape {tuple(logits.shape)} to match logits, got {tuple(targets.shape)}"
        )
    if logits.shape[0] == 0:
        raise ValueError("logits: empty batch (B = 0)")
    check_finite(logits, "logits")


def check_multi_hot(t: torch.Tensor, name: str) -> None:
    if t.dtype == torch.bool:
        return
    if t.is_complex():
        raise ValueError(f"{name}: expected a real 0/1 tensor, got dtype {t.dtype}")
    bad = (t != 0) & (t != 1)
    if bool(bad.any()):
        example = t[bad].flatten()[0].item()
        raise ValueError(
            f"{name}: expected multi-hot values in {{0, 1}}, found {int(bad.sum())} other value(s) "
            f"(e.g. {example})"
        )


def flatten_features(features: torch.Tensor, name: str = "features") -> tuple[torch.Tensor, int, int]:
    """[B, D] or [B, V, D] → ([V·B, D] view-major, B, V). View-major like SupCon: row = v·B + i."""
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(features).__name__}")
    if not features.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {features.dtype}")
    if features.ndim == 2:
        features = features.unsqueeze(1)
    elif features.ndim != 3:
        raise ValueError(f"{name}: expected shape [B, D] or [B, V, D], got {tuple(features.shape)}")
    b, v, d = features.shape
    if b == 0:
        raise ValueError(f"{name}: empty batch (B = 0)")
    if v == 0 or d == 0:
        raise ValueError(f"{name}: expected V >= 1 views and D >= 1 dimensions, got shape {tuple(features.shape)}")
    check_finite(features, name)
    return features.transpose(0, 1).reshape(v * b, d), b, v


def check_labels(labels: torch.Tensor, batch: int, name: str = "labels", rows_of: str = "features") -> torch.Tensor:
    """Multi-hot [B, C] labels for a batch of B samples (``rows_of`` names where B comes from)."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 2:
        raise ValueError(f"{name}: expected a multi-hot [B, C] tensor, got shape {tuple(labels.shape)}")
    if labels.shape[0] != batch:
        raise ValueError(
            f"{name}: has {labels.shape[0]} rows but {rows_of} has {batch} samples"
        )
    if labels.layout == torch.strided:
        check_multi_hot(labels, name)
    else:
        check_multi_hot(labels.coalesce().values() if labels.layout == torch.sparse_coo else labels.values(), name)
    return labels
