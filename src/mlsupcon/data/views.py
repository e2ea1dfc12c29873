"""Batch-level augmentations that make the views of contrastive training.

Every view maps a batch to one augmented batch of the **same shape**; call it twice
(or use ``.pair``) for the two views of a contrastive step. Randomness comes from
the ``generator`` argument when given (a ``torch.Generator`` on the batch's device
for token/vector views; any ``torch.Generator`` for image views), so a seeded
generator makes views reproducible; without one the global torch RNG is used.

* text: :class:`TokenViews` — crop a contiguous window, delete and mask tokens.
* vectors: :class:`FeatureMaskNoise` — zero features with probability ``p_mask``,
  add Gaussian noise.
* images: :class:`ImageViews` — kornia random resized crop, colour jitter, random
  greyscale, horizontal flip.
* :func:`make_views` builds one of them from a modality name and options.

Example:
    >>> import torch
    >>> v = FeatureMaskNoise(p_mask=0.5, noise_std=0.1)
    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = v.pair(torch.ones(4, 8), generator=g)
    >>> a.shape, torch.equal(a, b)
    (torch.Size([4, 8]), False)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["TokenViews", "FeatureMaskNoise", "ImageViews", "make_views"]


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is not None and generator.device != like.device:
        # Draw on the generator's device, then move: keeps the stream reproducible
        # when a CPU generator drives GPU batches.
        return torch.rand(shape, generator=generator, device=generator.device).to(like.device)
    return torch.rand(shape, generator=generator, device=like.device)


class TokenViews:
    """Token-level text augmentation on padded batches of token ids.

    For each sequence, on its *content* tokens only (attention mask 1, not at
    position 0, id not in ``special_ids``):

    1. crop: keep a random contiguous window of ``ceil(crop * n_content)`` tokens;
    2. drop: delete each kept token with probability ``p_drop`` (at least one stays);
    3. mask: replace each remaining token by ``mask_token_id`` with probability ``p_mask``.

    Position 0 (``[CLS]``/``<s>``) and every token whose id is in ``special_ids``
    (e.g. ``[SEP]``, ``</s>``) are never cropped, dropped or masked and keep their
    order; pads are never touched. Surviving tokens are packed to the left, the
    rest filled with ``pad_token_id`` and attention mask 0, so shapes stay ``[B, T]``.

    Args:
        p_drop: Deletion probability per content token.
        p_mask: Masking probability per content token.
        crop: Fraction of content tokens kept by the crop (1.0 disables cropping).
        mask_token_id: Id written for masked tokens (``tokenizer.mask_token_id``;
            tokenizers without one can use the unknown-token id).
        pad_token_id: Id written into freed positions.
        special_ids: Ids never altered (``tokenizer.all_special_ids``).

    Example:
        >>> import torch
        >>> tv = TokenViews(mask_token_id=103, pad_token_id=0, special_ids={101, 102})
        >>> ids = torch.tensor([[101, 7, 8, 9, 10, 11, 102, 0]])
        >>> am = (ids != 0).long()
        >>> out_ids, out_am = tv(ids, am, generator=torch.Generator().manual_seed(0))
        >>> out_ids.shape == ids.shape and out_ids[0, 0].item() == 101
        True
    """

    def __init__(
        self,
        p_drop: float = 0.1,
        p_mask: float = 0.1,
        crop: float = 0.9,
        *,
        mask_token_id: int,
        pad_token_id: int,
        special_ids: Iterable[int] = (),
    ) -> None:
        for nm, v in (("p_drop", p_drop), ("p_mask", p_mask)):
            if not 0.0 <= float(v) < 1.0:
                raise ValueError(f"{nm} must be in [0, 1), got {v!r}")
        if not 0.0 < float(crop) <= 1.0:
            raise ValueError(f"crop must be in (0, 1], got {crop!r}")
        self.p_drop = float(p_drop)
        self.p_mask = float(p_mask)
        self.crop = float(crop)
        self.mask_token_id = int(mask_token_id)
        self.pad_token_id = int(pad_token_id)
        self.special_ids = sorted({int(i) for i in special_ids})

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> TokenViews:
        """Take ``mask_token_id`` (else ``unk_token_id``), ``pad_token_id`` and
        ``all_special_ids`` from a Hugging Face tokenizer.

        Example:
            >>> tv = TokenViews.from_tokenizer(tok, p_mask=0.15)  # doctest: +SKIP
        """
        mask = getattr(tokenizer, "mask_token_id", None)
        if mask is None:
            mask = getattr(tokenizer, "unk_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        if mask is None or pad is None:
            raise ValueError("tokenizer needs a mask (or unk) token and a pad token for TokenViews")
        kwargs.setdefault("mask_token_id", mask)
        kwargs.setdefault("pad_token_id", pad)
        kwargs.setdefault("special_ids", getattr(tokenizer, "all_special_ids", ()))
        return cls(**kwargs)

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One augmented view ``(input_ids, attention_mask)``, both ``[B, T]``."""
        if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
            raise ValueError(
                f"input_ids and attention_mask must both be [B, T], got {tuple(input_ids.shape)} "
                f"and {tuple(attention_mask.shape)}"
            )
        b, t = input_ids.shape
        dev = input_ids.device
        attn = attention_mask.bool()
        pos = torch.arange(t, device=dev).expand(b, t)
        special = pos == 0
        if self.special_ids:
            special = special | torch.isin(input_ids, torch.tensor(self.special_ids, device=dev))
        content = attn & ~special
        n_content = content.sum(1)  # [B]
        rank = content.long().cumsum(1) - 1  # rank among content tokens

        # 1. crop a contiguous window of content tokens
        win = torch.ceil(n_content.float() * self.crop).long().clamp(min=1)
        win = torch.minimum(win, n_content)
        u = _rand((b,), input_ids, generator)
        start = torch.floor(u * (n_content - win + 1).float()).long()
        keep = content & (rank >= start[:, None]) & (rank < (start + win)[:, None])

        # 2. drop tokens, keeping at least one content token per sequence
        if self.p_drop > 0:
            dropped = _rand((b, t), input_ids, generator) < self.p_drop
            kept_after = keep & ~dropped
            emptied = (kept_after.sum(1) == 0) & (n_content > 0)
            first_in_window = content & (rank == start[:, None])
            keep = torch.where(emptied[:, None], first_in_window, kept_after)

        # 3. mask
        ids = input_ids.clone()
        if self.p_mask > 0:
            masked = keep & (_rand((b, t), input_ids, generator) < self.p_mask)
            ids = torch.where(masked, torch.full_like(ids, self.mask_token_id), ids)

        # Pack surviving tokens (specials + kept content) to the left, stable order.
        survive = (attn & special) | keep
        order = torch.argsort((~survive).to(torch.int8), dim=1, stable=True)
        ids = torch.gather(ids, 1, order)
        new_attn = torch.gather(survive, 1, order)
        ids = torch.where(new_attn, ids, torch.full_like(ids, self.pad_token_id))
        return ids, new_attn.to(attention_mask.dtype)

    def pair(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Two independent views ``((ids1, mask1), (ids2, mask2))``."""
        return self(input_ids, attention_mask, generator), self(input_ids, attention_mask, generator)

    def __repr__(self) -> str:
        return (
            f"TokenViews(p_drop={self.p_drop}, p_mask={self.p_mask}, crop={self.crop}, "
            f"mask_token_id={self.mask_token_id}, pad_token_id={self.pad_token_id})"
        )


class FeatureMaskNoise:
    """Random feature masking plus Gaussian noise for vector inputs.

    ``x * m + noise_std * ε`` with ``m ~ Bernoulli(1 - p_mask)`` per feature and
    ``ε ~ N(0, 1)``. On standardised features a zeroed feature equals its train mean.

    The MulSupCon authors' yeast code (``get_transform`` in their ``utils.py``,
    ``p: 0.5`` in ``pretrain_yeast.yaml``) masks standardised features with
    probability 0.5 and adds **no** noise; ``noise_std=0.0`` reproduces it exactly.
    The default ``noise_std=0.1`` (a tenth of a feature's standard deviation after
    standardisation) adds a small jitter so two views never coincide on the unmasked
    features.

    Args:
        p_mask: Probability of zeroing each feature.
        noise_std: Standard deviation of the additive Gaussian noise.

    Example:
        >>> import torch
        >>> FeatureMaskNoise(p_mask=0.5, noise_std=0.0)(torch.ones(1, 6), torch.Generator().manual_seed(1))
        tensor([[1., 0., 0., 1., 0., 1.]])
    """

    def __init__(self, p_mask: float = 0.5, noise_std: float = 0.1) -> None:
        if not 0.0 <= float(p_mask) < 1.0:
            raise ValueError(f"p_mask must be in [0, 1), got {p_mask!r}")
        if float(noise_std) < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.p_mask = float(p_mask)
        self.noise_std = float(noise_std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One augmented view of ``x`` ``[B, F]`` (any leading shape), same shape and dtype."""
        out = x
        if self.p_mask > 0:
            keep = _rand(tuple(x.shape), x, generator) >= self.p_mask
            out = out * keep.to(x.dtype)
        if self.noise_std > 0:
            if generator is not None and generator.device != x.device:
                eps = torch.randn(tuple(x.shape), generator=generator, device=generator.device).to(x.device)
            else:
                eps = torch.randn(tuple(x.shape), generator=generator, device=x.device)
            out = out + self.noise_std * eps.to(x.dtype)
        return out

    def pair(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent views."""
        return self(x, generator), self(x, generator)

    def __repr__(self) -> str:
        return f"FeatureMaskNoise(p_mask={self.p_mask}, noise_std={self.noise_std})"


class ImageViews:
    """SimCLR-style image augmentation with ``kornia.augmentation``.

    RandomResizedCrop(size, scale) → ColorJitter(brightness, contrast, saturation,
    hue) with probability ``p_jitter`` → RandomGrayscale(``p_gray``) →
    RandomHorizontalFlip(``p_flip``), then optional normalisation by ``mean``/``std``.
    The defaults are SimCLR's (and the MulSupCon authors' "SimCLR" strategy).

    Args:
        size: Output side (square).
        scale: Area range of the random crop.
        brightness, contrast, saturation, hue: Colour jitter strengths.
        p_jitter: Probability of applying the jitter.
        p_gray: Probability of greyscale.
        p_flip: Probability of a horizontal flip.
        mean, std: Per-channel normalisation applied after augmentation (None: none).

    Input: float ``[B, 3, H, W]`` in ``[0, 1]`` (see
    :func:`~mlsupcon.data.images.images_to_tensor`). Output: float ``[B, 3, size, size]``.

    Example:
        >>> import torch
        >>> v = ImageViews(32)
        >>> v(torch.rand(2, 3, 56, 56), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        size: int = 224,
        *,
        scale: tuple[float, float] = (0.2, 1.0),
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        p_jitter: float = 0.8,
        p_gray: float = 0.2,
        p_flip: float = 0.5,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        try:
            import kornia.augmentation as K
        except ImportError as e:  # pragma: no cover - kornia is in the vision extra
            raise ImportError("ImageViews needs kornia: pip install 'mlsupcon[vision]'") from e
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.size = int(size)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.aug = K.AugmentationSequential(
            K.RandomResizedCrop((self.size, self.size), scale=tuple(scale)),
            K.ColorJitter(brightness, contrast, saturation, hue, p=p_jitter),
            K.RandomGrayscale(p=p_gray),
            K.RandomHorizontalFlip(p=p_flip),
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One augmented view of ``images`` ``[B, 3, H, W]`` → ``[B, 3, size, size]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be float [B, 3, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError("images must be a float tensor in [0, 1] (see images_to_tensor)")
        if generator is None:
            out = self.aug(images)
        else:
            # kornia samples from the global RNG; fork it and seed it from the
            # generator so the view is a function of the generator state only.
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
            devices = [images.device] if images.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices, device_type=images.device.type if devices else "cuda"):
                torch.manual_seed(seed)
                out = self.aug(images)
        out = out.clamp_(0.0, 1.0)
        if self.mean is not None:
            out = (out - self.mean.to(out.device)) / self.std.to(out.device)
        return out

    def pair(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent views."""
        return self(images, generator), self(images, generator)

    def __repr__(self) -> str:
        return f"ImageViews(size={self.size}, {self.aug!r})"


def make_views(modality: str, **opts: Any) -> TokenViews | FeatureMaskNoise | ImageViews:
    """Build the view maker for a modality.

    Args:
        modality: ``"text"`` (:class:`TokenViews`), ``"vector"``
            (:class:`FeatureMaskNoise`) or ``"image"`` (:class:`ImageViews`).
        **opts: Constructor arguments of that class; for ``"text"`` a ``tokenizer=``
            may replace ``mask_token_id``/``pad_token_id``/``special_ids``.

    Raises:
        ValueError: Unknown modality or option (listing the valid ones).

    Example:
        >>> make_views("vector", p_mask=0.5)
        FeatureMaskNoise(p_mask=0.5, noise_std=0.1)
    """
    classes = {"text": TokenViews, "vector": FeatureMaskNoise, "image": ImageViews}
    if modality not in classes:
        raise ValueError(f"unknown modality {modality!r}; valid choices: {', '.join(classes)}")
    cls = classes[modality]
    import inspect

    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    if modality == "text":
        valid = valid + ["tokenizer"]
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for {modality} views; "
            f"valid options: {', '.join(valid)}"
        )
    if modality == "text" and "tokenizer" in opts:
        tok = opts.pop("tokenizer")
        return TokenViews.from_tokenizer(tok, **opts)
    return cls(**opts)
