"""A run's configuration as training checks it: the config's fields, then the method's own checks.

The config layer (:mod:`mlsupcon.config`) checks every field without knowing the training
methods; a method adds its checks (``Method.validate``: loss and head names against their
registries, which import torch, and the options only it reads). A run makes both once, before
Lightning is imported: the ``train`` command checks the fields before it reads the data (without
torch) and the method's checks after; :func:`~mlsupcon.training.runner.run_training`, called
directly, makes both (:func:`validate_run_config`) before it reads the data.

Example:
    >>> load_config(None, {"method": "bce", "momentum": 0.9})
    Traceback (most recent call last):
    ...
    ValueError: momentum: only the two-stage method uses it (this run's method is 'bce'); leave it unset
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlsupcon.config.loading import load_config as load_config_fields
from mlsupcon.config.schema import TrainConfig
from mlsupcon.config.validation import validate_config
from mlsupcon.training.methods import METHODS, get_method

__all__ = ["check_method_options", "validate_run_config", "load_config"]


def check_method_options(cfg: TrainConfig) -> TrainConfig:
    """The checks of ``cfg``'s method (``Method.validate``); ``cfg``'s fields are valid already.

    Returns:
        ``cfg``.
    """
    get_method(cfg.method).validate(cfg)
    return cfg


def validate_run_config(cfg: TrainConfig) -> TrainConfig:
    """Every check of a run's configuration: the fields (the method named among the registered
    ones), then the method's own checks. Returns ``cfg``."""
    validate_config(cfg, METHODS)
    return check_method_options(cfg)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                registries: bool = True) -> TrainConfig:
    """:func:`mlsupcon.config.loading.load_config` (the method named among the registered ones),
    then the method's own checks unless ``registries`` is false (the ``train`` command checks the
    fields before it reads the data without torch, the method's checks after)."""
    cfg = load_config_fields(path, overrides, method_names=METHODS)
    return check_method_options(cfg) if registries else cfg
