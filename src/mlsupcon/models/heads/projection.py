"""The projection head of the contrastive loss (SupCon's MLP on the encoder features).

Example:
    >>> import torch
    >>> from mlsupcon.models import ProjectionHead
    >>> ProjectionHead(16, out_dim=8)(torch.randn(4, 16)).shape
    torch.Size([4, 8])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..base import check_positive_int

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """SupCon's projection MLP: Linear -> ReLU -> Linear.

    The output is not L2-normalised: the contrastive losses normalise (``normalize=True``).

    Args:
        in_dim: Encoder feature size.
        hidden_dim: Hidden size (default: ``in_dim``, as in SupCon).
        out_dim: Projection size (default 128, as in SupCon).

    Example:
        >>> import torch
        >>> ProjectionHead(32)(torch.randn(2, 32)).shape
        torch.Size([2, 128])
    """

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128) -> None:
        super().__init__()
        in_dim = check_positive_int(in_dim, "in_dim")
        hidden_dim = in_dim if hidden_dim is None else check_positive_int(hidden_dim, "hidden_dim")
        out_dim = check_positive_int(out_dim, "out_dim")
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[n, in_dim]`` (or ``[..., in_dim]``) -> ``[..., out_dim]``."""
        return self.net(h)

    def config(self) -> dict[str, Any]:
        """JSON options: ``ProjectionHead(**head.config())`` rebuilds it (without the weights)."""
        return {"in_dim": self.in_dim, "hidden_dim": self.hidden_dim, "out_dim": self.out_dim}
