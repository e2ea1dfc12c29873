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

from mlsupcon.losses._validation import check_bool, check_choice, check_number
from mlsupcon.losses.flat_registry import FLAT_LOSSES

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
        paths: ``False`` (default): ``labels`` is a list (or tuple) with one label tensor per
            level; ``True``: ``labels`` is a single ``[B, L]`` tensor of class ids, one per level.
        **flat_options: options of the base loss (temperature, normalize, chunk_size, ...).

    Called as ``loss(features, labels)``, coarsest level first, where ``labels`` is

    * (default) a list of L label tensors ``[B, C_l]`` (multi-hot, dense or sparse), e.g.
      ``LabelHierarchy.levels(y)`` of :mod:`mlsupcon.data.hierarchy` (what the training
      pipeline passes), or L class-id paths split by :func:`path_to_levels`;
    * with ``paths=True``, a ``[B, L]`` path tensor of integer class ids.

    A single tensor without ``paths=True`` is a ValueError: a flat multi-hot ``[B, C]`` matrix
    (what the flat losses take) would otherwise be read as C levels of 0/1 class ids and give a
    silently wrong value, and a 0/1 path tensor cannot be told apart from one.
    ``ref_features`` / ``ref_labels`` (same level format) are passed to every level. B = 0
    raises ``features: empty batch`` as the flat losses do; B = 1 (V <= 2) is an exact 0.

    Attributes:
        label_format: ``"hierarchy_levels"``: the per-level labels above (the training
            pipeline builds them from the dataset's hierarchy).
    """

    label_format = "hierarchy_levels"

    def __init__(self, base: str = "all", level_weights: Sequence[float] | None = None,
                 combine: str = "weighted", paths: bool = False, **flat_options) -> None:
        super().__init__()
        self.paths = check_bool(paths, "paths")
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
        name = {"weighted": "himulcon", "max": "hicone", "weighted_max": "himulcone"}[self.combine]
        if self.paths:
            if not isinstance(labels, torch.Tensor):
                raise ValueError(
                    f"labels: {name} was built with paths=True and takes one [B, L] tensor of class ids, "
                    f"got {type(labels).__name__}; pass a list of per-level tensors with paths=False"
                )
            if ref_labels is not None and not isinstance(ref_labels, torch.Tensor):
                raise ValueError("ref_labels: expected a path tensor like labels")
            if labels.dtype == torch.bool:
                raise ValueError("labels: a path tensor must hold integer class ids, got dtype torch.bool")
            return path_to_levels(labels, ref_labels)
        if isinstance(labels, torch.Tensor):
            shape = "[" + ", ".join(str(n) for n in labels.shape) + "]"
            raise ValueError(
                f"labels: {name} takes one label tensor per hierarchy level (a list of [B, C_l] tensors, "
                f"coarsest first: LabelHierarchy.levels(y) of mlsupcon.data.hierarchy); got a single {shape} "
                "tensor. A flat multi-hot matrix has no levels (use a flat loss such as simdis); for a "
                "[B, L] path tensor of class ids build the loss with paths=True"
            )
        if isinstance(labels, (list, tuple)) and labels and all(isinstance(t, torch.Tensor) for t in labels):
            if ref_labels is None:
                return [(t, None) for t in labels]
            if not isinstance(ref_labels, (list, tuple)) or len(ref_labels) != len(labels):
                raise ValueError("ref_labels: expected a list with one tensor per level, like labels")
            return list(zip(labels, ref_labels))
        raise ValueError(
            "labels: expected a non-empty list of [B, C_l] label tensors, one per level "
            f"(or a [B, L] path tensor with paths=True), got {type(labels).__name__}"
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
        >>> coarse = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 0]])        # [B, C_1] multi-hot
        >>> fine = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])  # [B, C_2]
        >>> loss = build("himulcon")(torch.randn(4, 2, 8), [coarse, fine])
        >>> bool(torch.isfinite(loss))
        True
        >>> paths = torch.tensor([[0, 0], [0, 1], [1, 2], [0, 0]])   # class ids: coarse, fine
        >>> bool(torch.isfinite(build("himulcon", paths=True)(torch.randn(4, 2, 8), paths)))
        True
    """

    def __init__(self, base="all", level_weights=None, paths=False, **flat_options):
        super().__init__(base, level_weights, "weighted", paths, **flat_options)


class HiConELoss(HierarchicalLoss):
    r"""HiConE: Loss_l ← max(Loss_l, finer levels' losses), then the mean over levels.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> paths = torch.tensor([[0, 0], [0, 1], [1, 2], [0, 0]])
        >>> loss = build("hicone", paths=True)(torch.randn(4, 2, 8), paths)
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(self, base="all", level_weights=None, paths=False, **flat_options):
        super().__init__(base, level_weights, "max", paths, **flat_options)


class HiMulConELoss(HierarchicalLoss):
    r"""HiMulConE: the max rule of HiConE applied to λ_l · Loss_l.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> paths = torch.tensor([[0, 0], [0, 1], [1, 2], [0, 0]])
        >>> loss = build("himulcone", paths=True)(torch.randn(4, 2, 8), paths)
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(self, base="all", level_weights=None, paths=False, **flat_options):
        super().__init__(base, level_weights, "weighted_max", paths, **flat_options)
