"""The run folder around a method: lock, ``config.yaml`` / ``environment.json``, ``--resume`` /
``--overwrite`` checks (a folder holds exactly one run: docs/failures.md, "Run folders").

Only rank 0 of a distributed launch locks and writes the folder
(:func:`~mlsupcon.training.stages.is_primary_process`).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mlsupcon.training.config import TrainConfig, save_config
from mlsupcon.training.io import atomic_write_bytes, write_json
from mlsupcon.training.output_folder import (  # noqa: F401 - re-exported
    LOCK_FILE,
    RUN_ARTEFACTS,
    check_output_folder,
    check_run_output,
    claim_run_folder,
    has_checkpoint,
    remove_artefacts,
    run_lock,
)

__all__ = ["RESUME_FREE_KEYS", "RUN_ARTEFACTS", "environment_info", "run_lock", "claim_run_folder", "has_checkpoint",
           "start_run_folder", "atomic_savez",
           "check_run_output", "check_output_folder", "remove_artefacts"]

#: Options that may change between an interrupted run and its ``--resume``: they do not change
#: the training, except that a different ``eval_batch_size`` (to get past an out-of-memory error
#: in evaluation) can change the last bits of predictions and, in a contrastive stage, the
#: random views drawn for the validation loss and so the randomness of the following steps.
RESUME_FREE_KEYS = frozenset({"resume", "overwrite", "progress", "output", "num_workers", "eval_batch_size",
                              "distributed_timeout"})

PACKAGES = ("mlsupcon", "torch", "lightning", "numpy", "scipy", "scikit-learn", "safetensors", "pyyaml",
            "transformers", "tokenizers", "kornia", "pillow", "pandas")


def environment_info() -> dict[str, Any]:
    """Versions and settings that a run's numbers can depend on (``environment.json``)."""
    import importlib.metadata as md

    import torch

    import mlsupcon

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    cuda = torch.cuda.is_available()
    return {
        "mlsupcon_version": mlsupcon.__version__,
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


def check_resume_config(cfg: TrainConfig, out: Path) -> None:
    """``--resume`` continues the same configuration: any other difference is refused."""
    import yaml

    path = out / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"resume: cannot read {path} ({' '.join(str(exc).split())[:160]}); "
                         "rerun without --resume") from None
    if not isinstance(saved, dict):
        raise ValueError(f"resume: {path} is not a mapping of option: value; rerun without --resume")
    defaults = TrainConfig().to_dict()
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


def start_run_folder(cfg: TrainConfig, out: Path) -> TrainConfig:
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
        env_path = out / "environment.json"
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
    save_config(cfg, out / "config.yaml")
    write_json(out / "environment.json", environment_info())
    return cfg


def atomic_savez(path: Path, **arrays) -> None:
    """``np.savez_compressed`` written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
