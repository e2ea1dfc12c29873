"""Raw pixels as features: images resized to a small square, flattened, optionally one linear layer.

:class:`PixelEncoder` is the image side of the ``linear`` method (one-vs-rest logistic
regression on standardised pixels, :mod:`mlsupcon.training.methods.linear`): its
preprocessing is that of the ResNet encoder (:func:`~mlsupcon.models.resnet.images_to_pixels`:
paths read by the caller, PIL images, HxW / HxWx3 arrays, resized to ``image_size``, values in
[0, 1]), its :meth:`~PixelEncoder.pixels` the flattened vector (``[n, C·S·S]``, channel-major;
greyscale is the mean of the three channels), and with ``out_dim`` a ``Linear`` on that vector
holds the fitted model (``pixels @ weight.T + bias``, the decision values). Nothing but a few
numbers is configuration, so ``build_encoder(**enc.config())`` + ``load_state_dict`` rebuilds it.

Example:
    >>> import numpy as np
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("pixels", image_size=8, grayscale=True)
    >>> imgs = np.full((2, 20, 30), 255, dtype=np.uint8)   # two white greyscale images
    >>> enc.num_features, enc(enc.preprocess(imgs)).shape, float(enc.encode(imgs).max())
    (64, torch.Size([2, 64]), 1.0)
    >>> scorer = build_encoder("pixels", image_size=8, grayscale=True, out_dim=3)
    >>> scorer(scorer.preprocess(imgs)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .base import Encoder, check_positive_int
from .factory import register_encoder
from .resnet import images_to_pixels

__all__ = ["PixelEncoder"]


@register_encoder
class PixelEncoder(Encoder):
    """The pixels of an image as its features (then, with ``out_dim``, one linear layer).

    Args:
        image_size: Side of the square images are resized to (default 32; an image of that
            size is used as it is). ``[3 or 1] × image_size²`` features.
        grayscale: One channel, the mean of R, G and B (default False: the three channels).
        out_dim: Width of a ``Linear`` layer on the pixel vector (the ``linear`` method's
            one-vs-rest model: one output per label); None (default) returns the pixels.

    Raises:
        ValueError: An invalid option (named in the message).

    Example:
        >>> PixelEncoder(image_size=28, grayscale=True).output_dim
        784
    """

    name = "pixels"
    modality = "image"
    input_keys = ("pixel_values",)

    def __init__(self, image_size: int = 32, grayscale: bool = False, out_dim: int | None = None) -> None:
        super().__init__()
        self.image_size = check_positive_int(image_size, "image_size")
        if not isinstance(grayscale, bool):
            raise ValueError(f"grayscale must be true or false, got {grayscale!r}")
        self.grayscale = grayscale
        self.channels = 1 if grayscale else 3
        self.num_features = self.channels * self.image_size**2
        self.out_dim = None if out_dim is None else check_positive_int(out_dim, "out_dim")
        self.linear = None if self.out_dim is None else nn.Linear(self.num_features, self.out_dim)
        self.output_dim = self.num_features if self.out_dim is None else self.out_dim

    def preprocess(self, raw: Any) -> dict[str, torch.Tensor]:
        """Images -> ``{"pixel_values": float32 [n, 3, image_size, image_size]}`` in [0, 1]
        (:func:`~mlsupcon.models.resnet.images_to_pixels`; kept 3-channel so the image views
        of contrastive methods apply)."""
        return {"pixel_values": images_to_pixels(raw, self.image_size)}

    def pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[n, 3, S, S]`` -> the pixel vector ``[n, num_features]`` (channel-major; greyscale:
        the channel mean)."""
        if self.grayscale:
            # In float64 the mean of three equal float32 values is exactly that value, so a
            # greyscale image's features are its own pixel values, bit for bit.
            x = pixel_values.double().mean(dim=1, keepdim=True).to(pixel_values.dtype)
        else:
            x = pixel_values
        return x.flatten(1)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{"pixel_values": [n, 3, S, S]}`` -> pixels ``[n, num_features]``, or the linear
        layer's outputs ``[n, out_dim]``."""
        x = self.pixels(self._batch_to_device(batch)["pixel_values"].float())
        if x.shape[1] != self.num_features:
            raise ValueError(f"pixels encoder expects images of {self.image_size}x{self.image_size}, "
                             f"got {x.shape[1]} values per image")
        return x if self.linear is None else self.linear(x.to(self.linear.weight.dtype))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "image_size": self.image_size, "grayscale": self.grayscale,
                "out_dim": self.out_dim}
