"""Unlabelled inputs for prediction, read from a file: what ``mlsupcon predict`` / ``embed`` take.

=========  ========================================================================================
modality   ``--input`` file
=========  ========================================================================================
text       ``.jsonl`` (``.jsonl.gz``): one object per line with a ``text`` field (``text_field``),
           optional ``id`` (``id_field``); ``.csv`` / ``.tsv``: the same columns; ``.txt``: one
           document per line (no ids)
vector     ``.npy``: an array ``[n, F]``; ``.npz``: array ``x`` (or its only array) and optional
           ``ids``
image      a folder of images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``, ``.tif(f)``,
           ``.webp``; sorted by name, ids = the file names), or a text file listing image paths,
           one a line (relative paths are relative to that file; ids = the lines)
=========  ========================================================================================

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "docs.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write(json.dumps({"id": "a", "text": "first doc"}) + "\\n" + json.dumps({"text": "second"}) + "\\n")
    >>> read_inputs(path, "text")
    (['first doc', 'second'], ['a', None])
"""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_inputs", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return Path(name[:-3]).suffix if name.endswith(".gz") else path.suffix.lower()


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _jsonl_texts(path: Path, text_field: str, id_field: str | None) -> tuple[list[str], list[str | None]]:
    texts: list[str] = []
    ids: list[str | None] = []
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"input: malformed JSON at line {lineno} of {path}: {e.msg}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"input: line {lineno} of {path}: expected a JSON object, got {type(obj).__name__}")
            if text_field not in obj:
                raise ValueError(f"input: line {lineno} of {path} has no field '{text_field}' (fields: {sorted(obj)}); "
                                 "name the text field with --text-field")
            text = obj[text_field]
            if not isinstance(text, str):
                raise ValueError(f"input: line {lineno} of {path}: field '{text_field}' must be a string, "
                                 f"got {type(text).__name__}")
            texts.append(text)
            ident = obj.get(id_field) if id_field else None
            ids.append(None if ident is None else str(ident))
    return texts, ids


def _csv_texts(path: Path, text_field: str, id_field: str | None) -> tuple[list[str], list[str | None]]:
    import pandas as pd

    sep = "\t" if _suffix(path) == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"input: {path} is empty") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"input: malformed CSV {path}: {' '.join(str(e).split())}") from None
    if text_field not in df.columns:
        raise ValueError(f"input: {path} has no column '{text_field}' (columns: {', '.join(map(str, df.columns))}); "
                         "name the text column with --text-field")
    ids = df[id_field].tolist() if id_field and id_field in df.columns else [None] * len(df)
    return df[text_field].tolist(), ids


def _vectors(path: Path) -> tuple[np.ndarray, list[str | None]]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"input: {path} is not a readable numpy file: {e}") from None
    ids: list[str | None] | None = None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            names = list(data.files)
            if "x" in names:
                x = data["x"]
            elif len([n for n in names if n != "ids"]) == 1:
                x = data[next(n for n in names if n != "ids")]
            else:
                raise ValueError(f"input: {path} has arrays {names}; expected 'x' (and optionally 'ids')")
            if "ids" in names:
                ids = [str(i) for i in data["ids"].tolist()]
    else:
        x = data
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"input: {path}: expected a numeric array [n, F], got {x.dtype} {tuple(x.shape)}")
    if ids is not None and len(ids) != len(x):
        raise ValueError(f"input: {path}: 'ids' has {len(ids)} entries for {len(x)} vectors")
    return x, ids if ids is not None else [None] * len(x)


def _images(path: Path) -> tuple[list[str], list[str | None]]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"input: folder {path} has no image files ({', '.join(IMAGE_SUFFIXES)})")
        return [str(p) for p in files], [p.name for p in files]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [str(path)], [path.name]
    with _open_text(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise ValueError(f"input: {path} lists no image paths")
    paths = [str(Path(p) if os.path.isabs(p) else path.parent / p) for p in lines]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"input: image file not found: {missing[0]} (listed in {path}"
                         f"{f'; {len(missing)} missing in all' if len(missing) > 1 else ''})")
    return paths, list(lines)


def read_inputs(path: str | os.PathLike, modality: str, *, text_field: str = "text",
                id_field: str | None = "id") -> tuple[Any, list[str | None]]:
    """Reads the inputs of ``path`` for a model of ``modality`` (see the module table).

    Args:
        path: the input file (or a folder of images).
        modality: ``"text"``, ``"vector"`` or ``"image"``.
        text_field: the text field / column of JSONL and CSV files.
        id_field: the id field / column (None: no ids).

    Returns:
        ``(inputs, ids)``: a list of strings, a ``[n, F]`` array or a list of image paths, and
        one id per input (None where the input has none).

    Raises:
        ValueError: one line naming the file, for a missing file, an unsupported format, a
            missing field or malformed content.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"input: {p} not found")
    if modality == "image":
        return _images(p)
    if p.is_dir():
        raise ValueError(f"input: {p} is a folder; a {modality} model reads a file")
    suffix = _suffix(p)
    if modality == "vector":
        if suffix not in (".npy", ".npz"):
            raise ValueError(f"input: {p}: a vector model reads .npy or .npz files, got '{suffix or p.name}'")
        return _vectors(p)
    if modality != "text":
        raise ValueError(f"modality: expected text, vector or image, got {modality!r}")
    if suffix == ".jsonl" or suffix == ".json":
        texts, ids = _jsonl_texts(p, text_field, id_field)
    elif suffix in (".csv", ".tsv"):
        texts, ids = _csv_texts(p, text_field, id_field)
    elif suffix == ".txt":
        with _open_text(p) as f:
            texts = [line.rstrip("\r\n") for line in f if line.strip()]
        ids = [None] * len(texts)
    else:
        raise ValueError(f"input: {p}: a text model reads .jsonl, .csv, .tsv or .txt files, got '{suffix or p.name}'")
    if not texts:
        raise ValueError(f"input: {p} has no inputs")
    return texts, ids
