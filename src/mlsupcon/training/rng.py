"""The random number generators of a training run: seeding, and capturing / restoring their states.

A checkpoint holds the states :func:`capture_rng` returns (tensors and plain containers only, so
that it loads with ``torch.load(weights_only=True)``); :func:`restore_rng` puts them back on
resume. :func:`seed_everything` seeds a run; under DDP :func:`seed_rank_stream` gives every rank
its own stream for each stage.
"""

from __future__ import annotations

import contextlib
import random
import zlib
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng", "seed_everything", "seed_rank_stream"]


def capture_rng() -> dict[str, Any]:
    """The global RNG states (torch CPU/CUDA, numpy, python) as tensors and plain containers,
    so that a checkpoint holding them loads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Puts back the RNG states of :func:`capture_rng` (the CUDA ones where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (and the data-loader workers), as Lightning does."""
    import lightning as L

    L.seed_everything(seed, workers=True, verbose=False)


def seed_rank_stream(seed: int, stage: str, rank: int) -> None:
    """Seeds torch, numpy and python's RNGs from ``(seed, stage, rank)``: under DDP each rank
    draws its own random views and dropout (not copies of rank 0's)."""
    value = int(np.random.SeedSequence([int(seed) % 2**32, zlib.crc32(stage.encode()), int(rank)])
                .generate_state(1)[0])
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)
