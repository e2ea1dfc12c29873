"""Deprecated: the dataset presets moved to :mod:`mlsupcon.config.presets`."""

import warnings

from mlsupcon.config.presets import OWNED_BY, PRESETS, preset_for, preset_layer, preset_name

__all__ = ["PRESETS", "OWNED_BY", "preset_for", "preset_name", "preset_layer"]

warnings.warn("mlsupcon.training.presets is deprecated; import from mlsupcon.config.presets", DeprecationWarning,
              stacklevel=2)
