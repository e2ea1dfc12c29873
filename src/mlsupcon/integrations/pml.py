"""mlsupcon's flat losses as pytorch-metric-learning (pml) loss functions, with multi-hot labels.

pml assumes one class id per sample: ``BaseMetricLossFunction.forward`` refuses labels that are
not 1-D (``c_f.check_shapes``), its miners and ``indices_tuple`` pair samples by label equality,
and its ``CrossBatchMemory`` stores labels in a 1-D buffer. Here:

* :class:`MultiLabelContrastiveLoss` is a ``BaseMetricLossFunction`` whose ``forward`` accepts
  multi-hot labels ``[B, C]`` (dense or sparse; class ids ``[B]`` for ``supcon``; none for
  ``simclr``) and embeddings ``[B, D]`` or ``[B, V, D]``, and hands them to the mlsupcon loss.
  Its value is the mlsupcon loss's, exactly; half-precision embeddings are computed in float32.
  pml's ``embedding_regularizer`` and ``collect_stats`` work as for pml's own losses.
* pml's ``DistributedLossWrapper(loss)`` (``efficient=False``, the default) all-gathers the
  embeddings and the 2-D labels of every rank (equal batch sizes, dense labels) and returns
  W × the loss of the concatenated batch, whose gradient averaged by DDP is the single-process
  gradient. ``efficient=True`` cannot work with 2-D labels: pml builds all positive/negative
  pairs by label equality on 1-D labels before calling the loss (``get_all_pairs_indices``
  fails). The exact and memory-efficient alternative is the loss's own
  ``gather_distributed=True`` (each rank's anchors against every rank's batch) under plain DDP,
  without the wrapper (never both: the batch would be gathered twice).
* :class:`CrossBatchMemory` replaces pml's ``CrossBatchMemory``, whose 1-D ``label_memory``
  cannot hold label rows: the same call (``loss, embedding_size, memory_size``, plus
  ``num_labels``), the same ``forward(embeddings, labels, indices_tuple=None,
  enqueue_mask=None)``, a label-aware :class:`~mlsupcon.losses.MemoryQueue` that stores float32
  rows whatever the embeddings' dtype, and it is a subclass of pml's class, so that
  ``DistributedLossWrapper`` accepts it.

Miners and ``indices_tuple`` are refused: an mlsupcon loss weighs every pair by its label relation.
``ref_emb`` / ``ref_labels`` are *extra* candidates besides the batch (mlsupcon's
``ref_features`` / ``ref_labels``); pml's own losses contrast the batch with ``ref_emb`` only.

Example:
    >>> import torch
    >>> from mlsupcon.integrations.pml import MultiLabelContrastiveLoss
    >>> from mlsupcon.losses import build
    >>> loss_func = MultiLabelContrastiveLoss("simdis", temperature=0.1)
    >>> embeddings = torch.randn(16, 32)
    >>> labels = torch.randint(0, 2, (16, 5))          # multi-hot [B, C]
    >>> value = loss_func(embeddings, labels)
    >>> bool(torch.isclose(value, build("simdis", temperature=0.1)(embeddings, labels)))
    True
"""

from __future__ import annotations

import torch
from torch import nn

try:
    from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity
    from pytorch_metric_learning.losses import BaseMetricLossFunction
    from pytorch_metric_learning.losses import CrossBatchMemory as _PMLCrossBatchMemory
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError(
        "mlsupcon.integrations.pml needs pytorch-metric-learning: pip install 'mlsupcon[integrations]'"
    ) from None

from mlsupcon.losses import FLAT_LOSSES, build
from mlsupcon.losses.queue import SPARSE_LABELS_ABOVE, MemoryQueue

__all__ = ["MultiLabelContrastiveLoss", "CrossBatchMemory"]

#: Label formats a pml-wrapped loss can take (multi-hot rows, class ids, none).
LABEL_FORMATS = ("multi_hot", "class_ids", "none")
_NO_INDICES = (
    "indices_tuple: mlsupcon losses weigh every pair by its label relation; pml miners and indices_tuple "
    "are not supported (with DistributedLossWrapper use efficient=False)"
)


def _build_loss(loss, options: dict) -> nn.Module:
    if isinstance(loss, str):
        if loss.lower() not in FLAT_LOSSES:
            raise ValueError(
                f"loss: {loss!r} is not a flat contrastive loss (embeddings + labels); expected one of "
                f"{sorted(FLAT_LOSSES)}"
            )
        return build(loss, **options)
    if not isinstance(loss, nn.Module):
        raise ValueError(f"loss: expected a loss name or an mlsupcon loss module, got {type(loss).__name__}")
    if options:
        raise ValueError(f"loss options {sorted(options)}: given with a built loss; pass them to build() instead")
    fmt = getattr(loss, "label_format", "multi_hot")
    if fmt not in LABEL_FORMATS:
        raise ValueError(f"loss: takes labels of format {fmt!r}; expected a loss with one of {LABEL_FORMATS}")
    return loss


def _check_rows(embeddings, labels, emb_name: str, label_name: str) -> None:
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim not in (2, 3):
        raise ValueError(
            f"{emb_name}: expected a [B, D] or [B, V, D] tensor, got {getattr(embeddings, 'shape', type(embeddings))}"
        )
    if labels is None:
        return
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{label_name}: expected a torch tensor, got {type(labels).__name__}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"{label_name}: has {labels.shape[0]} rows but {emb_name} has {embeddings.shape[0]}")


class MultiLabelContrastiveLoss(BaseMetricLossFunction):
    """An mlsupcon flat loss as a pml ``BaseMetricLossFunction``, taking multi-hot labels.

    Args:
        loss: a name of :data:`mlsupcon.losses.FLAT_LOSSES` (``"simdis"``, ``"mulsupcon"``,
            ``"all"``, ``"any"``, ``"jaccard"``, ``"mlcl"``, ``"supcon"``, ``"simclr"``, ...) or a
            built flat loss module.
        distance: pml's distance, only to state what the loss uses: ``CosineSimilarity`` (the
            default; the loss L2-normalises) or ``DotProductSimilarity`` with ``normalize=False``.
        **options: the mlsupcon loss's options (``temperature``, ``chunk_size``,
            ``gather_distributed`` ...) and pml's ``embedding_regularizer``,
            ``embedding_reg_weight``, ``reducer``, ``collect_stats``.

    Call: ``loss_func(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None)``
    with embeddings ``[B, D]`` (pml's layout) or ``[B, V, D]`` (V views per sample) and labels
    ``[B, C]`` multi-hot (``supcon``: ``[B]`` class ids; ``simclr``: None). ``ref_emb`` rows are
    extra candidates (never anchors) with their labels ``ref_labels``.

    Example:
        >>> import torch
        >>> from mlsupcon.integrations.pml import MultiLabelContrastiveLoss
        >>> loss_func = MultiLabelContrastiveLoss("mulsupcon", temperature=0.2)
        >>> emb = torch.randn(8, 2, 16, requires_grad=True)    # two views per sample
        >>> loss = loss_func(emb, torch.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]])
        >>> loss.backward(); emb.grad.shape
        torch.Size([8, 2, 16])
    """

    _PML_OPTIONS = ("embedding_regularizer", "embedding_reg_weight", "reducer", "collect_stats")

    def __init__(self, loss: str | nn.Module = "simdis", distance=None, **options) -> None:
        pml_options = {k: options.pop(k) for k in self._PML_OPTIONS if k in options}
        loss_fn = _build_loss(loss, options)
        normalize = bool(getattr(loss_fn, "normalize", True))
        expected = CosineSimilarity if normalize else DotProductSimilarity
        if distance is not None and type(distance) is not expected:
            raise ValueError(
                f"distance: the loss uses {expected.__name__} (normalize={normalize}); got {type(distance).__name__}"
            )
        self._normalize = normalize  # read by get_default_distance() during super().__init__
        super().__init__(distance=distance, **pml_options)
        self.loss_fn = loss_fn
        self.label_format = getattr(loss_fn, "label_format", "multi_hot")
        self.add_to_recordable_attributes(name="num_anchors", is_stat=True)

    def get_default_distance(self):
        return CosineSimilarity() if getattr(self, "_normalize", True) else DotProductSimilarity()

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        """The loss (a 0-dim float tensor; float32 for half-precision embeddings)."""
        self.reset_stats()
        if indices_tuple is not None:
            raise ValueError(_NO_INDICES)
        _check_rows(embeddings, labels, "embeddings", "labels")
        if labels is not None:
            labels = labels.to(embeddings.device)
        if ref_emb is None:
            if ref_labels is not None:
                raise ValueError("ref_labels: given without ref_emb")
        else:
            _check_rows(ref_emb, ref_labels, "ref_emb", "ref_labels")
            if ref_labels is not None:
                ref_labels = ref_labels.to(ref_emb.device)
        loss_dict = self.compute_loss(embeddings, labels, None, ref_emb, ref_labels)
        flat = embeddings.reshape(-1, embeddings.shape[-1])  # pml's regularisers take [N, D] rows
        self.add_embedding_regularization_to_loss_dict(loss_dict, flat)
        return self.reducer(loss_dict, flat, labels)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if indices_tuple is not None:
            raise ValueError(_NO_INDICES)
        self.num_anchors = embeddings.shape[0] * (embeddings.shape[1] if embeddings.ndim == 3 else 1)
        if self.label_format == "none":
            labels = ref_labels = None
        if ref_emb is None:
            loss = self.loss_fn(embeddings, labels)
        else:
            loss = self.loss_fn(embeddings, labels, ref_features=ref_emb, ref_labels=ref_labels)
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}


class CrossBatchMemory(_PMLCrossBatchMemory):
    """A label-aware cross-batch memory, called like pml's ``CrossBatchMemory``.

    pml's ``CrossBatchMemory`` stores labels in a 1-D ``label_memory`` buffer, so multi-hot rows
    cannot be enqueued (``shape mismatch``), and its pairs come from label equality. This one keeps
    an :class:`~mlsupcon.losses.MemoryQueue` (float32 embeddings and uint8 label rows, whatever the
    embeddings' dtype) and calls the loss with the memory as ``ref_emb`` / ``ref_labels``.

    ``forward(embeddings, labels, indices_tuple=None, enqueue_mask=None)``:

    * without ``enqueue_mask``: the anchors are the batch; their candidates are the other rows of
      the batch and the memory **before** this batch; then the batch (every view, detached) is
      enqueued. (pml enqueues first and drops self-pairs; the difference is only that here the
      batch does not evict memory rows before being compared with them.)
    * with ``enqueue_mask`` (bool ``[B]``, pml's MoCo-style use): rows where it is True are only
      enqueued (e.g. keys of a momentum encoder), the others are the anchors; the anchors'
      candidates are the other anchors, the masked rows and the memory.

    In evaluation mode (``.eval()``) the memory is read but not written. Under pml's
    ``DistributedLossWrapper`` every rank receives the gathered batch (its own rows first) and
    enqueues all of it, so the memories hold the same rows on every rank (in a rank-dependent
    order, which a contrastive loss does not see, as long as ``memory_size`` is a multiple of the
    rows enqueued per step).

    Args:
        loss: a :class:`MultiLabelContrastiveLoss`, a flat mlsupcon loss module, or a loss name.
        embedding_size: D.
        memory_size: rows the memory holds (each view of a sample is a row).
        num_labels: label columns C (required for multi-hot losses).
        miner: must be None (an mlsupcon loss uses every pair).
        dtype: the stored rows' dtype (float32 whatever the embeddings' dtype, unless set).
        **kwargs: pml's ``collect_stats``.

    Attributes:
        queue: the :class:`~mlsupcon.losses.MemoryQueue` (saved by ``state_dict()``);
            ``embedding_memory``, ``label_memory``, ``queue_idx`` and ``has_been_filled`` read it
            as pml's attributes of those names.

    Example:
        >>> import torch
        >>> from mlsupcon.integrations.pml import CrossBatchMemory, MultiLabelContrastiveLoss
        >>> memory = CrossBatchMemory(MultiLabelContrastiveLoss("simdis"), embedding_size=16,
        ...                           memory_size=64, num_labels=5)
        >>> for step in range(3):
        ...     loss = memory(torch.randn(8, 16, dtype=torch.float16), torch.randint(0, 2, (8, 5)))
        >>> len(memory.queue), memory.embedding_memory.dtype, loss.dtype
        (24, torch.float32, torch.float32)
    """

    def __init__(self, loss, embedding_size: int, memory_size: int = 1024, num_labels: int | None = None,
                 miner=None, dtype: torch.dtype = torch.float32, **kwargs) -> None:
        if miner is not None:
            raise ValueError("miner: an mlsupcon loss weighs every pair by its labels; miners are not supported")
        if not isinstance(loss, MultiLabelContrastiveLoss):
            loss = MultiLabelContrastiveLoss(loss)
        if getattr(loss.loss_fn, "gather_distributed", False):
            raise ValueError(
                "loss: gather_distributed=True inside a CrossBatchMemory would leave each rank its own memory; "
                "wrap the memory in pml's DistributedLossWrapper instead (or use mlsupcon.losses.QueueLoss)"
            )
        self._num_labels = num_labels
        self._label_format = loss.label_format
        self._dtype = dtype
        super().__init__(loss, embedding_size, memory_size=memory_size, miner=None, **kwargs)

    @staticmethod
    def supported_losses():
        return ["MultiLabelContrastiveLoss"]

    @classmethod
    def check_loss_support(cls, loss_name):
        if loss_name not in cls.supported_losses():
            raise ValueError(f"loss: expected a MultiLabelContrastiveLoss, got {loss_name}")

    def reset_queue(self):
        """Empties the memory (pml's method of that name)."""
        if "queue" in self._modules:
            self.queue.reset()
            return
        self.queue = MemoryQueue(self.memory_size, self.embedding_size, self._num_labels, self._label_format,
                                 self._dtype)

    # pml's attribute names, read from the queue
    @property
    def embedding_memory(self) -> torch.Tensor:
        return self.queue.features

    @property
    def label_memory(self) -> torch.Tensor:
        return self.queue.labels

    @property
    def queue_idx(self) -> int:
        return int(self.queue.ptr)

    @property
    def has_been_filled(self) -> bool:
        return self.queue.full

    def _memory(self, device):
        feats, labels = self.queue.stored()
        if labels is not None and self._label_format == "multi_hot" and labels.shape[1] > SPARSE_LABELS_ABOVE:
            labels = labels.to_sparse_coo()
        return feats.to(device), (None if labels is None else labels.to(device))

    def forward(self, embeddings, labels=None, indices_tuple=None, enqueue_mask=None):
        """Loss of the (unmasked) batch against the batch and the memory, then enqueue."""
        self.reset_stats()
        if indices_tuple is not None:
            raise ValueError(_NO_INDICES)
        _check_rows(embeddings, labels, "embeddings", "labels")
        if embeddings.shape[-1] != self.embedding_size:
            raise ValueError(
                f"embeddings: has dimension {embeddings.shape[-1]} but embedding_size={self.embedding_size}"
            )
        device = embeddings.device
        if self.queue.features.device != device:
            self.queue.to(device)  # as pml moves its memory to the embeddings' device
        if labels is not None:
            labels = labels.to(device)
            if enqueue_mask is not None and labels.layout != torch.strided:
                labels = labels.to_dense()  # rows of a sparse tensor cannot be selected by a mask
        if self._label_format == "none":
            labels = None
        batch = embeddings.shape[0]
        # Validated label rows in the queue's format (uint8 multi-hot / int64 ids / None).
        rows = self.queue.label_rows(labels, batch, "labels")
        emb3 = embeddings if embeddings.ndim == 3 else embeddings.unsqueeze(1)
        ref_feats, ref_labels = self._memory(device)
        if enqueue_mask is not None:
            if not isinstance(enqueue_mask, torch.Tensor) or enqueue_mask.dtype != torch.bool \
                    or tuple(enqueue_mask.shape) != (batch,):
                raise ValueError(f"enqueue_mask: expected a bool tensor of shape ({batch},)")
            enqueue_mask = enqueue_mask.to(device)
            keep = ~enqueue_mask
            anchors = embeddings[keep]
            anchor_labels = None if labels is None else labels[keep]
            keys, key_rows = _view_rows(emb3[enqueue_mask].detach(), None if rows is None else rows[enqueue_mask])
            ref_feats = torch.cat([keys.to(ref_feats.dtype), ref_feats])
            if ref_labels is not None:
                if ref_labels.layout != torch.strided:
                    key_rows = key_rows.to_sparse_coo()
                ref_labels = torch.cat([key_rows.to(ref_labels.dtype), ref_labels])
        else:
            anchors, anchor_labels = embeddings, labels
            keys, key_rows = _view_rows(emb3.detach(), rows)
        if anchors.shape[0] == 0:
            loss = embeddings.sum() * 0.0  # nothing to anchor: an exact, connected 0
        elif ref_feats.shape[0] == 0:
            loss = self.loss(anchors, anchor_labels)
        else:
            loss = self.loss(anchors, anchor_labels, None, ref_feats, ref_labels)
        if self.training:
            self.queue.push(keys, key_rows)
        return loss


def _view_rows(emb3: torch.Tensor, rows):
    """``[B, V, D]`` → (``[V·B, D]`` view-major, the label rows repeated V times)."""
    views = emb3.shape[1]
    flat = emb3.transpose(0, 1).reshape(views * emb3.shape[0], emb3.shape[2])
    if rows is not None and views > 1:
        rows = torch.cat([rows] * views)
    return flat, rows
