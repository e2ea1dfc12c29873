"""Deprecated: moved to :mod:`mlsupcon.inference.model` (``evaluate_model``: :mod:`mlsupcon.inference.evaluate`).

This module re-exports its names for one release."""

import warnings

from mlsupcon.inference.evaluate import evaluate_model  # noqa: F401 - re-exported
from mlsupcon.inference.model import (  # noqa: F401 - re-exported
    PROGRESS_MIN_BATCHES,
    TrainedModel,
    labels_from_scores,
    load,
    model_folder,
)

warnings.warn("mlsupcon.training.inference is deprecated; import from mlsupcon.inference",
              DeprecationWarning, stacklevel=2)
