"""What a stage logs: its CSV rows (``logs/<stage>/metrics.csv``, kept across a resume), and
Lightning's own log and warning noise, silenced.

Lightning's CSV logger deletes ``metrics.csv`` when a stage starts again; a resumed stage keeps
the rows of its complete epochs aside (:func:`read_log_rows`) and puts them back before the new
ones (:func:`merge_resumed_log`).
"""

from __future__ import annotations

import csv
import io
import logging
import warnings
from pathlib import Path

from mlsupcon.runs.io import atomic_write_text

__all__ = ["merge_resumed_log", "quiet_lightning", "read_log_rows", "write_log_rows"]


def quiet_lightning() -> None:
    """Silences Lightning's info logs and the warnings that do not apply to mlsupcon's stages."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*isinstance.*treespec.*")
    # Mid-epoch resume is exact here (EpochSampler + ResumableCheckpoint), whatever Lightning
    # infers from the loader; and a resumed stage keeps its earlier log rows (merge_resumed_log).
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    # A skipped (non-finite) step returns None on purpose; it is counted and logged instead.
    warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
    # Under DDP the logged losses and validation metrics are already global (gathered), or rank 0's.
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")


def write_log_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """CSV rows (union of their keys as the header), written atomically; nothing if no rows."""
    if not rows:
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=sorted({k for r in rows for k in r}), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def merge_resumed_log(log_dir: Path, kept_rows: list[dict[str, str]]) -> None:
    """Puts the rows of the interrupted attempt (complete epochs only) before the new rows."""
    path = log_dir / "metrics.csv"
    new_rows: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="") as fh:
            new_rows = list(csv.DictReader(fh))
    write_log_rows(path, kept_rows + new_rows)


def read_log_rows(log_dir: Path, before_epoch: int) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` (and of an earlier resume's saved rows) with epoch < ``before_epoch``."""
    rows = []
    for name in ("metrics.before_resume.csv", "metrics.csv"):
        p = log_dir / name
        if not p.is_file():
            continue
        with open(p, newline="") as fh:
            for r in csv.DictReader(fh):
                try:
                    if int(r.get("epoch") or 0) < before_epoch:
                        rows.append(r)
                except ValueError:
                    continue
    # keep one copy of each row (the saved rows and the current file may overlap)
    seen, unique = set(), []
    for r in rows:
        key = tuple(sorted(r.items()))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique
