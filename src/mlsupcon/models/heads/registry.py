"""The head registry: head classes by kind, and the one way to build or rebuild a head.

Each head module registers its class with :func:`register_head`; the package
``mlsupcon.models.heads`` imports them all, so :data:`HEADS` is complete once the package is
imported (its order is the package's import order). This module imports no head class itself,
so a head that holds other heads (blend, slice) can rebuild them through
:func:`head_from_config` without an import loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from .base import ClassifierHead

__all__ = ["HEADS", "register_head", "head_class", "build_head", "check_head_options", "head_from_config",
           "nested_head_config"]

#: Classifier head classes by kind (``head`` of a run config, ``head.kind`` of an export).
HEADS: dict[str, type[ClassifierHead]] = {}

HeadType = TypeVar("HeadType", bound=type[ClassifierHead])


def register_head(cls: HeadType) -> HeadType:
    """Class decorator: registers ``cls`` in :data:`HEADS` under its ``kind``."""
    if not cls.kind:
        raise ValueError(f"head class {cls.__name__} has no kind to register it under")
    HEADS[cls.kind] = cls
    return cls


def head_class(kind: Any) -> type[ClassifierHead]:
    """The head class registered as ``kind``; ValueError naming the known kinds otherwise."""
    if not isinstance(kind, str) or kind not in HEADS:
        raise ValueError(f"head: expected one of {tuple(HEADS)}, got {kind!r}")
    return HEADS[kind]


def build_head(kind: str, encoder: nn.Module, num_labels: int, **options: Any) -> ClassifierHead:
    """A new head of ``kind`` for ``encoder`` and ``num_labels`` labels.

    Args:
        kind: a key of :data:`HEADS`.
        encoder: the encoder the head sits on (its ``output_dim`` / ``sequence_dim``).
        num_labels: number of labels C.
        **options: the head's options (its ``options`` attribute lists them).

    Example:
        >>> from mlsupcon.models import build_encoder
        >>> build_head("attention", build_encoder("mlp", in_dim=3), 2)
        Traceback (most recent call last):
        ...
        ValueError: head: 'attention' needs a text encoder (cnn, transformer), not 'mlp'
    """
    cls = head_class(kind)
    if cls.built_by_method:
        raise ValueError(f"head: '{kind}' is built by its training method, not from a run's head option")
    check_head_options(kind, options)
    return cls.create(encoder, num_labels, **options)


def check_head_options(kind: str, options: Any) -> None:
    """Raises ValueError (one line naming ``head_options``) unless ``options`` is a mapping of
    options the ``kind`` head takes (its ``options`` attribute).

    Example:
        >>> check_head_options("linear", {"dropout": 0.1})
        >>> check_head_options("linear", {"dropuot": 0.1})
        Traceback (most recent call last):
        ...
        ValueError: head_options: ['dropuot'] are not options of the 'linear' head; it takes ['dropout']
    """
    if not isinstance(options, Mapping):
        raise ValueError(f"head_options: expected a mapping of option: value, got {options!r}")
    accepted = list(head_class(kind).options)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"head_options: {unknown} are not options of the '{kind}' head; it takes {accepted}")


def head_from_config(
    config: Mapping[str, Any],
    nested: bool = False,
    builders: Mapping[str, Callable[..., nn.Module]] | None = None,
) -> nn.Module:
    """The head a saved config describes (random weights; load them with ``load_state_dict``).

    Args:
        config: A model's head, ``{"kind", "class", **options}`` as
            :meth:`mlsupcon.models.Classifier.config` writes it, found by its ``kind``; or, with
            ``nested``, a head held by another head, ``{"class", **options}`` as
            :func:`nested_head_config` writes it, found by its class name.
        nested: Read ``config`` as a nested head's.
        builders: Class name -> callable taking the options, for nested heads outside
            :data:`HEADS` (passed on to heads that hold heads).

    Example:
        >>> head = head_from_config({"kind": "linear", "class": "LinearClassifier", "in_dim": 4, "num_labels": 2})
        >>> type(head).__name__, head.num_labels
        ('LinearClassifier', 2)
    """
    if not nested:
        options = dict(config)
        cls = head_class(options.pop("kind"))
        options.pop("class", None)
        return cls.from_config(options)
    if not isinstance(config, Mapping) or "class" not in config:
        raise ValueError(f"head config must be a mapping with a 'class' key, got {config!r}")
    name = config["class"]
    options = {k: v for k, v in config.items() if k not in ("class", "kind")}
    builders = dict(builders or {})
    if name in builders:
        return builders[name](**options)
    cls = next((c for c in HEADS.values() if c.__name__ == name), None)
    if cls is None:
        raise ValueError(f"head config: unknown head class {name!r} (pass builders={{{name!r}: ...}})")
    return cls.from_config(options, builders)


def nested_head_config(head: nn.Module) -> dict[str, Any]:
    """``{"class": ..., **head.config()}``: how a head that holds ``head`` (blend, slice) describes it.

    ``head`` may be any module with a ``config()``, not only a registered head (the class is then
    rebuilt through ``builders`` of :func:`head_from_config`).
    """
    config = getattr(head, "config", None)
    if not callable(config):
        raise ValueError(f"head {type(head).__name__} has no config(); BlendHead cannot describe it")
    return {"class": type(head).__name__, **config()}
