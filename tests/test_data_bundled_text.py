"""The bundled text sets ``reuters`` and ``eurlex-sum``: sizes, labels, lengths, ids (the shipped files)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from mlsupcon.data import load_dataset
from mlsupcon.data.registry import available_datasets, dataset_options
from mlsupcon.data.text import bundled_path

SPLITS = ("train", "validation", "test")

# name: (splits, labels, labels in train, mean words (low, high), mean labels per document)
EXPECTED = {
    "reuters": ((6993, 777, 3019), 90, 90, (120, 135), 1.24),
    "eurlex-sum": ((1129, 187, 188), 154, 135, (1900, 1940), 2.18),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def loaded(request):
    return request.param, load_dataset(request.param)


def test_registered():
    names = available_datasets()
    assert "reuters" in names and "eurlex-sum" in names
    assert "label_field" in dataset_options("eurlex-sum")
    with pytest.raises(ValueError, match="takes no path"):
        load_dataset("reuters:somewhere.jsonl")


def test_sizes_labels_lengths(loaded):
    name, ds = loaded
    sizes, n_labels, in_train, (lo, hi), per_doc = EXPECTED[name]
    assert ds.name == name and ds.modality == "text"
    assert tuple(len(ds.splits[s]) for s in SPLITS) == sizes
    assert ds.num_labels == n_labels == len(set(ds.label_names))
    train = ds.splits["train"].labels
    assert int((np.asarray(train.sum(axis=0)).ravel() > 0).sum()) == in_train
    texts = [t for s in SPLITS for t in ds.splits[s].inputs]
    assert all(isinstance(t, str) and t.strip() for t in texts)
    words = np.mean([len(t.split()) for t in texts])
    assert lo <= words <= hi
    rows = [ds.splits[s].labels for s in SPLITS]
    counts = np.concatenate([np.asarray(r.sum(axis=1)).ravel() for r in rows])
    assert counts.min() >= 1  # every document has a label
    assert counts.mean() == pytest.approx(per_doc, abs=0.01)


def test_ids_unique_and_disjoint(loaded):
    _, ds = loaded
    ids = [i for s in SPLITS for i in ds.splits[s].ids]
    assert len(ids) == len(set(ids))


def test_eurlex_long_and_eurovoc():
    ds = load_dataset("eurlex-sum", label_field="eurovoc")
    assert ds.num_labels == 2285
    assert max(len(t.split()) for t in ds.splits["test"].inputs) == 2000  # the documented cut
    with pytest.raises(ValueError, match="label_field"):
        load_dataset("eurlex-sum", label_field="tags")


def test_files_are_the_documented_layout():
    for file, extra in (("reuters.jsonl.gz", set()), ("eurlex_sum.jsonl.gz", {"eurovoc"})):
        with gzip.open(bundled_path(file), "rt", encoding="utf-8") as f:
            first = json.loads(f.readline())
        assert set(first) == {"id", "split", "text", "labels"} | extra
