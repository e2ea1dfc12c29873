r"""KMCL losses (Sajedi, Khaki et al. 2023, "End-to-End Supervised Multilabel Contrastive Learning").

The contract is the KMCL section of ``docs/spec/LOSSES.md``. A head (see
:class:`mlsupcon.models.heads.kmcl.KMCLHead`) maps a feature :math:`x_i \in \mathbb{R}^M` to, per class
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

Gradient and memory. The contrastive term is a fused :class:`torch.autograd.Function`: the loss is a
scalar, so while each block of ``c`` anchors computes its share of :math:`L_{con}` it also computes
its share of :math:`\partial L_{con}/\partial\mu` and :math:`\partial L_{con}/\partial\sigma^2` in
closed form (the derivation is written next to the code in ``_fused_block``); backward only scales
those by the incoming gradient. So nothing pairwise is kept for backward, chunked or not, there is
no recomputation, and the block buffers are allocated once per call and reused by every block.
Peak memory is ``O(c·B·K)`` (isotropic) or ``O(c·B·K·M)`` (anisotropic) plus the gradient buffers
(the size of ``mu`` and ``sigma2``). The price: the gradient work is done whenever an input requires
grad, even if backward is never called, and the term is not twice differentiable.
``chunk_size=None`` picks ``c = max(1, AUTO_BLOCK_PAIRS // (B·K))`` (isotropic) or
``max(1, AUTO_BLOCK_ELEMENTS // (B·K·M))`` (anisotropic), capped at ``B``: small blocks measured
fastest on CPU, where first-touching large buffers dominates; on a GPU a larger explicit
``chunk_size`` (or ``B``) launches fewer kernels.

Float16/bfloat16 inputs are computed in float32 (the result is float32); float64 stays float64.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from mlsupcon.losses._validation import (
    check_bool,
    check_choice,
    check_chunk_size,
    check_finite,
    check_multi_hot,
    check_number,
    check_positive,
)
from mlsupcon.losses.asl import asymmetric_loss, check_asl_options
from mlsupcon.losses.relations import to_dense_multi_hot

__all__ = [
    "AUTO_BLOCK_ELEMENTS",
    "AUTO_BLOCK_PAIRS",
    "bhattacharyya_distance",
    "kmcl_log_kernel",
    "kmcl_reconstruction_loss",
    "kmcl_contrastive_loss",
    "KMCLReconstructionLoss",
    "KMCLContrastiveLoss",
    "KMCLLoss",
]

#: Largest number of ``[anchors, B, K, M]`` entries of one anisotropic block buffer when
#: ``chunk_size=None`` (2**24 entries: 64 MiB per buffer in float32, five buffers).
AUTO_BLOCK_ELEMENTS = 2**24
#: Largest number of ``[anchors, B, K]`` entries of one isotropic block buffer when
#: ``chunk_size=None`` (2**20 entries: 4 MiB per buffer in float32, six buffers).
AUTO_BLOCK_PAIRS = 2**20

_LOG2 = math.log(2.0)
# up to this 1/τ the denominators Σ exp(log s) are summed directly (no max shift): log s ∈ (0, 1/τ],
# so each term lies in [1, e^{1/τ}] and B·e^{50} is far from the float32 limit
_DIRECT_EXP_MAX = 50.0


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        if t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


# float32 holds every square, product and quotient the KMCL formulas form (‖x − μ‖²/σ², its
# derivatives ~Δ²/σ⁴, (Δμ)²/(σ²_i + σ²_j), ...) as long as |x|, |μ| ≤ 2^24 and 2^-24 ≤ σ² ≤ 2^100; a
# KMCL head gives σ² = 2 + ELU(·) + 1e-7 ≥ 1 and moderate means, so training stays in float32.
# Outside that range the terms are computed in float64, which holds any such expression of float32
# numbers (≤ (2^128)² / 2^-149), and cast back: a value that fits in float32 is then returned
# exactly instead of as NaN (a σ² of 1e-40 made 1/(σ²_i + σ²_j) inf and 0·inf NaN; a μ of 1e19
# overflowed (x − μ)² and gave inf − inf).
_SAFE_ABS = 2.0**24
_SAFE_VAR_MIN = 2.0**-24
_SAFE_VAR_MAX = 2.0**100


def _range_dtype(dtype: torch.dtype, values: tuple[torch.Tensor, ...], sigma2: torch.Tensor) -> torch.dtype:
    """``dtype``, or float64 when float32 ``dtype`` cannot hold the intermediate terms (see above)."""
    if dtype != torch.float32:
        return dtype
    stats = [t.detach().abs().amax().float() for t in values]
    stats += [-sigma2.detach().amin().float(), sigma2.detach().amax().float()]
    limits = torch.tensor([_SAFE_ABS] * len(values) + [-_SAFE_VAR_MIN, _SAFE_VAR_MAX], device=sigma2.device)
    return dtype if bool((torch.stack(stats) <= limits).all()) else torch.float64


def _check_float(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")


def _check_temperature(temperature) -> None:
    check_positive(temperature, "temperature")



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


def _check_labels(labels, batch: int, classes: Optional[int]) -> torch.Tensor:
    """Validated ``[B, K]`` multi-hot labels, dense (a sparse matrix has the size of ``pi``)."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels: expected a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 2:
        raise ValueError(f"labels: expected a multi-hot [B, K] tensor, got shape {tuple(labels.shape)}")
    if labels.shape[0] != batch:
        raise ValueError(f"labels: has {labels.shape[0]} rows but the batch has B = {batch} samples")
    if classes is not None and labels.shape[1] != classes:
        raise ValueError(f"labels: has {labels.shape[1]} classes, expected K = {classes}")
    labels = to_dense_multi_hot(labels)
    check_multi_hot(labels, "labels")
    return labels


def _check_pi(pi, batch: int, classes: int) -> None:
    _check_float(pi, "pi")
    if tuple(pi.shape) != (batch, classes):
        raise ValueError(
            f"pi: expected logits of shape {(batch, classes)} to match labels [B, K], "
            f"got {tuple(pi.shape)}"
        )
    check_finite(pi, "pi")


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


class _Ctx:
    """Per-call state of the fused contrastive pass: inputs, per-sample terms computed once,
    reusable block buffers and gradient accumulators."""

    def __init__(self, mu, sigma2, y, log_jac, inv_card, pos_count, dim, temperature, scale, chunk,
                 need):
        self.mu, self.sigma2, self.y = mu, sigma2, y
        self.log_jac, self.inv_card, self.pos_count = log_jac, inv_card, pos_count
        self.dim, self.temperature, self.scale, self.need = dim, temperature, scale, need
        self.aniso = sigma2.ndim == 3
        self.vector_mean = mu.ndim == 3
        self.direct = 1.0 / temperature <= _DIRECT_EXP_MAX
        b, k = mu.shape[:2]
        self.grad_mu = torch.zeros_like(mu) if need else None
        self.grad_s2 = torch.zeros_like(sigma2) if need else None
        # Σ over the blocks of Σ_a G_iak (anchor side) + Σ_i G_iak (sample side): the separable
        # −¼/σ² part of ∂D/∂σ², applied once at the end
        self.g_sep = sigma2.new_zeros(b, k) if need else None
        pair = chunk * b * k  # entries of one [chunk, B, K] block
        self._bufs: dict[str, torch.Tensor] = {}
        self._pair = pair
        if not self.aniso:
            self.log_s2 = sigma2.log()
            if self.vector_mean:
                # translation invariance: centre the means so ||a||² + ||b||² − 2a·b keeps precision
                self.centred = (mu - mu.mean(dim=0, keepdim=True)).transpose(0, 1).contiguous()  # [K,B,M]
                self.sq_norm = self.centred.square().sum(-1)  # [K, B]
                if need:
                    self.v_sum = sigma2.new_zeros(b, k)  # Σ_i V_iak
                    self.v_mu = mu.new_zeros(k, b, mu.shape[2])  # Σ_i V_iak (μ_ik − centre)
        else:
            m = sigma2.shape[2]
            self.sep = 0.25 * sigma2.log().sum(dim=-1)  # ¼ Σ_m log σ²   [B, K]
            # block buffers, allocated once and reused by every block (no allocator churn)
            shape = (chunk, b, k, m)
            self.buf_s = sigma2.new_empty(shape)
            self.buf_r = sigma2.new_empty(shape)
            self.buf_d = mu.new_empty(shape if self.vector_mean else (chunk, b, k, 1))
            if need:
                self.buf_t = sigma2.new_empty(shape)
                self.buf_acc = sigma2.new_empty((b, k, m))

    def buf(self, name: str, shape) -> torch.Tensor:
        """A contiguous ``shape`` view of the reusable flat buffer ``name`` (allocated once per call)."""
        n = math.prod(shape)
        flat = self._bufs.get(name)
        if flat is None or flat.numel() < n:
            flat = self.sigma2.new_empty(max(n, self._pair))
            self._bufs[name] = flat
        return flat[:n].view(shape)

    def finish(self):
        """Apply the terms accumulated over the blocks to the gradients."""
        b = self.mu.shape[0]
        if self.aniso:
            self.grad_s2.sub_(0.25 * self.g_sep.unsqueeze(-1) / self.sigma2)
        else:
            self.grad_s2.sub_((0.25 * self.dim) * self.g_sep / self.sigma2)
            if self.vector_mean:
                centred = self.centred.transpose(0, 1)  # [B, K, M]
                self.grad_mu.add_(centred * self.v_sum.unsqueeze(-1)).sub_(self.v_mu.transpose(0, 1))
        return b


def _fused_block(start: int, stop: int, st: _Ctx) -> torch.Tensor:
    """Σ_{i in start..stop} L_i, and (when ``st.need``) its gradient / B accumulated into ``st``.

    With G_iak = ∂(Σ_i L_i / B)/∂D_iak = (1/(B|A(i)|)) · log s_iak · (y_ik y_ak [a≠i] − c_ik P_iak),
    where P_iak = softmax over a ≠ i of log s_iak and c_ik = y_ik (Σ_j y_jk − 1), the gradients with
    respect to the means and variances follow from the closed-form derivatives of D (written next
    to each step of :func:`_isotropic_gradients` and :func:`_anisotropic_gradients`).
    """
    if not st.aniso:
        dist, terms = _isotropic_distances(start, stop, st)
    else:
        dist, terms = _anisotropic_distances(start, stop, st)
    total, g = _block_loss(start, stop, st, dist)
    if g is None:
        return total
    if not st.aniso:
        _isotropic_gradients(start, stop, st, g, *terms)
    else:
        _anisotropic_gradients(start, stop, st, g, *terms)
    return total


def _isotropic_distances(start: int, stop: int, st: _Ctx) -> tuple[torch.Tensor, tuple]:
    """D_iak ``[c, B, K]`` of a block of anchors (isotropic variances), and the terms its gradient
    reuses: ``(sq, r, delta, ca)`` (``delta`` for scalar means, ``ca`` for vector means, else None)."""
    mu, sigma2, dim = st.mu, st.sigma2, st.dim
    b, k, c = mu.shape[0], mu.shape[1], stop - start
    mu_i, s2_i = mu[start:stop], sigma2[start:stop]
    pair = (c, b, k)
    delta = ca = None
    s = torch.add(s2_i.unsqueeze(1), sigma2.unsqueeze(0), out=st.buf("s", pair))  # S = σ²_i + σ²_a
    if st.vector_mean:
        ca = st.centred[:, start:stop]  # [K, c, M]
        gram = torch.bmm(ca, st.centred.transpose(1, 2), out=st.buf("sq", (k, c, b)))  # [K, c, B]
        sq = gram.mul_(-2).add_(st.sq_norm[:, start:stop].unsqueeze(2)).add_(st.sq_norm.unsqueeze(1))
        sq = sq.clamp_min_(0).permute(1, 2, 0)  # ||μ_i − μ_a||²   [c, B, K]
    else:
        delta = torch.sub(mu_i.unsqueeze(1), mu.unsqueeze(0), out=st.buf("d", pair))  # Δ
        sq = torch.mul(delta, delta, out=st.buf("sq", pair)).mul_(dim)  # Σ_m of M identical terms
    r = torch.reciprocal(s, out=st.buf("r", pair))
    # M·½ log((σ²_i + σ²_a) / (2 σ_i σ_a)) + ¼ sq / S
    dist = s.log_().sub_(_LOG2).sub_(0.5 * st.log_s2[start:stop].unsqueeze(1)) \
        .sub_(0.5 * st.log_s2.unsqueeze(0)).mul_(0.5 * dim)
    dist.addcmul_(sq, r, value=0.25)
    return dist, (sq, r, delta, ca)


def _anisotropic_distances(start: int, stop: int, st: _Ctx) -> tuple[torch.Tensor, tuple]:
    """D_iak ``[c, B, K]`` of a block of anchors (anisotropic variances), and the terms its
    gradient reuses: ``(r, t)`` with R = 1/S and T = Δ/S (``t`` None without a gradient)."""
    mu, sigma2, dim, need = st.mu, st.sigma2, st.dim, st.need
    c = stop - start
    mu_i, s2_i = mu[start:stop], sigma2[start:stop]
    t = None
    mu_i3 = mu_i if st.vector_mean else mu_i.unsqueeze(-1)
    mu3 = mu if st.vector_mean else mu.unsqueeze(-1)
    s = torch.add(s2_i.unsqueeze(1), sigma2.unsqueeze(0), out=st.buf_s[:c])  # [c, B, K, M]
    delta = torch.sub(mu_i3.unsqueeze(1), mu3.unsqueeze(0), out=st.buf_d[:c])  # Δ (M or 1 wide)
    r = torch.reciprocal(s, out=st.buf_r[:c])  # R = 1/S
    if need:
        t = torch.mul(delta, r, out=st.buf_t[:c])  # T = Δ/S
    if st.vector_mean:  # Σ_m Δ²/S
        q_sum = (delta.mul_(t) if need else delta.square_().mul_(r)).sum(dim=-1)
    else:
        q_sum = delta.squeeze(-1).square() * r.sum(dim=-1)
    l_sum = s.log_().sum(dim=-1)  # Σ_m log S
    dist = (0.5 * l_sum).add_(q_sum, alpha=0.25).sub_(0.5 * _LOG2 * dim) \
        .sub_(st.sep[start:stop].unsqueeze(1)).sub_(st.sep.unsqueeze(0))
    if st.scale:
        dist.mul_(dim)
    return dist, (r, t)


def _block_loss(start: int, stop: int, st: _Ctx, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Σ_i L_i of the block from its D_iak (overwritten), and G = ∂(block loss / B)/∂D (None
    without a gradient)."""
    mu, y = st.mu, st.y
    b, k, c = mu.shape[0], mu.shape[1], stop - start
    pair = (c, b, k)
    log_s = dist.neg_().exp_().div_(st.temperature)  # log s_iak = exp(−D)/τ ∈ (0, 1/τ]   [c, B, K]
    rows = torch.arange(c, device=mu.device)
    diag = (rows, rows + start)  # the entries a = i of the block
    if st.direct:
        # 1 ≤ s_iak ≤ e^{1/τ}: the plain sum neither underflows nor overflows
        e = torch.exp(log_s, out=st.buf("e", pair))
        e[diag] = 0.0
        den = e.sum(dim=1)  # Σ_{a≠i} s_iak ≥ B − 1 ≥ 1   [c, K]
        log_den = den.log()
    else:
        masked = st.buf("e", pair).copy_(log_s)
        masked[diag] = float("-inf")
        log_den = torch.logsumexp(masked, dim=1)
    y_i = y[start:stop]
    wl = torch.mul(y_i.unsqueeze(1), y.unsqueeze(0), out=st.buf("w", pair))
    wl[diag] = 0.0
    wl.mul_(log_s)  # y_ik y_jk log s_ijk, j ≠ i
    num = wl.sum(dim=(1, 2))  # [c]
    pc_i = st.pos_count[start:stop]
    inv_i = st.inv_card[start:stop]
    per_anchor = -(num + st.log_jac[start:stop] - (pc_i * log_den).sum(dim=1)) * inv_i
    total = per_anchor.sum()
    if not st.need:
        return total, None
    if st.direct:  # softmax over a ≠ i (0 at a = i)
        p = e.div_(den.unsqueeze(1))
    else:
        p = masked.sub_(log_den.unsqueeze(1)).exp_()
    g = wl.sub_(p.mul_(log_s).mul_(pc_i.unsqueeze(1))).mul_((inv_i / b).view(c, 1, 1))
    return total, g


def _isotropic_gradients(start: int, stop: int, st: _Ctx, g: torch.Tensor, sq: torch.Tensor, r: torch.Tensor,
                         delta: torch.Tensor | None, ca: torch.Tensor | None) -> None:
    """Adds the block's gradient G·∂D/∂(μ, σ²) (isotropic variances) into ``st``'s accumulators."""
    dim, grad_mu, grad_s2 = st.dim, st.grad_mu, st.grad_s2
    # ∂D/∂σ²_i = M(½/S − ¼/σ²_i) − ¼ sq/S²  (the same for a, with σ²_a); −M/(4σ²) is separable
    q = sq.mul_(r).mul_(r).mul_(-0.25).add_(r, alpha=0.5 * dim).mul_(g)
    grad_s2[start:stop] += q.sum(dim=1)
    grad_s2 += q.sum(dim=0)
    del q
    st.g_sep[start:stop] += g.sum(dim=1)
    st.g_sep += g.sum(dim=0)
    v = r.mul_(g).mul_(0.5)  # ½ G / S
    if st.vector_mean:
        # ∂D/∂μ_i = ½(μ_i − μ_a)/S: anchor side Σ_a V (μ_i − μ_a) now, sample side
        # Σ_i V (μ_a − μ_i) accumulated (Σ_i V and Σ_i V μ_i) and applied at the end
        grad_mu[start:stop] += ca.transpose(0, 1) * v.sum(dim=1).unsqueeze(-1) \
            - torch.bmm(v.permute(2, 0, 1), st.centred).transpose(0, 1)
        st.v_sum += v.sum(dim=0)
        st.v_mu.baddbmm_(v.permute(2, 1, 0), ca)
    else:
        u = v.mul_(delta).mul_(dim)  # ∂D/∂μ_i = ½ M Δ / S
        grad_mu[start:stop] += u.sum(dim=1)
        grad_mu -= u.sum(dim=0)


def _anisotropic_gradients(start: int, stop: int, st: _Ctx, g: torch.Tensor, r: torch.Tensor,
                           t: torch.Tensor) -> None:
    """Adds the block's gradient G·∂D/∂(μ, σ²) (anisotropic variances) into ``st``'s accumulators."""
    dim, grad_mu, grad_s2 = st.dim, st.grad_mu, st.grad_s2
    if st.scale:
        g.mul_(dim)
    st.g_sep[start:stop] += g.sum(dim=1)
    st.g_sep += g.sum(dim=0)
    half_g4 = (0.5 * g).unsqueeze(-1)
    acc = st.buf_acc
    # ∂D/∂σ²_im = λ(½/S − ¼ Δ²/S² − ¼/σ²_im) = ½λ(R − ½T²) − ¼λ/σ²_im (the last term separable)
    a = r.addcmul_(t, t, value=-0.5).mul_(half_g4)
    grad_s2[start:stop] += a.sum(dim=1)
    grad_s2 += torch.sum(a, dim=0, out=acc)
    # ∂D/∂μ_im = ½λ Δ/S = ½λ T (a scalar mean collects all M dimensions)
    t.mul_(half_g4)
    if st.vector_mean:
        grad_mu[start:stop] += t.sum(dim=1)
        grad_mu -= torch.sum(t, dim=0, out=acc)
    else:
        grad_mu[start:stop] += t.sum(dim=(1, 3))
        grad_mu -= t.sum(dim=(0, 3))


def _run_blocks(st: _Ctx, chunk: int) -> torch.Tensor:
    """L_con = (1/B) Σ over blocks of anchors (a loop over blocks, not over single anchors)."""
    b = st.mu.shape[0]
    total = st.mu.new_zeros(())
    for start in range(0, b, chunk):
        total += _fused_block(start, min(start + chunk, b), st)
    if st.need:
        st.finish()
    return total / b


class _FusedContrastive(torch.autograd.Function):
    """L_con with its gradient computed in the forward pass, one block of anchors at a time.

    The loss is a scalar, so ∂L/∂μ and ∂L/∂σ² (closed form) are accumulated block by block while
    the loss is computed; backward only scales them by the incoming gradient. Nothing of size
    ``B·B·K(·M)`` is kept between blocks, and the block buffers are allocated once per
    call and reused. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, mu, sigma2, y, log_jac, inv_card, pos_count, dim, temperature, scale, chunk):
        # (ctx.needs_input_grad ignores torch.no_grad(): this Function is only used when grad is on)
        st = _Ctx(mu, sigma2, y, log_jac, inv_card, pos_count, dim, temperature, scale, chunk, True)
        total = _run_blocks(st, chunk)
        ctx.save_for_backward(st.grad_mu, st.grad_s2)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        grad_mu, grad_s2 = ctx.saved_tensors
        g_mu = grad_mu * grad_out if ctx.needs_input_grad[0] else None
        g_s2 = grad_s2 * grad_out if ctx.needs_input_grad[1] else None
        return g_mu, g_s2, None, None, None, None, None, None, None, None


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
    check_bool(scale_anisotropic_by_dim, "scale_anisotropic_by_dim")
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
    wide = _range_dtype(_range_dtype(dtype, (mu1,), sigma2_1), (mu2,), sigma2_2)
    return _pair_distance(
        mu1.to(wide), sigma2_1.to(wide), mu2.to(wide), sigma2_2.to(wide), m,
        scale_anisotropic_by_dim,
    ).to(dtype)


def kmcl_log_kernel(x: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    r"""``log κ_k(x_i) = -½ Σ_m (x_im - μ_ikm)² / σ²_ikm`` as a ``[B, K]`` tensor (float32 at least)."""
    b, m = _check_x(x)
    _check_params(mu, sigma2, b, None, m)
    dtype = _compute_dtype(x, mu, sigma2)
    wide = _range_dtype(dtype, (x, mu), sigma2)
    return _log_kernel(x.to(wide), mu.to(wide), sigma2.to(wide)).to(dtype)


def kmcl_reconstruction_loss(
    x: torch.Tensor,
    pi: torch.Tensor,
    mu: torch.Tensor,
    sigma2: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    r"""KMCL reconstruction loss :math:`L_{rec}` (see the module docstring for shapes).

    :math:`L_{rec} = -\frac1B\sum_i
    \log\frac{\sum_k y_{ik}\,p_{ik}\,\kappa_k(x_i)}{\sum_k p_{ik}\,\kappa_k(x_i)}` with
    :math:`p = \sigma(\pi)`, computed in log space. Samples with no labels add 0.

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
    labels = _check_labels(labels, b, None)
    k = labels.shape[1]
    _check_pi(pi, b, k)
    _check_params(mu, sigma2, b, k, m)
    return _reconstruction(x, pi, mu, sigma2, labels)


def _reconstruction(x, pi, mu, sigma2, labels) -> torch.Tensor:
    """:func:`kmcl_reconstruction_loss` on validated inputs."""
    b = x.shape[0]
    dtype = _compute_dtype(x, pi, mu, sigma2)
    wide = _range_dtype(dtype, (x, mu), sigma2)
    if wide != dtype:
        return _reconstruction(x.to(wide), pi.to(wide), mu.to(wide), sigma2.to(wide), labels).to(dtype)
    x, pi, mu, sigma2 = x.to(dtype), pi.to(dtype), mu.to(dtype), sigma2.to(dtype)
    y = labels.to(device=x.device, dtype=torch.bool)
    a = torch.nn.functional.logsigmoid(pi) + _log_kernel(x, mu, sigma2)  # log p_ik κ_k(x_i)
    # −log(Σ_pos / Σ_all) = log(1 + Σ_neg / Σ_pos) = softplus(lse_neg − lse_pos): keeps full relative
    # precision when the loss is tiny. Rows without labels add 0 (see the module docstring); rows
    # where every class is a label give exactly 0.
    valid = (y.any(dim=1) & (~y).any(dim=1)).unsqueeze(1)  # [B, 1]
    # invalid rows use the full row (finite, discarded below) so no −inf reaches autograd
    lse_pos = torch.logsumexp(a.masked_fill(~y & valid, float("-inf")), dim=1)
    lse_neg = torch.logsumexp(a.masked_fill(y & valid, float("-inf")), dim=1)
    z = lse_neg - lse_pos
    softplus = z.clamp_min(0) + torch.log1p(torch.exp(-z.abs()))
    per_sample = torch.where(valid.squeeze(1), softplus, torch.zeros_like(z))
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
        chunk_size: anchors per block; ``None`` = automatic (see the module docstring). Peak
            memory is O(chunk·B·K) (isotropic) or O(chunk·B·K·M) (anisotropic); the result does
            not depend on it beyond rounding.
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
    check_chunk_size(chunk_size)
    check_bool(scale_anisotropic_by_dim, "scale_anisotropic_by_dim")
    b, k, m = _check_params(mu, sigma2, None, None, dim)
    labels = _check_labels(labels, b, k)
    if m is None:
        raise ValueError("dim: the feature dimension M is required when mu and sigma2 are both [B, K]")
    return _contrastive(mu, sigma2, labels, temperature, chunk_size, m, scale_anisotropic_by_dim)


def _contrastive(mu, sigma2, labels, temperature, chunk_size, m, scale_anisotropic_by_dim):
    """:func:`kmcl_contrastive_loss` on validated inputs (``m`` = M)."""
    b, k = mu.shape[:2]
    dtype = _compute_dtype(mu, sigma2)
    wide = _range_dtype(dtype, (mu,), sigma2)
    if wide != dtype:
        return _contrastive(mu.to(wide), sigma2.to(wide), labels, temperature, chunk_size, m,
                            scale_anisotropic_by_dim).to(dtype)
    mu, sigma2 = mu.to(dtype), sigma2.to(dtype)
    zero = (mu.sum() + sigma2.sum()) * 0.0
    if b == 1:
        return zero

    y = labels.to(device=mu.device, dtype=dtype)
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

    if chunk_size is None:
        if sigma2.ndim == 3:
            chunk_size = max(1, AUTO_BLOCK_ELEMENTS // (b * k * m))
        else:
            chunk_size = max(1, AUTO_BLOCK_PAIRS // (b * k))
    chunk_size = min(chunk_size, b)
    args = (mu, sigma2, y, log_jac, inv_card, pos_count, m, float(temperature),
            bool(scale_anisotropic_by_dim), chunk_size)
    if torch.is_grad_enabled() and (mu.requires_grad or sigma2.requires_grad):
        return _FusedContrastive.apply(*args)
    with torch.no_grad():
        return _run_blocks(_Ctx(*args, False), chunk_size)


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
        check_chunk_size(chunk_size)
        check_bool(scale_anisotropic_by_dim, "scale_anisotropic_by_dim")
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
    a :class:`mlsupcon.models.heads.kmcl.KMCLHead` — and returns the weighted total; with
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

    A classifier loss (``label_format = "logits"``): it trains the KMCL head's outputs against
    multi-hot labels, with the ``kmcl`` method.

    Example:
        >>> import torch
        >>> from mlsupcon.models.heads.kmcl import KMCLHead
        >>> head = KMCLHead(in_dim=8, num_classes=3)
        >>> loss_fn = KMCLLoss()
        >>> y = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1]])
        >>> total, terms = loss_fn(*head(torch.randn(3, 8)), y, return_terms=True)
        >>> sorted(terms)
        ['asl', 'con', 'rec']
    """

    label_format = "logits"

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
        check_chunk_size(chunk_size)
        check_choice(asl_reduction, "asl_reduction", ("sum", "mean"))
        check_asl_options(gamma_pos, gamma_neg, clip, eps, asl_reduction, detach_focal)
        check_bool(scale_anisotropic_by_dim, "scale_anisotropic_by_dim")
        for name, w in (("weight_asl", weight_asl), ("weight_rec", weight_rec), ("weight_con", weight_con)):
            check_number(w, name, 0)
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
        labels = _check_labels(labels, b, None)
        k = labels.shape[1]
        _check_pi(pi, b, k)
        _check_params(mu, sigma2, b, k, m)
        labels = labels.to(device=pi.device)
        dtype = _compute_dtype(x, pi, mu, sigma2)
        l_asl = asymmetric_loss(  # on π in the compute dtype: a float32 sum for half inputs
            pi.to(dtype), labels, gamma_pos=self.gamma_pos, gamma_neg=self.gamma_neg, clip=self.clip,
            eps=self.eps, reduction=self.asl_reduction, detach_focal=self.detach_focal,
        )
        l_rec = _reconstruction(x, pi, mu, sigma2, labels)
        l_con = _contrastive(
            mu, sigma2, labels, self.temperature, self.chunk_size, m, self.scale_anisotropic_by_dim,
        )
        total = self.weight_asl * l_asl + self.weight_rec * l_rec + self.weight_con * l_con
        terms = {"asl": l_asl, "rec": l_rec, "con": l_con}
        self.last_terms = {name: t.detach() for name, t in terms.items()}
        return (total, terms) if return_terms else total
