"""``build_encoder``: one entry point from a name and options (or a saved ``config()``).

Example:
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("mlp", in_dim=10, hidden_dims=[16])
    >>> same = build_encoder(**enc.config())
    >>> same.output_dim
    16
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from .base import Encoder

__all__ = ["build_encoder", "ENCODERS", "encoder_options", "register_encoder"]

#: Encoder classes by name. Each encoder module registers its class (:func:`register_encoder`)
#: and ``mlsupcon.models`` imports them all, so the table is complete once the package is
#: imported; this module imports no encoder, so a composite encoder (fusion) can build its
#: branches through :func:`build_encoder` without an import loop.
ENCODERS: dict[str, type[Encoder]] = {}

EncoderType = TypeVar("EncoderType", bound=type[Encoder])


def register_encoder(cls: EncoderType) -> EncoderType:
    """Class decorator: registers ``cls`` in :data:`ENCODERS` under its ``name``."""
    if not cls.name:
        raise ValueError(f"encoder class {cls.__name__} has no name to register it under")
    ENCODERS[cls.name] = cls
    return cls


def encoder_options(name: str) -> dict[str, Any]:
    """Options accepted by encoder ``name`` and their defaults (``inspect.Parameter.empty``-free).

    Example:
        >>> encoder_options("mlp")["hidden_dims"]
        (256, 512, 256)
    """
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self"}


def _lookup(name: Any) -> type[Encoder]:
    if not isinstance(name, str) or name.strip().lower() not in ENCODERS:
        raise ValueError(f"name: unknown encoder {name!r}; choose from {sorted(ENCODERS)}")
    return ENCODERS[name.strip().lower()]


def build_encoder(name: str, **opts: Any) -> Encoder:
    """Build an encoder by name.

    Args:
        name: ``"mlp"``, ``"cnn"``, ``"transformer"`` or ``"resnet"``.
        **opts: The encoder's options (see :class:`MLPEncoder`, :class:`CNNEncoder`,
            :class:`TransformerEncoder`, :class:`ResNetEncoder`), or an encoder's
            ``config()`` unpacked (it includes ``name``).

    Returns:
        The encoder (an ``nn.Module``), randomly initialised or loaded from a local path.
        Trained weights are restored separately with ``load_state_dict``.

    Raises:
        ValueError: Unknown ``name`` or option, or an invalid/missing option; the message
            names the argument.
        FileNotFoundError: A ``model_path``/``tokenizer_path`` that does not exist.

    Example:
        >>> enc = build_encoder("cnn", train_texts=["one doc", "another doc"], max_length=64)
        >>> enc.modality, enc.output_dim
        ('text', 50)
    """
    cls = _lookup(name)
    allowed = encoder_options(name)
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for encoder {name!r}; valid options: {sorted(allowed)}"
        )
    return cls(**opts)
