r"""KMCL head (Sajedi, Khaki et al. 2023): per-class Gaussian kernels on the backbone feature.

The head turns a pooled backbone feature ``features`` ``[B, in_dim]`` into the inputs of
:class:`mlsupcon.losses.kmcl.KMCLLoss`:

* ``x`` ``[B, M]``: the feature the kernels :math:`\kappa_k(x) = \exp(-\tfrac12\sum_m
  (x_m-\mu_{km})^2/\sigma^2_{km})` are evaluated at. With ``reduce_dim=None`` it is ``features``
  itself (``M = in_dim``); with ``reduce_dim=M`` it is a learned linear map ``in_dim → M`` — the
  paper's 1×1 convolution on the pooled feature (the official code uses ``Conv1d(dim, 128, 1)``
  in the anisotropic mode), which keeps the per-class ``M``-dimensional means and variances of the
  anisotropic mode affordable. Everything below is computed from this ``x``.
* ``pi`` ``[B, K]``: the class logits (:math:`p = \sigma(\pi)`), a linear layer on ``x``.
* ``mu``: the class means, a linear layer on ``x``:

  - ``mode="isotropic"`` (default ``isotropic_mean="scalar"``): ``[B, K]``, one scalar per class, used
    in every dimension (the Gaussian of class k is :math:`\mathcal{N}(\mu_k\mathbf 1_M, \sigma^2_k I_M)`).
    This is the spec's "isotropic: scalars" and the official code's ``nn.Linear(in_features,
    out_classes)``; it is the reading under which the spec's isotropic distance
    :math:`M[\tfrac12\log\frac{\sigma^2_i+\sigma^2_j}{2\sigma_i\sigma_j} + \tfrac14\frac{(\mu_i-\mu_j)^2}
    {\sigma^2_i+\sigma^2_j}]` is exactly the Bhattacharyya distance.
    ``isotropic_mean="vector"`` gives ``[B, K, M]`` instead (a mean vector in the feature space, with
    one scalar variance per class); the losses then use the exact isotropic distance
    :math:`\tfrac M2\log\frac{\sigma^2_i+\sigma^2_j}{2\sigma_i\sigma_j} + \tfrac14
    \frac{\lVert\mu_i-\mu_j\rVert^2}{\sigma^2_i+\sigma^2_j}`.
  - ``mode="anisotropic"``: ``[B, K, M]``.
* ``sigma2``: the class variances, :math:`\sigma^2 = 2 + \mathrm{ELU}(v) + 10^{-7}` of a linear layer
  ``v`` on ``x`` (so every variance is ≥ 1 + 1e-7): ``[B, K]`` (isotropic) or ``[B, K, M]``
  (anisotropic).

The output is a :class:`KMCLHeadOutput` named tuple ``(x, pi, mu, sigma2)``, so
``loss_fn(*head(features), labels)`` calls the KMCL loss. :class:`KMCLClassifier` is the same
head as a classifier head (kind ``"kmcl"``): ``head(features)`` gives the logits π, which is all
prediction, thresholds and export need.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import ClassifierHead
from .registry import register_head

__all__ = ["KMCLHead", "KMCLHeadOutput", "KMCLClassifier"]


class KMCLHeadOutput(NamedTuple):
    """Output of :class:`KMCLHead`: ``x`` ``[B, M]``, ``pi`` ``[B, K]``, ``mu`` ``[B, K]`` or
    ``[B, K, M]``, ``sigma2`` ``[B, K]`` (isotropic) or ``[B, K, M]`` (anisotropic)."""

    x: torch.Tensor
    pi: torch.Tensor
    mu: torch.Tensor
    sigma2: torch.Tensor


class KMCLHead(nn.Module):
    """Maps pooled backbone features ``[B, in_dim]`` to ``KMCLHeadOutput(x, pi, mu, sigma2)``.

    Args:
        in_dim: dimension of the backbone feature.
        num_classes: K.
        mode: ``"isotropic"`` (one variance per class) or ``"anisotropic"`` (one per class and
            dimension).
        reduce_dim: M of a learned linear (1×1) reduction ``in_dim → M`` applied first; ``None``
            (default) uses the feature as it is (M = in_dim).
        isotropic_mean: ``"scalar"`` (default: one mean per class, as the spec and the official
            code) or ``"vector"`` (a mean vector per class) in the isotropic mode; the anisotropic
            mode always has mean vectors.

    Example:
        >>> import torch
        >>> head = KMCLHead(in_dim=16, num_classes=5, mode="anisotropic", reduce_dim=4)
        >>> out = head(torch.randn(3, 16))
        >>> [tuple(t.shape) for t in out]
        [(3, 4), (3, 5), (3, 5, 4), (3, 5, 4)]
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        mode: str = "isotropic",
        reduce_dim: Optional[int] = None,
        isotropic_mean: str = "scalar",
    ) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        if reduce_dim is not None and (
            isinstance(reduce_dim, bool) or not isinstance(reduce_dim, int) or reduce_dim < 1
        ):
            raise ValueError(f"reduce_dim: expected None or an int >= 1, got {reduce_dim!r}")
        if mode not in ("isotropic", "anisotropic"):
            raise ValueError(f"mode: expected 'isotropic' or 'anisotropic', got {mode!r}")
        if isotropic_mean not in ("scalar", "vector"):
            raise ValueError(f"isotropic_mean: expected 'scalar' or 'vector', got {isotropic_mean!r}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.mode = mode
        self.reduce_dim = reduce_dim
        self.isotropic_mean = isotropic_mean
        self.dim = reduce_dim if reduce_dim is not None else in_dim
        m, k = self.dim, num_classes
        self.reduce = nn.Linear(in_dim, m) if reduce_dim is not None else nn.Identity()
        self.mean_per_dim = mode == "anisotropic" or isotropic_mean == "vector"
        self.var_per_dim = mode == "anisotropic"
        self.pi = nn.Linear(m, k)
        self.mu = nn.Linear(m, k * m if self.mean_per_dim else k)
        self.var = nn.Linear(m, k * m if self.var_per_dim else k)

    def forward(self, features: torch.Tensor) -> KMCLHeadOutput:  # noqa: D102
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != self.in_dim:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features: expected a [B, {self.in_dim}] tensor, got {shape}")
        x = self.reduce(features)
        b, m, k = x.shape[0], self.dim, self.num_classes
        pi = self.pi(x)
        mu = self.mu(x)
        if self.mean_per_dim:
            mu = mu.view(b, k, m)
        v = self.var(x)
        if self.var_per_dim:
            v = v.view(b, k, m)
        sigma2 = 2.0 + F.elu(v) + 1e-7
        return KMCLHeadOutput(x, pi, mu, sigma2)

    def extra_repr(self) -> str:  # noqa: D102
        return (f"in_dim={self.in_dim}, num_classes={self.num_classes}, mode={self.mode!r}, "
                f"reduce_dim={self.reduce_dim}, isotropic_mean={self.isotropic_mean!r}")


@register_head
class KMCLClassifier(ClassifierHead):
    """A :class:`KMCLHead` as a classifier head (kind ``"kmcl"``): ``head(h)`` gives the logits π.

    The KMCL training step reads the whole :class:`KMCLHeadOutput` from ``head.kmcl(h)``;
    prediction and export only need π. The weights live in ``head.kmcl``.

    Args:
        in_dim, num_classes, mode, reduce_dim, isotropic_mean: those of :class:`KMCLHead`.

    Example:
        >>> import torch
        >>> head = KMCLClassifier(16, 5, mode="anisotropic", reduce_dim=4)
        >>> head(torch.randn(3, 16)).shape
        torch.Size([3, 5])
        >>> KMCLClassifier(**head.config()).kmcl.mode
        'anisotropic'
    """

    kind = "kmcl"
    input = "pooled"
    options = ("mode", "reduce_dim", "isotropic_mean")

    def __init__(self, in_dim: int, num_classes: int, mode: str = "isotropic", reduce_dim: Optional[int] = None,
                 isotropic_mean: str = "scalar") -> None:
        super().__init__()
        self.kmcl = KMCLHead(in_dim, num_classes, mode=mode, reduce_dim=reduce_dim, isotropic_mean=isotropic_mean)

    @property
    def num_labels(self) -> int:  # noqa: D102
        return self.kmcl.num_classes

    @classmethod
    def create(cls, encoder: nn.Module, num_labels: int, **options: Any) -> "KMCLClassifier":  # noqa: D102
        return cls(encoder.output_dim, num_labels, **options)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, in_dim]`` -> class logits π ``[B, K]``."""
        return self.kmcl(h).pi

    def config(self) -> dict[str, Any]:  # noqa: D102
        k = self.kmcl
        return {"in_dim": k.in_dim, "num_classes": k.num_classes, "mode": k.mode,
                "reduce_dim": k.reduce_dim, "isotropic_mean": k.isotropic_mean}
