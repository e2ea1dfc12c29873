"""Deprecated: moved to :mod:`mlsupcon.runs.folder` (``atomic_savez``: :mod:`mlsupcon.runs.io`).

This module re-exports its names for one release."""

import warnings

from mlsupcon.runs.folder import (  # noqa: F401 - re-exported
    LOCK_FILE,
    PACKAGES,
    RESUME_FREE_KEYS,
    RUN_ARTEFACTS,
    check_output_folder,
    check_resume_config,
    check_run_output,
    claim_run_folder,
    environment_info,
    has_checkpoint,
    remove_artefacts,
    run_lock,
    start_run_folder,
)
from mlsupcon.runs.io import atomic_savez  # noqa: F401 - re-exported

warnings.warn("mlsupcon.training.run_folder is deprecated; import from mlsupcon.runs.folder",
              DeprecationWarning, stacklevel=2)
