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
  records), in every record or in none; the 0-based record number otherwise.

A field named explicitly (``split_field="fold"``, ``--split-field fold``) must be in every record
(JSONL) or be a column (CSV); the defaults (``split``, ``id``) are used when the file has them.
A byte that is not UTF-8 is an error naming the file, the line and the column.

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

__all__ = ["build_text_dataset", "read_jsonl_records", "read_csv_records", "load_debtags", "load_jsonl", "load_csv",
           "DefaultField", "named_field", "check_ids", "not_utf8_message"]

_VALID_SPLIT_HELP = "expected train/validation/test (aliases: val, valid, dev, training, testing)"


class DefaultField(str):
    """A loader's default field name (``split``, ``id``): used when the file has that field.

    A plain string given for the same option names a field the file must have: a misspelt
    ``split_field="fold"`` is an error, not a silently seeded split.
    """

    __slots__ = ()


#: The defaults of ``split_field`` and ``id_field``: optional fields.
SPLIT = DefaultField("split")
ID = DefaultField("id")


def named_field(field: str | None) -> bool:
    """Whether ``field`` was named by the user (a plain string), not a loader default or None."""
    return field is not None and not isinstance(field, DefaultField)


def _option_name(option: str) -> str:
    flag = {"split_field": "--split-field", "id_field": "--id-field"}.get(option)
    return f"{option} ({flag})" if flag else option


def not_utf8_message(path: str | os.PathLike, prefix: str = "") -> str:
    """``line 7 of F: not valid UTF-8 (byte 0xff at column 12); save the file as UTF-8``: the first
    byte of ``path`` (decompressed: ``.gz``, ``.bz2``, ``.xz``) that is not UTF-8, read in chunks.

    Lines are physical lines (a CSV row spanning lines counts each); the column counts characters.
    """
    import bz2
    import lzma

    p = Path(path)
    name = p.name.lower()
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(Path(name).suffix, open)
    line, head, buf = 1, b"", b""  # head: bytes of the current line before buf
    with opener(p, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            buf += chunk
            try:
                buf.decode("utf-8")
                good = len(buf)
            except UnicodeDecodeError as e:
                if chunk and e.reason == "unexpected end of data":
                    good = e.start  # a character cut by the end of the chunk: read on
                else:
                    good = -1
                    bad = e.start
            done = buf[:bad] if good < 0 else buf[:good]
            line += done.count(b"\n")
            cut = done.rfind(b"\n")
            head = done[cut + 1:] if cut >= 0 else head + done
            if good < 0:
                column = len(head.decode("utf-8", errors="replace")) + 1
                return (f"{prefix}line {line} of {p}: not valid UTF-8 (byte 0x{buf[bad]:02x} at column {column}); "
                        "save the file as UTF-8")
            if not chunk:
                return f"{prefix}{p}: not valid UTF-8; save the file as UTF-8"
            buf = buf[good:]


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


def check_ids(ids: Sequence[str | None], where: Sequence[str], source: str, id_field: str | None,
              named: bool = False, prefix: str = "") -> list[str]:
    """The ids of a file's records, checked: every record has one or none does (then the 0-based
    record numbers are the ids), and none is given twice. Training data and predict's inputs
    follow this one rule; the error names the file, the record(s) and the field.

    Args:
        ids: one id per record, None where the record has none.
        where: ``"line 4"`` / ``"row 3"`` per record.
        named: the user named ``id_field``: records without an id are an error even when none has one.
        prefix: put before the message (``"input: "``).
    """
    have = [i is not None for i in ids]
    if not any(have) and not named:
        return [str(i) for i in range(len(ids))]
    if not all(have):
        i = have.index(False)
        other = f"; {where[have.index(True)]} has one" if any(have) else ""
        raise ValueError(f"{prefix}{where[i]} of {source}: no id in field '{id_field}'{other}; give every record "
                         "an id, or none (records are then numbered from 0)")
    first: dict[str, str] = {}
    for ident, place in zip(ids, where):
        seen = first.setdefault(ident, place)
        if seen != place:
            raise ValueError(f"{prefix}duplicate id {ident!r} in {source}: {seen} and {place} (field '{id_field}'); "
                             "ids must be unique (or leave the field out: records are then numbered)")
    return list(ids)


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
    split_field: str | None = SPLIT,
    id_field: str | None = ID,
) -> tuple[Records, list[str] | None]:
    """Parse a JSONL(.gz) file of ``{text, labels, split?, id?}`` objects.

    ``split_field`` / ``id_field``: the defaults (:class:`DefaultField`) are used when present; a
    field named explicitly must be in every record; None ignores the field.

    Returns:
        The records and the normalised split names (None when the file has no split field).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Malformed JSON or UTF-8, a non-object line, a missing/invalid field, empty
            text, ids on some records only or twice; the message names the file, the 1-based
            line and the field.
    """
    p = _check_file(path, "JSONL file")
    src = str(p)
    rec = Records()
    raw_ids: list[str | None] = []
    numbers: tuple[str, list] | None = None  # the first record whose labels hold integers
    required = [(text_field, None), (label_field, None)]
    required += [(f, o) for f, o in ((split_field, "split_field"), (id_field, "id_field")) if named_field(f)]
    try:
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
                for fld, option in required:
                    if fld not in obj or (option and obj[fld] is None):
                        named = f"; {_option_name(option)} names a field every record must have" if option else ""
                        raise ValueError(
                            f"line {lineno} of {src}: missing field '{fld}' (fields: {sorted(obj)}){named}"
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
                raw_ids.append(str(obj[id_field]) if id_field and obj.get(id_field) is not None else None)
                rec.splits.append(obj.get(split_field) if split_field else None)
                rec.where.append(where)
    except UnicodeDecodeError:
        raise ValueError(not_utf8_message(p)) from None
    if not rec.texts:
        raise ValueError(f"no records in {src}")
    rec.ids = check_ids(raw_ids, rec.where, src, id_field, named_field(id_field))
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
    except UnicodeDecodeError:
        raise ValueError(not_utf8_message(path)) from None
    except pd.errors.ParserError as e:
        raise ValueError(f"malformed CSV {path}: {e}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"empty CSV file {path}") from None


def require_columns(columns: Sequence[str], needed: Sequence[str], source: str,
                    options: dict[str, str] | None = None) -> None:
    """Raise ``missing column 'X' in FILE (columns: ...)`` for the first absent column
    (``options``: column → the option that named it, said in the message)."""
    for c in needed:
        if c not in columns:
            option = (options or {}).get(c)
            named = f"; {_option_name(option)} names it" if option else ""
            raise ValueError(f"missing column '{c}' in {source} (columns: {', '.join(map(str, columns))}){named}")


def read_csv_records(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    label_field: str = "labels",
    split_field: str | None = SPLIT,
    id_field: str | None = ID,
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

    ``split_field`` / ``id_field``: the defaults (:class:`DefaultField`) are used when the column
    exists; a column named explicitly (or ``require_split`` / ``require_id``) must exist. An empty
    id cell is a row without an id: ids are in every row or in none.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Missing column (message lists the columns), empty text (names the
            row), unknown split names, an id given twice (names both rows) or on some rows only,
            a byte that is not UTF-8 (names the line and column).
    """
    separator_given = label_separator is not None
    if separator_given and (not isinstance(label_separator, str) or not label_separator):
        raise ValueError(f"label_separator: expected a non-empty string, got {label_separator!r}")
    label_separator = ";" if label_separator is None else label_separator
    p = _check_file(path, "CSV file")
    src = str(p)
    df = _read_csv_frame(p, delimiter)
    cols = list(df.columns)
    require_split = require_split or named_field(split_field)
    require_id = require_id or named_field(id_field)
    needed = [text_field, label_field] + ([split_field] if (split_field and require_split) else [])
    needed += [id_field] if (id_field and require_id) else []
    named = {f: o for f, o in ((split_field, "split_field"), (id_field, "id_field")) if named_field(f)}
    require_columns(cols, needed, src, named)
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
        rec.ids.append(str(ids[i]) if ids is not None and str(ids[i]).strip() != "" else None)
        sv = splits[i] if splits is not None else None
        rec.splits.append(sv if (sv is None or str(sv).strip() != "") else None)
        rec.where.append(where)
    if not rec.texts:
        raise ValueError(f"no rows in {src}")
    rec.ids = check_ids(rec.ids, rec.where, src, id_field, has_id and require_id)
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
    split_field: str | None = SPLIT,
    id_field: str | None = ID,
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
    split_field: str | None = SPLIT,
    id_field: str | None = ID,
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
