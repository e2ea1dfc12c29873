"""Yeast: river's file + the bundled standard split."""

import json

import numpy as np
import pytest

from mlsupcon.data import load_dataset
from mlsupcon.data.text import bundled_path


@pytest.fixture(scope="module")
def yeast():
    return load_dataset("yeast")


def test_yeast_shapes(yeast):
    ds = yeast
    assert ds.modality == "vector" and ds.hierarchy is None
    assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [1200, 300, 917]
    assert ds.label_names == [f"Class{i}" for i in range(1, 15)]
    for s in ds.splits.values():
        assert s.inputs.dtype == np.float32 and s.inputs.shape == (len(s), 103)
        assert s.labels.shape == (len(s), 14) and s.labels.dtype == np.uint8
    # Test = Mulan test set = rows 0..916 of the river file
    assert ds.splits["test"].ids[:3] == ["0", "1", "2"]
    card = ds.splits["train"].labels.sum() / 1200
    assert 4.0 < card < 4.5


def test_yeast_standardised_on_train_only(yeast):
    tr = yeast.splits["train"].inputs
    assert np.allclose(tr.mean(0), 0, atol=1e-5) and np.allclose(tr.std(0), 1, atol=1e-4)
    te = yeast.splits["test"].inputs
    assert not np.allclose(te.mean(0), 0, atol=1e-3)  # test statistics did not enter
    assert len(yeast.info["feature_mean"]) == 103


def test_yeast_split_rows_match_bundled_file(yeast):
    with open(bundled_path("yeast_split.json")) as f:
        rows = json.load(f)
    for k in ("train", "validation", "test"):
        assert yeast.splits[k].ids == [str(i) for i in rows[k]]


def test_yeast_raw_option():
    raw = load_dataset("yeast", standardize=False, max_examples_per_split=10)
    assert [len(raw.splits[s]) for s in raw.splits] == [10, 10, 10]
    assert raw.splits["train"].inputs.shape == (10, 103)
