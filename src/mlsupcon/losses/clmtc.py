r"""CL-MTC (Lin et al., ACL Findings 2023): five contrastive losses of the SpanEmo-based code.

The contract is the "CL-MTC" section of ``docs/spec/LOSSES.md``. Every loss is a SupCon kernel on
**un-normalised** features by default (``normalize=False``, as the code), scaled by τ/τ_b
(``base_temperature`` τ_b = 0.07):

* ``cl_scl``: positives are the samples with exactly the anchor's label set (two empty label
  sets are equal), denominator every other embedding (the engine, :class:`ExactSetStrategy`).
* ``cl_jscl``: every other embedding is a positive (unweighted numerator, 1/|P_a|), the
  denominator is Jaccard-weighted, Σ_{c≠a} J_ac e^{s_ac}; anchors with Σ_{c≠a} J_ac = 0 are left
  out. Per-pair denominator weights do not fit the engine: computed directly, in blocks of
  anchors (with ``chunk_size``, each block is recomputed in backward).
* ``cl_jspcl``: ``cl_jscl`` on a classifier's logits ``[B, C]`` used as the features.
* ``cl_slcl``: per label k, SupCon with positives y_bk = y_ak (1 or 0), times 1/B, mean over the
  C labels (the engine, :class:`LabelWiseStrategy`, one pass for all labels).
* ``cl_icl``: per sample, SupCon over its C label embeddings ``[B, C, D]`` with the binary labels
  y_ij, times 1/C, mean over samples; the denominator stays within the sample (batched, not the
  engine's global denominator).

``legacy=True`` reproduces the code's epsilon behaviour exactly: the row maximum includes the
self-similarity, 1e-20·w_ac is added for every c (the anchor included) after that shift, the
numerator gets +1e-20 and the mean is (Σ + 1e-20)/(|P_a| + 1e-20); anchors without positives
then add −τ/τ_b and stay in the mean, and a ``cl_jscl``/``cl_jspcl`` batch holding an empty label
row is NaN (as the code). The code runs one view and no reference candidates, so ``legacy=True``
refuses V > 1 and ``ref_features``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mlsupcon.losses._norm import l2_normalize
from mlsupcon.losses._validation import (
    check_bool,
    check_chunk_size,
    check_finite,
    check_labels,
    check_positive,
)
from mlsupcon.losses.engine import plan_chunks
from mlsupcon.losses.flat import FlatContrastiveLoss, _compute_dtype
from mlsupcon.losses.relations import to_dense_multi_hot
from mlsupcon.losses.strategies import AllStrategy, FlatStrategy, PairContext, _jaccard

__all__ = [
    "ExactSetStrategy",
    "LabelWiseStrategy",
    "CLSCLLoss",
    "CLJSCLLoss",
    "CLJSPCLLoss",
    "CLSLCLLoss",
    "CLICLLoss",
]

#: The CL-MTC code's epsilon (``exp_logits + 1e-20``, ``(Σ + 1e-20) / (|P| + 1e-20)``).
LEGACY_EPS = 1e-20


# --------------------------------------------------------------------------- strategies


class ExactSetStrategy(AllStrategy):
    """w = 1 iff the label sets are equal, **two empty sets included** (CL-MTC's SCL); Z = Σ w."""

    name = "cl_scl"

    def prepare(self, ctx):
        ids = ctx.stats.set_ids()  # equal exactly for equal label sets; every empty row shares one id
        b = ctx.batch
        _, inverse, per_id = torch.unique(ids[:b], return_inverse=True, return_counts=True)
        z = per_id[inverse].to(ctx.dtype) * ctx.views - 1
        if ctx.refs:
            z = z + (ids[:b, None] == ids[None, b:]).sum(1).to(ctx.dtype)
        ctx.extra["ids"], ctx.extra["z"] = ids, z


class LabelWiseStrategy(FlatStrategy):
    r"""CL-MTC's SLCL as one weighted log-softmax (the denominator is the same for every label).

    With |P_ak| = |{b ≠ a : y_bk = y_ak}| and A_k the anchors with |P_ak| > 0, the loss
    (1/C) Σ_k (1/B) mean_{a ∈ A_k} L_ak equals Σ_a num_a for the weights
    w_ab = Σ_k c_k 1[y_bk = y_ak] / |P_ak| with c_k = 1/(C·B·|A_k|): a pooled reduction whose
    Z sums to 1. 1[y_bk = y_ak] = y_ak y_bk + (1 − y_ak)(1 − y_bk), so
    w = Y diag(α¹ + α⁰) Yᵀ + Σ_k α⁰_k − r_a − r_b with r = Y α⁰: label products only, sparse-safe.
    """

    name = "cl_slcl"
    pooled = True

    def __init__(self, num_labels: int = 0) -> None:
        self.num_labels = num_labels

    def prepare(self, ctx):
        stats, b, v, m = ctx.stats, ctx.batch, ctx.views, ctx.refs
        c_all = self.num_labels
        total = v * b + m  # candidate embeddings
        kwargs = dict(dtype=ctx.dtype, device=ctx.device)
        k = stats.num_present  # label columns LabelStatistics keeps (absent ones are dropped)
        mult = torch.full((b + m,), float(v), **kwargs)
        mult[b:] = 1.0
        cnt1 = stats.column_counts(mult)[:k]  # candidates holding label k
        anchors = torch.zeros(b + m, **kwargs)
        anchors[:b] = float(v)
        a1 = stats.column_counts(anchors)[:k]  # anchors holding label k
        cnt0, a0 = total - cnt1, v * b - a1
        ok1, ok0 = cnt1 >= 2, cnt0 >= 2
        valid = a1 * ok1 + a0 * ok0  # |A_k|
        c = torch.where(valid > 0, 1.0 / (c_all * b * valid.clamp(min=1)), torch.zeros_like(valid))
        alpha1 = torch.where(ok1, c / (cnt1 - 1).clamp(min=1), torch.zeros_like(c))
        alpha0 = torch.where(ok0, c / (cnt0 - 1).clamp(min=1), torch.zeros_like(c))
        const = alpha0.sum()
        absent = c_all - k  # no candidate holds it: every anchor's positives are all the others
        if absent and total >= 2:
            const = const + absent / (c_all * b * (v * b) * (total - 1))
        ctx.extra["both"] = alpha1 + alpha0
        ctx.extra["const"] = const
        ctx.extra["r"] = stats.row_sums(alpha0)
        ctx.extra["z"] = torch.full((b,), 1.0 / (v * b), **kwargs)  # Σ over the V·B anchors = 1

    def weights(self, ctx, s0, s1):
        r = ctx.extra["r"]
        w = ctx.stats.row_dot(s0, s1, ctx.extra["both"])
        w = w.add_(ctx.extra["const"]).sub_(r[s0:s1, None]).sub_(r[None, :]).clamp_(min=0)
        return w, ctx.extra["z"][s0:s1]


# --------------------------------------------------------------------------- direct kernels


def _block_rows(pctx: PairContext, s0: int, s1: int) -> torch.Tensor:
    """View-level rows of samples s0:s1, view-major (view 0 of s0..s1, then view 1, ...)."""
    b = pctx.batch
    return torch.cat([torch.arange(v * b + s0, v * b + s1, device=pctx.device) for v in range(pctx.views)])


def _to_view_level(w: torch.Tensor, pctx: PairContext) -> torch.Tensor:
    """Sample-level ``[n, B + M]`` → view-level ``[V·n, V·B + M]`` (rows as :func:`_block_rows`)."""
    b, v = pctx.batch, pctx.views
    cols = torch.cat([w[:, :b]] * v + [w[:, b:]], 1) if v > 1 else w
    return cols.repeat(v, 1) if v > 1 else cols


def _run_blocks(block_fn, z: torch.Tensor, pctx: PairContext, chunk_size: int | None):
    """Per-anchor (num, norm) ``[V·B]`` from ``block_fn(z, s0, s1)`` over blocks of anchor samples.

    One dense block when small (autograd keeps it); otherwise blocks of ``chunk`` samples, each
    recomputed in backward (``torch.utils.checkpoint``), so O(chunk × N) similarities exist at once.
    """
    chunk, dense = plan_chunks(pctx.batch, pctx.views, pctx.num_candidates, chunk_size)
    nums, norms, order = [], [], []
    for s0 in range(0, pctx.batch, chunk):
        s1 = min(pctx.batch, s0 + chunk)
        if dense or not z.requires_grad:
            num, norm = block_fn(z, s0, s1)
        else:
            num, norm = checkpoint(block_fn, z, s0, s1, use_reentrant=False)
        nums.append(num)
        norms.append(norm)
        order.append(_block_rows(pctx, s0, s1))
    order = torch.cat(order)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return torch.cat(nums)[inverse], torch.cat(norms)[inverse]


def _self_mask(rows: torch.Tensor, width: int) -> torch.Tensor:
    mask = torch.zeros(rows.numel(), width, dtype=torch.bool, device=rows.device)
    mask[torch.arange(rows.numel(), device=rows.device), rows] = True
    return mask


def _legacy_rows(s, self_mask, pos, den_w, scale):
    """The code's SupCon rows: −τ/τ_b · ((Σ_b pos·log_prob + ε) / (Σ_b pos + ε)).

    log_prob = (s − max_c s) − log Σ_c [(e^{s_ac − max}·1[c ≠ a] + ε)·w_ac] (max with the self
    entry, ε for every c). ``pos`` is 0 on the self entry; as in the code it multiplies the
    whole row, so a self log-probability of +inf (zero denominator) gives NaN.
    """
    logits = s - s.detach().amax(1, keepdim=True)
    ex = torch.exp(logits).masked_fill(self_mask, 0.0) + LEGACY_EPS
    if den_w is not None:
        ex = ex * den_w
    log_prob = logits - torch.log(ex.sum(1, keepdim=True))
    return -scale * ((pos * log_prob).sum(1) + LEGACY_EPS) / (pos.sum(1) + LEGACY_EPS)


# --------------------------------------------------------------------------- losses on embeddings


class _CLMTCLoss(FlatContrastiveLoss):
    """Options shared by the CL-MTC losses on ``[B, D]`` / ``[B, V, D]`` embeddings."""

    def __init__(self, temperature: float = 0.1, base_temperature: float = 0.07, normalize: bool = False,
                 legacy: bool = False, chunk_size: int | None = None, gather_distributed: bool = False) -> None:
        super().__init__(temperature, normalize, chunk_size, gather_distributed)
        self.base_temperature = check_positive(base_temperature, "base_temperature")
        self.legacy = check_bool(legacy, "legacy")
        if legacy and gather_distributed:
            raise ValueError("legacy: reproduces the single-process CL-MTC code; it cannot be combined "
                             "with gather_distributed=True")

    @property
    def scale(self) -> float:
        """τ/τ_b."""
        return self.temperature / self.base_temperature

    def check_views(self, views: int, has_refs: bool, name: str) -> None:
        if self.legacy and has_refs:
            raise ValueError("ref_features: not supported with legacy=True (the CL-MTC code has no "
                             "reference candidates)")
        if self.legacy and views > 1:
            raise ValueError(f"{name}: legacy=True reproduces the CL-MTC code, which takes one view; got V = {views}")

    def _inputs(self, features, labels, ref_features, ref_labels, name: str = "features"):
        """Validated embeddings ``z`` ``[V·B + M, D]`` (compute dtype, normalised if asked), the
        :class:`PairContext` and the label rows (batch then references)."""
        _, z, pctx, rows = self.prepared_inputs(features, labels, ref_features, ref_labels, True, name)
        return z, pctx, rows

    def _legacy_terms(self, features, labels, ref_features, ref_labels):
        raise NotImplementedError

    def anchor_terms(self, features, labels=None, ref_features=None, ref_labels=None):
        """Per-anchor terms (see :meth:`FlatContrastiveLoss.anchor_terms`), scaled by τ/τ_b."""
        if self.legacy:
            return self._legacy_terms(features, labels, ref_features, ref_labels)
        num, norm, pooled, extra = super().anchor_terms(features, labels, ref_features, ref_labels)
        return num * self.scale, norm, pooled, extra

    def extra_repr(self) -> str:
        return super().extra_repr() + f", base_temperature={self.base_temperature}, legacy={self.legacy}"


class CLSCLLoss(_CLMTCLoss):
    r"""CL-MTC SCL: positives have exactly the anchor's label set (two empty sets included).

    .. math:: L_a = -\frac{\tau}{\tau_b}\frac{1}{|P_a|}\sum_{b \in P_a} \log p_{ab},\quad
              P_a = \{b \ne a : y_b = y_a\},\quad \log p_{ab} = s_{ab} - \log\sum_{c \ne a} e^{s_{ac}}

    Mean over the anchors with |P_a| > 0 (``legacy=True``: the code's epsilons, every anchor
    counted; see :mod:`mlsupcon.losses.clmtc`). Features are not normalised unless
    ``normalize=True``.

    Source: ``scripts/model.py`` l. 317–332 of IIP-Lab-2024/CL-MTC (Lin et al., "Leveraging
    Contrastive Learning for Multi-label Text Classification ...", ACL Findings 2023).

    Args:
        temperature: τ > 0 (not fixed by the released code).
        base_temperature: τ_b > 0; the loss is scaled by τ/τ_b.
        normalize: L2-normalise the embeddings first (the code does not).
        legacy: reproduce the code's 1e-20 terms exactly (one view, no ``ref_features``).
        chunk_size, gather_distributed: see :class:`~mlsupcon.losses.FlatContrastiveLoss`.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> y = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0]])
        >>> round(float(build("cl_scl", temperature=0.5)(z, y)), 6)
        4.201063
        >>> round(float(build("cl_scl", temperature=0.5, legacy=True)(z, y)), 6)
        0.419756
    """

    strategy_cls = ExactSetStrategy

    def _legacy_terms(self, features, labels, ref_features, ref_labels):
        z, pctx, _ = self._inputs(features, labels, ref_features, ref_labels)
        ids = pctx.stats.set_ids()
        scale = self.scale

        def block(z, s0, s1):
            rows = _block_rows(pctx, s0, s1)
            s = z[rows] @ z.T / self.temperature
            self_mask = _self_mask(rows, z.shape[0])
            pos = ((ids[s0:s1, None] == ids[None, :]) & ~self_mask).to(s.dtype)
            return _legacy_rows(s, self_mask, pos, None, scale), torch.ones(rows.numel(), dtype=s.dtype,
                                                                            device=s.device)

        num, norm = _run_blocks(block, z, pctx, self.chunk_size)
        return num, norm, False, None


class CLJSCLLoss(_CLMTCLoss):
    r"""CL-MTC JSCL: every other embedding is a positive, the denominator is Jaccard-weighted.

    .. math:: L_a = -\frac{\tau}{\tau_b}\frac{1}{|P_a|}\sum_{b \ne a}
              \Big(s_{ab} - \log\sum_{c \ne a} J_{ac}\, e^{s_{ac}}\Big),\quad |P_a| = N + M - 1

    (views of one sample: J = 1). Anchors with Σ_{c≠a} J_ac = 0 are left out; the loss is the
    mean over the others and can be negative (the numerator is not weighted). ``legacy=True``:
    the code's epsilons, see :mod:`mlsupcon.losses.clmtc`; an empty label row then makes the
    batch NaN, and a non-empty anchor with Σ_{c≠a} J_ac = 0 a large finite value, as the code.

    Source: ``scripts/model.py`` l. 298–316 (``SupConLossMulti``) of IIP-Lab-2024/CL-MTC.

    Args:
        temperature, base_temperature, normalize, legacy, chunk_size, gather_distributed: see
            :class:`CLSCLLoss`.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
        >>> round(float(build("cl_jscl", temperature=0.5)(z, y)), 6)
        -6.433147
    """

    strategy_cls = FlatStrategy  # not on the engine: per-pair denominator weights

    def anchor_terms(self, features, labels=None, ref_features=None, ref_labels=None):
        """Per-anchor terms (see :meth:`FlatContrastiveLoss.anchor_terms`), scaled by τ/τ_b."""
        return self._jscl_terms(features, labels, ref_features, ref_labels, "features")

    def _jscl_terms(self, features, labels, ref_features, ref_labels, name):
        z, pctx, _ = self._inputs(features, labels, ref_features, ref_labels, name)
        scale, legacy, inv_t = self.scale, self.legacy, 1.0 / self.temperature
        width = z.shape[0]

        def block(z, s0, s1):
            rows = _block_rows(pctx, s0, s1)
            s = z[rows] @ z.T * inv_t
            self_mask = _self_mask(rows, width)
            jac = _jaccard(pctx, s0, s1)  # the code's J: 0 for two empty rows, the anchor's own included
            if legacy:
                pos = (~self_mask).to(s.dtype)
                num = _legacy_rows(s, self_mask, pos, jac, scale)
                return num, torch.ones_like(num)
            r = torch.arange(s1 - s0, device=z.device)
            jac[r, r + s0] = 1.0  # same-sample rule: the anchor's other views have J = 1
            den_w = _to_view_level(jac, pctx).masked_fill_(self_mask, 0.0)
            weighted = den_w > 0
            has_den = weighted.any(1)
            # L_a = log Σ_c J_ac e^{s_ac − m_a} + (1/|P_a|) Σ_b (m_a − s_ab), m_a = max_{J_ac > 0} s_ac:
            # no large similarity is added to or cancelled against another (raw features).
            shift = s.detach().masked_fill(~weighted, float("-inf")).amax(1)
            shift = torch.where(has_den, shift, torch.zeros_like(shift))[:, None]
            logits = torch.where(weighted, s - shift + torch.log(den_w), float("-inf"))
            log_sum = torch.logsumexp(torch.where(has_den[:, None], logits, 0.0), 1)
            n_pos = width - 1
            gap = (shift - s).masked_fill(self_mask, 0.0).sum(1) / max(n_pos, 1)
            valid = has_den & (n_pos > 0)
            num = torch.where(valid, scale * (log_sum + gap), torch.zeros_like(log_sum))
            return num, valid.to(s.dtype)

        num, norm = _run_blocks(block, z, pctx, self.chunk_size)
        return num, norm, False, None


class CLSLCLLoss(_CLMTCLoss):
    r"""CL-MTC SLCL: one SupCon per label k (positives y_bk = y_ak), times 1/B, mean over labels.

    .. math:: L = \frac{1}{C}\sum_k \frac{1}{B}\ \mathrm{mean}_{a:\,|P_{ak}|>0}\
              \frac{\tau}{\tau_b}\Big(-\frac{1}{|P_{ak}|}\sum_{b \in P_{ak}} \log p_{ab}\Big),\quad
              P_{ak} = \{b \ne a : y_{bk} = y_{ak}\}

    B is the number of samples; a label where no anchor has a positive adds 0. One pass for all
    labels (:class:`LabelWiseStrategy`). ``gather_distributed`` is not offered (the per-label
    anchor counts are batch-wide).

    Source: ``scripts/model.py`` l. 287–297 of IIP-Lab-2024/CL-MTC.

    Args:
        temperature, base_temperature, normalize, legacy, chunk_size: see :class:`CLSCLLoss`.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
        >>> round(float(build("cl_slcl", temperature=0.5)(z, y)), 5)
        2.22213
    """

    def __init__(self, temperature: float = 0.1, base_temperature: float = 0.07, normalize: bool = False,
                 legacy: bool = False, chunk_size: int | None = None) -> None:
        super().__init__(temperature, base_temperature, normalize, legacy, chunk_size)
        self._num_labels = 0

    def prepare_labels(self, labels, ref_labels, batch, refs):
        labels, ref_labels = super().prepare_labels(labels, ref_labels, batch, refs)
        self._num_labels = labels.shape[1]
        return labels, ref_labels

    def make_strategy(self):
        return _LazyLabelWise(self)

    def _legacy_terms(self, features, labels, ref_features, ref_labels):
        z, pctx, rows = self._inputs(features, labels, ref_features, ref_labels)
        y = to_dense_multi_hot(rows).to(z.dtype)
        b, c = pctx.batch, y.shape[1]
        cnt1 = y.sum(0)
        scale = self.scale

        def block(z, s0, s1):
            idx = _block_rows(pctx, s0, s1)
            s = z[idx] @ z.T / self.temperature
            self_mask = _self_mask(idx, z.shape[0])
            logits = s - s.detach().amax(1, keepdim=True)
            ex = torch.exp(logits).masked_fill(self_mask, 0.0) + LEGACY_EPS
            log_prob = (logits - torch.log(ex.sum(1, keepdim=True))).masked_fill(self_mask, 0.0)
            ya = y[s0:s1]
            sums = ya * (log_prob @ y) + (1 - ya) * (log_prob @ (1 - y))  # Σ_{b ≠ a, y_bk = y_ak} log_prob
            n_pos = ya * (cnt1 - 1) + (1 - ya) * (b - cnt1 - 1)
            mean = (sums + LEGACY_EPS) / (n_pos + LEGACY_EPS)
            num = -scale * mean.sum(1) / (c * b)
            return num, torch.ones_like(num)

        num, norm = _run_blocks(block, z, pctx, self.chunk_size)
        return num, norm, False, None


class _LazyLabelWise(LabelWiseStrategy):
    """Reads the label count C from the loss once its labels are validated."""

    def __init__(self, owner: CLSLCLLoss) -> None:
        super().__init__()
        self._owner = owner

    def prepare(self, ctx):
        self.num_labels = self._owner._num_labels
        super().prepare(ctx)


# --------------------------------------------------------------------------- logits / label embeddings


class CLJSPCLLoss(nn.Module):
    r"""CL-MTC JSPCL: :class:`CLJSCLLoss` on a classifier's logits ``[B, C]`` used as the features.

    ``loss(logits, labels)`` with multi-hot ``labels`` ``[B, C]`` (the same C). A classifier
    loss (``label_format = "logits"``): it scores the logits against the targets, as the
    CL-MTC code adds it to BCE with weight λ.

    Source: ``scripts/model.py`` l. 334–352 of IIP-Lab-2024/CL-MTC.

    Args:
        temperature, base_temperature, normalize, legacy, chunk_size: see :class:`CLSCLLoss`.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [1.0, 0.0, -2.0], [-1.0, 1.5, 0.5]])
        >>> y = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 1, 1]])
        >>> bool(torch.isfinite(build("cl_jspcl", temperature=1.0)(logits, y)))
        True
    """

    label_format = "logits"

    def __init__(self, temperature: float = 0.1, base_temperature: float = 0.07, normalize: bool = False,
                 legacy: bool = False, chunk_size: int | None = None) -> None:
        super().__init__()
        self.inner = CLJSCLLoss(temperature, base_temperature, normalize, legacy, chunk_size)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor):
            raise ValueError(f"logits: expected a torch.Tensor, got {type(logits).__name__}")
        if logits.ndim != 2:
            raise ValueError(f"logits: expected shape [B, C], got {tuple(logits.shape)}")
        check_labels(labels, logits.shape[0], "labels", rows_of="logits")
        if labels.shape[1] != logits.shape[1]:
            raise ValueError(f"labels: has {labels.shape[1]} label columns but logits has {logits.shape[1]}")
        from mlsupcon.losses.engine import reduce_anchor_losses

        num, norm, _, _ = self.inner._jscl_terms(logits, labels, None, None, "logits")
        return reduce_anchor_losses(num, norm, False)

    def extra_repr(self) -> str:
        return self.inner.extra_repr()


class CLICLLoss(nn.Module):
    r"""CL-MTC ICL: within each sample, SupCon over its C label embeddings.

    ``loss(label_embeddings, labels)`` with ``label_embeddings`` ``[B, C, D]`` (one embedding
    per label, e.g. the label tokens' hidden states) and multi-hot ``labels`` ``[B, C]``. For
    sample i and label j, positives are the labels j' ≠ j with y_ij' = y_ij and the denominator
    is Σ_{j'≠j} e^{s_jj'} within the sample:

    .. math:: L = \frac{1}{B}\sum_i \frac{1}{C}\ \mathrm{mean}_{j:\,|P_{ij}|>0}\
              \frac{\tau}{\tau_b}\Big(-\frac{1}{|P_{ij}|}\sum_{j' \in P_{ij}} \log p_{jj'}\Big)

    (a sample where no label has a positive adds 0). ``label_format = "label_embeddings"``: the
    training pipeline's ``[B, V, D]`` projections are not what it takes, so it is not a
    contrastive loss of ``train --loss``. Batched over samples (``chunk_size`` samples per block,
    recomputed in backward).

    Source: ``scripts/model.py`` l. 354–366 of IIP-Lab-2024/CL-MTC.

    Args:
        temperature, base_temperature, normalize, legacy: see :class:`CLSCLLoss`.
        chunk_size: samples per block (None: all at once).

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> emb = torch.randn(4, 5, 8)                     # [B, C, D]
        >>> y = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]])
        >>> bool(build("cl_icl", temperature=0.5)(emb, y) > 0)
        True
    """

    label_format = "label_embeddings"

    def __init__(self, temperature: float = 0.1, base_temperature: float = 0.07, normalize: bool = False,
                 legacy: bool = False, chunk_size: int | None = None) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.base_temperature = check_positive(base_temperature, "base_temperature")
        self.normalize = check_bool(normalize, "normalize")
        self.legacy = check_bool(legacy, "legacy")
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size

    def forward(self, label_embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        e = label_embeddings
        if not isinstance(e, torch.Tensor):
            raise ValueError(f"label_embeddings: expected a torch.Tensor, got {type(e).__name__}")
        if not e.is_floating_point():
            raise ValueError(f"label_embeddings: expected a floating-point tensor, got dtype {e.dtype}")
        if e.ndim != 3:
            raise ValueError(f"label_embeddings: expected shape [B, C, D], got {tuple(e.shape)}")
        b, c, d = e.shape
        if b == 0:
            raise ValueError("label_embeddings: empty batch (B = 0)")
        if c == 0 or d == 0:
            raise ValueError(f"label_embeddings: expected C >= 1 labels and D >= 1 dimensions, got {tuple(e.shape)}")
        check_finite(e, "label_embeddings")
        labels = check_labels(labels, b, "labels", rows_of="label_embeddings")
        if labels.shape[1] != c:
            raise ValueError(f"labels: has {labels.shape[1]} label columns but label_embeddings has C = {c}")
        y = to_dense_multi_hot(labels) != 0
        z = e.to(_compute_dtype(e.dtype))
        if self.normalize:
            z = l2_normalize(z, dim=2)
        chunk = b if self.chunk_size is None else min(self.chunk_size, b)
        parts = []
        for s0 in range(0, b, chunk):
            s1 = min(b, s0 + chunk)
            if self.chunk_size is None or not z.requires_grad:
                parts.append(self._per_sample(z[s0:s1], y[s0:s1]))
            else:
                parts.append(checkpoint(self._per_sample, z[s0:s1], y[s0:s1], use_reentrant=False))
        return torch.cat(parts).mean()

    def _per_sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each sample's term, (1/C)·SupCon over its labels: ``[b]``."""
        c = z.shape[1]
        scale = self.temperature / self.base_temperature
        s = torch.bmm(z, z.transpose(1, 2)) / self.temperature  # [b, C, C]
        eye = torch.eye(c, dtype=torch.bool, device=z.device).expand_as(s)
        pos = (y[:, :, None] == y[:, None, :]) & ~eye
        n_pos = pos.sum(2).to(s.dtype)
        if self.legacy:
            logits = s - s.detach().amax(2, keepdim=True)
            ex = torch.exp(logits).masked_fill(eye, 0.0) + LEGACY_EPS
            log_prob = logits - torch.log(ex.sum(2, keepdim=True))
            mean = ((pos * log_prob).sum(2) + LEGACY_EPS) / (n_pos + LEGACY_EPS)
            return (-scale * mean).mean(1) / c
        if c < 2:  # no label has a candidate: an exact 0 connected to the graph
            return s.sum((1, 2)) * 0.0
        # L = log Σ_{j'≠j} e^{s − m} + mean_{P}(m − s), m the row maximum without the self entry
        shift = s.detach().masked_fill(eye, float("-inf")).amax(2, keepdim=True)
        log_sum = torch.logsumexp((s - shift).masked_fill(eye, float("-inf")), 2)
        gap = ((shift - s) * pos).sum(2) / n_pos.clamp(min=1)
        valid = n_pos > 0
        terms = torch.where(valid, scale * (log_sum + gap), torch.zeros_like(log_sum))
        return terms.sum(1) / valid.sum(1).clamp(min=1) / c

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, base_temperature={self.base_temperature}, "
                f"normalize={self.normalize}, legacy={self.legacy}, chunk_size={self.chunk_size}")
