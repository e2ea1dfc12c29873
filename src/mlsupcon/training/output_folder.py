"""Which output folders a run may write into (docs/failures.md, "Run folders"); no heavy imports.

A folder holds exactly one run. A new run needs a new or empty folder; ``--resume`` continues
the run there (it needs its ``config.yaml``); ``--overwrite`` first deletes the earlier run's
artefacts (:data:`RUN_ARTEFACTS`), and never a file mlsupcon did not write: a folder holding
one is refused. ``mlsupcon train`` checks this before it reads any data; ``compare`` applies
the same rules to its folder (:func:`mlsupcon.training.compare.check_compare_output`).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "metrics.json").write_text("{}")
    2
    >>> try:
    ...     check_output_folder(out, resume=False, overwrite=False, resumable=False, nothing_to_resume="")
    ... except ValueError as exc:
    ...     print(str(exc).split(";")[1])
     continue it with --resume, replace it with --overwrite or choose another --output
    >>> check_output_folder(out, resume=False, overwrite=True, resumable=False, nothing_to_resume="")
    >>> remove_artefacts(out); sorted(out.iterdir())
    []
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from mlsupcon.training.config import TrainConfig

__all__ = ["RUN_ARTEFACTS", "LOCK_FILE", "classify_entry", "folder_entries", "check_output_folder",
           "remove_artefacts", "check_run_output", "run_lock", "claim_run_folder", "has_checkpoint"]

#: What a run writes at the top of its folder. ``--overwrite`` deletes these (and the
#: ``.<name>.*.tmp`` leftovers of their interrupted atomic writes) and nothing else.
RUN_ARTEFACTS = ("config.yaml", "environment.json", "metrics.json", "model", "checkpoints", "logs",
                 "embeddings_test.npz")
LOCK_FILE = ".mlsupcon.lock"

#: How :func:`classify_entry` sorts what a folder holds.
ARTEFACT, LEFTOVER, IGNORED, OTHER = "artefact", "leftover", "ignored", "other"


def classify_entry(path: Path, artefacts: Sequence[str] = RUN_ARTEFACTS) -> str:
    """``ARTEFACT`` (one of ``artefacts``), ``LEFTOVER`` (``.<artefact>.*.tmp``: an interrupted
    atomic write), ``IGNORED`` (the lock file) or ``OTHER`` (not ours: never deleted)."""
    name = path.name
    if name == LOCK_FILE:
        return IGNORED
    if name in artefacts:
        return ARTEFACT
    if name.endswith(".tmp") and any(name.startswith(f".{a}.") for a in artefacts):
        return LEFTOVER
    return OTHER


def folder_entries(out: Path, classify: Callable[[Path], str] = classify_entry) -> dict[str, list[Path]]:
    """The entries at the top of ``out`` by class (:func:`classify_entry`); empty lists if it does not exist."""
    found: dict[str, list[Path]] = {ARTEFACT: [], LEFTOVER: [], IGNORED: [], OTHER: []}
    if out.is_dir():
        for p in sorted(out.iterdir()):
            found[classify(p)].append(p)
    return found


def _names(paths: Sequence[Path], limit: int = 4) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in paths]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output_folder(out: Path, resume: bool, overwrite: bool, *, resumable: bool, nothing_to_resume: str,
                        classify: Callable[[Path], str] = classify_entry, what: str = "a run",
                        command: str = "mlsupcon train") -> None:
    """Refuses, in one line naming ``out``, an output folder a new run must not write into.

    * ``resume``: ``resumable`` must hold (else ``nothing_to_resume`` says why not).
    * otherwise the folder must be new or empty (its lock and leftovers of interrupted writes
      aside), or ``overwrite`` given and everything in it one of our artefacts: ``--overwrite``
      never deletes files it did not write.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"output: {out} exists and is not a folder; choose another --output")
    if resume:
        if not resumable:
            raise ValueError(f"resume: nothing to resume in {out} ({nothing_to_resume}); "
                             f"start a new run without --resume")
        return
    found = folder_entries(out, classify)
    ours, others = found[ARTEFACT], found[OTHER]
    if not ours and not others:
        return
    if not ours:
        raise ValueError(f"output: {out} is not empty ({_names(others)}) and holds nothing {command} wrote; "
                         "choose a new or empty --output")
    if overwrite and others:
        raise ValueError(f"output: --overwrite deletes only what {command} writes, and {out} also holds "
                         f"{_names(others)}; move that away or choose another --output")
    if not overwrite:
        ways = ["continue it with --resume", *([] if others else ["replace it with --overwrite"]),
                "choose another --output"]
        raise ValueError(f"output: {out} already holds {what} ({_names(ours)}); " + ", ".join(ways[:-1])
                         + f" or {ways[-1]}")


def remove_artefacts(out: Path, classify: Callable[[Path], str] = classify_entry) -> None:
    """Deletes our artefacts and leftovers at the top of ``out`` (files of other kinds stay)."""
    found = folder_entries(out, classify)
    for p in found[ARTEFACT] + found[LEFTOVER]:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def check_run_output(cfg: TrainConfig, out: Path) -> None:
    """The run folder rules (docs/failures.md, "Run folders") for ``cfg``: a new run needs a new
    or empty folder, or ``--overwrite``; ``--resume`` needs a started run (its ``config.yaml``).

    Only rank 0 of a distributed launch checks: the other ranks follow it into the folder it
    started (the rule of :func:`~mlsupcon.training.stages.is_primary_process`, which needs Lightning).
    """
    if any(int(os.environ.get(v, "0") or 0) != 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK")):
        return
    missing = "the folder does not exist" if not out.exists() else "no config.yaml: no run was started there"
    check_output_folder(out, cfg.resume, cfg.overwrite, resumable=(out / "config.yaml").is_file(),
                        nothing_to_resume=missing)


#: Run folders this process holds the lock of (resolved path -> depth): run_lock is re-entrant, so
#: the CLI can take it before it reads the data and run_training again around the run.
_HELD: dict[str, int] = {}


@contextlib.contextmanager
def run_lock(out: Path):
    """One process at a time per output folder (a second one would interleave checkpoints and
    logs). ``flock`` is released by the kernel when the holder dies, even by SIGKILL. Re-entrant
    within a process."""
    key = str(Path(out).resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no guard
        yield
        return
    fh = open(out / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                yield  # a file system without locks (some network mounts): no guard
                return
            fh.seek(0)
            holder = fh.read().strip() or "pid unknown"
            raise ValueError(
                f"output: another mlsupcon process ({holder}) is writing to {out}; wait for it to end "
                "(then use --resume if it was interrupted) or choose another --output"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {platform.node()}\n")
        fh.flush()
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
    finally:
        fh.close()  # releases the lock


@contextlib.contextmanager
def claim_run_folder(out: Path):
    """The folder's lock, taken before the data is read (a second run into the same folder is
    refused at once); a folder created here and left holding only the lock is removed again."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # no permission, a file in the way, a read-only file system
        raise ValueError(f"output: cannot create {out} ({exc.strerror or exc}); choose another --output") from None
    try:
        with run_lock(out):
            yield
    finally:
        if created and out.is_dir() and {p.name for p in out.iterdir()} <= {LOCK_FILE}:
            (out / LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()


def has_checkpoint(out: Path) -> bool:
    """Whether the run in ``out`` has something ``--resume`` continues from (a checkpoint or a finished stage)."""
    ckpt = out / "checkpoints"
    return ckpt.is_dir() and any(p.name in ("last.ckpt", "done.json") for p in ckpt.rglob("*"))
