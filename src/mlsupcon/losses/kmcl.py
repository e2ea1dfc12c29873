r"""KMCL losses (Sajedi, Khaki et al. 2023, "End-to-End Supervised Multilabel Contrastive Learning").

The contract is the KMCL section of ``docs/spec/LOSSES.md``. A head (see
:class:`mlsupcon.models.kmcl.KMCLHead`) maps a feature :math:`x_i \in \mathbb{R}^M` to, per class
:math:`k`, a logit :math:`\pi_{ik}` (:math:`p_{ik} = \sigma(\pi_{ik})`), a mean :math:`\mu_{ik}` and a
variance :math:`\sigma^2_{ik} > 0` of the Gaussian kernel of class :math:`k`.

Shapes (``B`` samples, ``K`` classes, ``M`` feature dimensions):

* ``x``: ``[B, M]`` — the feature the kernels are evaluated at (after the head's optional reduction).
* ``pi``: ``[B, K]`` logits; ``labels``: ``[B, K]`` multi-hot (bool, int or float holding 0/1).
* ``sigma2``: ``[B, K]`` (**isotropic**: one variance per class, the same in every dimension) or
  ``[B, K, M]`` (**anisotropic**: one variance per class and dimension).
* ``mu``: ``[B, K]`` (a scalar per class, used in every dimension: the class Gaussian is
  :math:`\mathcal{N}(\mu_{ik}\mathbf{1}_M, \cdot)`; this is what the spec's "isotropic: scalars"
  and the official code's isotropic head give) or ``[B, K, M]`` (a mean vector per class; the
  anisotropic head, or an isotropic head with ``isotropic_mean="vector"``).

Writing :math:`\mu_{ikm}` and :math:`\sigma^2_{ikm}` for the parameters broadcast to ``[B, K, M]``
(a ``[B, K]`` tensor is the same in every dimension), every formula is the spec's:

* kernel :math:`\log\kappa_k(x_i) = -\tfrac12\sum_m (x_{im}-\mu_{ikm})^2/\sigma^2_{ikm}`;
* reconstruction :math:`L_{rec} = -\frac1B\sum_i \log\frac{\sum_k y_{ik} p_{ik}\kappa_k(x_i)}
  {\sum_k p_{ik}\kappa_k(x_i)}`, evaluated in log space (log-sigmoid + log-kernel, log-sum-exp), so
  it is exact where the kernels underflow. **One choice made here:** a sample with no labels makes the
  spec's term :math:`-\log 0 = +\infty`; such a row adds 0 instead (it is still counted in the
  :math:`1/B`), mirroring the contrastive rule "anchors with empty A(i) add 0";
* Bhattacharyya distance, with the per-dimension term
  :math:`d_{ijkm} = \tfrac12\log\frac{\sigma^2_{ikm}+\sigma^2_{jkm}}{2\sigma_{ikm}\sigma_{jkm}}
  + \tfrac14\frac{(\mu_{ikm}-\mu_{jkm})^2}{\sigma^2_{ikm}+\sigma^2_{jkm}}`:

  - isotropic ``sigma2`` ``[B, K]``: :math:`D_{ijk} = \sum_m d_{ijkm}`. With scalar means this is
    literally the spec's :math:`M[\tfrac12\log\frac{\sigma^2_{ik}+\sigma^2_{jk}}{2\sigma_{ik}\sigma_{jk}}
    + \tfrac14\frac{(\mu_{ik}-\mu_{jk})^2}{\sigma^2_{ik}+\sigma^2_{jk}}]` (all M terms are equal), and
    it is the exact Bhattacharyya distance of :math:`\mathcal{N}(\mu_{ik}\mathbf 1, \sigma^2_{ik} I)`
    and :math:`\mathcal{N}(\mu_{jk}\mathbf 1, \sigma^2_{jk} I)`. With mean vectors it is the exact
    distance :math:`\tfrac M2\log\frac{\sigma^2_{ik}+\sigma^2_{jk}}{2\sigma_{ik}\sigma_{jk}}
    + \tfrac14\frac{\lVert\mu_{ik}-\mu_{jk}\rVert^2}{\sigma^2_{ik}+\sigma^2_{jk}}`;
  - anisotropic ``sigma2`` ``[B, K, M]``: :math:`D_{ijk} = M\sum_m d_{ijkm}` — the spec's
    ":math:`M[\dots]` summed over dimensions", as the official code computes it
    (``(M * 0.5 * log(...)).sum(2) + (M * 0.25 * ...).sum(2)``). With
    ``scale_anisotropic_by_dim=False`` the factor M is dropped, giving the exact Bhattacharyya
    distance :math:`\sum_m d_{ijkm}` of the two diagonal Gaussians.

* contrastive: :math:`\log s_{ijk} = e^{-D_{ijk}}/\tau` (computed directly: :math:`s` itself is never
  formed), :math:`A(i) = \{j \ne i : I_{ij} > 0\}`,
  :math:`L_{con} = \frac1B\sum_i -\frac{1}{|A(i)|}\sum_{j\in A(i)}\sum_{k\in y_i\cap y_j}
  \big[\log J_{ij} + \log s_{ijk} - \operatorname{logsumexp}_{a\ne i}\log s_{iak}\big]`,
  anchors with empty :math:`A(i)` add 0 (so a batch without shared labels, or ``B = 1``, gives an
  exact 0 still connected to ``mu`` and ``sigma2``). The sum over :math:`j, k` is done with
  :math:`\sum_{j\ne i}\sum_k y_{ik}y_{jk}\log J_{ij} = \sum_{j \in A(i)} I_{ij}\log J_{ij}` and
  :math:`\sum_{j\ne i} y_{ik}y_{jk} = y_{ik}(\sum_j y_{jk} - 1)`; nothing loops in Python over
  anchors, pairs or classes.

Memory and chunking. Unchunked, the contrastive term holds ``O(B²·K)`` entries (isotropic) or
``O(B²·K·M)`` (anisotropic). With ``chunk_size=c`` the anchors are processed ``c`` at a time and each
block is wrapped in :func:`torch.utils.checkpoint.checkpoint` (non-reentrant) when gradients are
needed: plain autograd would keep every block's intermediates (``B²·K·M`` in all again), whereas a
checkpointed block keeps only its inputs and its scalar output and is recomputed, one block at a
time, in the backward pass. Peak memory is then ``O(c·B·K)`` (isotropic) or ``O(c·B·K·M)``
(anisotropic), at the price of one extra forward pass of the contrastive term. ``chunk_size=None``
means: isotropic — unchunked; anisotropic — unchunked if ``B²·K·M`` is at most
:data:`AUTO_BLOCK_ELEMENTS`, else blocks of ``max(1, AUTO_BLOCK_ELEMENTS // (B·K·M))`` anchors.

Float16/bfloat16 inputs are computed in float32 (the result is float32); float64 stays float64.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mlsupcon.losses._validation import check_choice, check_finite, check_multi_hot
from mlsupcon.losses.asl import asymmetric_loss

__all__ = [
    "AUTO_BLOCK_ELEMENTS",
    "bhattacharyya_distance",
    "kmcl_log_kernel",
    "kmcl_reconstruction_loss",
    "kmcl_contrastive_loss",
    "KMCLReconstructionLoss",
    "KMCLContrastiveLoss",
    "KMCLLoss",
]

#: Largest number of ``[anchors, B, K, M]`` entries one anisotropic block may hold when
#: ``chunk_size=None`` (2**24 entries: 64 MiB per intermediate in float32).
AUTO_BLOCK_ELEMENTS = 2**24

_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        if t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _check_float(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")


def _check_temperature(temperature) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature: expected a finite number > 0, got {temperature!r}")


def _check_chunk_size(chunk_size) -> None:
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected None or an int >= 1, got {chunk_size!r}")


def _check_params(
    mu: torch.Tensor,
    sigma2: torch.Tensor,
    batch: Optional[int],
    classes: Optional[int],
    dim: Optional[int],
    mu_name: str = "mu",
    sigma2_name: str = "sigma2",
) -> tuple[int, int, Optional[int]]:
    """Check ``mu``/``sigma2`` ([B, K] or [B, K, M]); return (B, K, M or None if not determined)."""
    _check_float(mu, mu_name)
    _check_float(sigma2, sigma2_name)
    for t, name in ((mu, mu_name), (sigma2, sigma2_name)):
        if t.ndim not in (2, 3):
            raise ValueError(f"{name}: expected shape [B, K] or [B, K, M], got {tuple(t.shape)}")
    b, k = mu.shape[:2]
    if batch is not None and b != batch:
        raise ValueError(f"{mu_name}: has {b} rows but the batch has B = {batch} samples")
    if classes is not None and k != classes:
        raise ValueError(f"{mu_name}: has {k} classes but labels has K = {classes}")
    if tuple(sigma2.shape[:2]) != (b, k):
        raise ValueError(
            f"{sigma2_name}: expected leading shape {(b, k)} to match {mu_name}, got {tuple(sigma2.shape)}"
        )
    if b == 0:
        raise ValueError(f"{mu_name}: empty batch (B = 0)")
    if k == 0:
        raise ValueError(f"{mu_name}: expected K >= 1 classes, got shape {tuple(mu.shape)}")
    m = dim
    for t, name in ((mu, mu_name), (sigma2, sigma2_name)):
        if t.ndim == 3:
            if t.shape[2] == 0:
                raise ValueError(f"{name}: expected M >= 1 dimensions, got shape {tuple(t.shape)}")
            if m is not None and t.shape[2] != m:
                raise ValueError(
                    f"{name}: last dimension {t.shape[2]} does not match the feature dimension M = {m}"
                )
            m = t.shape[2]
    check_finite(mu, mu_name)
    check_finite(sigma2, sigma2_name)
    if not bool((sigma2 > 0).all()):
        raise ValueError(f"{sigma2_name}: expected all variances > 0, found {int((sigma2 <= 0).sum())} <= 0")
    return b, k, m


def _check_labels(labels, batch: int, classes: Optional[int]) -> int:
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels: expected a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 2:
        raise ValueError(f"labels: expected a multi-hot [B, K] tensor, got shape {tuple(labels.shape)}")
    if labels.shape[0] != batch:
        raise ValueError(f"labels: has {labels.shape[0]} rows but the batch has B = {batch} samples")
    if classes is not None and labels.shape[1] != classes:
        raise ValueError(f"labels: has {labels.shape[1]} classes, expected K = {classes}")
    check_multi_hot(labels, "labels")
    return labels.shape[1]


def _check_x(x, batch: Optional[int] = None) -> tuple[int, int]:
    _check_float(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x: expected a [B, M] tensor, got shape {tuple(x.shape)}")
    b, m = x.shape
    if b == 0:
        raise ValueError("x: empty batch (B = 0)")
    if m == 0:
        raise ValueError(f"x: expected M >= 1 dimensions, got shape {tuple(x.shape)}")
    if batch is not None and b != batch:
        raise ValueError(f"x: has {b} rows but the batch has B = {batch} samples")
    check_finite(x, "x")
    return b, m


# --------------------------------------------------------------------------------------------
# kernels and distances (no validation: internal, already in the compute dtype)
# --------------------------------------------------------------------------------------------


def _log_kernel(x: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """log κ_k(x_i) = -½ Σ_m (x_im - μ_ikm)² / σ²_ikm  → [B, K]."""
    m = x.shape[1]
    if mu.ndim == 2 and sigma2.ndim == 2:
        # Σ_m (x_m - μ)² = Σ_m (x_m - x̄)² + M (x̄ - μ)²: exact and free of cancellation.
        xbar = x.mean(dim=1, keepdim=True)  # [B, 1]
        spread = (x - xbar).square().sum(dim=1, keepdim=True)  # [B, 1]
        sq = spread + m * (xbar - mu).square()  # [B, K]
        return -0.5 * sq / sigma2
    diff = x.unsqueeze(1) - (mu if mu.ndim == 3 else mu.unsqueeze(-1))  # [B, K, M]
    if sigma2.ndim == 2:
        return -0.5 * diff.square().sum(dim=-1) / sigma2
    return -0.5 * (diff.square() / sigma2).sum(dim=-1)


def _pair_distance(
    mu_a: torch.Tensor,
    s2_a: torch.Tensor,
    mu_b: torch.Tensor,
    s2_b: torch.Tensor,
    dim: int,
    scale_anisotropic_by_dim: bool,
) -> torch.Tensor:
    """D[a, b, k] between the Gaussians of set a ([na, K(, M)]) and set b ([nb, K(, M)])."""
    if s2_a.ndim == 2:  # isotropic variances
        s = s2_a.unsqueeze(1) + s2_b.unsqueeze(0)  # [na, nb, K]
        log_a = s2_a.log()
        log_b = s2_b.log()
        # ½ log((σ²_a + σ²_b) / (2 σ_a σ_b)), the same in each of the M dimensions
        half_log = 0.5 * (s.log() - _LOG2 - 0.5 * log_a.unsqueeze(1) - 0.5 * log_b.unsqueeze(0))
        if mu_a.ndim == 2:
            sq = dim * (mu_a.unsqueeze(1) - mu_b.unsqueeze(0)).square()  # Σ_m over identical terms
        else:
            # ||μ_ak - μ_bk||² via a batched matmul, centred first (translation-invariant) so that
            # the expansion ||a||² + ||b||² - 2 a·b loses no precision to large means.
            centre = mu_b.detach().mean(dim=0, keepdim=True)
            ca = (mu_a - centre).transpose(0, 1)  # [K, na, M]
            cb = (mu_b - centre).transpose(0, 1)  # [K, nb, M]
            gram = torch.bmm(ca, cb.transpose(1, 2))  # [K, na, nb]
            sq = (ca.square().sum(-1).unsqueeze(2) + cb.square().sum(-1).unsqueeze(1) - 2 * gram)
            sq = sq.clamp_min(0).permute(1, 2, 0)  # [na, nb, K]
        return dim * half_log + 0.25 * sq / s
    # anisotropic variances [n, K, M]
    mu_a3 = mu_a if mu_a.ndim == 3 else mu_a.unsqueeze(-1)
    mu_b3 = mu_b if mu_b.ndim == 3 else mu_b.unsqueeze(-1)
    s = s2_a.unsqueeze(1) + s2_b.unsqueeze(0)  # [na, nb, K, M]
    diff = mu_a3.unsqueeze(1) - mu_b3.unsqueeze(0)  # [na, nb, K, M] (or [.., 1] if both scalar)
    per_dim = 0.5 * s.log() + 0.25 * diff.square() / s
    total = per_dim.sum(dim=-1)  # [na, nb, K]
    # separable part of ½ log(1 / (2 σ_a σ_b)) summed over m
    sep_a = 0.25 * s2_a.log().sum(dim=-1)  # [na, K]
    sep_b = 0.25 * s2_b.log().sum(dim=-1)  # [nb, K]
    d = total - (0.5 * _LOG2 * dim) - sep_a.unsqueeze(1) - sep_b.unsqueeze(0)
    return d * dim if scale_anisotropic_by_dim else d


def _contrastive_block(
    start: int,
    mu_blk: torch.Tensor,
    s2_blk: torch.Tensor,
    mu: torch.Tensor,
    sigma2: torch.Tensor,
    y_blk: torch.Tensor,
    y: torch.Tensor,
    pos_count_blk: torch.Tensor,
    log_jac_blk: torch.Tensor,
    inv_card_blk: torch.Tensor,
    dim: int,
    temperature: float,
    scale_anisotropic_by_dim: bool,
) -> torch.Tensor:
    """Σ over anchors start..start+c of L_i (without the 1/B)."""
    c, b = mu_blk.shape[0], mu.shape[0]
    dist = _pair_distance(mu_blk, s2_blk, mu, sigma2, dim, scale_anisotropic_by_dim)  # [c, B, K]
    log_s = torch.exp(-dist) / temperature  # log s_iak, in (0, 1/τ]
    rows = torch.arange(start, start + c, device=mu.device)
    self_mask = (rows.unsqueeze(1) == torch.arange(b, device=mu.device).unsqueeze(0)).unsqueeze(-1)
    log_den = torch.logsumexp(log_s.masked_fill(self_mask, float("-inf")), dim=1)  # [c, K]
    # Σ_{j≠i} Σ_k y_ik y_jk log s_ijk
    pos = (log_s.masked_fill(self_mask, 0.0) * y.unsqueeze(0)).sum(dim=1)  # [c, K]
    num = (pos * y_blk).sum(dim=1)  # [c]
    den = (pos_count_blk * log_den).sum(dim=1)  # [c]
    per_anchor = -(num + log_jac_blk - den) * inv_card_blk
    return per_anchor.sum()


def bhattacharyya_distance(
    mu1: torch.Tensor,
    sigma2_1: torch.Tensor,
    mu2: Optional[torch.Tensor] = None,
    sigma2_2: Optional[torch.Tensor] = None,
    *,
    dim: Optional[int] = None,
    scale_anisotropic_by_dim: bool = True,
) -> torch.Tensor:
    r"""Pairwise per-class KMCL Bhattacharyya distances ``D[a, b, k]`` (see the module docstring).

    Args:
        mu1, sigma2_1: ``[N1, K]`` or ``[N1, K, M]`` means and variances (> 0) of the first set.
        mu2, sigma2_2: the second set (``[N2, K(, M)]``, the same variance mode); default: the first.
        dim: the feature dimension M; required when every mean and variance is ``[N, K]`` (M can
            then not be read from a shape), otherwise checked against the shapes.
        scale_anisotropic_by_dim: multiply the anisotropic distance by M, as the spec's
            ":math:`M[\dots]` summed over dimensions" and the official code do (default); ``False``
            gives the exact Bhattacharyya distance of the diagonal Gaussians.

    Returns:
        ``[N1, N2, K]`` distances (float32 at least).

    Example:
        >>> import torch
        >>> mu = torch.tensor([[0.0], [1.0]]); s2 = torch.ones(2, 1)
        >>> bhattacharyya_distance(mu, s2, dim=4)[0, 1, 0]   # M · ¼ (0 - 1)² / 2
        tensor(0.5000)
    """
    if (mu2 is None) != (sigma2_2 is None):
        raise ValueError("mu2/sigma2_2: give both or neither")
    _, k, m = _check_params(mu1, sigma2_1, None, None, dim, "mu1", "sigma2_1")
    if mu2 is None:
        mu2, sigma2_2 = mu1, sigma2_1
    else:
        _, _, m = _check_params(mu2, sigma2_2, None, k, m, "mu2", "sigma2_2")
        if sigma2_2.ndim != sigma2_1.ndim:
            raise ValueError(
                f"sigma2_2: expected the same variance mode as sigma2_1 ({sigma2_1.ndim}-D), "
                f"got shape {tuple(sigma2_2.shape)}"
            )
        if mu2.ndim != mu1.ndim:
            raise ValueError(
                f"mu2: expected the same mean mode as mu1 ({mu1.ndim}-D), got shape {tuple(mu2.shape)}"
            )
    if m is None:
        raise ValueError("dim: the feature dimension M is required when mu and sigma2 are both [N, K]")
    dtype = _compute_dtype(mu1, sigma2_1, mu2, sigma2_2)
    return _pair_distance(
        mu1.to(dtype), sigma2_1.to(dtype), mu2.to(dtype), sigma2_2.to(dtype), m,
        scale_anisotropic_by_dim,
    )


def kmcl_log_kernel(x: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    r"""``log κ_k(x_i) = -½ Σ_m (x_im - μ_ikm)² / σ²_ikm`` as a ``[B, K]`` tensor (float32 at least)."""
    b, m = _check_x(x)
    _check_params(mu, sigma2, b, None, m)
    dtype = _compute_dtype(x, mu, sigma2)
    return _log_kernel(x.to(dtype), mu.to(dtype), sigma2.to(dtype))


def kmcl_reconstruction_loss(
    x: torch.Tensor,
    pi: torch.Tensor,
    mu: torch.Tensor,
    sigma2: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    r"""KMCL reconstruction loss :math:`L_{rec}` (see the module docstring for shapes).

    :math:`L_{rec} = -\frac1B\sum_i \log\frac{\sum_k y_{ik}\,p_{ik}\,\kappa_k(x_i)}{\sum_k p_{ik}\,\kappa_k(x_i)}`
    with :math:`p = \sigma(\pi)`, computed in log space. Samples with no labels add 0.

    Args:
        x: ``[B, M]`` features the kernels are evaluated at.
        pi: ``[B, K]`` logits.
        mu: ``[B, K]`` or ``[B, K, M]`` means.
        sigma2: ``[B, K]`` or ``[B, K, M]`` variances, all > 0.
        labels: ``[B, K]`` multi-hot.

    Returns:
        A scalar tensor (float32 at least).

    Example:
        >>> import torch
        >>> x = torch.zeros(2, 3); pi = torch.zeros(2, 2)
        >>> mu = torch.zeros(2, 2); s2 = torch.ones(2, 2)
        >>> y = torch.tensor([[1, 0], [1, 1]])
        >>> kmcl_reconstruction_loss(x, pi, mu, s2, y)   # (log 2 + 0) / 2
        tensor(0.3466)
    """
    b, m = _check_x(x)
    _check_float(pi, "pi")
    if pi.ndim != 2 or pi.shape[0] != b:
        raise ValueError(f"pi: expected a [B, K] tensor with B = {b}, got shape {tuple(pi.shape)}")
    k = pi.shape[1]
    check_finite(pi, "pi")
    _check_labels(labels, b, k)
    _check_params(mu, sigma2, b, k, m)
    dtype = _compute_dtype(x, pi, mu, sigma2)
    x, pi, mu, sigma2 = x.to(dtype), pi.to(dtype), mu.to(dtype), sigma2.to(dtype)
    y = labels.to(torch.bool)
    a = torch.nn.functional.logsigmoid(pi) + _log_kernel(x, mu, sigma2)  # log p_ik κ_k(x_i)
    has = y.any(dim=1, keepdim=True)  # [B, 1]
    # rows without labels use the full row (finite, discarded below) so no -inf reaches autograd
    log_num = torch.logsumexp(a.masked_fill(~y & has, float("-inf")), dim=1)
    log_den = torch.logsumexp(a, dim=1)
    per_sample = torch.where(has.squeeze(1), log_den - log_num, torch.zeros_like(log_den))
    return per_sample.sum() / b


def kmcl_contrastive_loss(
    mu: torch.Tensor,
    sigma2: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.17,
    chunk_size: Optional[int] = None,
    *,
    dim: Optional[int] = None,
    scale_anisotropic_by_dim: bool = True,
) -> torch.Tensor:
    r"""KMCL Bhattacharyya-kernel contrastive loss :math:`L_{con}` (see the module docstring).

    Args:
        mu: ``[B, K]`` or ``[B, K, M]`` means.
        sigma2: ``[B, K]`` (isotropic) or ``[B, K, M]`` (anisotropic) variances, all > 0.
        labels: ``[B, K]`` multi-hot.
        temperature: τ > 0 (default 0.17, the paper's).
        chunk_size: anchors per block; ``None`` = automatic (see the module docstring). Blocks are
            checkpointed when gradients are needed, so peak memory is O(chunk·B·K(·M)).
        dim: the feature dimension M; required when ``mu`` and ``sigma2`` are both ``[B, K]``.
        scale_anisotropic_by_dim: keep the spec's factor M in the anisotropic distance (default);
            ``False`` uses the exact Bhattacharyya distance of the diagonal Gaussians.

    Returns:
        A scalar tensor (float32 at least); an exact 0 connected to ``mu`` and ``sigma2`` when no
        anchor has a sample sharing a label.

    Example:
        >>> import torch
        >>> mu = torch.tensor([[0.0, 1.0], [0.5, 1.0]]); s2 = torch.ones(2, 2)
        >>> y = torch.tensor([[1, 0], [1, 0]])
        >>> float(kmcl_contrastive_loss(mu, s2, y, dim=8))   # J = 1 and one candidate per anchor
        0.0
    """
    _check_temperature(temperature)
    _check_chunk_size(chunk_size)
    b, k, m = _check_params(mu, sigma2, None, None, dim)
    _check_labels(labels, b, k)
    if m is None:
        raise ValueError("dim: the feature dimension M is required when mu and sigma2 are both [B, K]")
    dtype = _compute_dtype(mu, sigma2)
    mu, sigma2 = mu.to(dtype), sigma2.to(dtype)
    zero = (mu.sum() + sigma2.sum()) * 0.0
    if b == 1:
        return zero

    y = labels.to(dtype)
    inter = y @ y.T  # I_ij
    n = y.sum(dim=1)
    union = n.unsqueeze(1) + n.unsqueeze(0) - inter
    eye = torch.eye(b, dtype=torch.bool, device=y.device)
    in_a = (inter > 0) & ~eye  # j ∈ A(i)
    card = in_a.sum(dim=1)  # |A(i)|
    if not bool((card > 0).any()):
        return zero
    # Σ_{j∈A(i)} I_ij log J_ij  (J_ij = I_ij / U_ij > 0 on A(i))
    safe_j = torch.where(in_a, inter / union.clamp_min(1), torch.ones_like(inter))
    log_jac = (inter * safe_j.log() * in_a).sum(dim=1)  # [B]
    inv_card = torch.where(card > 0, 1.0 / card.clamp_min(1).to(dtype), torch.zeros_like(n))
    # Σ_{j≠i} y_ik y_jk = y_ik (Σ_j y_jk - 1): the multiplicity of the denominator of class k
    pos_count = y * (y.sum(dim=0, keepdim=True) - 1)  # [B, K]

    per_entry = k * (m if sigma2.ndim == 3 else 1)
    if chunk_size is None:
        if sigma2.ndim == 3 and b * b * per_entry > AUTO_BLOCK_ELEMENTS:
            chunk_size = max(1, AUTO_BLOCK_ELEMENTS // (b * per_entry))
        else:
            chunk_size = b
    chunk_size = min(chunk_size, b)
    use_ckpt = chunk_size < b and torch.is_grad_enabled() and (mu.requires_grad or sigma2.requires_grad)

    total = zero
    for start in range(0, b, chunk_size):  # loop over blocks of anchors, not over anchors
        stop = min(start + chunk_size, b)
        args = (
            start, mu[start:stop], sigma2[start:stop], mu, sigma2, y[start:stop], y,
            pos_count[start:stop], log_jac[start:stop], inv_card[start:stop],
            m, float(temperature), scale_anisotropic_by_dim,
        )
        if use_ckpt:
            part = checkpoint(_contrastive_block, *args, use_reentrant=False)
        else:
            part = _contrastive_block(*args)
        total = total + part
    return total / b


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------


class KMCLReconstructionLoss(nn.Module):
    """Module form of :func:`kmcl_reconstruction_loss`; called as ``loss(x, pi, mu, sigma2, labels)``."""

    def forward(self, x, pi, mu, sigma2, labels):  # noqa: D102
        return kmcl_reconstruction_loss(x, pi, mu, sigma2, labels)


class KMCLContrastiveLoss(nn.Module):
    """Module form of :func:`kmcl_contrastive_loss`; called as ``loss(mu, sigma2, labels, dim=None)``."""

    def __init__(
        self,
        temperature: float = 0.17,
        chunk_size: Optional[int] = None,
        scale_anisotropic_by_dim: bool = True,
    ) -> None:
        super().__init__()
        _check_temperature(temperature)
        _check_chunk_size(chunk_size)
        self.temperature = temperature
        self.chunk_size = chunk_size
        self.scale_anisotropic_by_dim = scale_anisotropic_by_dim

    def forward(self, mu, sigma2, labels, dim: Optional[int] = None):  # noqa: D102
        return kmcl_contrastive_loss(
            mu, sigma2, labels, self.temperature, self.chunk_size, dim=dim,
            scale_anisotropic_by_dim=self.scale_anisotropic_by_dim,
        )


class KMCLLoss(nn.Module):
    r"""The KMCL objective: ``weight_asl·L_ASL(π) + weight_rec·L_rec + weight_con·L_con``.

    Called as ``loss_fn(x, pi, mu, sigma2, labels)`` — or ``loss_fn(*head(features), labels)`` with
    a :class:`mlsupcon.models.kmcl.KMCLHead` — and returns the weighted total; with
    ``return_terms=True`` it returns ``(total, {"asl": ..., "rec": ..., "con": ...})`` (the
    unweighted terms, still attached to the graph). The last call's terms are also kept, detached,
    in :attr:`last_terms` for logging.

    Args:
        temperature: τ of the contrastive term (default 0.17).
        weight_asl, weight_rec, weight_con: term weights (default 1 each, the paper's sum).
        gamma_pos, gamma_neg, clip, eps, detach_focal: options of
            :func:`mlsupcon.losses.asl.asymmetric_loss`.
        asl_reduction: ``"sum"`` (default, the paper) or ``"mean"``.
        chunk_size: anchors per block in the contrastive term (``None`` = automatic).
        scale_anisotropic_by_dim: keep the spec's factor M in the anisotropic distance (default).

    Example:
        >>> import torch
        >>> from mlsupcon.models.kmcl import KMCLHead
        >>> head = KMCLHead(in_dim=8, num_classes=3)
        >>> loss_fn = KMCLLoss()
        >>> y = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1]])
        >>> total, terms = loss_fn(*head(torch.randn(3, 8)), y, return_terms=True)
        >>> sorted(terms)
        ['asl', 'con', 'rec']
    """

    def __init__(
        self,
        temperature: float = 0.17,
        weight_asl: float = 1.0,
        weight_rec: float = 1.0,
        weight_con: float = 1.0,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        detach_focal: bool = False,
        asl_reduction: str = "sum",
        chunk_size: Optional[int] = None,
        scale_anisotropic_by_dim: bool = True,
    ) -> None:
        super().__init__()
        _check_temperature(temperature)
        _check_chunk_size(chunk_size)
        check_choice(asl_reduction, "asl_reduction", ("sum", "mean"))
        for name, w in (("weight_asl", weight_asl), ("weight_rec", weight_rec), ("weight_con", weight_con)):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {w!r}")
        self.temperature = temperature
        self.weight_asl, self.weight_rec, self.weight_con = weight_asl, weight_rec, weight_con
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = gamma_pos, gamma_neg, clip, eps
        self.detach_focal = detach_focal
        self.asl_reduction = asl_reduction
        self.chunk_size = chunk_size
        self.scale_anisotropic_by_dim = scale_anisotropic_by_dim
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, x, pi, mu, sigma2, labels, return_terms: bool = False):  # noqa: D102
        b, m = _check_x(x)
        _, k, _ = _check_params(mu, sigma2, b, None, m)
        _check_labels(labels, b, k)
        l_asl = asymmetric_loss(
            pi, labels, gamma_pos=self.gamma_pos, gamma_neg=self.gamma_neg, clip=self.clip,
            eps=self.eps, reduction=self.asl_reduction, detach_focal=self.detach_focal,
        )
        l_rec = kmcl_reconstruction_loss(x, pi, mu, sigma2, labels)
        l_con = kmcl_contrastive_loss(
            mu, sigma2, labels, self.temperature, self.chunk_size, dim=m,
            scale_anisotropic_by_dim=self.scale_anisotropic_by_dim,
        )
        dtype = _compute_dtype(x, pi, mu, sigma2)
        l_asl = l_asl.to(dtype)
        total = self.weight_asl * l_asl + self.weight_rec * l_rec + self.weight_con * l_con
        terms = {"asl": l_asl, "rec": l_rec, "con": l_con}
        self.last_terms = {name: t.detach() for name, t in terms.items()}
        return (total, terms) if return_terms else total
