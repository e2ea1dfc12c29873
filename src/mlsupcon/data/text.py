"""Text datasets: bundled Debtags and generic JSONL / CSV files in the Debtags layout.

File layout (field names configurable):

* ``text``: the document (non-empty string),
* ``labels``: JSONL: a list of strings (integers are taken as label names, ``3`` → ``"3"``,
  with a warning: a list of 0/1 flags is not a list of labels); CSV: one string joined by
  ``label_separator`` (default ``";"``; a warning when no cell contains it but cells contain
  ``|`` or ``,``), empty for no labels,
* ``split`` (optional): ``train`` / ``validation`` / ``test`` (also ``val``, ``valid``,
  ``dev``); without the field the examples get a seeded 80/10/10 split,
* ``id`` (optional): an example id, unique in the file (a repeated id is an error naming both
  records); the 0-based record number otherwise.

Example:
    >>> from mlsupcon.data import load_dataset
    >>> ds = load_dataset("jsonl:notes.jsonl", label_field="codes")   # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataWarning, MultiLabelDataset, Split, encode_labels, normalise_split_name, seeded_split
from .hierarchy import LabelHierarchy, prefix_hierarchy

__all__ = ["build_text_dataset", "read_jsonl_records", "read_csv_records", "load_debtags", "load_jsonl", "load_csv"]

_VALID_SPLIT_HELP = "expected train/validation/test (aliases: val, valid, dev, training, testing)"


def bundled_path(name: str) -> Path:
    """Path of a file shipped in ``mlsupcon/data/bundled``."""
    return Path(str(resources.files("mlsupcon.data").joinpath("bundled", name)))


def _open_text(path: Path) -> io.TextIOBase:
    if str(path).endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _check_file(path: str | os.PathLike, what: str = "file") -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    return p


class Records:
    """Column-wise parsed records of a text file (internal)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.labels: list[list[str]] = []
        self.ids: list[str] = []
        self.splits: list[str | None] = []
        self.where: list[str] = []  # "line 17" / "row 5" for error messages


def _finish_splits(
    rec: Records, source: str, split_field: str | None
) -> list[str] | None:
    """Validate split values: all present, all known; or all absent (→ None)."""
    if split_field is None:
        return None
    present = [s is not None for s in rec.splits]
    if not any(present):
        return None
    if not all(present):
        i = present.index(False)
        raise ValueError(
            f"{rec.where[i]} of {source}: missing split field '{split_field}' "
            f"(other records have it; give it everywhere or nowhere)"
        )
    out: list[str] = []
    bad: dict[str, str] = {}
    for raw, where in zip(rec.splits, rec.where):
        name = normalise_split_name(raw)
        if name is None:
            bad.setdefault(str(raw), where)
        out.append(name or "")
    if bad:
        listed = ", ".join(f"'{k}' (first at {v})" for k, v in list(bad.items())[:10])
        raise ValueError(
            f"unknown split name(s) in field '{split_field}' of {source}: {listed}; {_VALID_SPLIT_HELP}"
        )
    return out


def _check_unique_ids(rec: Records, source: str, id_field: str) -> None:
    """A repeated id is an error naming both records: ids key predictions and the evaluation."""
    first: dict[str, str] = {}
    for ident, where in zip(rec.ids, rec.where):
        seen = first.setdefault(ident, where)
        if seen != where:
            raise ValueError(f"duplicate id {ident!r} in {source}: {seen} and {where} (field '{id_field}'); "
                             "ids must be unique (or leave the field out: records are then numbered)")


def _check_text(value: Any, where: str, source: str, field: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise ValueError(f"empty text at {where} of {source} (field '{field}')")
    if not isinstance(value, str):
        raise ValueError(
            f"{where} of {source}: field '{field}' must be a string, got {type(value).__name__}"
        )
    if not value.strip():
        raise ValueError(f"empty text at {where} of {source} (field '{field}')")
    return value


def read_jsonl_records(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    label_field: str = "labels",
    split_field: str | None = "split",
    id_field: str | None = "id",
) -> tuple[Records, list[str] | None]:
    """Parse a JSONL(.gz) file of ``{text, labels, split?, id?}`` objects.

    Returns:
        The records and the normalised split names (None when the file has no split field).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Malformed JSON, a non-object line, a missing/invalid field or empty
            text; the message names the file, the 1-based line and the field.
    """
    p = _check_file(path, "JSONL file")
    src = str(p)
    rec = Records()
    numbers: tuple[str, list] | None = None  # the first record whose labels hold integers
    with _open_text(p) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"line {lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"malformed JSONL at line {lineno} of {src}: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"line {lineno} of {src}: expected a JSON object, got {type(obj).__name__}")
            for fld in (text_field, label_field):
                if fld not in obj:
                    raise ValueError(
                        f"line {lineno} of {src}: missing field '{fld}' (fields: {sorted(obj)})"
                    )
            text = _check_text(obj[text_field], where, src, text_field)
            labels = obj[label_field]
            if labels is None:
                labels = []
            if not isinstance(labels, list) or not all(
                    isinstance(l, (str, int)) and not isinstance(l, bool) for l in labels):
                raise ValueError(
                    f"line {lineno} of {src}: field '{label_field}' must be a list of strings, "
                    f"got {json.dumps(labels)[:80]}"
                )
            if numbers is None and any(isinstance(l, int) for l in labels):
                numbers = (where, labels)
            rec.texts.append(text)
            rec.labels.append([str(l).strip() for l in labels if str(l).strip()])
            rec.ids.append(str(obj[id_field]) if id_field and obj.get(id_field) is not None else str(len(rec.ids)))
            rec.splits.append(obj.get(split_field) if split_field else None)
            rec.where.append(where)
    if not rec.texts:
        raise ValueError(f"no records in {src}")
    if id_field:
        _check_unique_ids(rec, src, id_field)
    if numbers is not None:
        # Accepted (class indices, numeric codes are label names too), but said once: a list of 0/1
        # flags per label would silently become a two-label problem with labels "0" and "1".
        warnings.warn(f"{src}: field '{label_field}' holds numbers (first at {numbers[0]}: "
                      f"{json.dumps(numbers[1])[:60]}); they are used as label names ('3' for 3). If they are "
                      "0/1 flags, one per label, give the names of the labels that apply instead",
                      DataWarning, stacklevel=2)
    return rec, _finish_splits(rec, src, split_field)


def _read_csv_frame(path: Path, delimiter: str | None) -> Any:
    import pandas as pd

    sep = delimiter if delimiter is not None else ("\t" if ".tsv" in path.name else ",")
    try:
        # dtype=str + no NA parsing: ids like "0042" and empty label cells stay strings.
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.ParserError as e:
        raise ValueError(f"malformed CSV {path}: {e}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"empty CSV file {path}") from None


def require_columns(columns: Sequence[str], needed: Sequence[str], source: str) -> None:
    """Raise ``missing column 'X' in FILE (columns: ...)`` for the first absent column."""
    for c in needed:
        if c not in columns:
            raise ValueError(f"missing column '{c}' in {source} (columns: {', '.join(map(str, columns))})")


def read_csv_records(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    label_field: str = "labels",
    split_field: str | None = "split",
    id_field: str | None = "id",
    label_separator: str | None = None,
    delimiter: str | None = None,
    require_split: bool = False,
    require_id: bool = False,
) -> tuple[Records, list[str] | None]:
    """Parse a CSV/TSV (optionally compressed) file with text, joined labels, split, id.

    Rows are numbered from 1 after the header in error messages (quoted clinical
    notes span several physical lines, so file line numbers would mislead). Labels are split on
    ``label_separator`` (None: ``";"``, with a :class:`DataWarning` when no label cell contains
    it but some contain ``|`` or ``,``, which would then each be read as one label).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Missing column (message lists the columns), empty text (names the
            row), unknown split names, an id given twice (names both rows).
    """
    separator_given = label_separator is not None
    if separator_given and (not isinstance(label_separator, str) or not label_separator):
        raise ValueError(f"label_separator: expected a non-empty string, got {label_separator!r}")
    label_separator = ";" if label_separator is None else label_separator
    p = _check_file(path, "CSV file")
    src = str(p)
    df = _read_csv_frame(p, delimiter)
    cols = list(df.columns)
    needed = [text_field, label_field] + ([split_field] if (split_field and require_split) else [])
    needed += [id_field] if (id_field and require_id) else []
    require_columns(cols, needed, src)
    texts = df[text_field].tolist()
    labels = df[label_field].tolist()
    has_split = bool(split_field) and split_field in cols
    has_id = bool(id_field) and id_field in cols
    splits = df[split_field].tolist() if has_split else None
    ids = df[id_field].tolist() if has_id else None
    rec = Records()
    for i in range(len(df)):
        where = f"row {i + 1}"
        rec.texts.append(_check_text(texts[i], where, src, text_field))
        raw = labels[i]
        rec.labels.append([l.strip() for l in str(raw).split(label_separator) if l.strip()] if raw else [])
        rec.ids.append(str(ids[i]) if ids is not None else str(i))
        sv = splits[i] if splits is not None else None
        rec.splits.append(sv if (sv is None or str(sv).strip() != "") else None)
        rec.where.append(where)
    if not rec.texts:
        raise ValueError(f"no rows in {src}")
    if has_id:
        _check_unique_ids(rec, src, id_field)
    if not separator_given:
        _warn_other_separator(labels, src, label_field, label_separator)
    return rec, _finish_splits(rec, src, split_field if has_split else None)


def _warn_other_separator(cells: Sequence[Any], source: str, field: str, separator: str) -> None:
    """Warns when no label cell holds the (default) separator but some hold ``|`` or ``,``:
    then each such cell is one label named ``a|b``, probably not what was meant."""
    cells = [str(c) for c in cells if c]
    if not cells or any(separator in c for c in cells):
        return
    for other in ("|", ","):
        hits = [i for i, c in enumerate(cells) if other in c]
        if hits:
            warnings.warn(f"{source}: no cell of column '{field}' contains {separator!r} (the default "
                          f"label_separator) but {len(hits)} contain {other!r} (e.g. {cells[hits[0]]!r}); each is "
                          f"read as one label. If {other!r} joins the labels, set label_separator: '{other}' "
                          f"(--label-separator '{other}')", DataWarning, stacklevel=3)
            return


def build_text_dataset(
    name: str,
    parts: dict[str, Records] | tuple[Records, list[str] | None],
    *,
    seed: int = 0,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    label_names: Sequence[str] | None = None,
    hierarchy_fn: Callable[[list[str]], LabelHierarchy | None] | None = None,
    info: dict[str, Any] | None = None,
) -> MultiLabelDataset:
    """Assemble a text dataset from parsed records.

    Args:
        name: Dataset name.
        parts: Either ``{"train": Records, ...}`` (one file per split) or
            ``(records, split_names_or_None)`` (one file; None → seeded split).
        seed: Seed of the split when the file has none.
        split_fractions: Fractions of the seeded split.
        label_names: Fixed vocabulary; default: sorted union of all labels in all splits.
        hierarchy_fn: Builds the hierarchy from the vocabulary.
        info: Provenance to store in ``ds.info``.
    """
    info = dict(info or {})
    by_split: dict[str, tuple[list[str], list[list[str]], list[str]]] = {}
    if isinstance(parts, dict):
        for k, r in parts.items():
            by_split[k] = (r.texts, r.labels, r.ids)
    else:
        rec, split_names = parts
        if split_names is None:
            idx = seeded_split(len(rec.texts), seed, split_fractions)
            info["split"] = {"seeded": True, "seed": int(seed), "fractions": list(split_fractions)}
        else:
            arr = np.asarray(split_names)
            idx = {k: np.flatnonzero(arr == k) for k in ("train", "validation", "test")}
            info["split"] = {"seeded": False}
        for k, ix in idx.items():
            by_split[k] = (
                [rec.texts[i] for i in ix],
                [rec.labels[i] for i in ix],
                [rec.ids[i] for i in ix],
            )
    if label_names is None:
        label_names = sorted({l for _, labs, _ in by_split.values() for ls in labs for l in ls})
    label_names = list(label_names)
    splits = {
        k: Split(k, texts, encode_labels(labs, label_names), ids) for k, (texts, labs, ids) in by_split.items()
    }
    hier = hierarchy_fn(label_names) if hierarchy_fn is not None else None
    return MultiLabelDataset(name, "text", label_names, splits, hier, info)


def text_hierarchy_fn(mode: str | None, separator: str = "::") -> Callable[[list[str]], LabelHierarchy | None]:
    """Hierarchy builder for generic files.

    ``"auto"``: facets when every label contains ``separator``; ``"facet"``: prefix
    before ``separator``; ``"icd"``: :func:`~mlsupcon.data.icd.icd_hierarchy`;
    ``"none"``/None: no hierarchy.
    """
    valid = ("auto", "facet", "icd", "none", None)
    if mode not in valid:
        raise ValueError(f"hierarchy must be one of {valid}, got {mode!r}")

    def build(names: list[str]) -> LabelHierarchy | None:
        if not names or mode in ("none", None):
            return None
        if mode == "icd":
            from .icd import icd_hierarchy

            return icd_hierarchy(names)
        if mode == "facet" or all(separator in n for n in names):
            return prefix_hierarchy(names, separator)
        return None

    return build


# ---------------------------------------------------------------------- loaders


def load_debtags(*, seed: int = 0) -> MultiLabelDataset:
    """The bundled Debtags set: 23,078 / 2,892 / 2,933 package descriptions, 597 tags.

    Hierarchy: facets (``use::editing`` → ``use``), titles ``["facet", "tag"]``.
    """
    p = bundled_path("debtags.jsonl.gz")
    rec, split_names = read_jsonl_records(p)
    return build_text_dataset(
        "debtags",
        (rec, split_names),
        seed=seed,
        hierarchy_fn=lambda names: prefix_hierarchy(names, "::"),
        info={"source": str(p)},
    )


def load_jsonl(
    path: str,
    *,
    text_field: str = "text",
    label_field: str = "labels",
    split_field: str | None = "split",
    id_field: str | None = "id",
    seed: int = 0,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    hierarchy: str | None = "auto",
    hierarchy_separator: str = "::",
) -> MultiLabelDataset:
    """Generic JSONL(.gz) text dataset (see module docstring for the layout)."""
    rec, split_names = read_jsonl_records(
        path, text_field=text_field, label_field=label_field, split_field=split_field, id_field=id_field
    )
    return build_text_dataset(
        f"jsonl:{path}",
        (rec, split_names),
        seed=seed,
        split_fractions=split_fractions,
        hierarchy_fn=text_hierarchy_fn(hierarchy, hierarchy_separator),
        info={"source": str(Path(path).expanduser())},
    )


def load_csv(
    path: str,
    *,
    text_field: str = "text",
    label_field: str = "labels",
    split_field: str | None = "split",
    id_field: str | None = "id",
    label_separator: str | None = None,
    delimiter: str | None = None,
    seed: int = 0,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    hierarchy: str | None = "auto",
    hierarchy_separator: str = "::",
) -> MultiLabelDataset:
    """Generic CSV/TSV text dataset (labels joined by ``label_separator``; None: ``";"``)."""
    rec, split_names = read_csv_records(
        path,
        text_field=text_field,
        label_field=label_field,
        split_field=split_field,
        id_field=id_field,
        label_separator=label_separator,
        delimiter=delimiter,
    )
    return build_text_dataset(
        f"csv:{path}",
        (rec, split_names),
        seed=seed,
        split_fractions=split_fractions,
        hierarchy_fn=text_hierarchy_fn(hierarchy, hierarchy_separator),
        info={"source": str(Path(path).expanduser())},
    )
