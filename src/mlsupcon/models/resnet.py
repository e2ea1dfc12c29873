"""ResNet image encoder built on transformers' ``ResNetModel`` (no torchvision/timm needed).

Images are resized to ``image_size`` and scaled to [0, 1] in :meth:`ResNetEncoder.preprocess`
(so augmentations act on [0, 1] images); the ImageNet mean/std normalisation happens inside
:meth:`ResNetEncoder.forward`.

Example:
    >>> import numpy as np
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("resnet", image_size=32)  # small random-init ResNet
    >>> imgs = np.random.randint(0, 256, size=(2, 40, 50, 3), dtype=np.uint8)
    >>> enc(enc.preprocess(imgs)).shape
    torch.Size([2, 256])
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import Encoder, check_choice, check_positive_int
from .factory import register_encoder

__all__ = ["ResNetEncoder", "RESNET_PRESETS", "IMAGENET_MEAN", "IMAGENET_STD", "image_to_chw", "images_to_pixels"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``ResNetConfig`` values of the presets. "small" is a CPU-friendly default (~1.2M params).
RESNET_PRESETS: dict[str, dict[str, Any]] = {
    "small": {"layer_type": "basic", "depths": [1, 1, 1, 1], "hidden_sizes": [32, 64, 128, 256], "embedding_size": 32},
    "resnet18": {"layer_type": "basic", "depths": [2, 2, 2, 2], "hidden_sizes": [64, 128, 256, 512],
                 "embedding_size": 64},
    "resnet34": {"layer_type": "basic", "depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 256, 512],
                 "embedding_size": 64},
    "resnet50": {"layer_type": "bottleneck", "depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048],
                 "embedding_size": 64},
    "resnet101": {"layer_type": "bottleneck", "depths": [3, 4, 23, 3], "hidden_sizes": [256, 512, 1024, 2048],
                  "embedding_size": 64},
}


def _check_stats(value: Sequence[float], arg: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be 3 floats (one per RGB channel), got {value!r}") from None
    if len(vals) != 3:
        raise ValueError(f"{arg} must be 3 floats (one per RGB channel), got {value!r}")
    if arg == "std" and min(vals) <= 0:
        raise ValueError(f"std must be positive, got {value!r}")
    return vals  # type: ignore[return-value]


def image_to_chw(img: Any) -> torch.Tensor:
    """One image (HxW, HxWx{1,3,4} array/PIL image, or CHW tensor) -> float [3, H, W] in [0, 1].

    Integer images are 8-bit colour values (divided by 255), float images are taken as [0, 1];
    greyscale is replicated to 3 channels and an alpha channel dropped.
    """
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
            t = t.permute(1, 2, 0)  # CHW tensor -> HWC
        a = t.numpy()
    else:
        a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"images must be HxW, HxWx1, HxWx3 or HxWx4 arrays, got shape {a.shape}")
    a = a[:, :, :3]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype == np.bool_:
        x = torch.from_numpy(a.astype(np.float32))
    elif np.issubdtype(a.dtype, np.integer):
        x = torch.from_numpy(a.astype(np.float32) / 255.0)  # 8-bit colour values
    else:
        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # already in [0, 1]
    return x.permute(2, 0, 1).contiguous()


def images_to_pixels(raw: Any, size: int) -> torch.Tensor:
    """Images -> float32 ``[n, 3, size, size]`` in [0, 1], the input of the image encoders.

    Accepts a list of images (uint8 HxWx3, grayscale HxW, RGBA, PIL images, float images in
    [0, 1]), a ``[n, H, W, 3]`` array, or a ``[n, 3, H, W]`` tensor. Images are resized
    (bilinear, antialiased, aspect ratio not kept) to a square of ``size``; an image already of
    that size is left as it is.

    Example:
        >>> import numpy as np
        >>> images_to_pixels(np.zeros((2, 40, 50, 3), np.uint8), 32).shape
        torch.Size([2, 3, 32, 32])
    """
    s = size
    if isinstance(raw, torch.Tensor) and raw.dim() == 4 and raw.shape[1] == 3:
        x = raw.detach().cpu().float()
        if not raw.is_floating_point():
            x = x / 255.0
        batch = [x]
    else:
        if isinstance(raw, np.ndarray) and raw.ndim == 3 and raw.shape[-1] in (3, 4):
            raw = [raw]  # a single HxWx3 image, not a batch of grayscale ones
        imgs = [image_to_chw(im) for im in raw]
        if not imgs:
            return torch.zeros(0, 3, s, s)
        batch = [im.unsqueeze(0) for im in imgs]
    out = []
    for x in batch:
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        out.append(x)
    return torch.cat(out, 0).clamp_(0.0, 1.0).contiguous()


@register_encoder
class ResNetEncoder(Encoder):
    """ResNet backbone; the pooled output is the global-average-pooled last feature map.

    Args:
        preset: Architecture for random init: ``"small"`` (default), ``"resnet18"``,
            ``"resnet34"``, ``"resnet50"``, ``"resnet101"``.
        config: Extra ``ResNetConfig`` values overriding the preset (e.g. ``{"depths": [1, 1]
            , "hidden_sizes": [16, 32]}``).
        model_path: Local directory of a pretrained transformers ResNet (``ResNetModel`` or
            ``ResNetForImageClassification`` checkpoint); ``preset``/``config`` are then ignored.
        image_size: Side of the square images fed to the network (default 224).
        mean: Per-channel normalisation mean (default: the checkpoint's
            ``preprocessor_config.json`` if any, else ImageNet's).
        std: Per-channel normalisation std (same defaults).
        freeze: Freeze the backbone (no gradients, eval mode, run under no_grad).

    Raises:
        ValueError: For invalid options (named in the message).
        FileNotFoundError: When ``model_path`` does not exist.

    Example:
        >>> enc = ResNetEncoder(preset="resnet18", image_size=32)
        >>> enc.output_dim
        512
    """

    name = "resnet"
    modality = "image"
    input_keys = ("pixel_values",)

    def __init__(
        self,
        preset: str = "small",
        config: Mapping[str, Any] | None = None,
        model_path: str | os.PathLike | None = None,
        image_size: int = 224,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        self.preset = check_choice(preset, "preset", tuple(RESNET_PRESETS))
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(f"config must be a dict of ResNetConfig values, got {type(config).__name__}")
        self.image_size = check_positive_int(image_size, "image_size", 8)
        self.freeze = bool(freeze)
        self._config_arg = None if config is None else dict(config)
        self._model_path_arg = None if model_path is None else str(model_path)

        from transformers import ResNetConfig, ResNetModel

        pre_mean = pre_std = None
        if model_path is not None:
            p = Path(model_path).expanduser()
            if not p.exists():
                raise FileNotFoundError(
                    f"model_path {str(model_path)!r} does not exist (models are loaded from local directories only)"
                )
            from .transformer import quiet_transformers

            with quiet_transformers():
                # eval mode as loaded; a new encoder trains (batch-norm statistics) unless frozen
                self.backbone = ResNetModel.from_pretrained(str(p), local_files_only=True, dtype=torch.float32).train()
            prep = p / "preprocessor_config.json"
            if prep.is_file():
                try:
                    data = json.loads(prep.read_text(encoding="utf-8"))
                    pre_mean, pre_std = data.get("image_mean"), data.get("image_std")
                except (OSError, ValueError):
                    pass
        else:
            values = {**RESNET_PRESETS[self.preset], **(self._config_arg or {})}
            try:
                cfg = ResNetConfig(**values)
            except (TypeError, ValueError) as e:
                raise ValueError(f"config is not a valid ResNetConfig: {e}") from None
            if len(cfg.depths) != len(cfg.hidden_sizes):
                raise ValueError("config: depths and hidden_sizes must have the same length")
            self.backbone = ResNetModel(cfg)
        self.output_dim = int(self.backbone.config.hidden_sizes[-1])
        self.mean = _check_stats(mean if mean is not None else (pre_mean or IMAGENET_MEAN), "mean")
        self.std = _check_stats(std if std is not None else (pre_std or IMAGENET_STD), "std")
        # Non-persistent: part of the config, not of the weights.
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        if self.freeze:
            for p_ in self.backbone.parameters():
                p_.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> "ResNetEncoder":
        super().train(mode)
        if self.freeze:  # frozen BatchNorm statistics must not drift
            self.backbone.eval()
        return self

    # ------------------------------------------------------------------ preprocessing
    def _to_chw(self, img: Any) -> torch.Tensor:
        """One image -> float [3, H, W] in [0, 1] (:func:`image_to_chw`)."""
        return image_to_chw(img)

    def preprocess(self, raw: Any) -> dict[str, torch.Tensor]:
        """Images -> ``{"pixel_values": float32 [n, 3, image_size, image_size]}`` in [0, 1]
        (:func:`images_to_pixels`: lists of HxW / HxWx{1,3,4} arrays or PIL images, a
        ``[n, H, W, 3]`` array, a ``[n, 3, H, W]`` tensor)."""
        return {"pixel_values": images_to_pixels(raw, self.image_size)}

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{"pixel_values": [n, 3, H, W] in [0, 1]}`` -> pooled features ``[n, output_dim]``."""
        batch = self._batch_to_device(batch)
        x = batch["pixel_values"].to(self._mean.dtype)
        x = (x - self._mean) / self._std
        with torch.no_grad() if self.freeze else contextlib.nullcontext():
            out = self.backbone(pixel_values=x)
        return out.pooler_output.flatten(1)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "preset": self.preset,
            "config": None if self._config_arg is None else dict(self._config_arg),
            "model_path": self._model_path_arg,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "freeze": self.freeze,
        }

