"""Deprecated: moved to :mod:`mlsupcon.runs.io`. This module re-exports its names for one release."""

import os  # noqa: F401 - tests reach the os module through this one
import warnings

from mlsupcon.runs.io import (  # noqa: F401 - re-exported
    MANIFEST,
    MANIFEST_FORMAT,
    apply_umask,
    atomic_dir,
    atomic_savez,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_manifest,
    disk_errors,
    file_sha256,
    folder_files,
    is_disk_full,
    load_weights,
    read_manifest,
    save_weights,
    write_json,
    write_manifest,
)

warnings.warn("mlsupcon.training.io is deprecated; import from mlsupcon.runs.io",
              DeprecationWarning, stacklevel=2)
