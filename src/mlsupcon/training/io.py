"""Crash-safe, code-free artefact I/O: atomic writes, safetensors weights, JSON/YAML metadata."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import torch


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(fh)`` into a temporary file in the same folder, fsync, then rename over ``path``.

    A reader (or a resumed run) sees the old file or the new one, never half of one; a process
    killed meanwhile leaves at most a ``.<name>.*.tmp`` file next to it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda fh: fh.write(data))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yields an empty temporary folder next to ``path``; once the block ends without an error,
    the folder replaces ``path`` (an older ``path`` is removed).

    A reader sees the old folder or the complete new one, never a half-written one; a process
    killed meanwhile leaves at most a ``.<name>.*.tmp`` folder next to it (the run folder's
    ``--overwrite`` and a new run remove those).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
        if path.exists():
            # Two renames: the old folder goes aside (so that the new one can take its name), then away.
            old = path.parent / f".{path.name}.old.{uuid.uuid4().hex[:8]}.tmp"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    """Makes the rename itself durable (power loss); best effort where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def save_weights(path: str | Path, modules: dict[str, torch.nn.Module]) -> None:
    """All modules' weights in one safetensors file, keys prefixed ``<module>.``."""
    from safetensors.torch import save

    tensors = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{prefix}.{key}"] = value.detach().cpu().contiguous()
    atomic_write_bytes(path, save(tensors))


def load_weights(path: str | Path, modules: dict[str, torch.nn.Module]) -> None:
    """Loads :func:`save_weights` output without executing any code (safetensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights: file not found: {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"weights: {path} is not a readable safetensors file (truncated or tampered?): "
                         f"{exc}") from None
    for prefix, module in modules.items():
        own = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        missing, unexpected = module.load_state_dict(own, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights: {path} does not match the model for '{prefix}': "
                f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
            )
