"""Deprecated: moved to :mod:`mlsupcon.inference.export`. This module re-exports its names for one release."""

import warnings

from mlsupcon.inference.export import (  # noqa: F401 - re-exported
    EXPORT_FORMATS,
    check_export_output,
    export_hf,
    export_portable,
)

warnings.warn("mlsupcon.training.portable_export is deprecated; import from mlsupcon.inference.export",
              DeprecationWarning, stacklevel=2)
