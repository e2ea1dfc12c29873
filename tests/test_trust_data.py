"""Data a user can trust (issue 19): a field the user names must exist, a byte that is not UTF-8
is reported at its line, predict's inputs follow train's rules, labels that cannot be learnt are
reported, and ``evaluate --split all`` scores every row of a file.

Everything here reads small generated files; one tiny vector run (bce, one epoch) for evaluate.
"""

from __future__ import annotations

import gzip
import json
import warnings
from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import fixtures_pipeline as fp
import numpy as np
import pytest
from fixtures_pipeline import assert_user_error, run_cli

from mlsupcon.data import DataWarning, load_dataset
from mlsupcon.data.inputs import read_inputs


def _rows(n: int = 60, split: bool = True) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"id": f"d{i}", "text": f"document {i} about things", "labels": ["a" if i % 2 else "b"]}
        if split:
            row["split"] = ("train", "train", "train", "validation", "test")[i % 5]
        rows.append(row)
    return rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _csv(path: Path, rows: list[dict], sep: str = ",") -> Path:
    cols = list(rows[0])
    lines = [sep.join(cols)] + [sep.join(";".join(r[c]) if isinstance(r[c], list) else str(r[c]) for c in cols)
                                for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ============================================================================ 3. a named field must exist


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
@pytest.mark.parametrize("option", ["split_field", "id_field"])
def test_a_named_field_that_the_file_lacks_is_an_error(tmp_path, kind, option):
    path = (_jsonl if kind == "jsonl" else _csv)(tmp_path / f"d.{kind}", _rows())
    with pytest.raises(ValueError) as info:
        load_dataset(f"{kind}:{path}", **{option: "fold"})
    message = _one_line(info)
    assert str(path) in message and "'fold'" in message and "labels" in message, message  # the fields there are
    # the defaults stay lenient: without split or id fields the file loads (seeded split, record numbers)
    bare = (_jsonl if kind == "jsonl" else _csv)(tmp_path / f"bare.{kind}",
                                                 [{"text": r["text"], "labels": r["labels"]} for r in _rows()])
    ds = load_dataset(f"{kind}:{bare}")
    assert ds.info["split"]["seeded"] is True and ds.splits["train"].ids[0] == "0"
    # split_field: None still ignores a split column
    assert load_dataset(f"{kind}:{path}", split_field=None).info["split"]["seeded"] is True
    # and a named field that exists is used
    assert load_dataset(f"{kind}:{path}", split_field="split").info["split"]["seeded"] is False


def test_train_split_field_flag_and_yaml_option_must_name_a_field(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", _rows())
    rc, _, err = run_cli(["train", "--dataset", f"jsonl:{path}", "--split-field", "fold", "--output",
                          str(tmp_path / "run"), "--no-progress"])
    assert_user_error(rc, err, str(path), "'fold'", "'split'")
    cfg = fp.write_yaml(tmp_path / "c.yaml", {"dataset": f"jsonl:{path}", "dataset_options": {"split_field": "fold"}})
    rc, _, err = run_cli(["train", "--config", str(cfg), "--output", str(tmp_path / "run2"), "--no-progress"])
    assert_user_error(rc, err, str(path), "'fold'")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


def test_predict_id_field_must_name_a_field(tmp_path):
    from mlsupcon.cli.main import build_parser
    from mlsupcon.cli.predict import _read

    path = _jsonl(tmp_path / "in.jsonl", [{"id": f"x{i}", "text": f"doc {i}"} for i in range(3)])
    csv_path = _csv(tmp_path / "in.csv", [{"id": f"x{i}", "text": f"doc {i}"} for i in range(3)])
    for p in (path, csv_path):
        with pytest.raises(ValueError) as info:
            read_inputs(p, "text", id_field="name")
        message = _one_line(info)
        assert str(p) in message and "'name'" in message and "id" in message and "--id-field" in message, message
    # the command's default is "the id field when there is one"
    args = build_parser().parse_args(["predict", "RUN", "--input", str(path), "--output", "o.jsonl"])
    assert args.id_field is None
    assert _read(args, SimpleNamespace(modality="text")) == ([f"doc {i}" for i in range(3)], ["x0", "x1", "x2"])
    with pytest.raises(ValueError, match="'name'"):
        _read(Namespace(**{**vars(args), "id_field": "name"}), SimpleNamespace(modality="text"))
    # a .txt file has no fields: naming one is an error too
    txt = tmp_path / "in.txt"
    txt.write_text("one\ntwo\n")
    with pytest.raises(ValueError, match="--id-field"):
        read_inputs(txt, "text", id_field="name")


# ============================================================================ 11. bytes that are not UTF-8


def _bad_bytes(path: Path, good: str, line: int, column: int) -> Path:
    """``good`` with byte 0xff inserted at ``line`` (1-based), before character ``column`` (1-based)."""
    lines = good.splitlines(keepends=True)
    raw = lines[line - 1].encode()
    prefix = lines[line - 1][: column - 1].encode()
    lines_b = [x.encode() for x in lines]
    lines_b[line - 1] = prefix + b"\xff" + raw[len(prefix):]
    data = b"".join(lines_b)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def _assert_utf8_message(message: str, path: Path, line: int, column: int) -> None:
    assert "\n" not in message, message
    assert f"line {line} of {path}" in message, message
    assert "not valid UTF-8" in message and "0xff" in message and f"column {column}" in message, message


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz", "d.csv", "d.tsv", "d.csv.gz"])
def test_a_byte_that_is_not_utf8_names_file_line_and_column(tmp_path, name):
    rows = _rows()
    rows[5]["text"] = "café au lait"  # a good multi-byte character before the bad byte on the same line
    if ".jsonl" in name:
        good = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        line, column = 6, 27  # after the "é" of '{"id": "d5", "text": "café': characters, not bytes
    else:
        sep = "\t" if ".tsv" in name else ","
        good = "\n".join([sep.join(rows[0])] + [sep.join(";".join(v) if isinstance(v, list) else v
                                                         for v in r.values()) for r in rows]) + "\n"
        line, column = 7, 10  # line 7 = row 6 after the header
    path = _bad_bytes(tmp_path / name, good, line, column)
    spec = ("jsonl:" if ".jsonl" in name else "csv:") + str(path)
    with pytest.raises(ValueError) as info:
        load_dataset(spec)
    _assert_utf8_message(str(info.value), path, line, column)
    # predict's inputs: the same message
    with pytest.raises(ValueError) as info:
        read_inputs(path, "text")
    _assert_utf8_message(str(info.value), path, line, column)


def test_a_txt_input_that_is_not_utf8(tmp_path):
    path = _bad_bytes(tmp_path / "in.txt", "first\nsecond\nthird é x\n", 3, 9)
    with pytest.raises(ValueError) as info:
        read_inputs(path, "text")
    _assert_utf8_message(str(info.value), path, 3, 9)


# ============================================================================ 16. predict's inputs follow train's rules


def test_predict_inputs_follow_the_training_rules(tmp_path):
    def error(name: str, content: str) -> str:
        p = tmp_path / name
        p.write_text(content)
        with pytest.raises(ValueError) as info:
            read_inputs(p, "text")
        message = _one_line(info)
        assert str(p) in message, message
        return message

    line = error("empty.jsonl", '{"text": "a"}\n{"text": "  "}\n')
    assert "empty text" in line and "line 2" in line
    assert "row 2" in error("empty.csv", "id,text\nx,a\ny,\n")
    assert "line 2" in error("empty.txt", "a\n  \nc\n")
    dup = error("dup.jsonl", '{"id": "x", "text": "a"}\n{"id": "y", "text": "b"}\n{"id": "x", "text": "c"}\n')
    assert "duplicate id 'x'" in dup and "line 1 and line 3" in dup
    assert "row 1 and row 2" in error("dup.csv", "id,text\nx,a\nx,b\n")
    some = error("some.jsonl", '{"id": "x", "text": "a"}\n{"text": "b"}\n')
    assert "line 2" in some and "id" in some
    assert "row 2" in error("some.csv", "id,text\nx,a\n,b\n")
    # the same rules in training: ids on some records only
    rows = _rows()
    del rows[3]["id"]
    with pytest.raises(ValueError, match="line 4"):
        load_dataset(f"jsonl:{_jsonl(tmp_path / 'train.jsonl', rows)}")


def test_inputs_without_ids_are_numbered_for_predict_and_embed(tmp_path):
    """One rule: an input without ids gets its 0-based record number as id (as train numbers records)."""
    txt = tmp_path / "in.txt"
    txt.write_text("first\nsecond\nthird\n\n")  # trailing empty lines are not inputs
    assert read_inputs(txt, "text") == (["first", "second", "third"], ["0", "1", "2"])
    jl = _jsonl(tmp_path / "in.jsonl", [{"text": "a"}, {"text": "b"}])
    assert read_inputs(jl, "text")[1] == ["0", "1"]
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((3, 2), dtype=np.float32))
    assert read_inputs(npy, "vector")[1] == ["0", "1", "2"]


# ============================================================================ 18. labels that cannot be learnt


def test_labels_without_training_examples_are_reported(tmp_path):
    from mlsupcon.training.config import TrainConfig
    from mlsupcon.training.input_checks import check_training_data

    rows = _rows()
    for i, r in enumerate(rows):
        if r["split"] == "validation" and i % 2:
            r["labels"] = r["labels"] + ["val_only"]
        if r["split"] == "test":
            r["labels"] = r["labels"] + ["test_only", "test_only2"]
    path = _jsonl(tmp_path / "d.jsonl", rows)
    ds = load_dataset(f"jsonl:{path}")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_training_data(TrainConfig(method="bce", dataset=f"jsonl:{path}"), ds)
        check_training_data(TrainConfig(method="bce", dataset=f"jsonl:{path}"), ds)  # once
    messages = [str(w.message) for w in seen if issubclass(w.category, DataWarning)]
    no_train = [m for m in messages if "no training example" in m]
    only_test = [m for m in messages if "only in the test split" in m]
    assert len(no_train) == 1 and len(only_test) == 1, messages
    assert "3 of 5 labels" in no_train[0] and "test_only" in no_train[0] and f"jsonl:{path}" in no_train[0]
    assert "2 of 5 labels" in only_test[0] and "test_only2" in only_test[0] and "val_only" not in only_test[0]
    # data where every label has training examples: no such warning
    clean = load_dataset(f"jsonl:{_jsonl(tmp_path / 'clean.jsonl', _rows())}")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_training_data(TrainConfig(method="bce"), clean)
    assert not [w for w in seen if "training example" in str(w.message)]


def test_evaluate_split_all_and_another_file_without_the_runs_split_field(tmp_path):
    """``--split all`` scores every row; the run's split_field (named for its training file) is
    optional in another file, and used where the file has it."""
    from mlsupcon.training.inference import evaluate_model

    rows = _rows(60)
    for r in rows:
        r["part"] = r.pop("split")
    data = _jsonl(tmp_path / "train.jsonl", rows)
    run = tmp_path / "run"
    cfg = fp.write_yaml(tmp_path / "c.yaml", {"encoder_options": fp.TINY_CNN, "projection_dim": 8})
    rc, _, err = run_cli(["train", "--dataset", f"jsonl:{data}", "--split-field", "part", "--encoder", "cnn",
                          "--method", "bce", "--epochs", "1", "--batch-size", "16", "--config", str(cfg),
                          "--output", str(run), "--no-progress"])
    assert rc == 0, err
    other = _jsonl(tmp_path / "other.jsonl", [{"text": r["text"], "labels": r["labels"]} for r in rows])
    rc, out, err = run_cli(["evaluate", str(run), "--dataset", f"jsonl:{other}", "--split", "all"])
    assert rc == 0, err
    assert "scored split 'all'" in out and "60 examples" in out
    m = evaluate_model(run, split="all", return_scores=True)
    test = evaluate_model(run, split="test", return_scores=True)
    assert m["split"] == "all" and m["num_examples"] == 60 and test["num_examples"] == 12
    rows_scored = {tuple(np.round(r, 6)) for r in m["scores"]}  # the test rows are among them, same scores
    assert all(tuple(np.round(r, 6)) in rows_scored for r in test["scores"])
    rc, _, err = run_cli(["evaluate", str(run), "--split", "everything"])
    assert_user_error(rc, err, "'all'", "test")
    rc, out, err = run_cli(["evaluate", str(run), "--split", "test"])  # the run's own file: its split column
    assert rc == 0, err
    assert "12 examples" in out
    # named on the command line, it must exist
    rc, _, err = run_cli(["evaluate", str(run), "--dataset", f"jsonl:{other}", "--dataset-option", "split_field=part"])
    assert_user_error(rc, err, "'part'", str(other))
