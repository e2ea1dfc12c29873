"""The run folder: what a run writes there, which folders a run may write into, its lock and
its saved configuration (docs/failures.md, "Run folders"); no heavy imports.

A folder holds exactly one run. A new run needs a new or empty folder; ``--resume`` continues
the run there (it needs its ``config.yaml``); ``--overwrite`` first deletes the earlier run's
artefacts (:data:`RUN_ARTEFACTS`), and never a file mlsupcon did not write: a folder holding
one is refused. ``mlsupcon train`` checks this before it reads any data; ``compare`` applies
the same rules to its folder (:func:`check_compare_output`).

Only rank 0 of a distributed launch checks, locks and writes the folder; the other ranks follow
it into the folder it started.

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
import dataclasses
import datetime
import errno
import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar

from mlsupcon.runs.io import atomic_write_text, write_json

__all__ = ["CONFIG_FILE", "ENVIRONMENT_FILE", "METRICS_FILE", "MODEL_DIR", "CHECKPOINTS_DIR", "LOGS_DIR",
           "EMBEDDINGS_FILE", "RUN_ARTEFACTS", "LOCK_FILE", "COMPARE_ARTEFACTS", "RESUME_FREE_KEYS",
           "classify_entry", "folder_entries", "check_output_folder", "remove_artefacts", "check_run_output",
           "run_lock", "claim_run_folder", "has_checkpoint", "is_primary_process", "is_run_folder", "model_folder",
           "environment_info", "save_config", "check_resume_config", "start_run_folder", "classify_compare_entry",
           "check_compare_output"]

# ---------------------------------------------------------------------------- what a run writes

#: The resolved configuration (``--resume`` reads it back).
CONFIG_FILE = "config.yaml"
#: Package and library versions, one entry more per ``--resume``.
ENVIRONMENT_FILE = "environment.json"
#: Test metrics, threshold, notes: written last, so its presence means the run finished.
METRICS_FILE = "metrics.json"
#: The exported model (:mod:`mlsupcon.inference.storage`).
MODEL_DIR = "model"
#: ``<stage>/last.ckpt`` and ``<stage>/done.json`` (``--resume``).
CHECKPOINTS_DIR = "checkpoints"
#: ``<stage>/metrics.csv``: the training curves.
LOGS_DIR = "logs"
#: Encoder embeddings of test examples, for compare's figures.
EMBEDDINGS_FILE = "embeddings_test.npz"

#: What a run writes at the top of its folder. ``--overwrite`` deletes these (and the
#: ``.<name>.*.tmp`` leftovers of their interrupted atomic writes) and nothing else.
RUN_ARTEFACTS = (CONFIG_FILE, ENVIRONMENT_FILE, METRICS_FILE, MODEL_DIR, CHECKPOINTS_DIR, LOGS_DIR, EMBEDDINGS_FILE)
LOCK_FILE = ".mlsupcon.lock"


class RunOptions(Protocol):
    """What the run folder reads of a run's configuration (a ``TrainConfig``)."""

    resume: bool
    overwrite: bool

    def to_dict(self) -> dict[str, Any]: ...


RunOptionsT = TypeVar("RunOptionsT", bound=RunOptions)


#: The environment variables a distributed launch (Lightning's DDP launcher, torchrun) sets to a
#: process's rank: all three are 0 (or unset) in the primary process only.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK")


def is_primary_process() -> bool:
    """False in the extra processes of a distributed launch (Lightning's DDP launcher or
    torchrun set RANK / LOCAL_RANK / NODE_RANK): only rank 0 checks, locks and writes the run folder."""
    return all(int(os.environ.get(v, "0") or 0) == 0 for v in RANK_VARIABLES)


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a training run's folder (what ``mlsupcon train --output`` writes): its
    ``config.yaml`` with another of its artefacts (a project's own ``config.yaml`` is no run), or
    its ``model/model.json``."""
    if (folder / MODEL_DIR / "model.json").is_file():
        return True
    return (folder / CONFIG_FILE).is_file() and any(
        (folder / name).exists() for name in (ENVIRONMENT_FILE, METRICS_FILE, CHECKPOINTS_DIR, LOGS_DIR, MODEL_DIR))


def model_folder(path: str | os.PathLike) -> Path:
    """The ``model/`` folder of a run folder (or ``path`` itself when it is a model folder)."""
    p = Path(path).expanduser()
    return p / MODEL_DIR if (p / MODEL_DIR).is_dir() and not (p / "model.json").is_file() else p


# ---------------------------------------------------------------------------- which folder a run may use

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


def check_run_output(cfg: RunOptions, out: Path) -> None:
    """The run folder rules (docs/failures.md, "Run folders") for ``cfg``: a new run needs a new
    or empty folder, or ``--overwrite``; ``--resume`` needs a started run (its ``config.yaml``).

    Only rank 0 of a distributed launch checks: the other ranks follow it into the folder it
    started (:func:`is_primary_process`).
    """
    if not is_primary_process():
        return
    missing = "the folder does not exist" if not out.exists() else "no config.yaml: no run was started there"
    check_output_folder(out, cfg.resume, cfg.overwrite, resumable=(out / CONFIG_FILE).is_file(),
                        nothing_to_resume=missing)



# ---------------------------------------------------------------------------- the lock

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
    ckpt = out / CHECKPOINTS_DIR
    return ckpt.is_dir() and any(p.name in ("last.ckpt", "done.json") for p in ckpt.rglob("*"))


# ---------------------------------------------------------------------------- saved configuration

#: Options that may change between an interrupted run and its ``--resume``: they do not change
#: the training, except that a different ``eval_batch_size`` (to get past an out-of-memory error
#: in evaluation) can change the last bits of predictions and, in a contrastive stage, the
#: random views drawn for the validation loss and so the randomness of the following steps.
RESUME_FREE_KEYS = frozenset({"resume", "overwrite", "progress", "output", "num_workers", "eval_batch_size",
                              "distributed_timeout"})

PACKAGES = ("mlsupcon", "torch", "lightning", "numpy", "scipy", "scikit-learn", "safetensors", "pyyaml",
            "transformers", "tokenizers", "kornia", "pillow", "pandas")


def save_config(cfg: RunOptions, path: str | Path) -> None:
    """The run's ``config.yaml``: ``cfg.to_dict()`` as YAML, written atomically."""
    import yaml

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def environment_info() -> dict[str, Any]:
    """Versions and settings that a run's numbers can depend on (``environment.json``)."""
    import importlib.metadata as md

    import torch

    from mlsupcon.version import __version__

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    cuda = torch.cuda.is_available()
    return {
        "mlsupcon_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "torch": {"version": torch.__version__, "cuda_available": cuda, "cuda_version": torch.version.cuda,
                  "device_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                  if cuda else [],
                  "num_threads": torch.get_num_threads(),
                  "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()},
        "command": list(sys.argv),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def check_resume_config(cfg: RunOptions, out: Path) -> None:
    """``--resume`` continues the same configuration: any other difference is refused (options
    missing from the saved ``config.yaml`` count as their defaults, ``type(cfg)()``)."""
    import yaml

    path = out / CONFIG_FILE
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"resume: cannot read {path} ({' '.join(str(exc).split())[:160]}); "
                         "rerun without --resume") from None
    if not isinstance(saved, dict):
        raise ValueError(f"resume: {path} is not a mapping of option: value; rerun without --resume")
    defaults = type(cfg)().to_dict()
    current = json.loads(json.dumps(cfg.to_dict()))
    diffs = []
    for key, value in current.items():
        if key in RESUME_FREE_KEYS:
            continue
        before = json.loads(json.dumps(saved.get(key, defaults[key])))
        if before != value:
            diffs.append(f"{key}: {before!r} -> {value!r}")
    if diffs:
        raise ValueError(
            f"resume: the configuration differs from the interrupted run's {path} ({'; '.join(diffs[:6])}); "
            "resume with the same options (`mlsupcon train --output DIR --resume` reads DIR/config.yaml), "
            "or start a new run without --resume"
        )


def start_run_folder(cfg: RunOptionsT, out: Path) -> RunOptionsT:
    """Writes (or, with ``--resume``, checks and extends) the folder's config.yaml and
    environment.json; returns the config the run continues with (``resume`` and ``overwrite``
    cleared for a new run).

    Called under the folder's lock once the data, encoder and method are known to be valid, so
    that a user mistake (unknown dataset, bad option…) never touches an earlier run there. A new
    run with ``overwrite`` first deletes the earlier run's artefacts (:data:`RUN_ARTEFACTS`), so
    that the folder never mixes two runs.
    """
    check_run_output(cfg, out)  # again: the folder may have changed while the data was read
    if cfg.resume:
        check_resume_config(cfg, out)
        env_path = out / ENVIRONMENT_FILE
        try:
            env = json.loads(env_path.read_text())
        except (OSError, ValueError):
            env = {}
        env.setdefault("resumes", []).append(environment_info())
        write_json(env_path, env)
        return cfg
    out.mkdir(parents=True, exist_ok=True)
    remove_artefacts(out)  # --overwrite: the earlier run; otherwise only leftovers of interrupted writes
    cfg = dataclasses.replace(cfg, resume=False, overwrite=False)
    save_config(cfg, out / CONFIG_FILE)
    write_json(out / ENVIRONMENT_FILE, environment_info())
    return cfg


# ---------------------------------------------------------------------------- a compare folder

#: What ``compare`` writes at the top of its output folder, besides a folder per row holding
#: one run folder per seed (``<row>/seed<k>/``).
COMPARE_ARTEFACTS = ("results.csv", "report.md", "training_curves.png", "embeddings_tsne.png", "relations.png",
                     "relations.csv")


def classify_compare_entry(path: Path) -> str:
    """:func:`classify_entry` of a compare folder: its files, and a
    row folder whose entries are all ``seed<k>`` run folders holding only run artefacts."""
    kind = classify_entry(path, COMPARE_ARTEFACTS)
    if kind != OTHER or not path.is_dir() or path.is_symlink():
        return kind

    def run_folder(d: Path) -> bool:
        return (bool(re.fullmatch(r"seed-?\d+", d.name)) and d.is_dir() and not d.is_symlink()
                and all(classify_entry(x) != OTHER for x in d.iterdir()))

    return ARTEFACT if all(run_folder(d) for d in path.iterdir()) else OTHER


def check_compare_output(base: RunOptions, out: Path) -> None:
    """The run folder rules for a whole compare folder: a new compare needs a new or empty folder,
    ``--resume`` (continue its runs) or ``--overwrite`` (delete its runs, tables and figures)."""
    resumable = out.is_dir() and any(classify_compare_entry(p) == ARTEFACT for p in out.iterdir())
    missing = "the folder does not exist" if not out.exists() else "it holds no compare output"
    check_output_folder(out, base.resume, base.overwrite, resumable=resumable, nothing_to_resume=missing,
                        classify=classify_compare_entry, what="a compare", command="mlsupcon compare")
