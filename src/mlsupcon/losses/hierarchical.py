"""Hierarchical losses HiMulCon, HiConE and HiMulConE (Zhang et al. 2022).

Zhang, Ranjan, et al., "Use All The Labels: A Hierarchical Multi-Label Contrastive Learning
Framework", CVPR 2022. Each level l (coarsest first) contributes the flat loss of a base
strategy on that level's labels; the variants combine the level losses differently.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mlsupcon.losses._validation import check_choice, check_number

__all__ = ["HierarchicalLoss", "HiMulConLoss", "HiConELoss", "HiMulConELoss", "path_to_levels", "default_level_weights"]


def default_level_weights(num_levels: int) -> list[float]:
    """λ_l = 2^{1/(L − l + 1)} for l = 1..L: the coarsest level 2^{1/L}, the finest 2."""
    return [2.0 ** (1.0 / (num_levels - l + 1)) for l in range(1, num_levels + 1)]


def path_to_levels(paths: torch.Tensor,
                   ref_paths: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """One-hot label rows per level from ``[B, L]`` class-id paths (coarsest first).

    At level l two samples share a label iff their paths agree on levels 1..l, so the flat
    ``all`` (or any) strategy on these rows means "same label prefix up to level l".
    """
    if paths.ndim != 2 or paths.shape[1] == 0:
        raise ValueError(f"labels: expected a [B, L] path tensor with L >= 1, got shape {tuple(paths.shape)}")
    if paths.shape[0] == 0:
        raise ValueError("labels: empty batch (B = 0)")
    if paths.is_floating_point() and not bool((paths == paths.round()).all()):
        raise ValueError("labels: a path tensor must hold integer class ids")
    allp = paths.long() if ref_paths is None else torch.cat([paths.long(), ref_paths.long()])
    out = []
    for level in range(paths.shape[1]):
        _, inverse = torch.unique(allp[:, : level + 1], dim=0, return_inverse=True)
        one_hot = F.one_hot(inverse).to(torch.float32)
        b = paths.shape[0]
        out.append((one_hot[:b], None if ref_paths is None else one_hot[b:]))
    return out


class HierarchicalLoss(nn.Module):
    """Base of the hierarchical losses: per-level flat losses combined by ``combine``.

    Args:
        base: name of the flat strategy applied at every level (default ``"all"``).
        level_weights: λ_l per level, coarsest first; None uses :func:`default_level_weights`.
        combine: ``"weighted"`` (HiMulCon), ``"max"`` (HiConE) or ``"weighted_max"`` (HiMulConE).
        **flat_options: options of the base loss (temperature, normalize, chunk_size, ...).

    Called as ``loss(features, labels)`` where ``labels`` is a ``[B, L]`` path tensor of class
    ids or a list of L multi-hot ``[B, C_l]`` tensors (dense or sparse), coarsest first.
    ``ref_features`` / ``ref_labels`` (same level format) are passed to every level. B = 0
    raises ``features: empty batch`` as the flat losses do; B = 1 (V <= 2) is an exact 0.

    Attributes:
        label_format: ``"hierarchy_levels"``: the per-level labels above (the training
            pipeline builds them from the dataset's hierarchy).
    """

    label_format = "hierarchy_levels"

    def __init__(self, base: str = "all", level_weights: Sequence[float] | None = None,
                 combine: str = "weighted", **flat_options) -> None:
        super().__init__()
        from mlsupcon.losses import FLAT_LOSSES  # the registry lives in the package root

        check_choice(combine, "combine", ("weighted", "max", "weighted_max"))
        check_choice(base, "base", tuple(n for n in FLAT_LOSSES if n not in ("supcon", "simclr")))
        if level_weights is not None:
            if isinstance(level_weights, (str, bytes)) or not hasattr(level_weights, "__iter__"):
                raise ValueError(f"level_weights: expected a list of numbers >= 0, got {level_weights!r}")
            level_weights = [check_number(x, "level_weights", 0) for x in level_weights]
        self.base_name = base
        self.level_weights = level_weights
        self.combine = combine
        self.base = FLAT_LOSSES[base](**flat_options)

    def _levels(self, labels, ref_labels):
        if isinstance(labels, torch.Tensor):
            if ref_labels is not None and not isinstance(ref_labels, torch.Tensor):
                raise ValueError("ref_labels: expected a path tensor like labels")
            return path_to_levels(labels, ref_labels)
        if isinstance(labels, (list, tuple)) and labels and all(isinstance(t, torch.Tensor) for t in labels):
            if ref_labels is None:
                return [(t, None) for t in labels]
            if not isinstance(ref_labels, (list, tuple)) or len(ref_labels) != len(labels):
                raise ValueError("ref_labels: expected a list with one tensor per level, like labels")
            return list(zip(labels, ref_labels))
        raise ValueError(
            "labels: expected a [B, L] path tensor or a non-empty list of [B, C_l] multi-hot tensors, "
            f"got {type(labels).__name__}"
        )

    def forward(self, features, labels, ref_features=None, ref_labels=None):
        # The same error as the flat losses, before the labels are split into levels.
        if isinstance(features, torch.Tensor) and features.ndim in (2, 3) and features.shape[0] == 0:
            raise ValueError("features: empty batch (B = 0)")
        levels = self._levels(labels, ref_labels)
        num = len(levels)
        weights = self.level_weights or default_level_weights(num)
        if len(weights) != num:
            raise ValueError(f"level_weights: has {len(weights)} entries but labels has {num} levels")
        losses = [self.base(features, y, ref_features=ref_features, ref_labels=ry) for y, ry in levels]
        if self.combine == "weighted":
            terms = [w * loss for w, loss in zip(weights, losses)]
        else:
            terms = losses if self.combine == "max" else [w * loss for w, loss in zip(weights, losses)]
            # From the finest level to the coarsest, each takes the max of itself and the finer ones.
            running = None
            for i in range(num - 1, -1, -1):
                running = terms[i] if running is None else torch.maximum(terms[i], running)
                terms[i] = running
        return torch.stack(terms).sum() / num


class HiMulConLoss(HierarchicalLoss):
    r"""HiMulCon: (1/L) Σ_l λ_l · Loss_l, finer levels weighing more.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> paths = torch.tensor([[0, 0], [0, 1], [1, 2], [0, 0]])   # coarse, fine
        >>> loss = build("himulcon")(torch.randn(4, 2, 8), paths)
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(self, base="all", level_weights=None, **flat_options):
        super().__init__(base, level_weights, "weighted", **flat_options)


class HiConELoss(HierarchicalLoss):
    r"""HiConE: Loss_l ← max(Loss_l, finer levels' losses), then the mean over levels.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> loss = build("hicone")(torch.randn(4, 2, 8), torch.tensor([[0, 0], [0, 1], [1, 2], [0, 0]]))
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(self, base="all", level_weights=None, **flat_options):
        super().__init__(base, level_weights, "max", **flat_options)


class HiMulConELoss(HierarchicalLoss):
    r"""HiMulConE: the max rule of HiConE applied to λ_l · Loss_l.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> loss = build("himulcone")(torch.randn(4, 2, 8), torch.tensor([[0, 0], [0, 1], [1, 2], [0, 0]]))
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(self, base="all", level_weights=None, **flat_options):
        super().__init__(base, level_weights, "weighted_max", **flat_options)
