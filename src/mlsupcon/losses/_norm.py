"""Overflow-safe row norms: every loss that L2-normalises embeddings goes through here.

``F.normalize`` and ``Tensor.norm`` square the entries, so in float32 a row of scale ~1e19
has an infinite norm (the loss then saw zero vectors) and a row of scale ~1e-30 a zero norm
(``F.normalize`` then divided by its ``eps``). Dividing each row by its largest absolute entry
first keeps the squares in [0, 1], as LAPACK's ``nrm2`` does. That costs a division per entry and
its backward (~7% of a B = 256 flat loss on CPU), so it is only done when some row needs it: one
``amax`` per row (no autograd) and one host sync (the losses already sync to check that the
features are finite) decide, and rows whose largest entry lies in [2^-36, 2^50] (or is 0) take the
plain formula, bit for bit the former one.

The scale is detached: ``z / ‖z‖`` is invariant to it and ``m · ‖z / m‖`` is linear in it, so
the gradient with the scale held fixed is the exact gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# A row whose largest |entry| m lies in [2^-36, 2^50] has squares that neither overflow (D · m² stays
# below the float32 maximum for D up to 2^27) nor lose the norm to underflow, and a norm ≥ m above
# F.normalize's eps = 1e-12: the plain formula is exact there.
_PLAIN_MIN = 2.0**-36
_PLAIN_MAX = 2.0**50


def _plain_is_safe(scale: torch.Tensor) -> bool:
    return bool((((scale >= _PLAIN_MIN) & (scale <= _PLAIN_MAX)) | (scale == 0)).all())


def _max_abs(z: torch.Tensor, dim: int) -> torch.Tensor:
    return z.detach().abs().amax(dim=dim, keepdim=True)


def l2_normalize(z: torch.Tensor, dim: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """``z / ‖z‖`` along ``dim`` without overflow or underflow of the squared norm.

    An all-zero row stays zero (as ``F.normalize``).

    Example:
        >>> import torch
        >>> l2_normalize(torch.tensor([[3e30, 4e30], [3e-30, -4e-30], [0.0, 0.0]]))
        tensor([[ 0.6000,  0.8000],
                [ 0.6000, -0.8000],
                [ 0.0000,  0.0000]])
    """
    if z.shape[dim] == 0 or _plain_is_safe(scale := _max_abs(z, dim)):
        return F.normalize(z, dim=dim, eps=eps)
    u = z / torch.where(scale > 0, scale, torch.ones_like(scale))
    # every non-zero row of u has norm in [1, sqrt(D)], so eps only guards the zero rows
    return u / torch.linalg.vector_norm(u, dim=dim, keepdim=True).clamp_min(eps)


def row_norm(z: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``‖z‖`` along ``dim`` (the dimension removed) without overflow or underflow of the squares.

    Example:
        >>> import torch
        >>> row_norm(torch.tensor([[3e30, 4e30], [3e-30, 4e-30]]))
        tensor([5.0000e+30, 5.0000e-30])
    """
    if z.shape[dim] == 0 or _plain_is_safe(scale := _max_abs(z, dim)):
        return torch.linalg.vector_norm(z, dim=dim)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (scale * torch.linalg.vector_norm(z / scale, dim=dim, keepdim=True)).squeeze(dim)
