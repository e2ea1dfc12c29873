"""Losses with one learnable prototype per label (Audibert, Gauffre & Amini; arXiv 2412.00101).

``msc``, ``proto_only``, ``mscwrg`` and ``mscrg`` of the authors' code
(``audibert-alexandre-fra/Multi-label-contrastive-comprehensive``, ``src/trainer/loss/``), on the
shared chunked engine (``engine.py``): prototype k is one more candidate row with the label set
{k}, never a view of a sample. The exact definitions are ``docs/spec/LOSSES.md``, section
"Audibert et al. family".

The caller owns the prototypes: a :class:`LabelPrototypes` module (a raw ``[C, D]`` parameter,
Xavier-uniform initialised as in the original training code) whose output is passed to the loss
as ``prototypes=``; they are L2-normalised inside the loss when ``normalize=True`` (the optimiser
sees the raw tensor). Loss classes declare ``uses_prototypes = True``.

Example:
    >>> import torch
    >>> from mlsupcon.losses import LabelPrototypes, build
    >>> protos = LabelPrototypes(num_labels=5, dim=16)
    >>> loss_fn = build("msc", temperature=0.1)
    >>> features = torch.randn(8, 2, 16, requires_grad=True)
    >>> loss = loss_fn(features, torch.randint(0, 2, (8, 5)), prototypes=protos())
    >>> loss.backward()
    >>> protos.weight.grad.shape
    torch.Size([5, 16])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlsupcon.losses._norm import l2_normalize
from mlsupcon.losses._validation import (
    check_bool,
    check_chunk_size,
    check_finite,
    check_labels,
    check_number,
    check_positive,
    flatten_features,
)
from mlsupcon.losses.engine import reduce_anchor_losses, weighted_log_softmax
from mlsupcon.losses.relations import to_dense_multi_hot
from mlsupcon.losses.strategies import FlatStrategy, PairContext

__all__ = [
    "LabelPrototypes",
    "PrototypeContrastiveLoss",
    "MSCLoss",
    "ProtoOnlyLoss",
    "MSCWRGLoss",
    "MSCRGLoss",
    "BoundPrototypeLoss",
]


class LabelPrototypes(nn.Module):
    """One learnable embedding per label: a raw ``nn.Parameter`` ``weight`` of shape ``[C, D]``.

    Initialised with ``xavier_uniform_`` (U(−b, b), b = √(6/(C + D))), as the original training
    code (``baseline_ours.py``); it is normalised only inside the loss, so the optimiser (and its
    weight decay) acts on the raw tensor. The caller owns the module: put its parameters in the
    optimiser (the original code uses the projection head's learning rate and weight decay) and
    pass ``prototypes()`` (or ``prototypes.weight``) to the loss.

    Args:
        num_labels: C ≥ 1.
        dim: D ≥ 1, the embedding dimension of the features the loss receives.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import LabelPrototypes
        >>> p = LabelPrototypes(4, 8)
        >>> p().shape, p.weight.requires_grad
        (torch.Size([4, 8]), True)
        >>> bool(p.weight.abs().max() <= (6 / (4 + 8)) ** 0.5)
        True
    """

    def __init__(self, num_labels: int, dim: int) -> None:
        super().__init__()
        for value, name in ((num_labels, "num_labels"), (dim, "dim")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        self.num_labels, self.dim = num_labels, dim
        self.weight = nn.Parameter(torch.empty(num_labels, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)

    def forward(self) -> torch.Tensor:
        return self.weight

    def extra_repr(self) -> str:
        return f"num_labels={self.num_labels}, dim={self.dim}"


# --------------------------------------------------------------------------- strategies


def _own_multiplier(m: torch.Tensor, ctx: PairContext, s0: int, s1: int) -> torch.Tensor:
    """In place: the anchor's own-sample column counts its V − 1 other views, not V (self out)."""
    r, c = ctx.own_columns(s0, s1)
    m[r, c] *= (ctx.views - 1) / ctx.views
    return m


def _empty_rows(w, z, na, ctx: PairContext, s0: int, s1: int):
    """An anchor without labels: its other views, weight 1/(V − 1), normaliser 1 (none if V = 1)."""
    empty = na == 0
    if ctx.views > 1 and bool(empty.any()):
        r, c = ctx.own_columns(s0, s1)
        w[r[empty], c[empty]] = 1.0 / (ctx.views - 1)
        z = torch.where(empty, torch.ones_like(z), z)
    return w, z


class _DenseLabelStrategy(FlatStrategy):
    """Strategies reading dense label rows ``ctx.extra["Y"]`` ``[B + M, C]`` (candidates: the
    batch samples, then the reference rows, prototypes among them as one-hot rows)."""

    def prepare(self, ctx):
        y = ctx.extra["Y"]
        ctx.extra["n"] = y.sum(1)
        mult = torch.ones(ctx.batch + ctx.refs, dtype=ctx.dtype, device=ctx.device)
        mult[: ctx.batch] = ctx.views  # a batch column stands for V view columns
        ctx.extra["mult"] = mult


class MSCStrategy(_DenseLabelStrategy):
    """MSC weights: for c ∈ y_a, N_ac = 1 + α Σ_{b ≠ a, y_bc = 1} 1/U_ab (samples and refs),
    w_ab = (α/U_ab) Σ_{c ∈ y_a ∩ y_b} 1/N_ac, w_{a,P_k} = y_ak/N_ak; Z_a = n_a.

    The last ``num_prototypes`` reference columns are the prototypes; the denominator weighs
    the other candidates by β (``column_log_scale``).
    """

    name = "msc"

    def __init__(self, alpha: float, beta: float, num_prototypes: int) -> None:
        self.alpha, self.beta, self.num_prototypes = alpha, beta, num_prototypes

    def prepare(self, ctx):
        super().prepare(ctx)
        n_other = ctx.num_candidates - self.num_prototypes
        log_beta = math.log(self.beta) if self.beta > 0 else float("-inf")
        scale = torch.zeros(ctx.num_candidates, dtype=ctx.dtype, device=ctx.device)
        scale[:n_other] = log_beta
        ctx.column_log_scale = scale

    def weights(self, ctx, s0, s1):
        y, n, mult = ctx.extra["Y"], ctx.extra["n"], ctx.extra["mult"]
        cand = ctx.batch + ctx.refs - self.num_prototypes  # sample and ref columns
        ya, na = y[s0:s1], n[s0:s1]
        if self.alpha == 0:  # proto_only: N_ac = 1 and no sample/ref weight: skip the [b, B + M + C, C] products
            w = torch.zeros(s1 - s0, y.shape[0], dtype=ya.dtype, device=ya.device)
            w[:, cand:] = ya  # w_{a,P_k} = y_ak
            return _empty_rows(w, na.clone(), na, ctx, s0, s1)
        inter = ya @ y.T
        union = na[:, None] + n[None, :] - inter
        uinv = torch.where(inter > 0, 1.0 / union.clamp(min=1), 0.0)  # I > 0 ⇒ U ≥ 1
        counted = _own_multiplier(uinv[:, :cand] * mult[:cand], ctx, s0, s1)
        big_n = 1.0 + self.alpha * (counted @ y[:cand])
        inv_n = torch.where(ya > 0, 1.0 / big_n, 0.0)
        w = inv_n @ y.T  # Σ_{c ∈ y_a ∩ y_b} 1/N_ac; for a prototype column y_ak/N_ak
        w[:, :cand] *= self.alpha * uinv[:, :cand]
        return _empty_rows(w, na.clone(), na, ctx, s0, s1)


class RelativeGroupStrategy(_DenseLabelStrategy):
    """mscwrg / mscrg weights: x_ab = I_ab/n_b, f = x^α (α ≥ 0) or 1[x ≥ 1 − 1e-8] (α < 0),
    N_ac = Σ_{b ≠ a, c ∈ L_b} f_ab, w_ab = (1/n_a) Σ_{c ∈ y_a ∩ y_b, N_ac > 0} f_ab/N_ac;
    Z_a = 1[Σ_b w_ab > 0]. ``excess``: mscrg's extra term (see the engine)."""

    name = "mscwrg"

    def __init__(self, alpha: float, excess: bool = False) -> None:
        self.alpha = alpha
        self.excess_term = excess

    def weights(self, ctx, s0, s1):
        y, n, mult = ctx.extra["Y"], ctx.extra["n"], ctx.extra["mult"]
        ya, na = y[s0:s1], n[s0:s1]
        inter = ya @ y.T
        pos = inter > 0  # ⇒ n_b > 0
        x = inter / n.clamp(min=1)[None, :]
        if self.alpha >= 0:
            f = torch.where(pos, x.pow(self.alpha), 0.0)
        else:
            f = (pos & (x >= 1 - 1e-8)).to(ctx.dtype)
        big_n = _own_multiplier(f * mult, ctx, s0, s1) @ y
        inv_n = torch.where((ya > 0) & (big_n > 0), 1.0 / big_n, 0.0) / na.clamp(min=1)[:, None]
        w = f.mul_(inv_n @ y.T)
        z = (inv_n > 0).any(1).to(ctx.dtype)
        return _empty_rows(w, z, na, ctx, s0, s1)


# --------------------------------------------------------------------------- losses


def _compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    return torch.float64 if torch.float64 in dtypes else torch.float32


class PrototypeContrastiveLoss(nn.Module):
    """Base class of the prototype losses; called as
    ``loss(features, labels, prototypes=P, ref_features=None, ref_labels=None)``.

    Args:
        temperature: τ > 0 of s = z_a · z_b / τ (also for prototypes: s_{a,P_k} = z_a · p_k / τ).
        normalize: L2-normalise the embeddings and the prototypes first (the original code does).
        chunk_size: anchor samples per block (``None``: the engine chooses); any value gives the
            same loss.

    Call arguments: ``features`` ``[B, D]`` or ``[B, V, D]`` (flattened view-major), ``labels``
    ``[B, C]`` multi-hot (dense or sparse; densified, C is the number of prototypes),
    ``prototypes`` ``[C, D]``, and optional ``ref_features`` ``[M, D]`` with ``ref_labels``
    ``[M, C]``: extra candidates (a memory queue, a momentum encoder's keys), never anchors.
    The loss is differentiable w.r.t. features, prototypes and (if they require it) refs.

    Limits: labels are handled as dense ``[B + M + C, C]`` rows (the prototypes as an identity
    block), so memory and label work grow as (B + M + C)·C per anchor block: fine for C up to a
    few thousand labels, not for a 25,000-code space (the flat losses' sparse label statistics
    are not used here). ``gather_distributed`` is not offered: gather the features yourself and
    pass other ranks' rows as refs.

    Attributes:
        label_format: ``"multi_hot"``.
        uses_prototypes: True: the training loop must own a :class:`LabelPrototypes` (C labels,
            D = the projection dimension), optimise its parameters and pass ``prototypes=``.
    """

    label_format = "multi_hot"
    uses_prototypes = True
    #: prototypes are also anchors (mscwrg, mscrg)
    prototype_anchors = False

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.normalize = check_bool(normalize, "normalize")
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size

    def make_strategy(self, num_prototypes: int) -> FlatStrategy:
        raise NotImplementedError

    def _inputs(self, features, labels, prototypes, ref_features, ref_labels):
        """Validated (rows [V·B + M + C, D], Y_batch, Y_refs, B, V, M, C)."""
        flat, batch, views = flatten_features(features, "features")
        labels = check_labels(labels, batch, "labels")
        classes = labels.shape[1]
        if prototypes is None:
            raise ValueError("prototypes: required, a [C, D] tensor (one row per label; see LabelPrototypes)")
        if not isinstance(prototypes, torch.Tensor):
            raise ValueError(f"prototypes: expected a torch.Tensor, got {type(prototypes).__name__}")
        if not prototypes.is_floating_point():
            raise ValueError(f"prototypes: expected a floating-point tensor, got dtype {prototypes.dtype}")
        if prototypes.ndim != 2 or prototypes.shape[0] != classes or prototypes.shape[1] != flat.shape[1]:
            raise ValueError(f"prototypes: expected shape [C, D] = [{classes}, {flat.shape[1]}] (labels' columns, "
                             f"features' dimension), got {tuple(prototypes.shape)}")
        if classes == 0:
            raise ValueError("labels: no label columns (C = 0)")
        check_finite(prototypes, "prototypes")
        refs_flat, refs, y_ref = None, 0, None
        if ref_features is not None:
            refs_flat, ref_b, ref_v = flatten_features(ref_features, "ref_features")
            if refs_flat.shape[1] != flat.shape[1]:
                raise ValueError(f"ref_features: has dimension {refs_flat.shape[1]} but features has {flat.shape[1]}")
            refs = ref_b * ref_v
            if ref_labels is None:
                raise ValueError("ref_labels: required when ref_features is given")
            ref_labels = check_labels(ref_labels, ref_b, "ref_labels", rows_of="ref_features")
            if ref_labels.shape[1] != classes:
                raise ValueError(f"ref_labels: has {ref_labels.shape[1]} label columns but labels has {classes}")
            y_ref = to_dense_multi_hot(ref_labels)
            y_ref = (y_ref != 0).repeat(ref_v, 1) if ref_v > 1 else y_ref != 0  # view-major
        elif ref_labels is not None:
            raise ValueError("ref_labels: given without ref_features")
        cdtype = _compute_dtype(flat.dtype, prototypes.dtype, refs_flat.dtype if refs else flat.dtype)
        parts = [flat.to(cdtype)] + ([refs_flat.to(cdtype)] if refs else []) + [prototypes.to(cdtype)]
        z = torch.cat(parts)
        if self.normalize:
            z = l2_normalize(z, dim=1)  # overflow-safe (rows of scale 1e19 or 1e-30)
        y = (to_dense_multi_hot(labels) != 0).to(device=z.device, dtype=cdtype)
        y_ref = None if y_ref is None else y_ref.to(device=z.device, dtype=cdtype)
        return z, y, y_ref, batch, views, refs, classes

    def forward(self, features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor | None = None,
                ref_features: torch.Tensor | None = None, ref_labels: torch.Tensor | None = None) -> torch.Tensor:
        z, y, y_ref, batch, views, refs, classes = self._inputs(features, labels, prototypes, ref_features, ref_labels)
        eye = torch.eye(classes, dtype=z.dtype, device=z.device)
        rows = [y] + ([y_ref] if refs else []) + [eye]
        # Anchors: the V·B embeddings; candidates: every other embedding, the refs, the prototypes.
        pctx = PairContext(batch, views, refs + classes, None, z.dtype, z.device, extra={"Y": torch.cat(rows)})
        strategy = self.make_strategy(classes)
        strategy.prepare(pctx)
        num, norm = weighted_log_softmax(z, strategy, pctx, self.temperature, self.chunk_size,
                                         unit_norm=self.normalize)
        norm = norm.repeat(views)
        if self.prototype_anchors:
            # The prototypes as anchors: every embedding, every ref and the other prototypes.
            n_emb = views * batch
            z2 = torch.cat([z[n_emb + refs:], z[: n_emb + refs]])
            y_views = y.repeat(views, 1) if views > 1 else y
            y2 = torch.cat([eye, y_views] + ([y_ref] if refs else []))
            pctx2 = PairContext(classes, 1, n_emb + refs, None, z.dtype, z.device, extra={"Y": y2})
            strategy2 = self.make_strategy(classes)
            strategy2.prepare(pctx2)
            num2, norm2 = weighted_log_softmax(z2, strategy2, pctx2, self.temperature, self.chunk_size,
                                               unit_norm=self.normalize)
            num, norm = torch.cat([num, num2]), torch.cat([norm, norm2])
        return reduce_anchor_losses(num, norm, False)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}, chunk_size={self.chunk_size}"


class MSCLoss(PrototypeContrastiveLoss):
    r"""MSC (Audibert et al.): samples and one prototype per label, weighted by label overlap.

    For an anchor a and c ∈ y_a (candidates: other embeddings, refs, the C prototypes):

    .. math::
        N_{ac} = 1 + \alpha \sum_{b:\, y_{bc} = 1} \frac{1}{U_{ab}},\quad
        w_{ab} = \frac{\alpha}{U_{ab}} \sum_{c \in y_a \cap y_b} \frac{1}{N_{ac}},\quad
        w_{a,P_k} = \frac{y_{ak}}{N_{ak}},\\
        D_a = \beta \sum_{b \ne a} e^{s_{ab}} + \beta \sum_r e^{s_{ar}} + \sum_k e^{s_{a,P_k}},\quad
        L_a = -\frac{1}{n_a} \sum_x w_{ax} (s_{ax} - \log D_a)

    mean over anchors with n_a > 0. An anchor without labels (NaN in the original code) forms
    one row whose positives are its other views (weight 1/(V − 1)); with V = 1 it is left out.

    Source: ``loss_contrastive_msc.py`` (LossContrastiveMSC) of Multi-label-contrastive-
    comprehensive (Audibert, Gauffre, Amini, arXiv 2412.00101); ``docs/spec/LOSSES.md``.

    Args:
        alpha: α ≥ 0, weight of the sample positives (1: the trainer's value).
        beta: β ≥ 0, factor of the sample (and ref) terms in the denominator.
        temperature, normalize, chunk_size: see :class:`PrototypeContrastiveLoss`.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
        >>> P = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.5]])
        >>> round(float(build("msc", temperature=0.5, alpha=1.0, beta=1.0)(z, y, prototypes=P)), 6)
        1.693805
    """

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None,
                 alpha: float = 1.0, beta: float = 0.1) -> None:
        super().__init__(temperature, normalize, chunk_size)
        self.alpha = check_number(alpha, "alpha", 0)
        self.beta = check_number(beta, "beta", 0)

    def make_strategy(self, num_prototypes):
        return MSCStrategy(self.alpha, self.beta, num_prototypes)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={self.alpha}, beta={self.beta}"


class ProtoOnlyLoss(MSCLoss):
    r"""Prototypes only (Audibert et al.): ``msc`` with α = β = 0.

    .. math:: L_a = -\frac{1}{n_a}\sum_{k \in y_a} \log \frac{e^{s_{a,P_k}}}{\sum_{k'} e^{s_{a,P_{k'}}}}

    Only the prototypes are candidates (refs play no part: β = 0). Source:
    ``loss_contrastive_proto_only.py`` of Multi-label-contrastive-comprehensive.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> loss = build("proto_only")(torch.randn(4, 8), torch.eye(4), prototypes=torch.randn(4, 8))
        >>> bool(loss > 0)
        True
    """

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None) -> None:
        super().__init__(temperature, normalize, chunk_size, alpha=0.0, beta=0.0)


class MSCWRGLoss(PrototypeContrastiveLoss):
    r"""mscwrg (Audibert et al.): embeddings and prototypes are all anchors, label-overlap weights.

    E = embeddings ∪ prototypes (labels L = [y; I_C]); refs are candidates only. For a ∈ E, b ≠ a:

    .. math::
        x_{ab} = \frac{I_{ab}}{n_b},\quad f_{ab} = x_{ab}^\alpha\ (\alpha \ge 0)\ \text{or}\
        1[x_{ab} \ge 1 - 10^{-8}]\ (\alpha < 0),\quad N_{ac} = \sum_{b \ne a,\, L_{bc} = 1} f_{ab},\\
        w_{ab} = \frac{1}{n_a}\sum_{c \in L_a \cap L_b,\, N_{ac} > 0} \frac{f_{ab}}{N_{ac}},\quad
        L_a = -\sum_b w_{ab} \log p_{ab}

    with log p over every other member of E and the refs (no β), f = 0 for n_b = 0; the loss is
    Σ_a L_a over the number of anchors with Σ_b w_ab > 0. The code's docstring says (1 − x)^α;
    the code (and this loss) computes x^α.

    Source: ``loss_contrastive_mscwrg.py`` of Multi-label-contrastive-comprehensive.

    Args:
        alpha: α (default 0, the config's value); α < 0 selects the hard threshold y_b ⊆ y_a.
        temperature, normalize, chunk_size: see :class:`PrototypeContrastiveLoss`.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
        >>> P = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.5]])
        >>> round(float(build("mscwrg", temperature=0.5)(z, y, prototypes=P)), 6)
        1.448305
    """

    prototype_anchors = True
    excess = False

    def __init__(self, temperature: float = 0.1, normalize: bool = True, chunk_size: int | None = None,
                 alpha: float = 0.0) -> None:
        super().__init__(temperature, normalize, chunk_size)
        self.alpha = check_number(alpha, "alpha")

    def make_strategy(self, num_prototypes):
        return RelativeGroupStrategy(self.alpha, self.excess)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={self.alpha}"


class MSCRGLoss(MSCWRGLoss):
    r"""mscrg (Audibert et al.; "REG" of arXiv 2412.00101): mscwrg plus a stop-gradient term.

    .. math:: L_a = -\sum_b \big[w_{ab} \log p_{ab} + r_{ab} s_{ab}\big],\quad
              r_{ab} = \max(\mathrm{sg}(p_{ab}) - w_{ab}, 0)\,1[w_{ab} > 0]

    with s_ab un-shifted, so the term changes the value; for a positive the gradient
    ∂L_a/∂s_ab is min(p_ab − w_ab, 0): positives are never pushed away.

    Source: ``loss_contrastive_mscrg.py`` of Multi-label-contrastive-comprehensive.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
        >>> P = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.5]])
        >>> round(float(build("mscrg", temperature=0.5)(z, y, prototypes=P)), 6)
        1.374393
    """

    excess = True


class BoundPrototypeLoss(nn.Module):
    """A prototype loss with its prototypes attached, called like a flat loss:
    ``loss(features, labels, ref_features=None, ref_labels=None)``.

    For wrappers that know nothing of prototypes, e.g. :class:`~mlsupcon.losses.QueueLoss`
    (queue rows become refs). ``prototypes`` (a :class:`LabelPrototypes`) is a submodule: its
    parameters appear in this module's ``parameters()``.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import BoundPrototypeLoss, LabelPrototypes, QueueLoss, build
        >>> crit = QueueLoss(BoundPrototypeLoss(build("msc"), LabelPrototypes(5, 16)), size=32, dim=16, num_labels=5)
        >>> loss = crit(torch.randn(8, 2, 16), torch.randint(0, 2, (8, 5)))
        >>> len(crit.queue)
        16
    """

    uses_prototypes = False

    def __init__(self, loss_fn: PrototypeContrastiveLoss, prototypes: nn.Module) -> None:
        super().__init__()
        if not getattr(loss_fn, "uses_prototypes", False):
            raise ValueError(f"loss_fn: expected a loss that takes prototypes, got {type(loss_fn).__name__}")
        if not isinstance(prototypes, nn.Module):
            raise ValueError(f"prototypes: expected an nn.Module (LabelPrototypes), got {type(prototypes).__name__}")
        self.loss_fn, self.prototypes = loss_fn, prototypes
        self.label_format = loss_fn.label_format

    def forward(self, features, labels, ref_features=None, ref_labels=None):
        return self.loss_fn(features, labels, prototypes=self.prototypes(), ref_features=ref_features,
                            ref_labels=ref_labels)
