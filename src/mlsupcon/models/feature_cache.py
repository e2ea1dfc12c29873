"""On-disk cache of feature tables computed by a fixed (never trained) model.

A table is the ``float32 [n, D]`` features of ``n`` texts, stored in one ``.npz`` file named
by a sha256 over the model's identity (:func:`model_fingerprint`: its path, the contents of
its config/tokenizer files, the sizes and modification times of its weight files, and the
options that change the features) and the texts. Changing the model files, ``max_length``,
the pooling or any text gives a new key, so a stale table is never read.

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so
a killed run leaves no half-written table under the final name; a file that is unreadable
or whose checksum, key or shape does not match is reported and recomputed, never trusted.

Location: ``cache_dir`` if given, else ``$MLSUPCON_CACHE/features``, else
``$XDG_CACHE_HOME/mlsupcon/features`` (``~/.cache/mlsupcon/features``).

Example:
    >>> import numpy as np, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> key = cache_key({"model": "toy"}, ["a text", "another"])
    >>> path = folder / f"{key}.npz"
    >>> write_table(path, key, np.ones((2, 3), dtype=np.float32))
    >>> read_table(path, key, n=2, dim=3).shape
    (2, 3)
    >>> read_table(path, cache_key({"model": "other"}, ["a text", "another"]), n=2, dim=3) is None
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

__all__ = ["default_cache_dir", "model_fingerprint", "cache_key", "read_table", "write_table"]

logger = logging.getLogger("mlsupcon.models")

# Model files whose contents decide the features (hashed: they are small).
_HASHED_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
)
# Weight files: identified by size and modification time (hashing 90 MB on every run would
# cost more than a cache lookup should).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
_FORMAT = 1


def default_cache_dir() -> Path:
    """``$MLSUPCON_CACHE/features``, else ``$XDG_CACHE_HOME/mlsupcon/features`` (default ``~/.cache``)."""
    root = os.environ.get("MLSUPCON_CACHE")
    if root:
        return Path(root).expanduser() / "features"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "mlsupcon" / "features"


def model_fingerprint(model_dir: str | os.PathLike) -> dict[str, Any]:
    """What identifies a local model directory's outputs: path, small files' sha256, weights' size/mtime.

    Example:
        >>> from mlsupcon.models import minilm_path
        >>> fp = model_fingerprint(minilm_path())
        >>> sorted(fp["weights"]), "config.json" in fp["files"]
        (['model.safetensors'], True)
    """
    root = Path(model_dir).resolve()
    files: dict[str, str] = {}
    weights: dict[str, list[int]] = {}
    if root.is_file():  # a single weight file
        st = root.stat()
        return {"path": str(root), "files": files, "weights": {root.name: [st.st_size, st.st_mtime_ns]}}
    for f in sorted(root.iterdir()):
        if not f.is_file():
            continue
        if f.name in _HASHED_FILES:
            files[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
        elif f.suffix in _WEIGHT_SUFFIXES:
            st = f.stat()
            weights[f.name] = [st.st_size, st.st_mtime_ns]
    return {"path": str(root), "files": files, "weights": weights}


def cache_key(identity: dict[str, Any], texts: Iterable[str]) -> str:
    """sha256 (hex) over the JSON of ``identity`` and the texts, in order, each length-prefixed.

    Example:
        >>> cache_key({"m": 1}, ["ab", "c"]) == cache_key({"m": 1}, ["a", "bc"])
        False
    """
    h = hashlib.sha256()
    h.update(json.dumps({"format": _FORMAT, **identity}, sort_keys=True, default=str).encode("utf-8"))
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(b"\0%d:" % len(b))  # length prefix: ("ab", "c") and ("a", "bc") differ
        h.update(b)
    return h.hexdigest()


def _digest(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()


def read_table(path: str | os.PathLike, key: str, n: int, dim: int) -> np.ndarray | None:
    """The cached ``float32 [n, dim]`` table at ``path``, or None when absent or not trustworthy.

    A file that cannot be read, or whose key, shape, dtype, checksum or values (non-finite)
    do not match is logged as a warning and ignored (the caller recomputes and overwrites it).
    """
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            stored_key = str(z["key"])
            vectors = z["vectors"]
            digest = str(z["digest"])
        problem = None
        if stored_key != key:
            problem = "its key differs from the file name's"
        elif vectors.dtype != np.float32 or vectors.shape != (n, dim):
            problem = f"it holds {vectors.dtype} {vectors.shape}, expected float32 {(n, dim)}"
        elif _digest(vectors) != digest:
            problem = "its checksum does not match its contents"
        elif not np.isfinite(vectors).all():
            problem = "it holds non-finite values"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        problem = f"it cannot be read ({type(e).__name__}: {e})"
    if problem:
        logger.warning("feature cache %s ignored and recomputed: %s", p, problem)
        return None
    return vectors


def write_table(path: str | os.PathLike, key: str, vectors: np.ndarray) -> None:
    """Write ``vectors`` (float32 ``[n, D]``) with its key and checksum, atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem[:16]}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, vectors=vectors, key=np.array(key), digest=np.array(_digest(vectors)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
