"""What a person sees: progress lines and bars, compare's bold marking and figures, data-format flags."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import fixtures_pipeline as fp
import matplotlib.figure
import numpy as np
import pytest

from mlsupcon.training.compare import BEST_RULE, best_row, make_figures, results_table, training_curve_panels

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {"encoder_options": fp.TINY_MLP, "projection_dim": 16}
YEAST = ["--dataset", "yeast", "--encoder", "mlp", "--batch-size", "32", "--max-examples", "120"]
SUMMARY = re.compile(r"^mlsupcon: \[(\w+)\] epoch (\d+)/(\d+)  (.*)  lr (\S+)  \((\d+\.\d) s\)$")


def _log_rows(path: Path) -> dict[int, dict[str, float]]:
    """Per 0-based epoch, every value of a Lightning CSV log."""
    out: dict[int, dict[str, float]] = {}
    with open(path) as fh:
        for r in csv.DictReader(fh):
            out.setdefault(int(r["epoch"]), {}).update({k: float(v) for k, v in r.items() if v not in ("", None)})
    return out


# ------------------------------------------------------------------------------------ progress


def test_no_progress_prints_one_line_per_epoch_counted_from_one(tmp_path):
    run = tmp_path / "run"
    # stage-1 kNN selection stated: the yeast preset turns it off
    cfg = fp.write_yaml(tmp_path / "c.yaml", {**TINY, "patience": 5, "stage1_selection": True})
    rc, out, err = fp.run_cli(["train", *YEAST, "--method", "two-stage", "--loss", "simdis", "--epochs", "2",
                               "--classifier-epochs", "3", "--config", str(cfg), "--output", str(run),
                               "--no-progress"])
    assert rc == 0, err
    lines = [m for m in map(SUMMARY.match, err.splitlines()) if m]
    assert [(m[1], int(m[2]), int(m[3])) for m in lines] == [
        ("contrastive", 1, 2), ("contrastive", 2, 2), ("classifier", 1, 3), ("classifier", 2, 3),
        ("classifier", 3, 3)]
    assert "epoch" not in out  # the summaries go to stderr, not into the metrics printed on stdout
    # Each line holds that epoch's values of the logged metrics (full names), as the stage's CSV log has them.
    for m in lines:
        stage, epoch = m[1], int(m[2])
        values = {k: float(v) for k, v in (p.split(" ") for p in m[4].split("  "))}
        logged = _log_rows(run / "logs" / stage / "metrics.csv")[epoch - 1]
        names = (["train/contrastive_loss", "val/contrastive_loss", "val/knn_map"] if stage == "contrastive"
                 else ["train/classifier_loss", "val/map"])
        assert sorted(values) == sorted(names), m[0]
        for name in names:
            assert values[name] == pytest.approx(logged[name], rel=1e-3), (stage, epoch, name)
        assert float(m[5]) == pytest.approx(logged["train/lr"], rel=0.06, abs=1e-12)


def test_the_progress_bar_names_the_stage_and_counts_epochs_from_one(tmp_path, monkeypatch):
    import mlsupcon.progress

    monkeypatch.setattr(mlsupcon.progress, "is_interactive", lambda stream=None: True)  # as on a terminal
    cfg = fp.write_yaml(tmp_path / "c.yaml", TINY)
    rc, out, err = fp.run_cli(["train", *YEAST, "--method", "bce", "--epochs", "2", "--config", str(cfg),
                               "--output", str(tmp_path / "run")])
    assert rc == 0, err
    bar = err.replace("\r", "\n")
    assert "[end_to_end] epoch 1/2" in bar and "[end_to_end] epoch 2/2" in bar
    assert "[end_to_end] validation" in bar and "train/classifier_loss=" in bar and "val/map=" in bar
    assert "Epoch 0" not in bar and "v_num" not in bar and "epoch 0/" not in bar
    assert not SUMMARY.search(err)  # the bar replaces the one-line summaries
    assert "[end_to_end]" not in out  # on stderr, not mixed into the results on stdout


def test_without_a_terminal_a_stage_reports_one_line_per_epoch_and_no_bar(tmp_path):
    cfg = fp.write_yaml(tmp_path / "c.yaml", TINY)
    rc, _, err = fp.run_cli(["train", *YEAST, "--method", "bce", "--epochs", "2", "--config", str(cfg),
                             "--output", str(tmp_path / "run")])  # progress on; captured stderr is no terminal
    assert rc == 0, err
    assert "\r" not in err
    assert sum(bool(SUMMARY.match(line)) for line in err.splitlines()) == 2, err


# ------------------------------------------------------------------------- compare's bold rule


def _rows(values: dict[str, list[float]]) -> list[dict]:
    return [{"loss": loss, "seed": i, "map": v} for loss, vs in values.items() for i, v in enumerate(vs)]


def _bold(table: str) -> dict[str, bool]:
    cells = {}
    for line in table.splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            parts = [p.strip() for p in line.strip("|").split("|")]
            cells[parts[0]] = parts[2].startswith("**")
    return cells


@pytest.mark.parametrize("values, expected", [
    # clearly ahead (0.10 > both stds of 0.01)
    ({"a": [0.80, 0.81, 0.82], "b": [0.70, 0.71, 0.72], "c": [0.1, 0.2, 0.3]}, "a"),
    # the lead 0.10 is larger than the best's spread (0) but not the runner-up's (0.15)
    ({"a": [0.80, 0.80, 0.80], "b": [0.55, 0.70, 0.85]}, None),
    # the lead 0.05 is within the best's own spread (0.07)
    ({"a": [0.60, 0.70, 0.65], "b": [0.60, 0.60, 0.60]}, None),
    # only the runner-up matters: a poor third row does not make the best stand out
    ({"a": [0.700, 0.705, 0.710], "b": [0.690, 0.700, 0.710], "c": [0.0, 0.0, 0.0]}, None),
    # one seed: no spread, no marking, however large the lead
    ({"a": [0.9], "b": [0.1]}, None),
    ({"a": [0.9, 0.91], "b": [0.1]}, None),
    # the best can be a later row; NaN values are ignored
    ({"a": [0.1, 0.12, float("nan")], "b": [0.5, 0.52, 0.51]}, "b"),
    # a single row has nothing to beat
    ({"a": [0.5, 0.6]}, None),
])
def test_best_mean_is_bold_only_beyond_the_seed_spread(values, expected):
    assert best_row(values) == expected
    table = results_table(_rows(values), list(values), ["map"])
    assert _bold(table) == {loss: loss == expected for loss in values}
    lines = table.splitlines()
    assert lines[-1] == BEST_RULE and lines[-2] == ""  # the rule is stated under the table
    means = {loss: np.nanmean(vs) for loss, vs in values.items()}
    if expected is not None:  # the rule as stated, recomputed here
        others = sorted((m for loss, m in means.items() if loss != expected), reverse=True)
        spread = max(np.nanstd(values[expected], ddof=1),
                     np.nanstd(values[next(k for k, m in means.items() if m == others[0])], ddof=1))
        assert means[expected] - others[0] > spread


# ------------------------------------------------------------------------------------ figures


def _write_log(path: Path, columns: dict[str, list[float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(columns)
    n = len(next(iter(columns.values())))
    lines = ["epoch,step," + ",".join(names)]
    for e in range(n):
        # Lightning writes validation and training values of an epoch on separate rows
        lines.append(f"{e},{e}," + ",".join(f"{columns[k][e]}" if k.startswith("val/") else "" for k in names))
        lines.append(f"{e},{e}," + ",".join("" if k.startswith("val/") else f"{columns[k][e]}" for k in names))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def compare_folder(tmp_path):
    """A compare folder as run_compare leaves it (seed 0): logs of a bce, a simdis and an all row,
    and test embeddings whose labels use only some of the dataset's labels."""
    from mlsupcon.data import load_dataset

    ds = load_dataset(f"jsonl:{fp.write_jsonl(tmp_path / 'data.jsonl', n=70)}")
    out = tmp_path / "cmp"
    logs = lambda loss: out / loss / "seed0" / "logs"  # noqa: E731
    _write_log(logs("bce") / "end_to_end" / "metrics.csv",
               {"train/classifier_loss": [0.7, 0.5, 0.4], "val/map": [0.3, 0.4, 0.45]})
    for loss, scale in (("simdis", 1.0), ("all", 5.0)):
        _write_log(logs(loss) / "contrastive" / "metrics.csv",
                   {"train/contrastive_loss": [scale * 1.2, scale * 1.1], "val/contrastive_loss": [scale * 1.3] * 2,
                    "val/knn_map": [0.3, 0.35]})
        _write_log(logs(loss) / "classifier" / "metrics.csv",
                   {"train/classifier_loss": [0.6, 0.5, 0.45, 0.44], "val/map": [0.35, 0.4, 0.42, 0.43]})
    rng = np.random.default_rng(0)
    labels = np.zeros((40, ds.num_labels), dtype=np.float32)
    labels[:15, 0] = 1
    labels[10:25, 2] = 1  # rows 25..39: none of the labels
    for loss in ("bce", "simdis", "all"):
        np.savez(out / loss / "seed0" / "embeddings_test.npz",
                 embeddings=rng.normal(size=(40, 8)).astype(np.float32), labels=labels)
    return out, ds, labels


def test_figures_of_a_small_compare_folder(compare_folder, monkeypatch):
    out, ds, labels = compare_folder
    legends = []
    original = matplotlib.figure.Figure.legend

    def record(self, *args, **kwargs):
        legends.append([h.get_label() for h in kwargs.get("handles", [])])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "legend", record)
    figures = make_figures(out, ds, ["bce", "simdis", "all"], [0], None)
    assert sorted(rel for rel, _ in figures.values()) == ["embeddings_tsne.png", "relations.png",
                                                           "training_curves.png"]
    for name, _ in figures.values():
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, name

    # The t-SNE legend: the (up to) 8 most frequent labels of the test split with their counts, and
    # "none of them" (rows 25..39 carry none). The drawn colours are checked in tests/test_figures.py.
    freq = np.asarray(ds.splits["test"].labels.sum(0), dtype=np.int64).ravel()  # int64: -freq must not wrap
    top = [j for j in np.argsort(-freq, kind="stable") if freq[j] > 0][:8]
    expected = [f"{ds.label_names[j][:28]} ({freq[j]})" for j in top] + ["none of them"]
    assert legends == [expected]


def test_training_curve_panels(compare_folder):
    out, _, _ = compare_folder
    panels = training_curve_panels(out, ["bce", "simdis", "all"], 0)
    titles = [title for title, _, _ in panels]
    assert titles == ["validation mAP of the classifier", "validation kNN mAP of the encoder (stage 1)",
                      "classifier loss (train, BCE)", "simdis: contrastive loss (stage 1)",
                      "all: contrastive loss (stage 1)"]  # each contrastive loss on its own axes
    by_title = {title: (ylabel, lines) for title, ylabel, lines in panels}
    ylabel, lines = by_title["validation mAP of the classifier"]
    assert ylabel == "mAP" and [label for label, *_ in lines] == ["bce", "simdis", "all"]
    # epochs counted from 1, one point per epoch
    assert [x for x, _ in lines[0][2]] == [1, 2, 3] and [x for x, _ in lines[1][2]] == [1, 2, 3, 4]
    assert [y for _, y in lines[0][2]] == [0.3, 0.4, 0.45]
    _, lines = by_title["all: contrastive loss (stage 1)"]
    assert [(label, row, style) for label, row, _, style in lines] == [("train", "all", "-"),
                                                                        ("validation", "all", "--")]
    assert lines[0][2] == [(1, 6.0), (2, 5.5)]


# --------------------------------------------------------------------------- data-format flags


def test_data_format_flags_set_dataset_options():
    from mlsupcon.cli.main import _overrides, build_parser
    from mlsupcon.training.config import load_config

    args = build_parser().parse_args(["train", "--text-field", "body", "--labels-field", "tags", "--split-field",
                                      "part", "--id-field", "key", "--label-separator", "|"])
    over = _overrides(args, "train")
    assert over == {"dataset_options.text_field": "body", "dataset_options.label_field": "tags",
                    "dataset_options.split_field": "part", "dataset_options.id_field": "key",
                    "dataset_options.label_separator": "|"}
    options = load_config(None, {"dataset": "csv:x.csv", **over}).dataset_options
    assert options == {"text_field": "body", "label_field": "tags", "split_field": "part", "id_field": "key",
                       "label_separator": "|"}
    # the names are the loaders' own keyword arguments
    from mlsupcon.data import dataset_options

    assert set(options) <= set(dataset_options("csv"))
    assert set(options) - {"label_separator"} <= set(dataset_options("jsonl"))


def _csv_with_other_names(tmp_path: Path) -> tuple[Path, list[dict]]:
    records = [json.loads(line) for line in fp.write_jsonl(tmp_path / "d.jsonl", n=84).read_text().splitlines()]
    alias = {"train": "training", "validation": "dev", "test": "test"}
    path = tmp_path / "tickets.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "body", "tags", "part", "text", "labels"])
        for r in records:  # decoy text/labels columns: only the flags' columns may be read
            w.writerow([r["id"], r["text"], "|".join(r["labels"]), alias[r["split"]], "decoy", "decoy;x"])
    return path, records


def test_a_csv_with_other_column_names_trains_with_the_flags(tmp_path):
    path, records = _csv_with_other_names(tmp_path)
    run = tmp_path / "run"
    cfg = fp.write_yaml(tmp_path / "c.yaml", {"encoder_options": fp.TINY_CNN, "projection_dim": 16})
    rc, _, err = fp.run_cli(["train", "--dataset", f"csv:{path}", "--encoder", "cnn", "--method", "bce",
                             "--epochs", "1", "--batch-size", "16", "--config", str(cfg), "--output", str(run),
                             "--text-field", "body", "--labels-field", "tags", "--split-field", "part",
                             "--id-field", "key", "--label-separator", "|", "--no-progress"])
    assert rc == 0, err
    m = fp.check_run_folder(run)
    # the split column was used (not a random 80/10/10 split) ...
    assert m["num_test"] == sum(r["split"] == "test" for r in records)
    # ... and the labels were split on "|": the label set is the JSONL's, not "a|b" strings or the decoys
    model = json.loads((run / "model" / "model.json").read_text())
    assert model["label_names"] == sorted({label for r in records for label in r["labels"]})
    assert fp.read_config_yaml(run)["dataset_options"] == {
        "text_field": "body", "label_field": "tags", "split_field": "part", "id_field": "key",
        "label_separator": "|"}


@pytest.mark.parametrize("extra, needles", [
    (["--text-field", "nope"], ["'nope'", "columns"]),
    (["--labels-field", "tag"], ["'tag'"]),
])
def test_a_wrong_field_name_is_one_line(tmp_path, extra, needles):
    path, _ = _csv_with_other_names(tmp_path)
    rc, _, err = fp.run_cli(["train", "--dataset", f"csv:{path}", "--output", str(tmp_path / "run"),
                             "--text-field", "body", "--labels-field", "tags", *extra, "--no-progress"])
    fp.assert_user_error(rc, err, str(path), *needles)
