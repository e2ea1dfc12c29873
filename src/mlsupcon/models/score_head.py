"""Deprecated: :class:`ScoresHead` lives in :mod:`mlsupcon.models.heads.scores`; this module
re-exports it for one release."""

import warnings

from .heads.scores import ScoresHead

__all__ = ["ScoresHead"]

warnings.warn("mlsupcon.models.score_head is deprecated; import from mlsupcon.models.heads", DeprecationWarning,
              stacklevel=2)
