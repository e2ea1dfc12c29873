"""Deprecated: moved to :mod:`mlsupcon.runs.folder`. This module re-exports its names for one release."""

import warnings

from mlsupcon.runs.folder import (  # noqa: F401 - re-exported
    ARTEFACT,
    IGNORED,
    LEFTOVER,
    LOCK_FILE,
    OTHER,
    RUN_ARTEFACTS,
    check_output_folder,
    check_run_output,
    claim_run_folder,
    classify_entry,
    folder_entries,
    has_checkpoint,
    remove_artefacts,
    run_lock,
)

warnings.warn("mlsupcon.training.output_folder is deprecated; import from mlsupcon.runs.folder",
              DeprecationWarning, stacklevel=2)
