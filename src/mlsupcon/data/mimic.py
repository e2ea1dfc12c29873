"""MIMIC-III / MIMIC-IV ICD coding sets in the two layouts users actually have.

Nothing here ships or downloads MIMIC (it needs PhysioNet credentials); the loaders
read the files produced by the two standard preprocessing pipelines.

**caml-mimic** (Mullenbach et al. 2018, ``mimic-caml:DIR``): ``DIR/train_full.csv``,
``dev_full.csv``, ``test_full.csv`` (``version="50"``: ``*_50.csv``), columns
``SUBJECT_ID, HADM_ID, TEXT, LABELS, length``; ``LABELS`` joins dotted ICD-9 codes
with ``;``.

**medical-coding-reproducibility** (Edin et al. 2023, ``mimic-repro:DIR``): a data
feather (``mimiciii_clean.feather``, ``mimiciv_icd9.feather``, ``mimiciv_icd10.feather``,
``mimiciii_full.feather``, ``mimiciii_50.feather``) with columns ``_id`` (the admission,
``note_id`` also accepted), ``text``, ``target`` (list of codes = diagnoses +
procedures), usually also ``icd9_diag``/``icd9_proc`` or ``icd10_diag``/``icd10_proc``;
and a split file (``mimiciv_icd10_split.feather``, ``mimiciii_clean_splits.feather``…,
or a CSV) with columns ``_id`` and ``split`` ∈ ``train``/``val``/``test``. As in their
pipeline, data rows and split rows are inner-joined on the id (the number of data
rows without a split is reported in ``info``). The ``*_proc`` columns, when present,
tell the ICD hierarchy which codes are procedures.

Both give an ICD hierarchy ``[chapter, category, code]`` (see :mod:`mlsupcon.data.icd`).

Example:
    >>> ds = load_dataset("mimic-repro:~/data/mimiciv_icd10", top_k_labels=50)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import MultiLabelDataset, normalise_split_name
from .icd import icd_hierarchy
from .text import Records, _check_text, build_text_dataset, read_csv_records, require_columns

__all__ = ["load_mimic_caml", "load_mimic_repro"]


def _dir(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"MIMIC directory not found: {p}")
    return p


def load_mimic_caml(
    path: str,
    *,
    version: str = "full",
    text_field: str = "TEXT",
    label_field: str = "LABELS",
    id_field: str = "HADM_ID",
    label_separator: str = ";",
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    icd_version: str | int = "auto",
    icd_chapters: bool = True,
    seed: int = 0,
) -> MultiLabelDataset:
    """caml-mimic CSVs in a directory (``train_full.csv``, ``dev_full.csv``, ``test_full.csv``).

    Args:
        path: The directory.
        version: ``"full"`` or ``"50"`` (file suffix).
        text_field, label_field, id_field: Column names.
        label_separator: Separator inside ``LABELS``.
        train_file, validation_file, test_file: Override file names (relative to ``path``).
        icd_version: ``"auto"``, 9 or 10, for the hierarchy.
        icd_chapters: Add the chapter level above categories.
        seed: Unused (splits are fixed by the files); accepted for uniformity.
    """
    version = str(version)
    if version not in ("full", "50"):
        raise ValueError(f"version must be 'full' or '50', got {version!r}")
    d = _dir(path)
    files = {
        "train": train_file or f"train_{version}.csv",
        "validation": validation_file or f"dev_{version}.csv",
        "test": test_file or f"test_{version}.csv",
    }
    parts: dict[str, Records] = {}
    for split, fname in files.items():
        fp = d / fname
        if not fp.is_file():
            present = sorted(x.name for x in d.iterdir()) if d.is_dir() else []
            raise FileNotFoundError(
                f"caml-mimic {split} file not found: {fp} (directory holds: {', '.join(present[:20])})"
            )
        rec, _ = read_csv_records(
            fp,
            text_field=text_field,
            label_field=label_field,
            split_field=None,
            id_field=id_field,
            label_separator=label_separator,
            delimiter=",",
            require_id=bool(id_field),
        )
        parts[split] = rec
    return build_text_dataset(
        f"mimic-caml:{path}",
        parts,
        hierarchy_fn=lambda names: icd_hierarchy(names, version=icd_version, chapters=icd_chapters),
        info={"source": str(d), "files": {k: str(d / v) for k, v in files.items()}, "layout": "caml-mimic"},
    )


def _read_table(fp: Path, columns: list[str] | None = None) -> Any:
    """Read a feather / parquet / CSV file into a pandas DataFrame."""
    import pandas as pd

    name = fp.name.lower()
    try:
        if name.endswith(".feather") or name.endswith(".arrow"):
            import pyarrow.feather as feather

            table = feather.read_table(fp, columns=columns)
            return table.to_pandas()
        if name.endswith(".parquet"):
            return pd.read_parquet(fp, columns=columns)
        if ".csv" in name or ".tsv" in name:
            return pd.read_csv(fp, sep="\t" if ".tsv" in name else ",", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"cannot read {fp}: {e}") from None
    raise ValueError(f"unsupported file type {fp} (expected .feather, .parquet or .csv)")


def _schema_columns(fp: Path) -> list[str]:
    name = fp.name.lower()
    try:
        if name.endswith(".feather") or name.endswith(".arrow"):
            import pyarrow.ipc as ipc

            try:
                return list(ipc.open_file(fp).schema.names)
            except Exception:
                import pyarrow.feather as feather

                return list(feather.read_table(fp).schema.names)
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return list(pq.read_schema(fp).names)
        import pandas as pd

        return list(pd.read_csv(fp, nrows=0, sep="\t" if ".tsv" in name else ",").columns)
    except (OSError, ValueError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"cannot read {fp}: {e}") from None


def _is_split_name(n: str) -> bool:
    return "_split" in n or n.startswith("split")


def _find_files(d: Path, data_file: str | None, split_file: str | None) -> tuple[Path, Path]:
    tables = sorted(
        x for x in d.iterdir() if x.is_file() and x.name.lower().endswith((".feather", ".parquet", ".csv"))
    )
    if data_file is not None:
        dp = Path(data_file).expanduser()
        dp = dp if dp.is_absolute() else d / dp
        if not dp.is_file():
            raise FileNotFoundError(f"data file not found: {dp}")
    else:
        cands = [
            x
            for x in tables
            if x.name.lower().endswith((".feather", ".parquet"))
            and not _is_split_name(x.name.lower())
            and "subset" not in x.name.lower()
        ]
        if len(cands) != 1:
            raise ValueError(
                f"cannot tell which file in {d} holds the data "
                f"({'candidates: ' + ', '.join(x.name for x in cands) if cands else 'no .feather/.parquet data file'})"
                "; "
                f"pass data_file=..."
            )
        dp = cands[0]
    if split_file is not None:
        sp_ = Path(split_file).expanduser()
        sp_ = sp_ if sp_.is_absolute() else d / sp_
        if not sp_.is_file():
            raise FileNotFoundError(f"split file not found: {sp_}")
    else:
        stem = dp.name.split(".")[0]
        preferred = [d / f"{stem}_split.feather", d / f"{stem}_splits.feather", d / f"{stem}_split.csv",
                     d / f"{stem}_splits.csv"]
        found = [p for p in preferred if p.is_file()]
        if not found:
            found = [x for x in tables if _is_split_name(x.name.lower()) and "subset" not in x.name.lower()]
        if len(found) != 1:
            raise ValueError(
                f"cannot tell which file in {d} holds the splits "
                f"({'candidates: ' + ', '.join(x.name for x in found) if found else 'no *_split(s).feather/.csv file'})"
                "; "
                f"pass split_file=..."
            )
        sp_ = found[0]
    return dp, sp_


def _as_code_list(v: Any, where: str, src: str, field: str) -> list[str]:
    if v is None:
        return []
    if isinstance(v, float) and np.isnan(v):
        return []
    if isinstance(v, str):
        # Some exports store the list as "428.0;401.9" or as a JSON/pythonic list string.
        s = v.strip().strip("[]")
        parts = [p.strip().strip("'\"") for p in s.replace(";", ",").split(",")]
        return [p for p in parts if p]
    try:
        return [str(c).strip() for c in list(v) if c is not None and str(c).strip()]
    except TypeError:
        raise ValueError(f"{where} of {src}: field '{field}' must be a list of codes, got {type(v).__name__}") from None


def load_mimic_repro(
    path: str,
    *,
    data_file: str | None = None,
    split_file: str | None = None,
    id_field: str | None = None,
    text_field: str = "text",
    label_field: str = "target",
    split_field: str = "split",
    icd_version: str | int = "auto",
    icd_chapters: bool = True,
    seed: int = 0,
) -> MultiLabelDataset:
    """medical-coding-reproducibility (Edin et al. 2023) feather files.

    Args:
        path: The directory (or the data feather itself, whose directory then holds the split file).
        data_file: Data file name (default: the single ``*.feather``/``*.parquet`` not
            named ``*split*`` / ``*subset*``).
        split_file: Split file name (default: ``<data stem>_split.feather`` or
            ``_splits.feather`` or the single ``*_split*`` file; ``.csv`` accepted).
        id_field: Join column (default: ``_id`` if present, else ``note_id``).
        text_field, label_field, split_field: Column names.
        icd_version: ``"auto"``, 9 or 10, for the hierarchy.
        icd_chapters: Add the chapter level.
        seed: Unused (splits come from the split file).
    """
    p = Path(path).expanduser()
    if p.is_file():
        if data_file is None:
            data_file = p.name
        p = p.parent
    d = _dir(str(p))
    dp, sp_ = _find_files(d, data_file, split_file)
    cols = _schema_columns(dp)
    if id_field is None:
        id_field = "_id" if "_id" in cols else ("note_id" if "note_id" in cols else "_id")
    require_columns(cols, [id_field, text_field, label_field], str(dp))
    proc_cols = [c for c in cols if c.endswith("_proc")]
    df = _read_table(dp, columns=[id_field, text_field, label_field] + proc_cols)
    split_cols = _schema_columns(sp_)
    require_columns(split_cols, [id_field, split_field], str(sp_))
    sdf = _read_table(sp_, columns=[id_field, split_field] if not sp_.name.lower().endswith(".csv") else None)

    split_ids = [str(x) for x in sdf[id_field].tolist()]
    split_vals = sdf[split_field].tolist()
    split_of: dict[str, str] = {}
    bad: dict[str, int] = {}
    for i, (k, v) in enumerate(zip(split_ids, split_vals)):
        name = normalise_split_name(v)
        if name is None:
            bad.setdefault(str(v), i + 1)
            continue
        if k in split_of and split_of[k] != name:
            raise ValueError(f"row {i + 1} of {sp_}: id {k} assigned to two splits ({split_of[k]}, {name})")
        split_of[k] = name
    if bad:
        listed = ", ".join(f"'{k}' (first at row {v})" for k, v in list(bad.items())[:10])
        raise ValueError(f"unknown split name(s) in column '{split_field}' of {sp_}: {listed}; expected train/val/test")

    src = str(dp)
    ids = [str(x) for x in df[id_field].tolist()]
    texts = df[text_field].tolist()
    targets = df[label_field].tolist()
    parts = {k: Records() for k in ("train", "validation", "test")}
    unmatched = 0
    for i in range(len(df)):
        s = split_of.get(ids[i])
        if s is None:
            unmatched += 1
            continue
        where = f"row {i + 1}"
        r = parts[s]
        r.texts.append(_check_text(texts[i], where, src, text_field))
        r.labels.append(_as_code_list(targets[i], where, src, label_field))
        r.ids.append(ids[i])
        r.where.append(where)
    proc_codes: set[str] = set()
    for c in proc_cols:
        for v in df[c].tolist():
            proc_codes.update(_as_code_list(v, "", src, c))
    info = {
        "source": str(d),
        "layout": "medical-coding-reproducibility",
        "files": {"data": str(dp), "split": str(sp_)},
        "rows_without_split": unmatched,
        "procedure_columns": proc_cols,
    }
    return build_text_dataset(
        f"mimic-repro:{path}",
        parts,
        hierarchy_fn=lambda names: icd_hierarchy(
            names, version=icd_version, procedure_codes=proc_codes, chapters=icd_chapters
        ),
        info=info,
    )
