"""Text datasets: bundled Debtags, generic JSONL / CSV files, options and errors."""

import gzip
import json

import numpy as np
import pytest
import scipy.sparse as sp

from mlsupcon.data import MultiLabelDataset, Split, load_dataset, seeded_split
from mlsupcon.data.base import top_k_restrict


@pytest.fixture(scope="module")
def debtags():
    return load_dataset("debtags")


def test_debtags_counts_and_types(debtags):
    ds = debtags
    assert isinstance(ds, MultiLabelDataset)
    assert ds.name == "debtags" and ds.modality == "text"
    assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [23078, 2892, 2933]
    assert ds.num_labels == len(ds.label_names) == 597
    assert ds.label_names == sorted(ds.label_names)
    tr = ds.splits["train"]
    assert isinstance(tr, Split)
    assert isinstance(tr.inputs, list) and isinstance(tr.inputs[0], str) and tr.inputs[0].strip()
    assert sp.isspmatrix_csr(tr.labels) and tr.labels.dtype == np.uint8
    assert tr.labels.shape == (23078, 597) and tr.labels.max() == 1
    assert len(tr.ids) == 23078 and tr.ids[0] == "0ad"
    first = tr.label_lists(ds.label_names)[0]
    assert "game::strategy" in first and "use::gameplaying" in first
    # labels per example, as documented in DEBTAGS_README.md
    total = sum(int(ds.splits[s].labels.sum()) for s in ds.splits)
    assert abs(total / 28903 - 3.74) < 0.01


def test_debtags_hierarchy(debtags):
    h = debtags.hierarchy
    assert h.fine_names == debtags.label_names
    assert len(h.coarse_names) == 31
    assert h.coarse_of("use::editing") == "use"
    assert h.coarse_of("implemented-in::python") == "implemented-in"
    y = debtags.splits["train"].label_tensor([0])
    facets, tags = h.levels(y)
    assert facets.shape == (1, 31) and bool((facets[0, h.parent[y[0].nonzero().flatten().numpy()]] == 1).all())


def test_debtags_top_k(debtags):
    ds = top_k_restrict(debtags, 50)
    assert ds.num_labels == 50
    counts = debtags.splits["train"].label_counts()
    kept_counts = counts[[debtags.label_names.index(n) for n in ds.label_names]]
    assert kept_counts.min() >= np.sort(counts)[::-1][49]
    assert len(ds.splits["train"]) == 23078  # examples are never dropped
    rep = ds.info["top_k_labels"]
    assert rep["labels_kept"] == 50 and rep["examples_without_labels"]["train"] > 0
    assert ds.hierarchy.fine_names == ds.label_names


# ---------------------------------------------------------------- generic files


def _records(n=20):
    rows = []
    for i in range(n):
        labels = ["a::x"] if i % 2 else ["a::y", "b::z"]
        if i % 5 == 0:
            labels.append("c::w")
        rows.append({"id": f"doc{i}", "text": f"document number {i}", "labels": labels})
    return rows


def _write_jsonl(path, rows, gz=False):
    data = "\n".join(json.dumps(r) for r in rows) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def test_jsonl_with_split_field(tmp_path):
    rows = _records(12)
    for i, r in enumerate(rows):
        r["split"] = ["train", "val", "test"][i % 3]  # "val" is an accepted alias
    p = _write_jsonl(tmp_path / "d.jsonl.gz", rows, gz=True)
    ds = load_dataset(f"jsonl:{p}")
    assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [4, 4, 4]
    assert ds.label_names == ["a::x", "a::y", "b::z", "c::w"]
    assert ds.splits["train"].ids == ["doc0", "doc3", "doc6", "doc9"]
    assert ds.hierarchy is not None and ds.hierarchy.coarse_names == ["a", "b", "c"]
    assert ds.info["split"]["seeded"] is False


def test_jsonl_custom_fields_seeded_split(tmp_path):
    rows = [{"body": r["text"], "tags": r["labels"]} for r in _records(40)]
    p = _write_jsonl(tmp_path / "d.jsonl", rows)
    a = load_dataset(f"jsonl:{p}", text_field="body", label_field="tags", seed=3)
    b = load_dataset(f"jsonl:{p}", text_field="body", label_field="tags", seed=3)
    c = load_dataset(f"jsonl:{p}", text_field="body", label_field="tags", seed=4)
    assert [len(a.splits[s]) for s in ("train", "validation", "test")] == [32, 4, 4]
    assert a.splits["test"].ids == b.splits["test"].ids
    assert a.splits["test"].ids != c.splits["test"].ids
    allids = sorted(sum((a.splits[s].ids for s in a.splits), []), key=int)
    assert allids == [str(i) for i in range(40)]  # partition, record numbers as ids
    assert a.info["split"] == {"seeded": True, "seed": 3, "fractions": [0.8, 0.1, 0.1]}


def test_seeded_split_function():
    s1, s2 = seeded_split(100, 7), seeded_split(100, 7)
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert sorted(np.concatenate(list(s1.values())).tolist()) == list(range(100))
    assert [len(s1[k]) for k in ("train", "validation", "test")] == [80, 10, 10]
    with pytest.raises(ValueError, match="split_fractions"):
        seeded_split(10, 0, (0.5, 0.5, 0.5))


def test_csv_layout_and_separator(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(
        "id,text,labels,split\n"
        "1,first doc,x|y,train\n"
        "2,\"second, quoted\",y,validation\n"
        "3,third doc,,test\n"
        "4,fourth doc,z| x ,train\n",
        encoding="utf-8",
    )
    ds = load_dataset(f"csv:{p}", label_separator="|")
    assert ds.label_names == ["x", "y", "z"]
    assert ds.splits["train"].label_lists(ds.label_names) == [["x", "y"], ["x", "z"]]
    assert ds.splits["test"].labels.sum() == 0  # empty labels cell = no labels
    assert ds.splits["validation"].inputs == ["second, quoted"]
    assert ds.hierarchy is None  # no "::" in the labels


def test_top_k_and_subsample_options(tmp_path):
    p = _write_jsonl(tmp_path / "d.jsonl", _records(50))
    ds = load_dataset(f"jsonl:{p}", top_k_labels=2, seed=1)
    assert ds.label_names == ["a::x", "a::y"]  # c::w and b::z (tie with a::y, later in order) dropped
    sub = load_dataset(f"jsonl:{p}", max_examples_per_split=3, seed=1)
    sub2 = load_dataset(f"jsonl:{p}", max_examples_per_split=3, seed=1)
    assert [len(sub.splits[s]) for s in ("train", "validation", "test")] == [3, 3, 3]
    assert sub.splits["train"].ids == sub2.splits["train"].ids
    assert sub.num_labels == 4  # vocabulary of the full data
    with pytest.raises(ValueError, match="top_k_labels"):
        load_dataset(f"jsonl:{p}", top_k_labels=0)


# ---------------------------------------------------------------- errors


def test_unknown_dataset_and_option():
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'.*valid choices: .*debtags"):
        load_dataset("nope")
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'label_feild'.*valid options: .*label_field"):
        load_dataset("jsonl:x.jsonl", label_feild="x")
    with pytest.raises(ValueError, match="takes no path"):
        load_dataset("debtags:foo")
    with pytest.raises(ValueError, match="needs a path"):
        load_dataset("csv")


def test_malformed_jsonl_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in _records(5)]
    lines.insert(2, '{"text": "oops", "labels": [}')
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"malformed JSONL at line 3 of .*bad\.jsonl"):
        load_dataset(f"jsonl:{p}")


def test_missing_field_and_empty_text(tmp_path):
    p = _write_jsonl(tmp_path / "m.jsonl", [{"text": "ok", "labels": []}, {"text": "no labels"}])
    with pytest.raises(ValueError, match=r"line 2 of .*m\.jsonl: missing field 'labels'"):
        load_dataset(f"jsonl:{p}")
    p = _write_jsonl(tmp_path / "e.jsonl", [{"text": "ok", "labels": []}, {"text": "  ", "labels": ["a"]}])
    with pytest.raises(ValueError, match=r"empty text at line 2 of .*e\.jsonl \(field 'text'\)"):
        load_dataset(f"jsonl:{p}")
    p = _write_jsonl(tmp_path / "l.jsonl", [{"text": "ok", "labels": "a;b"}])
    with pytest.raises(ValueError, match="must be a list of strings"):
        load_dataset(f"jsonl:{p}")


def test_unknown_split_names(tmp_path):
    rows = _records(3)
    for r, s in zip(rows, ["train", "holdout", "tst"]):
        r["split"] = s
    p = _write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(ValueError, match=r"unknown split name\(s\).*'holdout'.*'tst'"):
        load_dataset(f"jsonl:{p}")
    rows[1]["split"] = "test"
    del rows[2]["split"]
    p = _write_jsonl(tmp_path / "s2.jsonl", rows)
    with pytest.raises(ValueError, match="line 3 of .*missing split field 'split'"):
        load_dataset(f"jsonl:{p}")


def test_csv_errors(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("TEXT,CODES\nhello,a\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing column 'LABELS' in .*c\.csv \(columns: TEXT, CODES\)"):
        load_dataset(f"csv:{p}", text_field="TEXT", label_field="LABELS")
    p.write_text("text,labels\nhello,a\n,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty text at row 2 of .*c\.csv"):
        load_dataset(f"csv:{p}")
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        load_dataset(f"csv:{tmp_path / 'nothere.csv'}")
