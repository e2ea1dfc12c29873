"""The flat contrastive losses: thin modules over one engine.

Every loss here is "pair weights from label relations → weighted log-softmax over similarities":
the module validates its input, normalises the embeddings, builds the label statistics once,
and hands a strategy (``strategies.py``) to the chunked core (``engine.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from mlsupcon.losses import distributed as _distributed
from mlsupcon.losses._norm import l2_normalize, row_norm
from mlsupcon.losses._validation import (
    check_bool,
    check_choice,
    check_chunk_size,
    check_labels,
    check_number,
    check_positive,
    flatten_features,
)
from mlsupcon.losses.engine import reduce_anchor_losses, weighted_log_softmax
from mlsupcon.losses.relations import LabelStatistics
from mlsupcon.losses.strategies import (
    AllStrategy,
    AnyStrategy,
    FlatStrategy,
    JaccardStrategy,
    JaccardWeightStrategy,
    MLCLStrategy,
    MulSupConStrategy,
    PairContext,
    SimCLRStrategy,
    SimDisStrategy,
)

__all__ = [
    "FlatContrastiveLoss",
    "AllLoss",
    "AnyLoss",
    "SimDisLoss",
    "JaccardLoss",
    "JaccardWeightLoss",
    "MulSupConLoss",
    "MLCLLoss",
    "SupConLoss",
    "SimCLRLoss",
]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision inputs are computed in float32 (the log-sum-exp needs the range).
    return torch.float64 if dtype == torch.float64 else torch.float32



def _check_gather(gather_distributed) -> None:
    if not isinstance(gather_distributed, bool):
        raise ValueError(f"gather_distributed: expected a bool, got {gather_distributed!r}")


class FlatContrastiveLoss(nn.Module):
    """Base class of the flat losses; subclasses choose the pair-weight strategy.

    Call signature shared by every flat loss (and by the queue / distributed wrappers)::

        loss = loss_fn(features, labels, ref_features=None, ref_labels=None)

    Args:
        temperature: τ > 0 of s_ab = z_a · z_b / τ.
        normalize: L2-normalise the embeddings first, without overflow: each row is divided by its
            largest |entry| before its norm is taken (:func:`mlsupcon.losses._norm.l2_normalize`),
            so float32 rows of scale 1e19 or 1e-30 give the loss of the unscaled rows.
        chunk_size: anchor samples per block. ``None``: the engine keeps small batches dense
            and chunks large ones; an int forces chunked mode with O(chunk_size · V · N) memory
            in forward and backward.
        gather_distributed: under ``torch.distributed`` with world size W > 1, contrast this
            rank's anchors against the embeddings of every rank, normalised over the whole
            batch. Every rank then returns the single-process loss of the concatenated batch,
            and its gradient is W × this rank's share, so that DDP's gradient average equals
            the single-process gradient exactly (see :mod:`mlsupcon.losses.distributed`).
            Without an initialised process group (or with W = 1) it changes nothing.

    Edge cases (``tests/test_losses_edge_cases.py``): B = 0 raises ``features: empty batch``;
    an anchor with no candidate or no positive adds nothing, and a batch where each anchor has
    at most one candidate (B = 1 with V <= 2) gives an exact 0 with zero gradients. The
    log-sum-exp shifts by each row's maximum (by 1/τ for unit-norm rows), and ``num_a`` is summed
    as two non-negative terms, so large unnormalised similarities do not cancel. Half-precision
    features are computed in float32 and the loss is float32. Labels are torch tensors, multi-hot
    ones dense or sparse (COO/CSR); numpy arrays are a ValueError naming them.

    Attributes:
        label_format: the labels it takes: ``"multi_hot"`` (``[B, C]``; SupCon: ``"class_ids"``
            ``[B]``; SimCLR: ``"none"``). The training pipeline, the memory queue and the
            distributed gathering read it instead of guessing from the class.
    """

    strategy_cls: type[FlatStrategy] = FlatStrategy
    label_format = "multi_hot"

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None,
                 gather_distributed: bool = False) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.normalize = check_bool(normalize, "normalize")
        check_chunk_size(chunk_size)
        _check_gather(gather_distributed)
        self.chunk_size = chunk_size
        self.gather_distributed = gather_distributed

    # -- hooks -------------------------------------------------------------------------
    def make_strategy(self) -> FlatStrategy:
        return self.strategy_cls()

    def prepare_labels(self, labels, ref_labels, batch: int, refs: int):
        """Validated multi-hot label rows for the batch and the references."""
        labels = check_labels(labels, batch, "labels")
        if refs:
            if ref_labels is None:
                raise ValueError("ref_labels: required when ref_features is given")
            ref_labels = check_labels(ref_labels, refs, "ref_labels", rows_of="ref_features")
            if ref_labels.shape[1] != labels.shape[1]:
                raise ValueError(
                    f"ref_labels: has {ref_labels.shape[1]} label columns but labels has {labels.shape[1]}"
                )
        return labels, ref_labels

    def extra_terms(self, flat_features: torch.Tensor) -> torch.Tensor | None:
        return None

    # -- forward -----------------------------------------------------------------------
    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor | None = None,
        ref_features: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.gather_distributed and _distributed.world_size() > 1:
            return _distributed.distributed_flat_loss(self, features, labels, ref_features, ref_labels)
        num, norm, pooled, extra = self.anchor_terms(features, labels, ref_features, ref_labels)
        loss = reduce_anchor_losses(num, norm, pooled)
        return loss if extra is None else loss + extra

    def anchor_terms(
        self,
        features: torch.Tensor,
        labels: torch.Tensor | None = None,
        ref_features: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, bool, torch.Tensor | None]:
        """The per-anchor terms that :meth:`forward` reduces (used by the distributed path).

        Returns:
            ``num`` ``[V·B]`` (differentiable numerators, view-major), ``norm`` ``[V·B]`` (the
            normalisers Z_a), ``pooled`` (reduce as Σ num / Σ Z instead of the mean of num/Z over
            anchors with Z > 0), and the extra term added to the loss (a mean over the V·B
            anchors, e.g. MLCL's norm regulariser) or None.
        """
        strategy = self.make_strategy()
        flat, z, pctx, _ = self.prepared_inputs(features, labels, ref_features, ref_labels, strategy.needs_labels)
        strategy.prepare(pctx)
        num, norm = weighted_log_softmax(z, strategy, pctx, self.temperature, self.chunk_size, unit_norm=self.normalize)
        return num, norm.repeat(pctx.views), strategy.pooled, self.extra_terms(flat.to(pctx.dtype))

    def check_views(self, views: int, has_refs: bool, name: str) -> None:
        """Refuses view counts or reference candidates a subclass cannot take (none here)."""

    def prepared_inputs(self, features, labels, ref_features, ref_labels, needs_labels: bool = True,
                        name: str = "features"):
        """Validated inputs of the engine: ``(flat, z, pctx, rows)``: the embeddings ``[V·B, D]``
        as given (view-major), ``z`` ``[V·B + M, D]`` (references appended, compute dtype,
        normalised if asked), the :class:`PairContext` and the label rows (batch then
        references; None when ``needs_labels`` is false)."""
        flat, batch, views = flatten_features(features, name)
        self.check_views(views, ref_features is not None, name)
        refs_flat, refs, ref_v = None, 0, 1
        if ref_features is not None:
            refs_flat, ref_b, ref_v = flatten_features(ref_features, "ref_features")
            if refs_flat.shape[1] != flat.shape[1]:
                raise ValueError(f"ref_features: has dimension {refs_flat.shape[1]} but {name} has {flat.shape[1]}")
            refs = ref_b * ref_v
        elif ref_labels is not None:
            raise ValueError("ref_labels: given without ref_features")
        cdtype = _compute_dtype(flat.dtype)
        stats = rows = None
        if needs_labels:
            if labels is None:
                raise ValueError("labels: required by this loss")
            labels, ref_labels = self.prepare_labels(labels, ref_labels, batch, refs // ref_v if refs else 0)
            rows = labels
            if refs:
                # Sparse label matrices stay sparse (a 25,000-code space must not be densified).
                sparse = labels.layout != torch.strided or ref_labels.layout != torch.strided
                parts = [labels, ref_labels.repeat(ref_v, 1) if ref_v > 1 else ref_labels]  # view-major
                parts = [p.to_sparse_coo().float() if sparse else p.float() for p in parts]
                rows = torch.cat(parts)
            stats = LabelStatistics(rows, cdtype)
        z = flat.to(cdtype)
        if refs:
            z = torch.cat([z, refs_flat.to(cdtype)])
        if self.normalize:
            z = l2_normalize(z, dim=1)  # overflow-safe: rows of scale 1e19 or 1e-30 in float32
        return flat, z, PairContext(batch, views, refs, stats, cdtype, z.device, extra={}), rows

    def extra_repr(self) -> str:
        text = f"temperature={self.temperature}, normalize={self.normalize}, chunk_size={self.chunk_size}"
        return text + (", gather_distributed=True" if self.gather_distributed else "")


class AllLoss(FlatContrastiveLoss):
    r"""ALL (Zhang & Wu 2024): positives are the samples with exactly the anchor's label set.

    .. math:: w_{ab} = 1[y_b = y_a,\ n_a > 0],\quad Z_a = \sum_b w_{ab},\quad
              L_a = -\frac{1}{Z_a}\sum_{b \ne a} w_{ab} \log p_{ab}

    Source: Zhang & Wu, "Multi-Label Supervised Contrastive Learning", AAAI 2024.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import AllLoss
        >>> feats = torch.randn(8, 2, 16)                  # 8 samples, 2 views
        >>> labels = torch.randint(0, 2, (8, 5))
        >>> loss = AllLoss(temperature=0.1)(feats, labels)
        >>> loss.ndim
        0
    """

    strategy_cls = AllStrategy


class AnyLoss(FlatContrastiveLoss):
    r"""ANY (Zhang & Wu 2024): positives share at least one label with the anchor.

    .. math:: w_{ab} = 1[I_{ab} > 0],\quad Z_a = \sum_b w_{ab}

    Source: Zhang & Wu, "Multi-Label Supervised Contrastive Learning", AAAI 2024.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import AnyLoss
        >>> loss = AnyLoss()(torch.randn(8, 16), torch.randint(0, 2, (8, 5)))
        >>> bool(torch.isfinite(loss))
        True
    """

    strategy_cls = AnyStrategy


class SimDisLoss(FlatContrastiveLoss):
    r"""Similarity-Dissimilarity loss (Huang et al. 2024).

    .. math:: w_{ab} = K^s_{ab} K^d_{ab}\,1[I_{ab} > 0],\quad K^s = \frac{I_{ab}}{n_a},\quad
              K^d = \frac{1}{1 + n_b - I_{ab}}\ (\text{reciprocal})\ \text{or}\ \frac{I_{ab}}{n_b}\ (\text{ratio})

    Z_a is the number of positives (``normalization="count"``) or Σ_b w_ab (``"weight"``). With
    single labels it is exactly SupCon. The weights order the five relations
    R2 (identical) = 1 > R4, R5 > R3 > R1 = 0.

    Source: Huang et al., "Similarity-Dissimilarity Loss for Multi-label Supervised Contrastive
    Learning", 2024.

    Args:
        dissimilarity: ``"reciprocal"`` (default) or ``"ratio"``.
        normalization: ``"count"`` (default) or ``"weight"``.
        temperature, normalize, chunk_size, gather_distributed: see :class:`FlatContrastiveLoss`.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> loss_fn = build("simdis", temperature=0.1)
        >>> loss = loss_fn(torch.randn(16, 2, 32), torch.randint(0, 2, (16, 10)))
        >>> bool(loss > 0)
        True
    """

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None,
                 dissimilarity: str = "reciprocal", normalization: str = "count",
                 gather_distributed: bool = False) -> None:
        super().__init__(temperature, normalize, chunk_size, gather_distributed)
        check_choice(dissimilarity, "dissimilarity", ("reciprocal", "ratio"))
        check_choice(normalization, "normalization", ("count", "weight"))
        self.dissimilarity, self.normalization = dissimilarity, normalization

    def make_strategy(self):
        return SimDisStrategy(self.dissimilarity, self.normalization)


def _check_threshold(threshold: float) -> None:
    check_number(threshold, "threshold", 0, 1, high_open=True)


class JaccardLoss(FlatContrastiveLoss):
    r"""Jaccard MultiSupCon: positives have Jaccard similarity above ``threshold`` c.

    .. math:: w_{ab} = \frac{J_{ab}}{c + \epsilon} 1[J_{ab} > c],\quad Z_a = |\{b: w_{ab} > 0\}|

    Unlike the printed formula of its source, the sum is divided by the number of positives (as
    its reference code does), so the loss does not grow with the batch.

    Source: MultiSupConLoss of the supCLR-MultiLabel-Classification repository (Superb-Man).

    Example:
        >>> import torch
        >>> from mlsupcon.losses import JaccardLoss
        >>> loss = JaccardLoss(threshold=0.3)(torch.randn(8, 2, 16), torch.randint(0, 2, (8, 4)))
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None,
                 threshold: float = 0.3, eps: float = 1e-8, gather_distributed: bool = False) -> None:
        super().__init__(temperature, normalize, chunk_size, gather_distributed)
        _check_threshold(threshold)
        check_positive(eps, "eps")
        self.threshold, self.eps = float(threshold), float(eps)

    def make_strategy(self):
        return JaccardStrategy(self.threshold, self.eps)


class JaccardWeightLoss(FlatContrastiveLoss):
    r"""Jaccard-weighted positives, no threshold (LossContrastiveBase of Audibert et al.).

    .. math:: w_{ab} = J_{ab}\ (\text{views of one sample: } 1),\quad Z_a = \sum_{b \ne a} w_{ab},\quad
              L_a = -\frac{1}{Z_a}\sum_{b \ne a} w_{ab} \log p_{ab}

    The denominator holds every other embedding (and every reference row); anchors with
    Z_a = 0 (no label shared with anyone, and no other view) are left out. Unlike the
    Audibert et al. code it never divides by n_a, so empty label rows are fine there too.

    Source: ``loss_contrastive_base.py`` of Multi-label-contrastive-comprehensive (Audibert,
    Gauffre, Amini, arXiv 2412.00101); see ``docs/spec/LOSSES.md``, "Audibert et al. family".

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
        >>> round(float(build("jaccard_weight", temperature=0.5)(z, y)), 6)
        1.146733
    """

    strategy_cls = JaccardWeightStrategy


class MulSupConLoss(FlatContrastiveLoss):
    r"""MulSupCon (Zhang & Wu 2024): one contrastive row per (anchor, label).

    Row (a, k) has positives P_k(a) = {b ≠ a : y_bk = 1} and loss
    ℓ_{a,k} = −(1/|P_k(a)|) Σ_{b ∈ P_k(a)} log p_ab. Equivalently
    w_ab = Σ_{k ∈ y_a ∩ y_b} 1/|P_k(a)|, computed as one label-weighted matrix product (no loop
    over rows). An anchor without labels forms one row whose positives are its own other views.

    Args:
        reduction: ``"pair"`` (default, as the official code: mean over all rows) or
            ``"anchor"`` (mean of each anchor's rows, then mean over anchors).
        empty_rows: ``"drop"`` (default): a row (a, k) with no positive (P_k(a) empty) is left
            out; ``"count"``: it is kept with the value 0 and counts in the mean, as the MSC
            authors' ``loss_contrastive_mulsupcon.py`` does (Audibert et al.). An anchor
            without labels keeps its one row of other views either way (none when V = 1).

    Source: Zhang & Wu, "Multi-Label Supervised Contrastive Learning", AAAI 2024.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import MulSupConLoss
        >>> loss = MulSupConLoss()(torch.randn(8, 2, 16), torch.randint(0, 2, (8, 4)))
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None,
                 reduction: str = "pair", gather_distributed: bool = False, empty_rows: str = "drop") -> None:
        super().__init__(temperature, normalize, chunk_size, gather_distributed)
        check_choice(reduction, "reduction", ("pair", "anchor"))
        check_choice(empty_rows, "empty_rows", ("drop", "count"))
        self.reduction = reduction
        self.empty_rows = empty_rows

    def make_strategy(self):
        return MulSupConStrategy(self.reduction, self.empty_rows)


class MLCLLoss(FlatContrastiveLoss):
    r"""MLCL: Jaccard-weighted positives, an optional negative term and a norm regulariser.

    .. math::
        pos_a = \frac{\sum_b m^+_{ab} J_{ab}^\beta \log p_{ab}}{\sum_b m^+_{ab} + \epsilon},\quad
        neg_a = \frac{\sum_b m^-_{ab} \log p_{ab}}{\sum_b m^-_{ab} + \epsilon},\\
        L = -\frac{1}{N}\sum_a [\alpha\, pos_a + (1-\alpha)\, neg_a] + \lambda \frac{1}{N}\sum_a \|f_a\|_2

    with m⁺ = 1[J > c]. All N anchors count. Note: with α < 1 the negative term *raises*
    log p of the negatives, i.e. pulls negatives closer, exactly as the source repository
    defines it; keep α = 1 (default) unless you want that.

    Source: MLCL of the supCLR-MultiLabel-Classification repository (Superb-Man).

    Example:
        >>> import torch
        >>> from mlsupcon.losses import MLCLLoss
        >>> loss = MLCLLoss(reg_weight=0.01)(torch.randn(8, 16), torch.randint(0, 2, (8, 4)))
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None,
                 threshold: float = 0.0, beta: float = 1.0, alpha: float = 1.0, reg_weight: float = 0.0,
                 eps: float = 1e-8, gather_distributed: bool = False) -> None:
        super().__init__(temperature, normalize, chunk_size, gather_distributed)
        _check_threshold(threshold)
        check_positive(eps, "eps")
        check_number(alpha, "alpha", 0, 1)
        check_number(beta, "beta", 0)
        check_number(reg_weight, "reg_weight", 0)
        self.threshold, self.beta, self.alpha = float(threshold), float(beta), float(alpha)
        self.reg_weight, self.eps = float(reg_weight), float(eps)

    def make_strategy(self):
        return MLCLStrategy(self.threshold, self.beta, self.alpha, self.eps)

    def extra_terms(self, flat_features):
        if not self.reg_weight:
            return None
        return self.reg_weight * row_norm(flat_features, dim=1).mean()


class SupConLoss(FlatContrastiveLoss):
    r"""SupCon (Khosla et al. 2020): single-label, positives share the anchor's class.

    ``labels`` are ``[B]`` class ids (``ref_labels`` ``[M]``), ``>= 0``; the id ``-1`` marks a
    sample to **ignore**: it is dropped from the batch before anything is computed (all its
    views, and a reference row with ``ref_labels = -1`` likewise), so it is no anchor, no
    positive and in no denominator, and its gradient is exactly 0. The loss is that of the batch
    without it; a batch where every sample is ignored gives an exact 0 connected to the graph.
    Other negative ids raise a ValueError.

    Source: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import SupConLoss
        >>> loss = SupConLoss()(torch.randn(8, 2, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
        >>> bool(loss > 0)
        True
    """

    strategy_cls = AllStrategy  # one label per row: same label set = same class (ids compared)
    label_format = "class_ids"

    def prepare_labels(self, labels, ref_labels, batch, refs):
        def ids(t, n, name):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name}: expected a torch.Tensor of [B] class ids, got {type(t).__name__}")
            if t.ndim != 1:
                raise ValueError(f"{name}: expected [B] class ids, got shape {tuple(t.shape)}")
            if t.shape[0] != n:
                raise ValueError(f"{name}: has {t.shape[0]} entries, expected {n}")
            if t.is_floating_point() and not bool((torch.isfinite(t) & (t == t.round())).all()):
                raise ValueError(f"{name}: class ids must be integers")
            # -1 (ignore) was filtered out by anchor_terms
            if n and bool((t < 0).any()):
                raise ValueError(f"{name}: class ids must be >= 0 (or -1 to ignore a sample), got {t.min().item()}")
            return t.long()

        labels = ids(labels, batch, "labels")
        if refs:
            if ref_labels is None:
                raise ValueError("ref_labels: required when ref_features is given")
            ref_labels = ids(ref_labels, refs, "ref_labels")
            all_ids = torch.cat([labels, ref_labels])
        else:
            all_ids = labels
        classes, inverse = torch.unique(all_ids, return_inverse=True)

        def one_hot(ids):  # sparse rows: one non-zero each, whatever the number of classes
            index = torch.stack([torch.arange(ids.numel(), device=ids.device), ids])
            return torch.sparse_coo_tensor(index, torch.ones(ids.numel(), device=ids.device),
                                           (ids.numel(), classes.numel()), check_invariants=False)

        return one_hot(inverse[:batch]), (one_hot(inverse[batch:]) if refs else None)

    def anchor_terms(self, features, labels=None, ref_features=None, ref_labels=None):
        """:meth:`FlatContrastiveLoss.anchor_terms` of the batch without the samples (and
        reference rows) whose class id is -1."""
        keep = _kept_samples(labels, features)
        keep_ref = _kept_samples(ref_labels, ref_features)
        if keep is None and keep_ref is None:
            return super().anchor_terms(features, labels, ref_features, ref_labels)
        flat, _, _ = flatten_features(features, "features")  # the errors of the input as given
        if keep_ref is not None:
            ref_features, ref_labels = ref_features[keep_ref], ref_labels[keep_ref]
            if ref_labels.shape[0] == 0:
                ref_features = ref_labels = None
        if keep is not None:
            if not bool(keep.any()):  # no anchor left: an exact 0 that stays connected
                zero = (flat.sum() * 0.0).to(_compute_dtype(flat.dtype)).reshape(1)
                return zero, torch.zeros_like(zero), False, None
            features, labels = features[keep], labels[keep]
        return super().anchor_terms(features, labels, ref_features, ref_labels)


def _kept_samples(ids, rows) -> torch.Tensor | None:
    """Mask of the samples whose class id is not -1, or None when none is -1 (or the shapes are
    wrong, which the regular checks then report)."""
    if not (isinstance(ids, torch.Tensor) and isinstance(rows, torch.Tensor) and ids.ndim == 1
            and rows.ndim >= 1 and ids.shape[0] == rows.shape[0] and ids.layout == torch.strided):
        return None
    ignored = ids == -1
    if not bool(ignored.any()):
        return None
    return ~ignored


class SimCLRLoss(FlatContrastiveLoss):
    r"""SimCLR / NT-Xent (Chen et al. 2020): the only positives are the anchor's other views.

    ``labels`` are ignored (may be None). With one view there are no positives and the loss is 0.

    Source: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
    ICML 2020.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import SimCLRLoss
        >>> loss = SimCLRLoss(temperature=0.5)(torch.randn(8, 2, 16))
        >>> bool(loss > 0)
        True
    """

    strategy_cls = SimCLRStrategy
    label_format = "none"
