"""Unlabelled inputs for prediction, read from a file: what ``mlsupcon predict`` / ``embed`` take.

=========  ========================================================================================
modality   ``--input`` file
=========  ========================================================================================
text       ``.jsonl`` (``.jsonl.gz``): one object per line with a ``text`` field (``text_field``),
           optional ``id`` (``id_field``); ``.csv`` / ``.tsv``: the same columns; ``.txt``: one
           document per line (empty lines only at the end)
vector     ``.npy``: an array ``[n, F]``; ``.npz``: array ``x`` (or its only array) and optional
           ``ids``
image      a folder of images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``, ``.tif(f)``,
           ``.webp``; sorted by name, ids = the file names), or a text file listing image paths,
           one a line (relative paths are relative to that file; ids = the lines)
=========  ========================================================================================

The rules are training's (:mod:`mlsupcon.data.text`): no empty text; ids in every record or in
none, never twice; an input without ids (a ``.txt`` or ``.npy`` file, records without the id
field) gets its 0-based record number as id, for ``predict`` and ``embed`` alike; a field named
with ``text_field`` / ``id_field`` must exist; a byte that is not UTF-8 is an error naming the
line and column. Every error is one line naming the file and the record.

Example:
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "docs.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write(json.dumps({"id": "a", "text": "first doc"}) + "\\n" + json.dumps({"id": "b", "text": "two"}))
    >>> read_inputs(path, "text")
    (['first doc', 'two'], ['a', 'b'])
    >>> with open(path, "w") as f:
    ...     _ = f.write(json.dumps({"text": "first doc"}) + "\\n" + json.dumps({"text": "second"}) + "\\n")
    >>> read_inputs(path, "text")
    (['first doc', 'second'], ['0', '1'])
"""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .text import check_ids, not_utf8_message

__all__ = ["read_inputs", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return Path(name[:-3]).suffix if name.endswith(".gz") else path.suffix.lower()


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _field_flags(text_field: str | None, id_field: str | None) -> str:
    return " and ".join(f"--{n}-field '{v}'" for n, v in (("text", text_field), ("id", id_field)) if v)


def _jsonl_texts(path: Path, text_field: str | None, id_field: str | None) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    ids: list[str | None] = []
    where: list[str] = []
    field = text_field or "text"
    id_name = id_field or "id"
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"input: malformed JSON at line {lineno} of {path}: {e.msg}") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"input: line {lineno} of {path}: expected a JSON object, "
                                     f"got {type(obj).__name__}")
                if field not in obj:
                    raise ValueError(f"input: line {lineno} of {path} has no field '{field}' (fields: {sorted(obj)}); "
                                     "name the text field with --text-field")
                if id_field and obj.get(id_field) is None:
                    raise ValueError(f"input: line {lineno} of {path} has no field '{id_field}' (fields: "
                                     f"{sorted(obj)}); --id-field names a field every record must have")
                text = obj[field]
                if not isinstance(text, str):
                    raise ValueError(f"input: line {lineno} of {path}: field '{field}' must be a string, "
                                     f"got {type(text).__name__}")
                if not text.strip():
                    raise ValueError(f"input: empty text at line {lineno} of {path} (field '{field}')")
                texts.append(text)
                ident = obj.get(id_name)
                ids.append(None if ident is None else str(ident))
                where.append(f"line {lineno}")
    except UnicodeDecodeError:
        raise ValueError(not_utf8_message(path, "input: ")) from None
    return texts, check_ids(ids, where, str(path), id_name, bool(id_field), prefix="input: ")


def _csv_texts(path: Path, text_field: str | None, id_field: str | None) -> tuple[list[str], list[str]]:
    import pandas as pd

    sep = "\t" if _suffix(path) == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except UnicodeDecodeError:
        raise ValueError(not_utf8_message(path, "input: ")) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"input: {path} is empty") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"input: malformed CSV {path}: {' '.join(str(e).split())}") from None
    field = text_field or "text"
    id_name = id_field or "id"
    columns = ", ".join(map(str, df.columns))
    if field not in df.columns:
        raise ValueError(f"input: {path} has no column '{field}' (columns: {columns}); "
                         "name the text column with --text-field")
    if id_field and id_field not in df.columns:
        raise ValueError(f"input: {path} has no column '{id_field}' (columns: {columns}); "
                         "name the id column with --id-field")
    texts = df[field].tolist()
    where = [f"row {i + 1}" for i in range(len(df))]  # counted after the header, as in training
    for text, place in zip(texts, where):
        if not text.strip():
            raise ValueError(f"input: empty text at {place} of {path} (column '{field}')")
    cells = df[id_name].tolist() if id_name in df.columns else [""] * len(df)
    ids = [str(c) if str(c).strip() else None for c in cells]
    return texts, check_ids(ids, where, str(path), id_name, bool(id_field), prefix="input: ")


def _txt_texts(path: Path) -> tuple[list[str], list[str]]:
    try:
        with _open_text(path) as f:
            lines = [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError:
        raise ValueError(not_utf8_message(path, "input: ")) from None
    while lines and not lines[-1].strip():  # empty lines at the end are not inputs
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"input: empty text at line {lineno} of {path} (one document per line: remove the "
                             "empty line, or give a JSONL / CSV file)")
    return lines, [str(i) for i in range(len(lines))]


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
    if ids is None:
        return x, [str(i) for i in range(len(x))]
    return x, check_ids(ids, [f"row {i}" for i in range(len(ids))], str(path), "ids", prefix="input: ")


def _images(path: Path) -> tuple[list[str], list[str | None]]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"input: folder {path} has no image files ({', '.join(IMAGE_SUFFIXES)})")
        return [str(p) for p in files], [p.name for p in files]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [str(path)], [path.name]
    try:
        with _open_text(path) as f:
            lines = [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError:
        raise ValueError(not_utf8_message(path, "input: ")) from None
    if not lines:
        raise ValueError(f"input: {path} lists no image paths")
    paths = [str(Path(p) if os.path.isabs(p) else path.parent / p) for p in lines]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"input: image file not found: {missing[0]} (listed in {path}"
                         f"{f'; {len(missing)} missing in all' if len(missing) > 1 else ''})")
    return paths, list(lines)


def read_inputs(path: str | os.PathLike, modality: str, *, text_field: str | None = None,
                id_field: str | None = None) -> tuple[Any, list[str]]:
    """Reads the inputs of ``path`` for a model of ``modality`` (see the module table).

    Args:
        path: the input file (or a folder of images).
        modality: ``"text"``, ``"vector"`` or ``"image"``.
        text_field: the text field / column of JSONL and CSV files (None: ``text``).
        id_field: the id field / column, which every record must then have (None: ``id`` where
            the file has it).

    Returns:
        ``(inputs, ids)``: a list of strings, a ``[n, F]`` array or a list of image paths, and
        one id per input (its 0-based record number where the file has no ids).

    Raises:
        ValueError: one line naming the file, for a missing file, an unsupported format, a
            missing field, empty text, ids on some records only or twice, a byte that is not
            UTF-8 or other malformed content.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"input: {p} not found")
    suffix = _suffix(p)
    if (text_field or id_field) and (modality != "text" or suffix == ".txt"):
        what = "a .txt file" if modality == "text" else ("a folder" if p.is_dir() else f"a {suffix or p.name} file")
        raise ValueError(f"input: {p} is {what}: it has no fields, so {_field_flags(text_field, id_field)} names "
                         "none (fields are for JSONL and CSV inputs; without ids, inputs are numbered from 0)")
    if modality == "image":
        return _images(p)
    if p.is_dir():
        raise ValueError(f"input: {p} is a folder; a {modality} model reads a file")
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
        texts, ids = _txt_texts(p)
    else:
        raise ValueError(f"input: {p}: a text model reads .jsonl, .csv, .tsv or .txt files, got '{suffix or p.name}'")
    if not texts:
        raise ValueError(f"input: {p} has no inputs")
    return texts, ids
