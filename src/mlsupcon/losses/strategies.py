"""Pair-weight strategies: from label relations to the weights w_ab and normalisers Z_a.

Each strategy works on a block of anchor *samples* against every candidate sample (the B batch
samples, then the M reference rows) and returns a sample-level weight matrix whose column for
the anchor's own sample already holds the weight of the same-sample relation. The engine expands
it to view pairs (V copies of the batch columns) and removes the self pair. Row statistics at
view level follow from the sample level without expanding: see :meth:`PairContext.view_row_sum`.

The definitions are those of ``docs/spec/LOSSES.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlsupcon.losses.relations import LabelStatistics

__all__ = [
    "PairContext",
    "FlatStrategy",
    "AllStrategy",
    "AnyStrategy",
    "SimDisStrategy",
    "JaccardStrategy",
    "JaccardWeightStrategy",
    "MulSupConStrategy",
    "MLCLStrategy",
    "SimCLRStrategy",
]


@dataclass
class PairContext:
    """What a strategy needs to know about one batch (and its reference rows)."""

    batch: int  # B anchor samples
    views: int  # V views per anchor sample
    refs: int  # M reference rows (single view, never anchors)
    stats: LabelStatistics | None  # None for label-free strategies (simclr)
    dtype: torch.dtype
    device: torch.device
    # Batch-wide values a strategy derives in prepare(); kept here, not on the (reusable)
    # strategy object, because backward recomputes weights after other forward calls may run.
    extra: dict = None
    # Optional per-candidate factor β_b in the denominator, as its log ([V·B + M], view-level
    # columns; −inf for β = 0): log p_ab = s_ab − log Σ_c β_c e^{s_ac} (MSC's β on batch columns).
    column_log_scale: torch.Tensor | None = None

    @property
    def num_candidates(self) -> int:
        return self.views * self.batch + self.refs

    @property
    def counts(self) -> torch.Tensor:
        """Label count n of every candidate sample, ``[B + M]``."""
        return self.stats.counts

    def own_columns(self, s0: int, s1: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(s1 - s0, device=self.device)
        return idx, idx + s0

    def view_row_sum(self, x: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """Row sums of the view-level expansion of ``x`` with the self pair left out.

        ``x`` is a sample-level ``[n, B + M]`` block; its batch columns stand for V view
        columns each, and ``own`` (the value in the anchor's own-sample column) is counted
        once too many, for the anchor itself.
        """
        b = self.batch
        total = x[:, :b].sum(1) * self.views - own
        if self.refs:
            total = total + x[:, b:].sum(1)
        return total

    def view_row_count(self, x: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """:meth:`view_row_sum` of ``x > 0`` for a non-negative ``x`` (one pass: an L0 norm)."""
        b = self.batch
        total = torch.linalg.vector_norm(x[:, :b], ord=0, dim=1) * self.views - (own > 0).to(self.dtype)
        if self.refs:
            total = total + torch.linalg.vector_norm(x[:, b:], ord=0, dim=1)
        return total


class FlatStrategy:
    """Base class. ``pooled`` reduction divides Σ_a num_a by Σ_a Z_a instead of averaging."""

    name = "flat"
    pooled = False
    needs_labels = True
    # mscrg's extra term: num_a −= Σ_b r_ab s_ab with r = max(sg(p_ab) − w_ab, 0)·1[w_ab > 0].
    excess_term = False

    def prepare(self, ctx: PairContext) -> None:
        """Batch-wide statistics, once per forward call."""

    def weights(self, ctx: PairContext, s0: int, s1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (w ``[s1 - s0, B + M]`` with own-sample column set, Z ``[s1 - s0]``)."""
        raise NotImplementedError

    @staticmethod
    def _set_own(w: torch.Tensor, ctx: PairContext, s0: int, s1: int, value) -> torch.Tensor:
        r, c = ctx.own_columns(s0, s1)
        w[r, c] = value
        return w


class AllStrategy(FlatStrategy):
    """w = 1 iff the label sets are equal and non-empty; Z = Σ w.

    Equal sets are found by comparing exact set ids (no label product): Z follows from how many
    candidates share each id.
    """

    name = "all"

    def prepare(self, ctx):
        ids = ctx.stats.set_ids()
        empty = ctx.counts == 0
        # An empty set matches nothing but itself: each gets its own id, below the others.
        ids = torch.where(empty, -1 - torch.arange(ids.numel(), device=ids.device), ids)
        b = ctx.batch
        _, inverse, per_id = torch.unique(ids[:b], return_inverse=True, return_counts=True)
        z = per_id[inverse].to(ctx.dtype) * ctx.views - 1
        if ctx.refs:
            ref_ids = ids[b:]
            z = z + (ids[:b, None] == ref_ids[None, :]).sum(1).to(ctx.dtype)
        ctx.extra["ids"], ctx.extra["z"] = ids, z

    def weights(self, ctx, s0, s1):
        ids = ctx.extra["ids"]
        w = (ids[s0:s1, None] == ids[None, :]).to(ctx.dtype)  # the own column is 1: same id
        return w, ctx.extra["z"][s0:s1]


class AnyStrategy(FlatStrategy):
    """w = 1 iff the label sets share a label; Z = Σ w. With one-hot labels this is SupCon."""

    name = "any"

    def weights(self, ctx, s0, s1):
        w = ctx.stats.row_dot(s0, s1).clamp_(max=1)  # I is a whole number: I > 0 → 1
        w = self._set_own(w, ctx, s0, s1, 1.0)
        return w, ctx.view_row_sum(w, torch.ones(s1 - s0, dtype=ctx.dtype, device=ctx.device))


class SimDisStrategy(FlatStrategy):
    """w = K^s · K^d where labels are shared: K^s = I/n_a, K^d = 1/(1 + n_b − I) or I/n_b."""

    name = "simdis"

    def __init__(self, dissimilarity: str = "reciprocal", normalization: str = "count") -> None:
        self.dissimilarity = dissimilarity
        self.normalization = normalization

    def weights(self, ctx, s0, s1):
        inter = ctx.stats.row_dot(s0, s1)
        na, nb = ctx.counts[s0:s1, None], ctx.counts[None, :]
        # K^s = I/n_a is already 0 wherever I = 0, so no mask is needed; where I > 0,
        # n_a ≥ I > 0 and n_b ≥ I > 0, and the clamps only guard the I = 0 entries.
        if self.dissimilarity == "reciprocal":
            w = inter.div_(torch.sub(nb + 1, inter).mul_(na.clamp(min=1)))
        else:
            w = inter.square_().div_(na.clamp(min=1) * nb.clamp(min=1))
        w = self._set_own(w, ctx, s0, s1, 1.0)
        own = torch.ones(s1 - s0, dtype=ctx.dtype, device=ctx.device)
        if self.normalization == "count":
            return w, ctx.view_row_count(w, own)
        return w, ctx.view_row_sum(w, own)


def _jaccard(ctx: PairContext, s0: int, s1: int) -> torch.Tensor:
    """J = I / (n_a + n_b − I), 0 where I = 0, in three passes over the block.

    Counts of empty rows are raised to 1/2: the union then stays > 0 where it would be 0/0, and
    nothing else changes (an empty row has I = 0 with every row, so J = 0 either way).
    """
    inter = ctx.stats.row_dot(s0, s1)
    counts = ctx.counts.clamp(min=0.5)
    union = torch.sub(counts[None, :], inter).add_(counts[s0:s1, None])
    return inter.div_(union)


class JaccardStrategy(FlatStrategy):
    """w = J/(c + ε) where J > c (strict); Z = number of positives.

    The constant 1/(c + ε) is moved from the weights into the normaliser (w = J, Z = count ·
    (c + ε)): the loss is identical, but with c = 0 the weights would be J/ε ≈ 1e8 and turn
    float32 rounding of the log-softmax into errors of order 1 (even negative losses).
    """

    name = "jaccard"

    def __init__(self, threshold: float = 0.3, eps: float = 1e-8) -> None:
        self.threshold, self.eps = threshold, eps

    def weights(self, ctx, s0, s1):
        jac = _jaccard(ctx, s0, s1)
        jac = self._set_own(jac, ctx, s0, s1, 1.0)  # same-sample rule: J = 1
        w = torch.nn.functional.threshold_(jac, self.threshold, 0.0)  # J if J > c else 0
        own = w[ctx.own_columns(s0, s1)]
        return w, ctx.view_row_count(w, own) * (self.threshold + self.eps)


class JaccardWeightStrategy(FlatStrategy):
    """w = J (every pair, no threshold; same-sample views J = 1); Z = Σ w.

    LossContrastiveBase of Audibert et al. (Multi-label-contrastive-comprehensive).
    """

    name = "jaccard_weight"

    def weights(self, ctx, s0, s1):
        w = _jaccard(ctx, s0, s1)
        w = self._set_own(w, ctx, s0, s1, 1.0)  # same-sample rule: J = 1
        return w, ctx.view_row_sum(w, torch.ones(s1 - s0, dtype=ctx.dtype, device=ctx.device))


class MulSupConStrategy(FlatStrategy):
    """w_ab = Σ_{k ∈ y_a ∩ y_b} 1/|P_k(a)|; Z_a = number of label rows of anchor a.

    |P_k(a)| = (number of candidate embeddings with label k) − 1, the same for every anchor
    holding k, so the weights are one label-weighted matrix product. ``empty_rows="count"``
    keeps the rows (a, k) with |P_k(a)| = 0 in Z_a (they add 0 to the loss), as the MSC
    authors' code does; ``"drop"`` leaves them out.
    """

    name = "mulsupcon"

    def __init__(self, reduction: str = "pair", empty_rows: str = "drop") -> None:
        self.reduction = reduction
        self.pooled = reduction == "pair"
        self.empty_rows = empty_rows

    def prepare(self, ctx):
        mult = torch.full((ctx.batch + ctx.refs,), float(ctx.views), dtype=ctx.dtype, device=ctx.device)
        mult[ctx.batch :] = 1.0
        cnt = ctx.stats.column_counts(mult)  # embeddings holding each label
        others = cnt - 1
        ctx.extra["inv"] = torch.where(others > 0, 1.0 / others.clamp(min=1), torch.zeros_like(others))
        # rows per anchor sample = Σ_k y_ak · 1[|P_k| > 0] ("count": every label row, n_a)
        if self.empty_rows == "count":
            ctx.extra["rows"] = ctx.counts[: ctx.batch]
        else:
            ctx.extra["rows"] = ctx.stats.row_sums((others > 0).to(ctx.dtype))[: ctx.batch]

    def weights(self, ctx, s0, s1):
        w = ctx.stats.row_dot(s0, s1, ctx.extra["inv"])
        na = ctx.counts[s0:s1]
        empty = na == 0
        if ctx.views > 1 and bool(empty.any()):
            # An anchor without labels: one row whose positives are its own other views.
            r, c = ctx.own_columns(s0, s1)
            w[r[empty], c[empty]] = 1.0 / (ctx.views - 1)
        z = torch.where(empty, torch.full_like(na, 1.0 if ctx.views > 1 else 0.0), ctx.extra["rows"][s0:s1])
        return w, z


class MLCLStrategy(FlatStrategy):
    """α·m⁺·J^β/(Σm⁺ + ε) + (1 − α)·m⁻/(Σm⁻ + ε), every anchor counted (Z = 1)."""

    name = "mlcl"

    def __init__(self, threshold: float = 0.0, beta: float = 1.0, alpha: float = 1.0, eps: float = 1e-8) -> None:
        self.threshold, self.beta, self.alpha, self.eps = threshold, beta, alpha, eps

    def weights(self, ctx, s0, s1):
        jac = _jaccard(ctx, s0, s1)
        jac = self._set_own(jac, ctx, s0, s1, 1.0)  # same-sample rule: J = 1
        own_pos = (jac[ctx.own_columns(s0, s1)] > self.threshold).to(ctx.dtype)
        if self.beta == 1.0 and self.alpha == 1.0:  # the default, in three passes
            w = torch.nn.functional.threshold_(jac, self.threshold, 0.0)  # m⁺ · J
            n_pos = ctx.view_row_count(w, own_pos)
            return w.mul_((1.0 / (n_pos + self.eps))[:, None]), torch.ones_like(n_pos)
        pos = (jac > self.threshold).to(ctx.dtype)
        n_pos = ctx.view_row_sum(pos, own_pos)
        w = pos * jac.pow(self.beta) * (self.alpha / (n_pos + self.eps))[:, None]
        if self.alpha != 1.0:
            n_neg = (ctx.num_candidates - 1) - n_pos
            w = w + (1 - pos) * ((1 - self.alpha) / (n_neg + self.eps))[:, None]
        return w, torch.ones(s1 - s0, dtype=ctx.dtype, device=ctx.device)


class SimCLRStrategy(FlatStrategy):
    """Only the other views of the anchor's own sample are positive."""

    name = "simclr"
    needs_labels = False

    def weights(self, ctx, s0, s1):
        w = torch.zeros(s1 - s0, ctx.batch + ctx.refs, dtype=ctx.dtype, device=ctx.device)
        w = self._set_own(w, ctx, s0, s1, 1.0)
        return w, torch.full((s1 - s0,), float(ctx.views - 1), dtype=ctx.dtype, device=ctx.device)
