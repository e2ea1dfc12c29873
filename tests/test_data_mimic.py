"""MIMIC loaders on tiny generated fixtures (never real MIMIC)."""

import pandas as pd
import pytest

from mlsupcon.data import load_dataset

CAML_ROWS = {
    "train": [
        (1, 101, "pt with chf exacerbation", "428.0;401.9;96.04"),
        (2, 102, "acute renal failure", "584.9;428.0"),
        (3, 103, "motor vehicle accident", "E812.0;V12.54"),
        (4, 104, "hypertension follow up", "401.9"),
    ],
    "dev": [(5, 105, "heart failure again", "428.0;428.1")],
    "test": [(6, 106, "no codes of note", ""), (7, 107, "renal", "584.9")],
}


def _write_caml(d, version="full"):
    d.mkdir(parents=True, exist_ok=True)
    for split, rows in CAML_ROWS.items():
        df = pd.DataFrame(rows, columns=["SUBJECT_ID", "HADM_ID", "TEXT", "LABELS"])
        df["length"] = df["TEXT"].str.split().str.len()
        df.to_csv(d / f"{split}_{version}.csv", index=False)
    return d


def test_caml_full(tmp_path):
    d = _write_caml(tmp_path / "mimic3")
    ds = load_dataset(f"mimic-caml:{d}")
    assert ds.modality == "text"
    assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [4, 1, 2]
    assert ds.label_names == sorted(["428.0", "401.9", "96.04", "584.9", "E812.0", "V12.54", "428.1"])
    assert ds.splits["train"].ids == ["101", "102", "103", "104"]
    assert ds.splits["test"].labels[0].sum() == 0  # empty LABELS kept as no labels
    h = ds.hierarchy
    assert h.level_titles == ["chapter", "category", "code"]
    assert h.coarse_of("428.0") == "428" and h.coarse_of("428.1") == "428"
    assert h.coarse_of("E812.0") == "E812" and h.coarse_of("96.04") == "proc:96"
    assert h.ancestors_of("584.9")[0].startswith("ICD-9 580-629")
    y = ds.splits["validation"].label_tensor()
    chapter, category, code = h.levels(y)
    assert category.sum() == 1 and chapter.sum() == 1


def test_caml_50_top_k_and_no_chapters(tmp_path):
    d = _write_caml(tmp_path / "m", version="50")
    ds = load_dataset(f"mimic-caml:{d}", version="50", top_k_labels=2, icd_chapters=False)
    assert ds.label_names == ["401.9", "428.0"]  # most frequent in train, ties by vocabulary order
    assert ds.hierarchy.depth == 2 and ds.hierarchy.coarse_names == ["401", "428"]
    rep = ds.info["top_k_labels"]
    assert rep["examples_without_labels"] == {"train": 1, "validation": 0, "test": 2}


def test_caml_errors(tmp_path):
    d = _write_caml(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match=r"train_50\.csv"):
        load_dataset(f"mimic-caml:{d}", version="50")
    with pytest.raises(ValueError, match="version must be"):
        load_dataset(f"mimic-caml:{d}", version="100")
    df = pd.read_csv(d / "train_full.csv").drop(columns=["LABELS"])
    df.to_csv(d / "train_full.csv", index=False)
    with pytest.raises(ValueError, match=r"missing column 'LABELS' in .*train_full\.csv "
                                         r"\(columns: SUBJECT_ID, HADM_ID, TEXT, length\)"):
        load_dataset(f"mimic-caml:{d}")
    d2 = _write_caml(tmp_path / "m2")
    df = pd.read_csv(d2 / "test_full.csv", keep_default_na=False)
    df.loc[1, "TEXT"] = ""
    df.to_csv(d2 / "test_full.csv", index=False)
    with pytest.raises(ValueError, match=r"empty text at row 2 of .*test_full\.csv \(field 'TEXT'\)"):
        load_dataset(f"mimic-caml:{d2}")
    with pytest.raises(FileNotFoundError, match="MIMIC directory not found"):
        load_dataset(f"mimic-caml:{tmp_path / 'absent'}")


def _write_repro(d, split_name="mimiciv_icd10_split.feather", id_col="_id"):
    d.mkdir(parents=True, exist_ok=True)
    data = pd.DataFrame(
        {
            id_col: [11, 12, 13, 14, 15, 16],
            "subject_id": [1, 1, 2, 3, 4, 5],
            "text": ["chf note", "htn note", "pcs note", "covid note", "no split row", "z note"],
            "target": [
                ["I50.9", "0DTJ4ZZ"],
                ["I10."],
                ["0DTJ4ZZ", "D70.1"],
                ["U07.1", "I10."],
                ["I50.9"],
                ["Z38.00"],
            ],
            "icd10_diag": [["I50.9"], ["I10."], ["D70.1"], ["U07.1", "I10."], ["I50.9"], ["Z38.00"]],
            "icd10_proc": [["0DTJ4ZZ"], [], ["0DTJ4ZZ"], [], [], []],
            "num_words": [2, 2, 2, 2, 3, 2],
            "num_targets": [2, 1, 2, 2, 1, 1],
        }
    )
    data.to_feather(d / "mimiciv_icd10.feather")
    splits = pd.DataFrame({id_col: [11, 12, 13, 14, 16], "split": ["train", "train", "val", "test", "train"]})
    if split_name.endswith(".csv"):
        splits.to_csv(d / split_name, index=False)
    else:
        splits.to_feather(d / split_name)
    return d


def test_repro_feather(tmp_path):
    d = _write_repro(tmp_path / "mimiciv_icd10")
    ds = load_dataset(f"mimic-repro:{d}")
    assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [3, 1, 1]
    assert ds.info["rows_without_split"] == 1  # inner join, as in Edin et al.
    assert ds.splits["train"].ids == ["11", "12", "16"]
    assert set(ds.label_names) == {"I50.9", "0DTJ4ZZ", "I10.", "D70.1", "U07.1", "Z38.00"}
    h = ds.hierarchy
    assert h.coarse_of("I50.9") == "I50" and h.coarse_of("I10.") == "I10"
    assert h.coarse_of("0DTJ4ZZ") == "pcs:0DT" and h.coarse_of("D70.1") == "D70"
    assert h.ancestors_of("U07.1")[0].startswith("ICD-10 U00-U85")
    assert h.ancestors_of("0DTJ4ZZ")[0].startswith("ICD-10-PCS 0")


def test_repro_csv_split_note_id_and_explicit_files(tmp_path):
    d = _write_repro(tmp_path / "r", split_name="my_split.csv", id_col="note_id")
    ds = load_dataset(f"mimic-repro:{d}", split_file="my_split.csv")
    assert len(ds.splits["train"]) == 3
    # The data file itself may be given as the path
    ds2 = load_dataset(f"mimic-repro:{d / 'mimiciv_icd10.feather'}", split_file="my_split.csv")
    assert ds2.splits["test"].ids == ds.splits["test"].ids


def test_repro_errors(tmp_path):
    d = _write_repro(tmp_path / "r")
    bad = pd.DataFrame({"_id": [11], "split": ["holdout"]})
    bad.to_feather(d / "other_split.feather")
    with pytest.raises(ValueError, match=r"unknown split name\(s\).*'holdout'"):
        load_dataset(f"mimic-repro:{d}", split_file="other_split.feather")
    with pytest.raises(ValueError, match=r"missing column 'labels' in .*mimiciv_icd10\.feather"):
        load_dataset(f"mimic-repro:{d}", label_field="labels")
    (d / "second.feather").write_bytes((d / "mimiciv_icd10.feather").read_bytes())
    with pytest.raises(ValueError, match="pass data_file"):
        load_dataset(f"mimic-repro:{d}")
