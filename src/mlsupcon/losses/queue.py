"""Cross-batch memory: a FIFO queue of past embeddings and their labels, and a momentum encoder.

* :class:`MemoryQueue` stores embeddings with their label rows as module buffers (they are saved
  by ``state_dict()``, restored by ``load_state_dict()`` and moved by ``.to()``).
* :class:`QueueLoss` wraps any flat loss (in the spirit of pytorch-metric-learning's
  ``CrossBatchMemory``): the batch is contrasted against the batch **and** the queue, then the
  batch is enqueued.
* :class:`MomentumEncoder` keeps an exponential moving average (EMA) copy of an encoder, the key
  encoder of MoCo and of the official MulSupCon training.

MoCo / MulSupCon recipe (the keys of the momentum encoder are what the queue holds)::

    encoder = MyEncoder()
    key_encoder = MomentumEncoder(encoder, momentum=0.999)
    criterion = QueueLoss(build("mulsupcon"), size=8192, dim=128, num_labels=C)
    for x1, x2, y in loader:                 # two augmentations of each sample
        key_encoder.update()                 # EMA step first, as the official code does
        q = encoder(x1)                      # queries: the anchors, with gradient
        k = key_encoder(x2)                  # keys: no gradient
        loss = criterion(q, y, keys=k)       # candidates: the batch's keys, then the queue
        loss.backward(); opt.step(); opt.zero_grad()   # ... and k (not q) was enqueued

With ``keys``, the anchors are the queries, the candidates are the other queries, the current
keys and the queue, and the keys are enqueued. The official MulSupCon code contrasts the queries
with the keys and the queue only; the other queries are extra in-batch candidates here.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mlsupcon.losses import distributed as _dist
from mlsupcon.losses._validation import check_labels, flatten_features

__all__ = ["MemoryQueue", "QueueLoss", "MomentumEncoder"]

LABEL_FORMATS = ("multi_hot", "class_ids", "none")
ENQUEUE_VIEWS = ("all", "first")
# Past this many label columns the queue's labels go to the loss as a sparse matrix, so that a
# 25,000-code space is not copied to a dense float [size, C] matrix on each step.
SPARSE_LABELS_ABOVE = 2048


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


class MemoryQueue(nn.Module):
    """A FIFO ring buffer of ``size`` embeddings of dimension ``dim`` with their labels.

    Buffers: ``features`` ``[size, dim]`` (``dtype``), ``labels`` (``[size, num_labels]`` uint8
    multi-hot rows, ``[size]`` int64 class ids, or ``[size, 0]`` for ``"none"``), ``ptr`` (the
    next row to write) and ``filled`` (rows holding data), all saved with ``state_dict()``.
    When more than ``size`` rows arrive, the oldest are overwritten (wrap-around).

    Args:
        size: capacity in rows (>= 1).
        dim: embedding dimension (>= 1).
        num_labels: label columns C (required for ``"multi_hot"``).
        label_format: ``"multi_hot"`` (rows ``[n, C]``), ``"class_ids"`` (``[n]``, for
            SupCon) or ``"none"`` (SimCLR: queue rows are pure negatives).
        dtype: floating dtype of the stored embeddings.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import MemoryQueue
        >>> q = MemoryQueue(size=4, dim=2, num_labels=3)
        >>> q.push(torch.arange(12.0).reshape(6, 2), torch.eye(3)[[0, 1, 2, 0, 1, 2]])
        >>> len(q), int(q.ptr)
        (4, 2)
        >>> q.contents()[0][:, 0].tolist()       # oldest first: rows 2..5 of the 6 pushed
        [4.0, 6.0, 8.0, 10.0]
    """

    def __init__(self, size: int, dim: int, num_labels: int | None = None, label_format: str = "multi_hot",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        _check_int(size, "size", 1)
        _check_int(dim, "dim", 1)
        if label_format not in LABEL_FORMATS:
            raise ValueError(f"label_format: expected one of {LABEL_FORMATS}, got {label_format!r}")
        if label_format == "multi_hot":
            if num_labels is None:
                raise ValueError("num_labels: required for multi-hot labels")
            _check_int(num_labels, "num_labels", 1)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        self.size, self.dim, self.label_format = size, dim, label_format
        self.num_labels = num_labels if label_format == "multi_hot" else None
        self.register_buffer("features", torch.zeros(size, dim, dtype=dtype))
        if label_format == "multi_hot":
            labels = torch.zeros(size, num_labels, dtype=torch.uint8)
        elif label_format == "class_ids":
            labels = torch.zeros(size, dtype=torch.long)
        else:
            labels = torch.zeros(size, 0, dtype=torch.uint8)
        self.register_buffer("labels", labels)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.filled)

    @property
    def full(self) -> bool:
        return int(self.filled) == self.size

    def stored(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The filled rows in storage order (views of the buffers, no copy; the order of the
        rows does not matter to a contrastive loss)."""
        n = int(self.filled)
        labels = None if self.label_format == "none" else self.labels[:n]
        return self.features[:n], labels

    def contents(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The filled rows, oldest first (copies): ``(features [n, dim], labels or None)``."""
        n, ptr = int(self.filled), int(self.ptr)
        order = torch.arange(n, device=self.features.device)
        if n == self.size:
            order = (order + ptr) % self.size
        labels = None if self.label_format == "none" else self.labels[order]
        return self.features[order], labels

    def label_rows(self, labels: torch.Tensor | None, rows: int, name: str = "labels") -> torch.Tensor | None:
        """Validates ``labels`` for ``rows`` samples and converts them to the stored format."""
        if self.label_format == "none":
            return None
        if self.label_format == "class_ids":
            if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
                raise ValueError(f"{name}: expected [B] class ids, got {getattr(labels, 'shape', labels)!r}")
            if labels.shape[0] != rows:
                raise ValueError(f"{name}: has {labels.shape[0]} entries, expected {rows}")
            if labels.is_floating_point() and not bool((labels == labels.round()).all()):
                raise ValueError(f"{name}: class ids must be integers")
            return labels.detach().long()
        if labels is None:
            raise ValueError(f"{name}: required (the queue stores multi-hot labels)")
        labels = check_labels(labels, rows, name)
        if labels.shape[1] != self.num_labels:
            raise ValueError(
                f"{name}: has {labels.shape[1]} label columns but the queue stores num_labels={self.num_labels}"
            )
        dense = labels.to_dense() if labels.layout != torch.strided else labels
        return (dense.detach() != 0).to(torch.uint8)

    @torch.no_grad()
    def push(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Enqueues rows (first row first): ``features`` ``[n, dim]`` and their labels.

        ``labels``: ``[n, C]`` multi-hot, ``[n]`` class ids, or None for ``"none"``. With more
        than ``size`` rows only the last ``size`` are kept.
        """
        if not isinstance(features, torch.Tensor) or features.ndim != 2:
            raise ValueError(f"features: expected [n, dim] rows, got {getattr(features, 'shape', features)!r}")
        if features.shape[1] != self.dim:
            raise ValueError(f"features: has dimension {features.shape[1]} but the queue stores dim={self.dim}")
        n = features.shape[0]
        label_rows = self.label_rows(labels, n)
        if n == 0:
            return
        skip = max(0, n - self.size)
        ptr = int(self.ptr)
        idx = (ptr + skip + torch.arange(n - skip, device=self.features.device)) % self.size
        self.features.index_copy_(0, idx, features[skip:].detach().to(self.features))
        if label_rows is not None:
            self.labels.index_copy_(0, idx, label_rows[skip:].to(self.labels))
        self.ptr.fill_((ptr + n) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + n))

    @torch.no_grad()
    def reset(self) -> None:
        """Empties the queue."""
        self.features.zero_()
        self.labels.zero_()
        self.ptr.zero_()
        self.filled.zero_()

    def extra_repr(self) -> str:
        return (f"size={self.size}, dim={self.dim}, num_labels={self.num_labels}, "
                f"label_format={self.label_format!r}, dtype={self.features.dtype}")


def _infer_label_format(loss_fn: nn.Module) -> str:
    """The loss's declared ``label_format`` (``"multi_hot"`` for a loss that declares none)."""
    return getattr(loss_fn, "label_format", "multi_hot")


class QueueLoss(nn.Module):
    """A flat loss whose contrast set also holds a FIFO memory of past batches.

    ``forward(features, labels)`` computes
    ``loss_fn(features, labels, ref_features=<queue rows>, ref_labels=<their labels>)`` with the
    rows the queue holds **before** this batch, then enqueues this batch (detached). The queue
    rows are extra candidates only: never anchors, never views of an anchor's sample, positives
    or negatives by their labels (for SimCLR pure negatives).

    In evaluation mode (``.eval()``, e.g. during validation) the queue is read but not written,
    as the official MulSupCon code enqueues only while training.

    Views: with ``enqueue_views="all"`` (default) each view of a sample is enqueued as its own
    row with the sample's labels (V rows per sample, view-major: the batch's view-0 rows, then its
    view-1 rows, ...); with ``"first"`` only view 0 is enqueued (one row per sample, like MoCo).

    Distributed: when ``loss_fn.gather_distributed`` is True and torch.distributed runs with
    W > 1 ranks, the loss contrasts against every rank's batch (see
    :mod:`mlsupcon.losses.distributed`) and every rank enqueues the **gathered** batch in the same
    order (the concatenated batch of ranks 0, 1, ..., flattened view-major as one process would),
    so the queues stay identical on every rank. Then ``keys`` are gathered too, and invalid input
    on any rank raises a ``ValueError`` on every rank. The queue buffers need no syncing: if this
    module sits inside the DDP-wrapped model, pass ``broadcast_buffers=False`` to DDP (Lightning:
    ``DDPStrategy(broadcast_buffers=False)``) to avoid re-sending the whole queue at every step.

    Args:
        loss_fn: a flat loss (``build("simdis")``, ...) or any module with the signature
            ``loss_fn(features, labels, ref_features=, ref_labels=)``.
        size: queue capacity in rows (>= 1).
        dim: embedding dimension D.
        num_labels: label columns C of multi-hot labels (not needed for SupCon / SimCLR).
        enqueue_views: ``"all"`` or ``"first"`` (see above).
        dtype: dtype of the stored embeddings (``.to(dtype)`` on the module changes it later).
        label_format: ``"multi_hot"``, ``"class_ids"`` or ``"none"``; default: ``"class_ids"`` for
            :class:`~mlsupcon.losses.SupConLoss`, ``"none"`` for label-free losses (SimCLR),
            else ``"multi_hot"``.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import QueueLoss, build
        >>> crit = QueueLoss(build("simdis"), size=64, dim=16, num_labels=5)
        >>> for step in range(3):
        ...     loss = crit(torch.randn(8, 2, 16, requires_grad=True), torch.randint(0, 2, (8, 5)))
        >>> len(crit.queue)                     # 3 batches × 8 samples × 2 views
        48
    """

    def __init__(self, loss_fn: nn.Module, size: int, dim: int, num_labels: int | None = None,
                 enqueue_views: str = "all", dtype: torch.dtype = torch.float32,
                 label_format: str | None = None) -> None:
        super().__init__()
        if not isinstance(loss_fn, nn.Module):
            raise ValueError(f"loss_fn: expected an nn.Module loss, got {type(loss_fn).__name__}")
        if enqueue_views not in ENQUEUE_VIEWS:
            raise ValueError(f"enqueue_views: expected one of {ENQUEUE_VIEWS}, got {enqueue_views!r}")
        self.loss_fn = loss_fn
        self.enqueue_views = enqueue_views
        fmt = _infer_label_format(loss_fn) if label_format is None else label_format
        self.queue = MemoryQueue(size, dim, num_labels, fmt, dtype)

    # -- helpers -------------------------------------------------------------------------
    def _distributed(self) -> bool:
        return bool(getattr(self.loss_fn, "gather_distributed", False)) and _dist.world_size() > 1

    def _check(self, features, labels, enqueue_mask, keys):
        """Validates this rank's input; returns (B, label rows in queue format)."""
        _, batch, _ = flatten_features(features, "features")
        if features.shape[-1] != self.queue.dim:
            raise ValueError(f"features: has dimension {features.shape[-1]} but the queue stores dim={self.queue.dim}")
        rows = self.queue.label_rows(labels, batch, "labels")
        if enqueue_mask is not None:
            if not isinstance(enqueue_mask, torch.Tensor) or enqueue_mask.dtype != torch.bool \
                    or tuple(enqueue_mask.shape) != (batch,):
                raise ValueError(
                    f"enqueue_mask: expected a bool tensor of shape ({batch},), got "
                    f"{getattr(enqueue_mask, 'dtype', type(enqueue_mask).__name__)} "
                    f"{tuple(getattr(enqueue_mask, 'shape', ()))}"
                )
        if keys is not None:
            _, kb, _ = flatten_features(keys, "keys")
            if kb != batch:
                raise ValueError(f"keys: has {kb} samples but features has {batch}")
            if keys.shape[-1] != self.queue.dim:
                raise ValueError(f"keys: has dimension {keys.shape[-1]} but the queue stores dim={self.queue.dim}")
        return batch, rows

    def _rows(self, source: torch.Tensor, label_rows, mask):
        """Queue rows of a batch ``[B, V, D]``: (features [n, D], labels) in enqueue order."""
        if self.enqueue_views == "first":
            source = source[:, :1]
        if mask is not None:
            source = source[mask]
            label_rows = None if label_rows is None else label_rows[mask]
        views = source.shape[1]
        flat = source.transpose(0, 1).reshape(views * source.shape[0], source.shape[2])
        if label_rows is not None and views > 1:
            label_rows = torch.cat([label_rows] * views)
        return flat, label_rows

    def _queue_refs(self):
        feats, labels = self.queue.stored()
        if labels is not None and self.queue.label_format == "multi_hot" and labels.shape[1] > SPARSE_LABELS_ABOVE:
            labels = labels.to_sparse_coo()
        return feats, labels

    # -- forward -------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None,
                enqueue_mask: torch.Tensor | None = None, keys: torch.Tensor | None = None) -> torch.Tensor:
        """Loss against batch + queue, then enqueue.

        Args:
            features: ``[B, D]`` or ``[B, V, D]`` anchors (with gradient).
            labels: ``[B, C]`` multi-hot, ``[B]`` class ids (SupCon), or None (SimCLR).
            enqueue_mask: optional bool ``[B]``: only these samples are enqueued (all their
                enqueued views). The loss itself uses every sample.
            keys: optional ``[B, D]`` / ``[B, V', D]`` embeddings of the same samples from a
                momentum encoder (see :class:`MomentumEncoder`): they are extra candidates (after
                the batch, before the queue) with the batch's labels, and they, not
                ``features``, are enqueued. Detached.

        Returns:
            The loss (a 0-dim tensor).
        """
        distributed = self._distributed()
        error, batch, label_rows = None, 0, None
        try:
            batch, label_rows = self._check(features, labels, enqueue_mask, keys)
        except ValueError as exc:
            error = exc
        if distributed:
            sizes = self._exchange(batch, keys is not None, error)
        elif error is not None:
            raise error

        feats3 = features if features.ndim == 3 else features.unsqueeze(1)
        key3 = None if keys is None else (keys if keys.ndim == 3 else keys.unsqueeze(1)).detach()
        mask = enqueue_mask
        if distributed:
            # Every rank's key / label / mask rows, concatenated in rank order (no gradient).
            if key3 is not None:
                key3 = torch.cat(_dist.all_gather_no_grad(key3, sizes=sizes))
            if label_rows is not None and (key3 is not None or self.training):
                label_rows = torch.cat(_dist.gather_label_rows(label_rows, sizes))
            if mask is None:
                mask = torch.ones(batch, dtype=torch.bool, device=features.device)
            if self.training:
                mask = torch.cat(_dist.all_gather_no_grad(mask, sizes=sizes))

        ref_feats, ref_labels = self._queue_refs()
        if key3 is not None:
            kv = key3.shape[1]
            key_flat = key3.transpose(0, 1).reshape(kv * key3.shape[0], key3.shape[2])
            ref_feats = torch.cat([key_flat.to(ref_feats.dtype), ref_feats])
            if ref_labels is not None:
                key_labels = torch.cat([label_rows] * kv) if kv > 1 else label_rows
                if ref_labels.layout != torch.strided:
                    key_labels = key_labels.to_sparse_coo()
                ref_labels = torch.cat([key_labels.to(ref_labels.dtype), ref_labels])
        if ref_feats.shape[0] == 0:
            loss = self.loss_fn(features, labels)
        else:
            loss = self.loss_fn(features, labels, ref_features=ref_feats, ref_labels=ref_labels)

        if not self.training:
            return loss  # evaluation reads the queue but does not write it
        if distributed and key3 is None:
            feats3 = torch.cat(_dist.all_gather_no_grad(feats3, sizes=sizes))
        source = key3 if key3 is not None else feats3.detach()
        rows, row_labels = self._rows(source, label_rows, mask)
        self.queue.push(rows, row_labels)
        return loss

    def _exchange(self, batch: int, has_keys: bool, error):
        """Distributed: every rank's batch size; any rank's bad input raises everywhere."""
        device = self.queue.features.device
        record = torch.tensor([batch, int(has_keys), int(error is not None)], dtype=torch.long, device=device)
        records = torch.stack(_dist.all_gather_no_grad(record.unsqueeze(0), sizes=[1] * _dist.world_size()))
        records = records.reshape(-1, 3).tolist()
        bad = [r for r, rec in enumerate(records) if rec[2]]
        if bad:
            if error is not None:
                raise error
            raise ValueError(f"features: invalid input on rank(s) {bad} (see the error raised there)")
        if len({rec[1] for rec in records}) > 1:
            raise ValueError("keys: given on some ranks but not on others")
        return [rec[0] for rec in records]

    def extra_repr(self) -> str:
        return f"enqueue_views={self.enqueue_views!r}"


class MomentumEncoder(nn.Module):
    """An exponential-moving-average (EMA) copy of an encoder: MoCo's key encoder.

    ``update()`` sets every parameter of the copy to ``m · θ_k + (1 − m) · θ_q`` (θ_q: the
    online module's parameter), as MoCo and the official MulSupCon code do; call it once per
    training step, before computing the keys. Calling the module runs the copy under
    ``torch.no_grad()``, so the keys carry no gradient. Its buffers (e.g. BatchNorm running
    statistics) are its own, updated by its own forward passes in training mode, as in MoCo.

    The keys are what a :class:`QueueLoss` enqueues (``criterion(q, y, keys=k)``); see the
    recipe in :mod:`mlsupcon.losses.queue`.

    ``state_dict()`` holds the copy (``encoder.*``) and ``num_updates``; the online module is only
    referenced (not a submodule), so it is neither saved twice nor handed to an optimizer.

    Args:
        module: the online encoder (its current weights initialise the copy).
        momentum: m in [0, 1]; 1 freezes the copy, 0 copies the online weights at each update.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import MomentumEncoder
        >>> online = torch.nn.Linear(4, 2)
        >>> key_enc = MomentumEncoder(online, momentum=0.9)
        >>> with torch.no_grad():
        ...     _ = online.weight.add_(1.0)
        >>> key_enc.update()
        >>> bool(torch.allclose(key_enc.encoder.weight, online.weight - 0.9))
        True
        >>> key_enc(torch.randn(3, 4)).requires_grad
        False
    """

    def __init__(self, module: nn.Module, momentum: float = 0.999) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"module: expected an nn.Module, got {type(module).__name__}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self.encoder = copy.deepcopy(module)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
            p.grad = None
        self._online = (module,)  # a tuple: not registered as a submodule
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @property
    def online(self) -> nn.Module:
        return self._online[0]

    @torch.no_grad()
    def update(self, module: nn.Module | None = None) -> None:
        """One EMA step towards ``module`` (default: the module given at construction)."""
        online = self.online if module is None else module
        keys = list(self.encoder.named_parameters())
        queries = list(online.named_parameters())
        if [(n, p.shape) for n, p in keys] != [(n, p.shape) for n, p in queries]:
            raise ValueError("module: its parameters do not match the momentum encoder's")
        m = self.momentum
        for (_, k), (_, q) in zip(keys, queries):
            if k.is_floating_point():
                k.mul_(m).add_(q.detach().to(k.dtype), alpha=1.0 - m)
            else:
                k.copy_(q)
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.encoder(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}"
