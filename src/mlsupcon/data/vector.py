"""Vector datasets: yeast (gene expression → functional classes).

The data ship with the ``river`` package (``river/datasets/yeast.csv.gz``: columns
``Att1..Att103`` then ``Class1..Class14``, 2,417 rows); the split is the bundled
``yeast_split.json`` (0-based data rows: train 1,200 / validation 300 / test 917 =
the Mulan test set), identical to the MulSupCon authors' released files.

Features are standardised with the **train split's** mean and standard deviation
only (validation/test never leak into the statistics), as the MulSupCon authors'
code does with a ``StandardScaler`` fitted on their training file. The statistics
are kept in ``ds.info["feature_mean"]`` / ``["feature_std"]``.

Example:
    >>> ds = load_yeast()                     # doctest: +SKIP
    >>> ds.splits["test"].inputs.shape        # doctest: +SKIP
    (917, 103)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import MultiLabelDataset, Split
from .text import bundled_path

__all__ = ["load_yeast", "yeast_csv_path"]


def yeast_csv_path() -> Path:
    """Location of river's ``yeast.csv.gz``.

    Raises:
        ImportError: If river is not installed (``pip install mlsupcon[data]``).
    """
    try:
        import importlib.util

        spec = importlib.util.find_spec("river")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the yeast dataset ships with the 'river' package, which is not installed; "
            "install it with: pip install 'mlsupcon[data]' (or pip install river)"
        )
    # Locate the file without importing river (its import is slow and pulls many modules).
    root = Path(list(spec.submodule_search_locations)[0])
    p = root / "datasets" / "yeast.csv.gz"
    if not p.is_file():
        raise FileNotFoundError(f"river is installed but {p} is missing")
    return p


def load_yeast(*, standardize: bool = True, seed: int = 0) -> MultiLabelDataset:
    """Yeast with the standard 1,200 / 300 / 917 split; 103 features, 14 labels.

    Args:
        standardize: Standardise features with train-split statistics (default True).
        seed: Unused (the split is fixed); accepted for uniformity.

    Returns:
        A ``"vector"`` dataset; inputs are ``float32`` ``[n, 103]``; ids are the
        0-based row numbers of the river file; label names ``Class1..Class14``.
    """
    import pandas as pd

    p = yeast_csv_path()
    df = pd.read_csv(p)
    feat_cols = [c for c in df.columns if c.startswith("Att")]
    label_cols = [c for c in df.columns if c.startswith("Class")]
    if len(feat_cols) != 103 or len(label_cols) != 14:
        raise ValueError(f"unexpected yeast layout in {p}: {len(feat_cols)} features, {len(label_cols)} labels")
    x = df[feat_cols].to_numpy(dtype=np.float64)
    y = df[label_cols].to_numpy()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"yeast labels in {p} are not 0/1")
    sp_path = bundled_path("yeast_split.json")
    with open(sp_path, encoding="utf-8") as f:
        split_rows = json.load(f)
    n = x.shape[0]
    idx = {k: np.asarray(split_rows[k], dtype=np.int64) for k in ("train", "validation", "test")}
    allrows = np.concatenate(list(idx.values()))
    if allrows.min() < 0 or allrows.max() >= n or len(np.unique(allrows)) != len(allrows):
        raise ValueError(f"{sp_path}: rows out of range or overlapping for {n} yeast rows")
    info: dict = {"source": str(p), "split_file": str(sp_path), "standardized": bool(standardize)}
    if standardize:
        mean = x[idx["train"]].mean(axis=0)
        std = x[idx["train"]].std(axis=0)
        # Constant features would divide by zero; leave them centred instead.
        std = np.where(std > 0, std, 1.0)
        x = (x - mean) / std
        info["feature_mean"] = mean.astype(np.float32).tolist()
        info["feature_std"] = std.astype(np.float32).tolist()
    x = x.astype(np.float32)
    import scipy.sparse as sp

    y = y.astype(np.uint8)
    splits = {
        k: Split(k, np.ascontiguousarray(x[ix]), sp.csr_matrix(y[ix]), [str(int(i)) for i in ix])
        for k, ix in idx.items()
    }
    return MultiLabelDataset("yeast", "vector", list(label_cols), splits, None, info)
