"""Distributed training (DDP): which process this is, gathering across ranks, and the one-line
message of a run whose processes lost contact (docs/scaling.md, docs/failures.md).

Every rank seeds its own random stream per stage (:func:`mlsupcon.training.rng.seed_rank_stream`);
rank 0 alone writes the run folder (:func:`~mlsupcon.runs.folder.is_primary_process`).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from mlsupcon.training.errors import DistributedError, first_error_line
from mlsupcon.training.rng import capture_rng

__all__ = ["all_gather_cpu", "distributed_failure", "gather_rng", "is_distributed_failure", "world_size"]


def world_size(trainer) -> int:
    """The number of processes training with ``trainer`` (1 without one)."""
    return int(trainer.world_size) if trainer is not None else 1


def gather_rng() -> list[dict[str, Any]]:
    """Every rank's RNG states, in rank order (a collective: every rank saves the checkpoint together)."""
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, capture_rng())
    return states


def all_gather_cpu(t: torch.Tensor, device, world_size: int) -> torch.Tensor:
    """Every rank's ``t`` (same shape on each), concatenated in rank order, on the CPU."""
    import torch.distributed as dist

    t = t.to(device)
    parts = [torch.empty_like(t) for _ in range(world_size)]
    dist.all_gather(parts, t)
    return torch.cat(parts).cpu()


#: How torch's gloo / NCCL errors that are not ``DistError``s say that a peer went away or hangs
#: (gloo's name its source file: ".../gloo/transport/tcp/pair.cc:537] Read error ...").
_PEER_LOST = ("gloo", "nccl", "connection closed", "connection reset", "connection refused", "broken pipe")


def is_distributed_failure(exc: BaseException) -> bool:
    """A communication error of ``torch.distributed`` (a peer died, hung or became unreachable)."""
    import torch.distributed as dist

    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc).lower() for s in _PEER_LOST)


def distributed_failure(exc: BaseException, stage: str, rank: int, world_size: int, step: int, timeout_s: float,
                        resume_hint: str) -> DistributedError:
    """The one-line :class:`~mlsupcon.training.errors.DistributedError` of a rank that lost contact
    with the others."""
    # gloo: "[.../pair.cc:537] Read error [127.0.0.1]:19894: Connection reset by peer. This is typically ..."
    what = re.sub(r"^\[[^\]]*\]\s*", "", first_error_line(exc)).split(". ")[0].rstrip(".")[:160]
    return DistributedError(
        f"distributed: process {rank} of {world_size} lost contact with the others in stage '{stage}' "
        f"(step {step}: {what}); another process died or stopped answering (its own output says why; "
        f"one that hangs is given up on after distributed_timeout={timeout_s:g} s). {resume_hint}"
    )
