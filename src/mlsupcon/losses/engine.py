"""The one core every flat loss shares: a weighted log-softmax over similarities, chunked.

For anchor a and candidates b ≠ a (the other N − 1 embeddings, then the M reference rows):

    num_a = −Σ_b w_ab log p_ab = W_a · lse_a − Σ_b w_ab s_ab,   W_a = Σ_b w_ab,
    lse_a = log Σ_{c ≠ a} exp(s_ac),  s_ab = z_a · z_b / τ.

Gradient: ∂num_a/∂s_ab = W_a p_ab − w_ab =: G_ab, so one matrix G per block of anchors gives
∂/∂z_a = Σ_b G_ab z_b / τ and ∂/∂z_b = Σ_a G_ab z_a / τ.

Anchors are processed in blocks of ``chunk`` samples (× V views). In *chunked* mode nothing
of size N × N needs to be kept: backward recomputes a block's similarities and weights, as flash
attention does. When the engine chooses the blocks, it keeps G of the first blocks from forward
up to :data:`KEEP_MAX_ENTRIES` and recomputes only the rest, so the cost grows smoothly past the
dense limit instead of jumping by a fourth matmul; with ``chunk_size`` given, nothing is kept
and at most O(chunk × N) similarity entries exist at once. In *dense* mode (small
batches, when the engine chooses) G is kept from the forward pass and backward is two matmuls.
"""

from __future__ import annotations

import torch

from mlsupcon.losses.strategies import FlatStrategy, PairContext

__all__ = ["weighted_log_softmax", "reduce_anchor_losses", "plan_chunks"]

# Dense mode (G kept between forward and backward) up to this many anchor × candidate entries.
DENSE_MAX_ENTRIES = 2**26
# Chunked mode: about this many similarity entries per block (V views of it). Thin blocks make
# thin matmuls, which run well below the bare matmul's rate; 2**24 entries keep a block's buffer
# at 64 MiB (float32).
BLOCK_ENTRIES = 2**24
# Chunked mode chosen by the engine: G of the first blocks is kept from forward up to this many
# entries (1 GiB in float32), so backward recomputes only the other blocks.
KEEP_MAX_ENTRIES = 2**28
# Below this τ, exp(s − 1/τ) could underflow for every candidate (s ≥ −1/τ, float32 exp
# underflows below about −87), so the row maximum is used as the shift instead.
MIN_FIXED_SHIFT_TEMPERATURE = 0.025


def plan_chunks(batch: int, views: int, num_candidates: int, chunk_size: int | None) -> tuple[int, bool]:
    """Returns (samples per block, dense: one block with G kept from forward)."""
    if chunk_size is not None:
        return max(1, min(int(chunk_size), batch)), False
    if views * batch * num_candidates <= DENSE_MAX_ENTRIES:
        return batch, True
    return max(1, min(batch, BLOCK_ENTRIES // (views * num_candidates) or 1)), False


def keep_budget(dense: bool, chunk_size: int | None) -> float:
    """Entries of G that forward may keep for backward: all when dense, none when the caller
    bounded the memory with ``chunk_size``, else :data:`KEEP_MAX_ENTRIES`."""
    if dense:
        return float("inf")
    return 0 if chunk_size is not None else KEEP_MAX_ENTRIES


def _blocks(ctx: PairContext, chunk: int):
    """Yields (s0, s1) sample ranges; each is processed for every view."""
    for s0 in range(0, ctx.batch, chunk):
        yield s0, min(ctx.batch, s0 + chunk)


def _column_blocks(ctx: PairContext):
    """(column slice of the view-level matrix, column slice of the sample-level weights)."""
    b = ctx.batch
    for v in range(ctx.views):
        yield slice(v * b, (v + 1) * b), slice(0, b)
    if ctx.refs:
        yield slice(ctx.views * b, ctx.views * b + ctx.refs), slice(b, b + ctx.refs)


def _drop_lone_self(w_s, ctx: PairContext, r, s0: int) -> None:
    """With one view the own-sample column holds only the self pair: zero it.

    Its weight never counts, but adding and then subtracting it costs precision when it is
    large (MLCL gives α/ε to an anchor without positives).
    """
    if ctx.views == 1:
        w_s[r, r + s0] = 0


def _similarities(z, rows, inv_t, shift=None, out=None):
    """s_ab − shift_a for the anchor rows (the shift, a column or a scalar tensor, is subtracted
    by the matmul itself instead of a pass over the block), into ``out`` when given."""
    if shift is None:
        return torch.mm(z[rows] * inv_t, z.T, out=out)
    return torch.addmm(shift, z[rows] * inv_t, z.T, alpha=1.0, beta=-1.0, out=out)


def _row_dot(a, b) -> torch.Tensor:
    """Σ_j a_ij b_ij as a batch of vector products: no [n, m] temporary (vecdot writes one)."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _weighted_sum(w_s, s, ctx: PairContext) -> torch.Tensor:
    """Σ_b w_ab s_ab over view-level columns, reading the sample-level weights V times
    instead of materialising their view-level expansion."""
    out = None
    for cols, wcols in _column_blocks(ctx):
        part = _row_dot(w_s[:, wcols], s[:, cols])
        out = part if out is None else out.add_(part)
    return out


def _excess(p, w):
    """mscrg's r = max(p − w, 0)·1[w > 0] (p is detached: backward never differentiates it)."""
    return (p - w).clamp_(min=0).mul_(w > 0)


def _excess_dot(e, inv, w_s, s, shift, ctx: PairContext) -> torch.Tensor:
    """Σ_b r_ab s_ab with p = e·inv and s = (s − shift) + shift over view-level columns."""
    out = None
    for cols, wcols in _column_blocks(ctx):
        rr = _excess(e[:, cols] * inv[:, None], w_s[:, wcols])
        part = _row_dot(rr, s[:, cols]) + rr.sum(1) * shift
        out = part if out is None else out.add_(part)
    return out


def _to_negative_gradient_factor(e, scale, w_s, ctx: PairContext, r, self_cols, inv=None) -> torch.Tensor:
    """In place: e (= exp(s − shift), self entry 0) → −G = w − W·p, with the self entry 0.

    One fused pass per column block (w − scale·e); the sign is undone in backward. With
    ``inv`` (p = e·inv) the strategy's excess term r is added: −G = w − W·p + r.
    """
    scale = scale[:, None]
    for cols, wcols in _column_blocks(ctx):
        rr = None if inv is None else _excess(e[:, cols] * inv[:, None], w_s[:, wcols])
        torch.addcmul(w_s[:, wcols], e[:, cols], scale, value=-1, out=e[:, cols])
        if rr is not None:
            e[:, cols] += rr
    e[r, self_cols] = 0  # p_aa = 0 and the self pair carries no weight
    return e


class _WeightedLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, strategy, pctx, temperature, chunk, budget, fixed_shift):  # noqa: D401
        b, v = pctx.batch, pctx.views
        n_anchor = b * v
        inv_t = 1.0 / temperature
        num = z.new_zeros(n_anchor)
        lse_all = z.new_zeros(n_anchor)
        wsum_all = z.new_zeros(n_anchor)
        norm = z.new_zeros(b)
        kept = []  # per (block, view): −G kept from forward, or None (backward recomputes it)
        kept_entries = 0
        const_shift = None if fixed_shift is None else z.new_full((1, 1), fixed_shift)
        log_scale = pctx.column_log_scale
        excess = strategy.excess_term
        if excess and log_scale is not None:
            raise NotImplementedError("a strategy with an excess term and column scales")
        # Chunked: one block buffer for every block and view (fresh memory costs page faults).
        buf = None
        for s0, s1 in _blocks(pctx, chunk):
            w_s, z_s = strategy.weights(pctx, s0, s1)
            norm[s0:s1] = z_s
            r = torch.arange(s1 - s0, device=z.device)
            _drop_lone_self(w_s, pctx, r, s0)
            own = w_s[r, r + s0]
            wsum = pctx.view_row_sum(w_s, own)
            for view in range(v):
                rows = slice(view * b + s0, view * b + s1)
                self_cols = r + view * b + s0
                # With unit-norm embeddings |s| ≤ 1/τ, so a constant shift is safe and the
                # matmul subtracts it; otherwise the row maximum.
                keep = kept_entries + (s1 - s0) * z.shape[0] <= budget
                if keep:
                    kept_entries += (s1 - s0) * z.shape[0]
                    out = None
                else:
                    if buf is None:
                        buf = z.new_empty(min(chunk, b), z.shape[0])
                    out = buf[: s1 - s0]
                if const_shift is not None:
                    s = _similarities(z, rows, inv_t, const_shift, out)
                    shift = const_shift.view(1).expand(s1 - s0)
                else:
                    s = _similarities(z, rows, inv_t, out=out)
                    s[r, self_cols] = float("-inf")
                    shift = s.amax(1) if log_scale is None else (s + log_scale).amax(1)
                    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
                    s.sub_(shift[:, None])
                # num_a = W_a log Σ_c e^{s_ac − shift} + Σ_b w_ab (shift − s_ab): with the row maximum
                # both terms are ≥ 0, so large unnormalised similarities never cancel (and one
                # candidate gives an exact 0). The self entry is 0 in the weighted sum (the
                # sample-level weights cover the self column) and −inf in the exponentials.
                s[r, self_cols] = 0
                dot = _weighted_sum(w_s, s, pctx)
                s[r, self_cols] = float("-inf")
                if log_scale is not None:
                    s.add_(log_scale)  # β_c e^{s_ac}; the weighted sum above used s itself
                e = torch.exp(s) if excess else s.exp_()
                sumexp = e.sum(1)
                # sumexp = 0 only when the anchor has no candidate at all (B = V = 1, no refs).
                safe = sumexp > 0
                sumexp = torch.where(safe, sumexp, 1.0)  # log 1 = 0: such an anchor adds nothing
                log_sum = sumexp.log()
                num[rows] = wsum * log_sum - dot
                inv = None
                if excess:
                    inv = torch.where(safe, 1.0 / sumexp, 0.0)
                    s[r, self_cols] = 0
                    num[rows] -= _excess_dot(e, inv, w_s, s, shift, pctx)
                lse_all[rows] = torch.where(safe, shift + log_sum, 0.0)
                wsum_all[rows] = wsum
                if keep:
                    scale = torch.where(safe, wsum / sumexp, 0.0)
                    kept.append(_to_negative_gradient_factor(e, scale, w_s, pctx, r, self_cols, inv))
                else:
                    kept.append(None)
        ctx.save_for_backward(z, lse_all, wsum_all)
        ctx.strategy, ctx.pctx, ctx.temperature, ctx.chunk, ctx.kept = strategy, pctx, temperature, chunk, kept
        ctx.mark_non_differentiable(norm)
        return num, norm

    @staticmethod
    def backward(ctx, g_num, _g_norm):
        z, lse_all, wsum_all = ctx.saved_tensors
        pctx, b, v = ctx.pctx, ctx.pctx.batch, ctx.pctx.views
        inv_t = 1.0 / ctx.temperature
        grad = torch.zeros_like(z)
        scale_all = g_num * -inv_t  # the blocks hold −G
        buf = None
        k = 0
        for s0, s1 in _blocks(pctx, ctx.chunk):
            block = ctx.kept[k : k + v]
            if any(g is None for g in block):  # this block's weights, for the views not kept
                w_s, _ = ctx.strategy.weights(pctx, s0, s1)
                r = torch.arange(s1 - s0, device=z.device)
                _drop_lone_self(w_s, pctx, r, s0)
                if buf is None:
                    buf = z.new_empty(min(ctx.chunk, b), z.shape[0])
            for view in range(v):
                rows = slice(view * b + s0, view * b + s1)
                g_mat = ctx.kept[k]
                ctx.kept[k] = None  # freed as soon as it is used
                k += 1
                if g_mat is None:
                    self_cols = r + view * b + s0
                    g_mat = _similarities(z, rows, inv_t, lse_all[rows, None], buf[: s1 - s0])
                    g_mat[r, self_cols] = float("-inf")
                    if pctx.column_log_scale is not None:
                        g_mat.add_(pctx.column_log_scale)
                    inv = torch.ones_like(wsum_all[rows]) if ctx.strategy.excess_term else None
                    g_mat = _to_negative_gradient_factor(g_mat.exp_(), wsum_all[rows], w_s, pctx, r, self_cols, inv)
                scale = scale_all[rows, None]
                # Scaling the thin [n, D] operands instead of G avoids an N-wide temporary.
                grad[rows] += scale * (g_mat @ z)
                grad.addmm_(g_mat.T, scale * z[rows])
        ctx.kept = [None] * len(ctx.kept)  # a second backward (retain_graph) recomputes
        return grad, None, None, None, None, None, None


def weighted_log_softmax(
    z: torch.Tensor,
    strategy: FlatStrategy,
    pctx: PairContext,
    temperature: float,
    chunk_size: int | None = None,
    unit_norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor ``num_a = −Σ_b w_ab log p_ab`` and normalisers ``Z_a``.

    Args:
        z: ``[V·B + M, D]`` embeddings: the V·B anchors (view-major) then the M references.
        strategy: the pair-weight strategy.
        pctx: batch description and label statistics.
        temperature: τ.
        chunk_size: samples per block; None lets the engine choose (dense when small).
        unit_norm: the rows of ``z`` have norm ≤ 1, so every s_ab ≤ 1/τ: the log-sum-exp then
            shifts by the constant 1/τ instead of each row's maximum.

    Returns:
        ``num`` ``[V·B]`` (differentiable) and ``Z`` ``[B]`` (per sample; views share it).
    """
    chunk, dense = plan_chunks(pctx.batch, pctx.views, pctx.num_candidates, chunk_size)
    # One candidate per anchor (N + M = 2): the row maximum makes log p = 0 exact.
    # Column factors β ≤ 1 keep every term ≤ e^0 after that shift (larger ones take the row maximum).
    scaled_up = pctx.column_log_scale is not None and bool((pctx.column_log_scale > 0).any())
    fixed_shift = (1.0 / temperature if unit_norm and temperature >= MIN_FIXED_SHIFT_TEMPERATURE
                   and pctx.num_candidates > 2 and not scaled_up else None)
    budget = keep_budget(dense, chunk_size)
    return _WeightedLogSoftmax.apply(z, strategy, pctx, temperature, chunk, budget, fixed_shift)


def reduce_anchor_losses(num: torch.Tensor, norm: torch.Tensor, pooled: bool) -> torch.Tensor:
    """Batch loss from per-anchor numerators and normalisers.

    Default: mean over anchors with Z_a > 0 of num_a / Z_a. ``pooled``: Σ num / Σ Z (MulSupCon's
    mean over label rows). With no valid anchor the result is an exact 0 that stays connected to
    the graph, so ``backward()`` gives zero gradients rather than an error.
    """
    if pooled:
        total = norm.sum()
        if total <= 0:
            return num.sum() * 0.0
        return num.sum() / total
    valid = norm > 0
    if not bool(valid.any()):
        return num.sum() * 0.0
    return (num[valid] / norm[valid]).mean()
