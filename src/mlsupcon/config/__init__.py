"""The run configuration: its schema, the checks of its fields, the dataset presets, the settings
chosen from the data and the command-line flag table.

Layout: :mod:`~mlsupcon.config.schema` (:class:`TrainConfig`), :mod:`~mlsupcon.config.validation`
(one check per group of fields), :mod:`~mlsupcon.config.loading` (:func:`load_config`: defaults <
preset < YAML < flags), :mod:`~mlsupcon.config.presets`, :mod:`~mlsupcon.config.auto` (settings
chosen from the data; imports the models package, so it is not imported here),
:mod:`~mlsupcon.config.flags` (the CLI's flags) and :mod:`~mlsupcon.config.methods` (what the
config knows of the training methods). Nothing here imports :mod:`mlsupcon.training`, torch or
Lightning: a config is loaded and checked before anything heavy.
"""

from mlsupcon.config.loading import load_config
from mlsupcon.config.presets import PRESETS, preset_for
from mlsupcon.config.schema import TrainConfig
from mlsupcon.config.validation import validate_config

__all__ = ["TrainConfig", "load_config", "validate_config", "PRESETS", "preset_for"]
