"""Deprecated: the kNN and blend heads live in :mod:`mlsupcon.models.heads.knn` and
:mod:`mlsupcon.models.heads.blend`; this module re-exports them for one release.

Example:
    >>> import mlsupcon.models.heads as heads
    >>> KNNHead is heads.KNNHead and BlendHead is heads.BlendHead and knn_search is heads.knn_search
    True
"""

import warnings

from .heads.blend import BlendHead
from .heads.knn import KNNHead, knn_search, knn_vote

__all__ = ["BlendHead", "KNNHead", "knn_search", "knn_vote"]

warnings.warn("mlsupcon.models.knn_head is deprecated; import from mlsupcon.models.heads", DeprecationWarning,
              stacklevel=2)
