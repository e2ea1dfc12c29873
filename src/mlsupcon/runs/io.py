"""Crash-safe, code-free artefact I/O: atomic writes, safetensors weights, JSON metadata, manifests.

Every file a run, a model folder or an export holds is written here: to a temporary file next
to it, then renamed (a reader sees the old file or the new one, never half of one). A full
disk is recognised by :func:`is_disk_full` and reported in one line (:func:`disk_errors`).
torch and safetensors are imported only by the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator

if TYPE_CHECKING:
    import torch

#: errno values of a full disk or an exhausted quota.
_DISK_FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT
#: What writers that do not raise an OSError (safetensors' Rust writer) say of a full disk.
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "StorageFull", "os error 28")


def disk_full_error(exc: BaseException) -> OSError | None:
    """The "no space left on device" ``OSError`` behind ``exc`` (itself, or in its chain of causes
    and contexts: torch, safetensors and Lightning re-raise it as other errors), else None.

    Example:
        >>> import errno
        >>> try:
        ...     try:
        ...         raise OSError(errno.ENOSPC, "No space left on device")
        ...     except OSError:
        ...         raise RuntimeError("file write failed")
        ... except RuntimeError as exc:
        ...     disk_full_error(exc).errno == errno.ENOSPC
        True
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or the quota is full:
    an ``OSError`` with ``ENOSPC`` / ``EDQUOT`` (:func:`disk_full_error`), or only its message (a
    ``SafetensorError`` ``... IoError(Os { code: 28, kind: StorageFull ...``).

    Example:
        >>> is_disk_full(RuntimeError("IoError(Os { code: 28, kind: StorageFull })")), is_disk_full(ValueError("x"))
        (True, False)
    """
    if disk_full_error(exc) is not None:
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(text in str(exc) for text in _DISK_FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


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
        apply_umask(tmp)  # mkdtemp makes it 0700; writers such as save_pretrained may leave files 0600
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


def apply_umask(path: str | Path) -> None:
    """Gives ``path`` and everything under it the permissions a plain ``mkdir`` / ``open`` would
    have under the process umask (folders ``0o777 & ~umask``, files ``0o666 & ~umask``).

    Temporary folders and files (``mkdtemp``: 0700, ``mkstemp``: 0600) become artefacts by a
    rename, which keeps their mode: without this an export would be private to its owner.
    Symbolic links are left alone.
    """
    mask = _umask()
    path = Path(path)
    if path.is_symlink():
        return
    if path.is_file():
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o666 & ~mask)


@contextlib.contextmanager
def disk_errors(folder: str | Path) -> Iterator[None]:
    """Turns a full disk (or quota) inside the block into ``ValueError("no space left on device
    (FOLDER)")``, which the CLI prints as one line (``mlsupcon: error: ...``, exit status 2).

    Put it outside the block that cleans up the half-written files (e.g. around
    :func:`atomic_dir`), so that they are gone when the error is reported. Other errors pass
    through unchanged.

    Example:
        >>> import errno
        >>> with disk_errors("exports/x"):
        ...     raise OSError(errno.ENOSPC, "No space left on device")
        Traceback (most recent call last):
        ...
        ValueError: no space left on device (exports/x)
    """
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc):
            raise ValueError(f"no space left on device ({folder})") from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of ``text`` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path: str | Path, **arrays) -> None:
    """``np.savez_compressed`` written atomically."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented JSON, written atomically (arrays as lists, anything else as its ``str``)."""
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


# ---------------------------------------------------------------------------- manifests

#: The file, at the top of a model or export folder, that lists the sha256 of every other file there.
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mlsupcon-manifest/1"


def folder_files(folder: str | Path) -> list[str]:
    """Every file under ``folder`` (recursively, ``/``-separated paths relative to it, sorted),
    the :data:`MANIFEST` at its top excepted."""
    folder = Path(folder)
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            rel = Path(root, name).relative_to(folder).as_posix()
            if rel != MANIFEST:
                found.append(rel)
    return sorted(found)


def write_manifest(folder: str | Path, extra: dict[str, Any] | None = None,
                   known: dict[str, str] | None = None) -> dict[str, str]:
    """Writes ``folder/manifest.json`` (atomically): ``{"format", **extra, "files": {path: sha256}}``
    for every file in ``folder``. Write it last: it then describes a complete folder.

    Args:
        extra: more JSON keys (e.g. ``{"export": "hf"}``).
        known: sha256 already computed (by relative path), not hashed again.

    Returns:
        The ``files`` mapping.
    """
    folder = Path(folder)
    known = known or {}
    files = {rel: known.get(rel) or file_sha256(folder / rel) for rel in folder_files(folder)}
    write_json(folder / MANIFEST, {"format": MANIFEST_FORMAT, **(extra or {}), "files": files})
    return files


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """``folder``'s manifest (None when it has none).

    Raises:
        ValueError: one line naming the file, when it is not a manifest (truncated, edited).
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"model: {path} is not valid JSON ({' '.join(str(exc).split())[:120]}); "
                         "the file is truncated or was edited") from None
    files = data.get("files") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(files, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
            or any(k.startswith("/") or ".." in k.split("/") for k in files)):
        raise ValueError(f"model: {path} is not a {MANIFEST_FORMAT} manifest (a 'files' mapping of path to "
                         "sha256); the file is damaged or was edited")
    return data


def check_manifest(folder: str | Path, manifest: dict[str, Any], fix: str, skip: tuple[str, ...] = (),
                   only: tuple[str, ...] | None = None) -> dict[str, str]:
    """Checks ``folder`` against its manifest: no file missing, none added, every sha256 equal.

    Args:
        manifest: :func:`read_manifest` of ``folder``.
        fix: what the error messages tell the user to do (e.g. how to export again).
        skip: files not checked now (checked later with ``only``).
        only: check just these files (whether they are there and their sha256).

    Returns:
        The sha256 of the files it hashed, by relative path.

    Raises:
        ValueError: one line naming the first file that is missing, added or changed.
    """
    folder = Path(folder)
    where = folder / MANIFEST
    listed: dict[str, str] = manifest["files"]
    if only is None:
        present = folder_files(folder)
        for rel in present:
            if rel not in listed and rel not in skip:
                raise ValueError(f"model: {folder / rel} is not part of this model folder (it is not listed in "
                                 f"{where}); delete it, or {fix}")
        names = [rel for rel in listed if rel not in skip]
    else:
        names = list(only)
    hashes = {}
    for rel in names:
        path = folder / rel
        if rel not in listed:
            raise ValueError(f"model: {path} is not listed in {where} (the folder was edited); {fix}")
        if not path.is_file():
            raise ValueError(f"model: {path} is missing (it is listed in {where}); copy the whole folder, or {fix}")
        hashes[rel] = file_sha256(path)
        if hashes[rel] != listed[rel]:
            raise ValueError(f"model: {path} is damaged or was replaced: it does not match the sha256 recorded in "
                             f"{where} (truncated, replaced or tampered with); {fix}")
    return hashes
