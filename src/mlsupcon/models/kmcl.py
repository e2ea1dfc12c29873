"""Deprecated: the KMCL head (:class:`KMCLHead`, :class:`KMCLHeadOutput`, :class:`KMCLClassifier`)
lives in :mod:`mlsupcon.models.heads.kmcl`; this module re-exports it for one release."""

import warnings

from .heads.kmcl import KMCLClassifier, KMCLHead, KMCLHeadOutput

__all__ = ["KMCLHead", "KMCLHeadOutput", "KMCLClassifier"]

warnings.warn("mlsupcon.models.kmcl is deprecated; import from mlsupcon.models.heads", DeprecationWarning,
              stacklevel=2)
