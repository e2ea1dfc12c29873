"""Contrastive losses across processes: gather every rank's embeddings, keep DDP's gradients exact.

With ``gather_distributed=True`` a flat loss, run under ``torch.distributed`` with world size
W > 1, contrasts this rank's anchors against the embeddings of **every** rank (plus any
``ref_features``), exactly as one process would on the concatenated batch
(rank 0's samples, then rank 1's, ...). Nothing changes when torch.distributed is not
initialised or W = 1.

How (see :func:`distributed_flat_loss`):

1. every rank checks its own input, then all ranks exchange a small shape record, so that bad
   input on one rank raises a ``ValueError`` on **every** rank instead of leaving the others
   waiting in a collective;
2. features are all-gathered with :func:`all_gather_with_grad` (ranks may hold different batch
   sizes); labels are all-gathered without gradient (dense, class ids or sparse COO);
3. this rank's samples are the anchors (with all their views, so the same-sample rule holds as in
   one process); the other ranks' rows enter as extra contrast candidates, one candidate per view
   with its sample's labels. They are never views of a local sample, so the weights, the
   normalisers Z_a and the batch-wide statistics (MulSupCon's |P_k(a)|, MLCL's negative counts)
   are those of the concatenated batch;
4. the normalisation is global: the number of valid anchors (Z_a > 0), or Σ Z for the pooled
   reduction, and the number of anchors of MLCL's norm term are summed over ranks;
5. the per-rank partial losses P_r (with Σ_r P_r = L_full) are summed with
   :func:`all_reduce_sum_with_grad`.

Gradient semantics. Every rank returns the value ``L_full`` of the single-process loss on the
concatenated batch. Its backward pass computes, on rank q, ``W · ∂L_full/∂f_q`` for the local
features f_q: the sum-all-reduce's backward sums the upstream gradients of the W ranks (W × 1),
and the all-gather's backward sums, over ranks, the gradients that reach rank q's rows as other
ranks' candidates. The local parameter gradient is therefore ``W · (∂L_full/∂f_q)(∂f_q/∂θ)``,
and DistributedDataParallel's average over ranks, ``(1/W) Σ_q``, is exactly ``∂L_full/∂θ``. So
training on W ranks with batch b per rank takes the same step as one process on batch W·b.
(Without DDP, average the parameter gradients over ranks yourself, e.g. ``all_reduce`` / W.)

Every rank must call the loss and its ``backward()`` the same number of times (both contain
collectives). The backward all-gather uses ``all_reduce`` (supported by gloo and NCCL).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from mlsupcon.losses._validation import check_labels, flatten_features

__all__ = [
    "world_size",
    "rank",
    "all_gather_with_grad",
    "all_gather_no_grad",
    "all_reduce_sum_with_grad",
    "gather_label_rows",
    "distributed_flat_loss",
]


def world_size(group=None) -> int:
    """Number of processes, or 1 when torch.distributed is not available or not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def rank(group=None) -> int:
    """This process's rank, or 0 when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank(group)


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    t = t.contiguous()
    if t.shape[0] == rows:
        return t
    pad = t.new_zeros((rows - t.shape[0],) + tuple(t.shape[1:]))
    return torch.cat([t, pad])


def _gather_padded(t: torch.Tensor, sizes: list[int], group) -> list[torch.Tensor]:
    """all_gather of tensors whose first dimension differs by rank (padded to the largest)."""
    padded = _pad_rows(t, max(sizes))
    # gloo has no bool all_gather: move bools as uint8.
    as_bool = padded.dtype == torch.bool
    if as_bool:
        padded = padded.to(torch.uint8)
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded, group=group)
    return [(o.bool() if as_bool else o)[:n] for o, n in zip(out, sizes)]


def _sizes(n: int, device, group) -> list[int]:
    t = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.empty_like(t) for _ in range(world_size(group))]
    dist.all_gather(out, t, group=group)
    return [int(o) for o in out]


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: every rank's rows. Backward: Σ over ranks of the gradients of *this* rank's rows."""

    @staticmethod
    def forward(ctx, x, sizes, group):  # noqa: D401
        ctx.sizes, ctx.group, ctx.rank = sizes, group, rank(group)
        return tuple(_gather_padded(x, sizes, group))

    @staticmethod
    def backward(ctx, *grads):
        sizes, bmax = ctx.sizes, max(ctx.sizes)
        padded = torch.stack([_pad_rows(g, bmax) for g in grads])
        dist.all_reduce(padded, op=dist.ReduceOp.SUM, group=ctx.group)
        return padded[ctx.rank, : sizes[ctx.rank]], None, None


def all_gather_with_grad(x: torch.Tensor, group=None, sizes: list[int] | None = None) -> list[torch.Tensor]:
    """Differentiable all-gather along dimension 0; ranks may hold different numbers of rows.

    Args:
        x: this rank's ``[n_rank, ...]`` tensor (the other dimensions equal on every rank).
        group: process group (default: the world).
        sizes: every rank's ``n``, if already known (saves one collective).

    Returns:
        A list with one tensor per rank, in rank order; entry ``rank()`` holds ``x``'s values.
        Backward: rank q receives the sum over all ranks of the gradients reaching entry q
        (one ``all_reduce``), so gradients of x account for every rank's use of its rows.

    Example:
        >>> import torch
        >>> from mlsupcon.losses.distributed import all_gather_with_grad
        >>> # without torch.distributed initialised there is one rank:
        >>> [t.shape for t in all_gather_with_grad(torch.ones(3, 2))]
        [torch.Size([3, 2])]
    """
    if world_size(group) == 1:
        return [x]
    if sizes is None:
        sizes = _sizes(x.shape[0], x.device, group)
    return list(_AllGatherWithGrad.apply(x, sizes, group))


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor, group=None, sizes: list[int] | None = None) -> list[torch.Tensor]:
    """Like :func:`all_gather_with_grad`, detached (any dtype, bool included)."""
    if world_size(group) == 1:
        return [x.detach()]
    if sizes is None:
        sizes = _sizes(x.shape[0], x.device, group)
    return _gather_padded(x.detach(), sizes, group)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):  # noqa: D401
        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def all_reduce_sum_with_grad(x: torch.Tensor, group=None) -> torch.Tensor:
    """Σ over ranks of ``x``; backward sums the ranks' upstream gradients.

    That is the gradient of Σ_r (value returned on rank r): when every rank calls ``backward()``
    on the returned value, each rank's ``x`` receives gradient W (world size).

    Example:
        >>> import torch
        >>> from mlsupcon.losses.distributed import all_reduce_sum_with_grad
        >>> float(all_reduce_sum_with_grad(torch.tensor(2.0)))   # one process: identity
        2.0
    """
    if world_size(group) == 1:
        return x
    return _AllReduceSum.apply(x, group)


# ------------------------------------------------------------------------------ labels
_NO_LABELS, _CLASS_IDS, _MULTI_HOT, _SPARSE = 0, 1, 2, 3


def _label_kind(labels) -> int:
    if labels is None:
        return _NO_LABELS
    if labels.layout != torch.strided:
        return _SPARSE
    return _CLASS_IDS if labels.ndim == 1 else _MULTI_HOT


@torch.no_grad()
def gather_label_rows(labels: torch.Tensor | None, sizes: list[int], group=None) -> list:
    """All-gathers label rows: multi-hot ``[n, C]`` (dense or sparse), class ids ``[n]`` or None.

    Dense multi-hot rows travel as uint8, sparse ones as COO indices (a 25,000-code label space
    is not densified). Returns one tensor (or None) per rank, in rank order.
    """
    if world_size(group) == 1:
        return [labels]
    kind = _label_kind(labels)
    if kind == _NO_LABELS:
        return [None] * len(sizes)
    if kind == _CLASS_IDS:
        return _gather_padded(labels.long(), sizes, group)
    if kind == _MULTI_HOT:
        return _gather_padded((labels != 0).to(torch.uint8), sizes, group)
    coo = labels.to_sparse_coo().coalesce()
    idx = coo.indices()[:, coo.values() != 0]
    nnz = _sizes(idx.shape[1], idx.device, group)
    parts = _gather_padded(idx.T.contiguous(), nnz, group)
    width = labels.shape[1]
    return [
        torch.sparse_coo_tensor(p.T, torch.ones(p.shape[0], device=p.device), (n, width),
                                check_invariants=False).coalesce()
        for p, n in zip(parts, sizes)
    ]


def _cat_label_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenates label rows (dense, class ids, or sparse COO if any part is sparse)."""
    parts = [p for p in parts if p is not None]
    if len(parts) == 1:
        return parts[0]
    if any(p.layout != torch.strided for p in parts):
        parts = [p.to_sparse_coo().coalesce().to(torch.float32) for p in parts]
        return torch.cat(parts).coalesce()
    return torch.cat(parts)


def _repeat_rows(t: torch.Tensor | None, times: int):
    """View-major label rows for ``times`` views: the rows, ``times`` times over."""
    if t is None or times == 1:
        return t
    return torch.cat([t] * times)


# ------------------------------------------------------------------------------ the loss
def _local_check(loss_fn, features, labels):
    """Shape record of this rank's input and the ValueError it raises, if any."""
    info = [0, 0, 0, _label_kind(labels), 0]
    try:
        flat, b, v = flatten_features(features, "features")
        info[:3] = [b, v, flat.shape[1]]
        if loss_fn.label_format != "none":
            if labels is None:
                raise ValueError("labels: required by this loss")
            if labels.ndim == 1:
                if labels.shape[0] != b:
                    raise ValueError(f"labels: has {labels.shape[0]} entries but features has {b} samples")
            else:
                check_labels(labels, b, "labels")
                info[4] = labels.shape[1]
        else:
            info[3] = _NO_LABELS
    except ValueError as exc:
        return info, exc
    return info, None


def distributed_flat_loss(loss_fn, features, labels=None, ref_features=None, ref_labels=None, group=None):
    """One rank's share of a flat loss over the batch of all ranks (see the module docstring).

    Called by :class:`~mlsupcon.losses.FlatContrastiveLoss` when ``gather_distributed=True`` and
    the world size is > 1. ``ref_features`` / ``ref_labels`` (e.g. a memory queue) are extra
    candidates that are **not** gathered: they must be the same on every rank (as a queue that
    enqueues the gathered batch is) or be meant per rank.

    Args:
        loss_fn: a :class:`~mlsupcon.losses.FlatContrastiveLoss`.
        features: this rank's ``[B_r, D]`` or ``[B_r, V, D]`` (B_r may differ between ranks;
            V and D may not).
        labels: this rank's labels (multi-hot, sparse multi-hot, class ids, or None for simclr).
        ref_features, ref_labels: extra candidates, as for the loss itself.
        group: process group (default: the world).

    Returns:
        The loss of the concatenated batch, the same value on every rank; its gradient on rank q
        is W · ∂L_full/∂(rank q's features), so DDP's average gives ∂L_full/∂θ exactly.

    Raises:
        ValueError: on every rank, when any rank's input is invalid or V, D, or the label format
            differ between ranks.
    """
    world, me = world_size(group), rank(group)
    device = features.device if isinstance(features, torch.Tensor) else torch.device("cpu")
    info, error = _local_check(loss_fn, features, labels)
    record = torch.tensor(info + [int(error is not None)], dtype=torch.long, device=device)
    records = [torch.empty_like(record) for _ in range(world)]
    dist.all_gather(records, record, group=group)
    records = torch.stack(records).tolist()
    bad = [r for r, rec in enumerate(records) if rec[5]]
    if bad:
        if error is not None:
            raise error
        raise ValueError(f"features: invalid input on rank(s) {bad} (see the error raised there)")
    for col, what in ((1, "views V"), (2, "embedding dimension D"), (3, "label format"), (4, "label columns C")):
        values = sorted({rec[col] for rec in records})
        if len(values) > 1:
            arg = "features" if col < 3 else "labels"
            raise ValueError(f"{arg}: the {what} differs between ranks: {[rec[col] for rec in records]}")
    sizes = [rec[0] for rec in records]
    views = records[0][1]

    # Other ranks' rows: differentiable features, labels without gradient.
    feats3 = features if features.ndim == 3 else features.unsqueeze(1)
    gathered = all_gather_with_grad(feats3, group, sizes)
    needs_labels = loss_fn.label_format != "none"
    gathered_labels = gather_label_rows(labels, sizes, group) if needs_labels else [None] * world
    others = [q for q in range(world) if q != me]
    ref_rows = [gathered[q].transpose(0, 1).reshape(views * sizes[q], -1) for q in others]  # view-major
    ref_label_rows = [_repeat_rows(gathered_labels[q], views) for q in others] if needs_labels else []
    if ref_features is not None:
        user, rb, rv = flatten_features(ref_features, "ref_features")
        ref_rows.append(user)
        if needs_labels:
            if ref_labels is None:
                raise ValueError("ref_labels: required when ref_features is given")
            if ref_labels.shape[0] != rb:
                raise ValueError(f"ref_labels: has {ref_labels.shape[0]} rows but ref_features has {rb} samples")
            ref_label_rows.append(_repeat_rows(ref_labels, rv))
    elif ref_labels is not None:
        raise ValueError("ref_labels: given without ref_features")
    refs = torch.cat([r.to(features.dtype) for r in ref_rows])
    refs_labels = _cat_label_rows(ref_label_rows) if needs_labels else None

    num, norm, pooled, extra = loss_fn.anchor_terms(features, labels, refs, refs_labels)

    # Global normalisation: Σ_r P_r = the single-process loss on the concatenated batch.
    if pooled:
        denom = norm.sum().detach().reshape(1)
    else:
        valid = norm > 0
        denom = valid.sum().to(num.dtype).reshape(1)
    dist.all_reduce(denom, op=dist.ReduceOp.SUM, group=group)
    denom = float(denom)
    if denom <= 0:
        partial = num.sum() * 0.0  # no valid anchor anywhere: an exact, connected 0
    elif pooled:
        partial = num.sum() / denom
    else:
        partial = (num[valid] / norm[valid]).sum() / denom
    if extra is not None:
        # extra_terms is a mean over this rank's anchors; the global mean weighs it by B_r / B.
        partial = partial + extra * (sizes[me] / sum(sizes))
    return all_reduce_sum_with_grad(partial, group)
