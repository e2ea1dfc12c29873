"""Deprecated: the settings chosen from the data moved to :mod:`mlsupcon.config.auto`.

Settings are read from the new module: a test that replaces one of its constants (e.g.
``FROZEN_MAX_TEXTS``) replaces it there.
"""

import warnings

from mlsupcon.config.auto import (
    AUTO_SPECS,
    E2E_TARGET_EXAMPLES,
    FROZEN_MAX_TEXTS,
    SPARSE_MAX_FEATURES,
    apply_auto_settings,
    auto_settings,
    data_statistics,
    user_set_fields,
)

__all__ = ["AUTO_SPECS", "E2E_TARGET_EXAMPLES", "FROZEN_MAX_TEXTS", "SPARSE_MAX_FEATURES", "data_statistics",
           "auto_settings", "apply_auto_settings", "user_set_fields"]

warnings.warn("mlsupcon.training.auto is deprecated; import from mlsupcon.config.auto", DeprecationWarning,
              stacklevel=2)
