"""Deprecated: :class:`SliceHead` lives in :mod:`mlsupcon.models.heads.slice`; this module
re-exports it for one release."""

import warnings

from .heads.slice import SliceHead

__all__ = ["SliceHead"]

warnings.warn("mlsupcon.models.slice_head is deprecated; import from mlsupcon.models.heads", DeprecationWarning,
              stacklevel=2)
