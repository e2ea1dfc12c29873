r"""Multi-SupCon of WolodjaZ/MultiSupContrast (``losses.py`` ``MultiSupConLoss``), on the engine.

The contract is the "Multi-SupCon (WolodjaZ)" section of ``docs/spec/LOSSES.md``:
N(a) = {b ≠ a : J_ab ≥ c} (non-strict), weight J_ab (``multi=True``) or 1, normaliser |N(a)|,
scale τ/τ_b, denominator every other embedding; anchors with an empty N(a) are left out (the code
gives NaN), and an empty label row is no special case (the code's J_aa = 0/0 makes it NaN): the
same-sample rule gives its other views J = 1.
"""

from __future__ import annotations

import torch

from mlsupcon.losses._validation import check_bool, check_choice, check_number, check_positive
from mlsupcon.losses.flat import FlatContrastiveLoss
from mlsupcon.losses.strategies import FlatStrategy, _jaccard

__all__ = ["MultiSupConWZStrategy", "MultiSupConWZLoss"]


class MultiSupConWZStrategy(FlatStrategy):
    """w = J·1[J ≥ c] (``multi``) or 1[J ≥ c]; Z = |{b : J_ab ≥ c}| (views of one sample: J = 1).

    Z counts the positives, not the positive weights: with c = 0 every candidate is in N(a),
    those with J = 0 at weight 0.
    """

    name = "multisupcon_wz"

    def __init__(self, threshold: float = 0.3, multi: bool = True) -> None:
        self.threshold, self.multi = threshold, multi

    def weights(self, ctx, s0, s1):
        jac = _jaccard(ctx, s0, s1)
        jac = self._set_own(jac, ctx, s0, s1, 1.0)  # same-sample rule: J = 1
        pos = (jac >= self.threshold).to(ctx.dtype)
        z = ctx.view_row_sum(pos, torch.ones(s1 - s0, dtype=ctx.dtype, device=ctx.device))
        return (jac.mul_(pos) if self.multi else pos), z


class MultiSupConWZLoss(FlatContrastiveLoss):
    r"""Multi-SupCon (WolodjaZ): Jaccard-weighted positives at J ≥ c, normalised by their number.

    .. math:: L_a = -\frac{\tau}{\tau_b}\frac{1}{|N(a)|}\sum_{b \in N(a)} J_{ab}\log p_{ab},\quad
              N(a) = \{b \ne a : J_{ab} \ge c\}

    (weight 1 instead of J with ``multi=False``; views of one sample have J = 1). Mean over the
    anchors with N(a) ≠ ∅: all V·B embeddings (``contrast_mode="all"``) or the first view of each
    sample (``"one"``); the denominator is every other embedding (and every reference row) either
    way. At the defaults τ = τ_b = 0.07 the scale is 1 and this is the paper's formula. Features
    are not normalised inside unless ``normalize=True`` (the authors normalise before the loss).
    Runs on the chunked engine: ``ref_features`` / ``ref_labels`` (a
    :class:`~mlsupcon.losses.QueueLoss` memory), float16/bfloat16 inputs (computed in float32)
    and ``gather_distributed`` work as for every flat loss.

    Relation to ``jaccard``: non-strict threshold, weight J instead of J/(c + ε), scale τ/τ_b.

    Source: ``losses.py`` l. 5–128 of WolodjaZ/MultiSupContrast (the formula is quoted from the
    paper in pytorch-metric-learning issue #658).

    Args:
        temperature: τ > 0 (default 0.07, as the code).
        base_temperature: τ_b > 0 (default 0.07); the loss is scaled by τ/τ_b.
        c_threshold: c in [0, 1]; b is a positive when J_ab ≥ c.
        multi: weight the positives by J (True) or by 1.
        contrast_mode: ``"all"`` (every embedding is an anchor) or ``"one"`` (view 0 only).
        normalize: L2-normalise the embeddings first (default False, as the code).
        chunk_size, gather_distributed: see :class:`~mlsupcon.losses.FlatContrastiveLoss`.

    Example:
        >>> import torch
        >>> from mlsupcon.losses import build
        >>> z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> v1 = torch.tensor([[0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
        >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
        >>> loss_fn = build("multisupcon_wz", temperature=0.5)
        >>> round(float(loss_fn(torch.stack([z, v1], 1), y)), 5)
        7.31959
    """

    def __init__(self, temperature: float = 0.07, base_temperature: float = 0.07, c_threshold: float = 0.3,
                 multi: bool = True, contrast_mode: str = "all", normalize: bool = False,
                 chunk_size: int | None = None, gather_distributed: bool = False) -> None:
        super().__init__(temperature, normalize, chunk_size, gather_distributed)
        self.base_temperature = check_positive(base_temperature, "base_temperature")
        self.c_threshold = check_number(c_threshold, "c_threshold", 0, 1)
        self.multi = check_bool(multi, "multi")
        check_choice(contrast_mode, "contrast_mode", ("all", "one"))
        self.contrast_mode = contrast_mode

    def make_strategy(self):
        return MultiSupConWZStrategy(self.c_threshold, self.multi)

    def anchor_terms(self, features, labels=None, ref_features=None, ref_labels=None):
        """Per-anchor terms (see :meth:`FlatContrastiveLoss.anchor_terms`), scaled by τ/τ_b; with
        ``contrast_mode="one"`` the anchors of views 1.. get Z = 0 (left out)."""
        num, norm, pooled, extra = super().anchor_terms(features, labels, ref_features, ref_labels)
        num = num * (self.temperature / self.base_temperature)
        if self.contrast_mode == "one":
            norm = norm.clone()
            norm[features.shape[0]:] = 0  # view-major: the first B anchors are view 0
        return num, norm, pooled, extra

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", base_temperature={self.base_temperature}, "
                f"c_threshold={self.c_threshold}, multi={self.multi}, contrast_mode={self.contrast_mode!r}")
