"""``vectors:PATH``: precomputed feature vectors (embeddings, hand-made features) in a ``.npz`` file.

Arrays of the archive (``np.savez``):

* ``x`` (required): numbers ``[n, F]``, every value finite; stored as ``float32``.
* labels, exactly one of

  - ``y``: multi-hot ``[n, C]`` of 0/1 (bool, int or float), optionally with
    ``label_names`` (``C`` distinct strings; default ``label0 .. label{C-1}``), or
  - ``labels``: one entry per row: a string of labels joined by ``|`` or ``;``
    (``"a|b"``, ``""`` for none), or a list of strings (an object array: needs
    ``allow_pickle=True``), or a 2-D string array padded with ``""``. With
    ``label_names`` the vocabulary is fixed to it, otherwise it is the sorted union.

* ``split`` (optional): ``train`` / ``validation`` / ``test`` per row (also ``val``,
  ``valid``, ``dev``, ``training``, ``testing``); without it, the seeded 80/10/10 split the
  JSONL/CSV loaders use (:func:`~mlsupcon.data.base.seeded_split`).
* ``ids`` (optional): one id per row (default: the row number).

Other arrays are ignored (listed in ``ds.info["ignored_arrays"]``). Object arrays are
refused unless ``allow_pickle=True``, because unpickling can run code from the file.

Example:
    >>> import numpy as np, tempfile, os
    >>> from mlsupcon.data import load_dataset
    >>> path = os.path.join(tempfile.mkdtemp(), "emb.npz")
    >>> rng = np.random.default_rng(0)
    >>> np.savez(path, x=rng.normal(size=(20, 4)), labels=np.array(["a|b", "b", ""] * 6 + ["a", "b"]))
    >>> ds = load_dataset(f"vectors:{path}")
    >>> ds.modality, ds.label_names, ds.splits["train"].inputs.shape
    ('vector', ['a', 'b'], (16, 4))
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import SPLIT_NAMES, MultiLabelDataset, Split, encode_labels, normalise_split_name, seeded_split
from .text import text_hierarchy_fn

__all__ = ["load_vectors"]

_KNOWN = ("x", "y", "labels", "label_names", "split", "ids")
_LAYOUT = "arrays x [n, F] and y [n, C] (multi-hot) or labels [n]; optional split, ids, label_names"


class _Archive:
    """The arrays of one ``.npz`` file, with errors that name the file and the array."""

    def __init__(self, path: Path, allow_pickle: bool) -> None:
        self.path = path
        try:
            self.npz = np.load(path, allow_pickle=allow_pickle)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"vectors file {path} is not a readable .npz archive ({_LAYOUT}): {e}") from None
        if not isinstance(self.npz, np.lib.npyio.NpzFile):
            raise ValueError(f"vectors file {path} holds a single array, expected a .npz archive with {_LAYOUT}")
        self.names = list(self.npz.files)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def get(self, name: str) -> np.ndarray:
        try:
            return self.npz[name]
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise ValueError(
                    f"{self.path}: array '{name}' is an object array, which needs pickle to load; pass "
                    "allow_pickle=True if you trust the file, or store strings (labels joined by '|')"
                ) from None
            raise ValueError(f"{self.path}: array '{name}' could not be read: {e}") from None
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise ValueError(f"{self.path}: array '{name}' could not be read: {e}") from None

    def fail(self, name: str, message: str) -> ValueError:
        return ValueError(f"{self.path}: array '{name}' {message}")


def _rows_listed(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:5])
    return f"row(s) {shown}" + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def _strings(arc: _Archive, name: str, values: np.ndarray, n: int | None) -> list[Any]:
    """A 1-D array of per-row values as Python objects (bytes decoded), length-checked."""
    if values.ndim != 1:
        raise arc.fail(name, f"must be 1-D with one entry per row, got shape {values.shape}")
    if n is not None and len(values) != n:
        raise arc.fail(name, f"has {len(values)} entries, but 'x' has {n} rows")
    out = values.tolist()
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in out]


def _features(arc: _Archive) -> np.ndarray:
    if "x" not in arc:
        raise ValueError(f"{arc.path}: missing array 'x' (arrays: {arc.names}); expected {_LAYOUT}")
    x = arc.get("x")
    if x.dtype.kind not in "biuf":
        raise arc.fail("x", f"must hold numbers [n, F], got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise arc.fail("x", f"must be 2-D [n, F] with n, F >= 1, got shape {x.shape}")
    with np.errstate(over="ignore"):  # values beyond float32's range become inf, reported below
        x = x.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise arc.fail("x", f"has NaN or infinite values in {_rows_listed(bad)} (of {len(x)}); expected finite numbers")
    return np.ascontiguousarray(x)


def _names(arc: _Archive, c: int | None) -> list[str] | None:
    if "label_names" not in arc:
        return None
    names = _strings(arc, "label_names", arc.get("label_names"), None)
    if not all(isinstance(v, str) and v.strip() for v in names):
        raise arc.fail("label_names", "must hold non-empty strings")
    names = [v.strip() for v in names]
    if c is not None and len(names) != c:
        raise arc.fail("label_names", f"has {len(names)} names, but 'y' has {c} columns")
    dup = sorted({v for v in names if names.count(v) > 1})
    if dup:
        raise arc.fail("label_names", f"repeats {dup[:5]}; names must be distinct")
    return names


def _multi_hot(arc: _Archive, n: int) -> tuple[Any, list[str]]:
    y = arc.get("y")
    if y.dtype.kind not in "biuf":
        raise arc.fail("y", f"must be multi-hot numbers [n, C], got dtype {y.dtype}")
    if y.ndim != 2 or y.shape[1] < 1:
        raise arc.fail("y", f"must be 2-D multi-hot [n, C] with C >= 1, got shape {y.shape}")
    if y.shape[0] != n:
        raise arc.fail("y", f"has {y.shape[0]} rows, but 'x' has {n}")
    bad = np.flatnonzero(~np.isin(y, (0, 1)).all(axis=1))
    if len(bad):
        raise arc.fail("y", f"must hold only 0/1, see {_rows_listed(bad)}")
    names = _names(arc, y.shape[1]) or [f"label{j}" for j in range(y.shape[1])]
    import scipy.sparse as sp

    return sp.csr_matrix(y.astype(np.uint8)), names


def _separator(arc: _Archive, values: list[Any], given: str | None) -> str | None:
    if given is not None:
        if not isinstance(given, str) or not given:
            raise ValueError(f"label_separator must be a non-empty string, got {given!r}")
        return given
    found = [s for s in ("|", ";") if any(isinstance(v, str) and s in v for v in values)]
    if len(found) > 1:
        raise arc.fail("labels", "has strings with both '|' and ';': pass label_separator='|' or ';'")
    return found[0] if found else None


def _label_lists(arc: _Archive, n: int, separator: str | None) -> list[list[str]]:
    raw = arc.get("labels")
    if raw.ndim == 2 and raw.dtype.kind in "US":  # equal-length lists, padded with ""
        if raw.shape[0] != n:
            raise arc.fail("labels", f"has {raw.shape[0]} rows, but 'x' has {n}")
        flat, w = _strings(arc, "labels", raw.reshape(-1), None), raw.shape[1]
        values: list[Any] = [flat[i * w : (i + 1) * w] for i in range(n)]  # "" is dropped below
    else:
        values = _strings(arc, "labels", raw, n)
    sep = _separator(arc, values, separator)
    out: list[list[str]] = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            items: list[Any] = []
        elif isinstance(v, str):
            items = v.split(sep) if sep else [v]
        elif isinstance(v, (list, tuple, np.ndarray)):
            items = list(v.tolist() if isinstance(v, np.ndarray) else v)
        else:
            raise arc.fail("labels", f"row {i}: expected a string or a list of strings, got {type(v).__name__}")
        if not all(isinstance(t, (str, bytes)) for t in items):
            raise arc.fail("labels", f"row {i}: expected label strings, got {items[:5]!r}")
        labels = [(t.decode("utf-8") if isinstance(t, bytes) else t).strip() for t in items]
        out.append([t for t in labels if t])
    return out


def _split_indices(arc: _Archive, n: int, seed: int, fractions: Sequence[float]) -> tuple[dict[str, np.ndarray], dict]:
    if "split" in arc:
        values = _strings(arc, "split", arc.get("split"), n)
        names = [normalise_split_name(v) for v in values]
        if None in names:
            i = names.index(None)
            raise arc.fail(
                "split",
                f"has unknown split name {values[i]!r} at row {i}; expected train/validation/test "
                "(aliases: val, valid, dev, training, testing)",
            )
        arr = np.asarray(names)
        idx = {k: np.flatnonzero(arr == k) for k in SPLIT_NAMES}
        empty = [k for k in SPLIT_NAMES if not len(idx[k])]
        if empty:
            raise arc.fail("split", f"has no rows for split(s) {empty}; expected rows for each of {list(SPLIT_NAMES)}")
        return idx, {"seeded": False}
    idx = seeded_split(n, seed, fractions)
    empty = [k for k in SPLIT_NAMES if not len(idx[k])]
    if empty:
        raise ValueError(
            f"{arc.path}: {n} rows are too few for the seeded split {list(fractions)}: {empty} would be empty; "
            "add a 'split' array or more rows"
        )
    return idx, {"seeded": True, "seed": int(seed), "fractions": [float(f) for f in fractions]}


def load_vectors(
    path: str,
    *,
    seed: int = 0,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    label_separator: str | None = None,
    standardize: bool = False,
    allow_pickle: bool = False,
    hierarchy: str | None = "auto",
    hierarchy_separator: str = "::",
) -> MultiLabelDataset:
    """Precomputed feature vectors and their labels from a ``.npz`` file (layout: module docstring).

    Args:
        path: The ``.npz`` file.
        seed: Seed of the split when the file has no ``split`` array.
        split_fractions: Train/validation/test fractions of that split.
        label_separator: Separator of label strings; default: ``|`` or ``;``, whichever the
            file uses.
        standardize: Standardise features with the train split's mean and standard deviation
            (kept in ``info["feature_mean"]`` / ``["feature_std"]``).
        allow_pickle: Allow object arrays (label lists); only for files you trust.
        hierarchy: ``"auto"`` (facets when every label contains ``hierarchy_separator``),
            ``"facet"``, ``"icd"`` or ``"none"``.
        hierarchy_separator: Facet separator for the hierarchy.

    Returns:
        A ``"vector"`` dataset (``float32`` inputs ``[n, F]``), usable with the ``mlp`` encoder.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Not a ``.npz`` archive, a missing or malformed array (wrong shape or dtype,
            NaN/inf rows, label count mismatch, unknown split name, an empty split); the
            message names the file and the array.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"vectors file not found: {p}")
    if p.suffix.lower() != ".npz":
        raise ValueError(f"vectors file {p}: expected a .npz archive ({_LAYOUT}), got a '{p.suffix}' file")
    arc = _Archive(p, bool(allow_pickle))
    x = _features(arc)
    n = len(x)
    has_y, has_lists = "y" in arc, "labels" in arc
    if has_y and has_lists:
        raise ValueError(f"{p}: has both arrays 'y' and 'labels'; give either multi-hot 'y' or 'labels' lists")
    if not (has_y or has_lists):
        raise ValueError(f"{p}: missing labels: expected array 'y' [n, C] or 'labels' [n] (arrays: {arc.names})")
    if has_y:
        y, label_names = _multi_hot(arc, n)
        label_format = "y"
    else:
        lists = _label_lists(arc, n, label_separator)
        fixed = _names(arc, None)
        if fixed is None:
            label_names = sorted({t for row in lists for t in row})
        else:
            known = set(fixed)
            for i, row in enumerate(lists):
                unknown = [t for t in row if t not in known]
                if unknown:
                    raise arc.fail("labels", f"row {i}: label {unknown[0]!r} is not in 'label_names'")
            label_names = fixed
        y = encode_labels(lists, label_names)
        label_format = "labels"
    ids = [str(v) for v in _strings(arc, "ids", arc.get("ids"), n)] if "ids" in arc else [str(i) for i in range(n)]
    idx, split_info = _split_indices(arc, n, seed, split_fractions)
    info: dict[str, Any] = {
        "source": str(p),
        "label_format": label_format,
        "split": split_info,
        "standardized": bool(standardize),
        "ignored_arrays": sorted(set(arc.names) - set(_KNOWN)),
    }
    if standardize:
        mean = x[idx["train"]].mean(axis=0, dtype=np.float64)
        std = x[idx["train"]].std(axis=0, dtype=np.float64)
        std = np.where(std > 0, std, 1.0)  # constant features: centred, not divided by zero
        x = ((x - mean) / std).astype(np.float32)
        info["feature_mean"] = mean.astype(np.float32).tolist()
        info["feature_std"] = std.astype(np.float32).tolist()
    splits = {k: Split(k, np.ascontiguousarray(x[ix]), y[ix], [ids[int(i)] for i in ix]) for k, ix in idx.items()}
    hier = text_hierarchy_fn(hierarchy, hierarchy_separator)(list(label_names))
    return MultiLabelDataset(f"vectors:{path}", "vector", list(label_names), splits, hier, info)
