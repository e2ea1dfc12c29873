"""Deprecated: moved to :mod:`mlsupcon.inference.storage`. This module re-exports its names for one release."""

import warnings

from mlsupcon.inference.storage import (  # noqa: F401 - re-exported
    FORMAT,
    HF_EXPORT_FORMAT,
    META,
    PICKLE_SUFFIXES,
    READABLE_FORMATS,
    WEIGHTS,
    check_weight_files,
    load_classifier,
    save_classifier,
)

warnings.warn("mlsupcon.training.export is deprecated; import from mlsupcon.inference.storage",
              DeprecationWarning, stacklevel=2)
