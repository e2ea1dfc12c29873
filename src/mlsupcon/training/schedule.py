"""Learning-rate schedule of every Lightning stage: linear warm-up, then cosine decay (per step).

With ``W`` warm-up steps, ``T`` steps in the stage (its epoch cap × batches per epoch) and
``r = min_lr_ratio``, the learning rate of optimiser step ``s`` (counted from 0) is
``lr · f(s)`` with

.. math::

    f(s) = \\frac{s + 1}{W} \\quad (s < W), \\qquad
    f(s) = r + (1 - r) \\cdot \\tfrac12 \\big(1 + \\cos(\\pi \\, \\tfrac{s - W}{T - W})\\big) \\quad (s \\ge W)

so the first step already moves (``lr / W``), the first step after the warm-up uses the full
``lr`` and the stage's cap would end at ``r · lr``. A stage stopped early by its validation
metric simply stops on the way down. ``lr_schedule: constant`` keeps ``f = 1``.

Example:
    >>> w = warmup_steps(None, steps_per_epoch=10, max_epochs=20)   # auto: min(1, 20 / 10) epochs
    >>> w
    10
    >>> [round(lr_factor(s, w, 200, 0.0), 3) for s in (0, 9, 10, 105, 199)]
    [0.1, 1.0, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import math

__all__ = ["LR_SCHEDULES", "lr_factor", "warmup_steps", "build_scheduler"]

#: The values of the config's ``lr_schedule``.
LR_SCHEDULES = ("cosine", "constant")


def warmup_steps(warmup_epochs: float | None, steps_per_epoch: float, max_epochs: int) -> int:
    """Warm-up steps of a stage: ``warmup_epochs`` epochs (None: a tenth of the stage's epochs,
    at most one epoch), never more than the stage itself.

    Example:
        >>> warmup_steps(None, 50, 3), warmup_steps(0.5, 50, 3), warmup_steps(10, 50, 3)
        (15, 25, 150)
    """
    epochs = min(1.0, 0.1 * max_epochs) if warmup_epochs is None else float(warmup_epochs)
    total = int(round(steps_per_epoch * max_epochs))
    return max(0, min(total, int(round(epochs * steps_per_epoch))))


def lr_factor(step: int, warmup: int, total: int, min_lr_ratio: float = 0.0) -> float:
    """``f(step)`` of the module docstring: the multiplier of the base learning rate.

    Example:
        >>> lr_factor(0, 4, 100), lr_factor(4, 4, 100), round(lr_factor(100, 4, 100, 0.1), 6)
        (0.25, 1.0, 0.1)
    """
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, kind: str, total_steps: int, max_epochs: int, warmup_epochs: float | None,
                    min_lr_ratio: float):
    """A per-step ``LambdaLR`` for ``kind == "cosine"`` (warm-up + cosine over ``total_steps``), or
    None for ``"constant"``. Its state (the step count) is saved in checkpoints; the factor is
    recomputed from the configuration, so nothing but numbers is stored."""
    if kind == "constant":
        return None
    if kind != "cosine":
        raise ValueError(f"lr_schedule: expected one of {list(LR_SCHEDULES)}, got {kind!r}")
    import torch

    total = max(1, int(total_steps))
    warm = warmup_steps(warmup_epochs, total / max(1, int(max_epochs)), max_epochs)
    warm = min(warm, total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warm, total, min_lr_ratio))
