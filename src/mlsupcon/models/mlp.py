"""MLP encoder for fixed-size feature vectors (e.g. the yeast data set, 103 features).

Example:
    >>> import numpy as np
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("mlp", in_dim=103)
    >>> enc(enc.preprocess(np.zeros((3, 103), dtype=np.float32))).shape
    torch.Size([3, 256])
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .base import Encoder, check_positive_int, check_prob
from .factory import register_encoder

__all__ = ["MLPEncoder"]


@register_encoder
class MLPEncoder(Encoder):
    """Stack of ``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]`` blocks.

    The default widths 256-512-256 are MulSupCon's yeast MLP (103 -> 256 -> 512 -> 256).

    Args:
        in_dim: Number of input features (required).
        hidden_dims: Output width of each block; the last one is ``output_dim``.
        dropout: Dropout after each activation (default 0).
        batchnorm: Insert BatchNorm1d before each activation (default False).
        final_activation: Apply ReLU (and dropout) after the last block too (default True,
            so features are non-negative like pooled CNN features); False leaves the last
            layer linear.

    Raises:
        ValueError: For a missing/invalid ``in_dim`` or ``hidden_dims``.

    Example:
        >>> enc = MLPEncoder(in_dim=4, hidden_dims=(8, 6), dropout=0.1, batchnorm=True)
        >>> enc.output_dim
        6
    """

    name = "mlp"
    modality = "vector"
    input_keys = ("x",)

    def __init__(
        self,
        in_dim: int | None = None,
        hidden_dims: Sequence[int] = (256, 512, 256),
        dropout: float = 0.0,
        batchnorm: bool = False,
        final_activation: bool = True,
    ) -> None:
        super().__init__()
        if in_dim is None:
            raise ValueError("mlp encoder requires in_dim (number of input features)")
        self.in_dim = check_positive_int(in_dim, "in_dim")
        if isinstance(hidden_dims, (int, np.integer)):
            hidden_dims = (int(hidden_dims),)
        try:
            dims = [check_positive_int(d, "hidden_dims") for d in hidden_dims]
        except TypeError:
            raise ValueError(f"hidden_dims must be a sequence of positive ints, got {hidden_dims!r}") from None
        if not dims:
            raise ValueError("hidden_dims must contain at least one width")
        self.hidden_dims = tuple(dims)
        self.dropout = check_prob(dropout, "dropout")
        self.batchnorm = bool(batchnorm)
        self.final_activation = bool(final_activation)
        layers: list[nn.Module] = []
        prev = self.in_dim
        for i, d in enumerate(dims):
            layers.append(nn.Linear(prev, d))
            last = i == len(dims) - 1
            if not last or self.final_activation:
                if self.batchnorm:
                    layers.append(nn.BatchNorm1d(d))
                layers.append(nn.ReLU(inplace=True))
                if self.dropout > 0:
                    layers.append(nn.Dropout(self.dropout))
            prev = d
        self.net = nn.Sequential(*layers)
        self.output_dim = dims[-1]

    def preprocess(self, raw: Any) -> dict[str, torch.Tensor]:
        """``[n, in_dim]`` array-like (numpy, tensor, nested lists) -> ``{"x": float32 [n, in_dim]}``.

        A single vector ``[in_dim]`` becomes a batch of one.
        """
        x = torch.as_tensor(np.asarray(raw, dtype=np.float32)) if not isinstance(raw, torch.Tensor) else raw.float()
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"mlp encoder expects inputs [n, {self.in_dim}], got {tuple(x.shape)}")
        return {"x": x.contiguous()}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{"x": [n, in_dim]}`` -> ``[n, output_dim]``."""
        batch = self._batch_to_device(batch)
        return self.net(batch["x"].to(self.net[0].weight.dtype))

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in_dim": self.in_dim,
            "hidden_dims": list(self.hidden_dims),
            "dropout": self.dropout,
            "batchnorm": self.batchnorm,
            "final_activation": self.final_activation,
        }
