"""Deprecated: the run configuration moved to :mod:`mlsupcon.config`.

``TrainConfig`` is :mod:`mlsupcon.config.schema`'s; ``load_config`` with the method's checks is
:mod:`mlsupcon.training.run_config`'s (without them: :mod:`mlsupcon.config.loading`);
``save_config`` is :mod:`mlsupcon.runs.folder`'s.
"""

import warnings

from mlsupcon.config.schema import TrainConfig
from mlsupcon.runs.folder import save_config
from mlsupcon.training.run_config import load_config

__all__ = ["TrainConfig", "load_config", "save_config"]

warnings.warn("mlsupcon.training.config is deprecated; import from mlsupcon.config", DeprecationWarning,
              stacklevel=2)
