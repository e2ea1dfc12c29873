"""End-to-end runs of the training pipeline through the CLI (in-process ``main([...])``).

Every run is tiny (a subsample of each split, tiny encoders, one or two epochs): these tests
check that the pipeline runs and writes consistent artefacts, not that a model learns.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
from fixtures_pipeline import run_cli

from mlsupcon.data import load_dataset
from mlsupcon.data.fashion import DEFAULT_FASHION_ROOT
from mlsupcon.evaluation import compute_metrics, tune_global_threshold

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train(tmp: Path, name: str, flags: dict[str, object], yaml_values: dict | None = None,
          extra: list[str] = ()) -> tuple[Path, dict]:
    """``mlsupcon train`` with ``--flag value`` pairs (+ a YAML config); asserts success."""
    run = tmp / name
    argv = ["train", "--output", str(run), "--no-progress"]
    for key, value in flags.items():
        argv += [f"--{key}", str(value)]
    if yaml_values is not None:
        argv += ["--config", str(fp.write_yaml(tmp / f"{name}.yaml", yaml_values))]
    argv += list(extra)
    rc, out, err = run_cli(argv)
    assert rc == 0, f"mlsupcon {' '.join(argv)} exited {rc}; stderr:\n{err}"
    assert f"wrote {run}/metrics.json" in out
    return run, fp.check_run_folder(run)


def evaluate_json(run: Path, split: str = "test") -> dict:
    rc, out, err = run_cli(["evaluate", str(run), "--split", split, "--json"])
    assert rc == 0, err
    return json.loads(out[out.index("{"):])


def assert_same_metrics(reference: dict, again: dict, tol: float = 1e-6) -> None:
    compared = 0
    for key, value in reference.items():
        if not isinstance(value, float) or key not in again:
            continue
        if math.isnan(value):
            assert math.isnan(again[key]), key
        else:
            assert again[key] == pytest.approx(value, abs=tol), key
        compared += 1
    assert compared >= 20, f"only {compared} metrics compared"


def numeric_metrics(m: dict) -> dict:
    return {k: v for k, v in m.items() if isinstance(v, (int, float)) and k not in ("timings",)}


def fashion_available() -> bool:
    root = Path(DEFAULT_FASHION_ROOT)
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    return all((root / s).is_file() or (root / f"{s}.gz").is_file() for s in stems)


# --------------------------------------------------------------------------------------------
# 1. One short run per modality / data source, with the resolved config and artefacts checked.
# --------------------------------------------------------------------------------------------

def _case(name: str, tmp: Path):
    """(flags, YAML values, expected dataset name, expected test-split size) of one case."""
    common = {"epochs": 1, "seed": 0}
    if name == "yeast":
        flags = {**common, "dataset": "yeast", "encoder": "mlp", "method": "two-stage", "loss": "mulsupcon",
                 "classifier-epochs": 2, "batch-size": 32, "max-examples": 120}
        # epochs and batch_size in the YAML are overridden by the flags
        yml = {"encoder_options": fp.TINY_MLP, "projection_dim": 16, "epochs": 7, "batch_size": 999}
        return flags, yml, "yeast", 120
    if name == "debtags":
        flags = {**common, "dataset": "debtags", "encoder": "cnn", "method": "two-stage", "loss": "simdis",
                 "classifier-epochs": 2, "batch-size": 32, "max-examples": 120, "top-k-labels": 40}
        # The preset's post-training blends are tested in test_finish.py; here the plain CNN head.
        return flags, {"encoder_options": fp.TINY_CNN, "projection_dim": 16, "knn": "off",
                       "blend_linear": False}, "debtags", 120
    if name == "fashion-mosaic":
        if not fashion_available():
            pytest.skip(f"Debian package dataset-fashion-mnist not installed (no files in {DEFAULT_FASHION_ROOT}); "
                        "scripts/setup.sh installs it")
        flags = {**common, "dataset": "fashion-mosaic", "encoder": "resnet", "method": "two-stage",
                 "loss": "any", "classifier-epochs": 2, "batch-size": 16}
        yml = {"encoder_options": fp.TINY_RESNET, "projection_dim": 16,
               "dataset_options": {"image_size": 32, "train_size": 48, "validation_size": 16, "test_size": 16}}
        return flags, yml, "fashion-mosaic", 16
    if name == "jsonl":
        path = fp.write_jsonl(tmp / "tiny.jsonl")
        flags = {**common, "dataset": f"jsonl:{path}", "encoder": "cnn", "method": "end-to-end", "loss": "simdis",
                 "batch-size": 16}
        return flags, {"encoder_options": fp.TINY_CNN, "projection_dim": 16}, None, 12
    if name == "mimic-caml":
        d = fp.write_mimic_caml(tmp / "mimic3")
        flags = {**common, "dataset": f"mimic-caml:{d}", "encoder": "cnn", "method": "end-to-end",
                 "loss": "mulsupcon", "head": "attention", "batch-size": 16}
        return flags, {"encoder_options": fp.TINY_CNN, "projection_dim": 16}, None, 16
    if name == "mimic-repro":
        d = fp.write_mimic_repro(tmp / "mimiciv_icd10")
        flags = {**common, "dataset": f"mimic-repro:{d}", "encoder": "cnn", "method": "bce",
                 "head": "attention", "batch-size": 16}
        return flags, {"encoder_options": fp.TINY_CNN}, None, 16
    if name == "coco":
        ann = fp.write_coco(tmp / "coco_data")  # not in the run folder (tmp/coco), which must be new or empty
        flags = {**common, "dataset": f"coco:{ann}:{tmp / 'coco_data' / 'images'}", "encoder": "resnet",
                 "method": "two-stage", "loss": "mulsupcon", "classifier-epochs": 2, "batch-size": 8}
        yml = {"encoder_options": fp.TINY_RESNET, "projection_dim": 16, "dataset_options": {"image_size": 32}}
        return flags, yml, None, 4  # 40 images, split 0.8 / 0.1 / 0.1
    raise AssertionError(name)


def _expected_config(flags: dict, yml: dict, run: Path) -> dict:
    as_dataset_options = {"max-examples": "max_examples_per_split", "top-k-labels": "top_k_labels"}
    as_fields = {k.replace("-", "_"): v for k, v in flags.items() if k not in as_dataset_options}
    as_fields.update(output=str(run), progress=False)
    ds_opts = {name: flags[flag] for flag, name in as_dataset_options.items() if flag in flags}
    return fp.expected_config(yml, as_fields, {"dataset_options": ds_opts} if ds_opts else {})


@pytest.mark.parametrize("case", ["yeast", "debtags", "fashion-mosaic", "jsonl", "mimic-caml", "mimic-repro", "coco"])
def test_train_each_modality(case, tmp_path):
    flags, yml, ds_name, n_test = _case(case, tmp_path)
    run, m = train(tmp_path, case, flags, yml)

    # config.yaml is the resolved config: defaults < YAML < flags
    assert fp.read_config_yaml(run) == _expected_config(flags, yml, run)
    assert m["method"] == flags["method"] and m["seed"] == 0
    assert m["num_test"] == n_test
    if ds_name is not None:
        assert m["dataset"] == ds_name
    # One epoch means one epoch (the flag, not the YAML's epochs, was used)
    stage = "contrastive" if flags["method"] == "two-stage" else "end_to_end"
    with open(run / "logs" / stage / "metrics.csv") as fh:
        epochs = {int(r["epoch"]) for r in csv.DictReader(fh)}
    assert epochs == {0}
    emb = np.load(run / "embeddings_test.npz")
    assert emb["embeddings"].shape[0] == emb["labels"].shape[0] == n_test
    assert np.isfinite(emb["embeddings"]).all()

    # The export reloads (tokeniser, attention head, ResNet …) and gives the run's numbers back.
    assert_same_metrics(m, evaluate_json(run))
    model = json.loads((run / "model" / "model.json").read_text())
    assert model["head"]["kind"] == flags.get("head", "linear")
    assert model["encoder"]["name"] == flags["encoder"]
    if "top-k-labels" in flags:
        assert len(model["label_names"]) == model["head"]["num_labels"] == flags["top-k-labels"]


def test_threshold_falls_back_to_half_without_validation_labels(tmp_path):
    """No positive label in validation: nothing to tune on, so 0.5, and metrics.json says so."""
    import pandas as pd

    d = fp.write_mimic_caml(tmp_path / "mimic3")
    dev = pd.read_csv(d / "dev_full.csv")
    dev["LABELS"] = ""
    dev.to_csv(d / "dev_full.csv", index=False)
    run, m = train(tmp_path, "run", {"dataset": f"mimic-caml:{d}", "encoder": "cnn", "method": "bce",
                                     "epochs": 2, "batch-size": 16}, {"encoder_options": fp.TINY_CNN})
    assert m["threshold"] == 0.5
    assert m["threshold_source"].startswith("fixed 0.5") and "no positive labels" in m["threshold_source"]
    assert math.isnan(m["validation"]["map"])  # documented as undefined without positives
    assert_same_metrics(m, evaluate_json(run))


# --------------------------------------------------------------------------------------------
# 2 + 4. evaluate and the decision threshold, on one shared yeast run.
# --------------------------------------------------------------------------------------------

YEAST_TINY = {"dataset": "yeast", "encoder": "mlp", "epochs": 1, "batch-size": 32, "max-examples": 120}


@pytest.fixture(scope="module")
def yeast_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("yeast_run")
    return train(tmp, "run", {**YEAST_TINY, "method": "two-stage", "loss": "simdis", "classifier-epochs": 3},
                 {"encoder_options": fp.TINY_MLP, "projection_dim": 16})


def test_best_classifier_epoch_is_kept(yeast_run):
    run, m = yeast_run
    with open(run / "logs" / "classifier" / "metrics.csv") as fh:
        val_map = [float(r["val/map"]) for r in csv.DictReader(fh) if r.get("val/map")]
    assert len(val_map) == 3  # --classifier-epochs 3, patience 5: no early stop
    # early stopping restores the best validation-mAP epoch, not the last one
    assert m["validation"]["map"] == pytest.approx(max(val_map), rel=1e-5)


def test_evaluate_reproduces_test_and_validation_metrics(yeast_run):
    run, m = yeast_run
    again = evaluate_json(run)
    assert again["threshold"] == m["threshold"]
    assert again["split"] == "test" and again["num_examples"] == m["num_test"]
    assert_same_metrics(m, again)
    # the model/ folder itself works too, and so does another split
    val = evaluate_json(run / "model", split="validation")
    assert_same_metrics(m["validation"], val)


def _validation_predictions(run: Path):
    from mlsupcon.training.batches import make_loader
    from mlsupcon.training.export import load_classifier
    from mlsupcon.training.modules import predict

    model, meta = load_classifier(run / "model")
    ds = load_dataset(meta["dataset"], **meta["dataset_options"])
    loader = make_loader(ds.splits["validation"], model.preprocess, 64, shuffle=False)
    return predict(model, loader)


def test_threshold_is_tuned_on_validation(yeast_run):
    run, m = yeast_run
    scores, y = _validation_predictions(run)
    assert m["threshold_source"] == "validation micro-F1"
    assert m["threshold"] == pytest.approx(tune_global_threshold(y, scores), abs=1e-6)
    assert m["threshold"] != 0.5
    # it maximises validation micro-F1: no worse than 0.5 or any other candidate
    best = m["validation"]["micro_f1"]
    assert best == pytest.approx(compute_metrics(y, scores, m["threshold"], ks=(1,))["micro_f1"], abs=1e-9)
    for t in (0.5, *np.quantile(scores, [0.1, 0.3, 0.5, 0.7, 0.9])):
        assert compute_metrics(y, scores, float(t), ks=(1,))["micro_f1"] <= best + 1e-9


def test_fixed_threshold_is_honoured(tmp_path):
    run, m = train(tmp_path, "fixed", {**YEAST_TINY, "method": "bce"},
                   {"encoder_options": fp.TINY_MLP, "threshold": 0.5})
    assert m["threshold"] == 0.5 and m["threshold_source"] == "fixed"
    assert json.loads((run / "model" / "model.json").read_text())["threshold"] == 0.5
    assert fp.read_config_yaml(run)["threshold"] == 0.5
    scores, y = _validation_predictions(run)
    assert m["validation"]["micro_f1"] == pytest.approx(compute_metrics(y, scores, 0.5, ks=(1,))["micro_f1"], abs=1e-9)
    assert evaluate_json(run)["threshold"] == 0.5


# --------------------------------------------------------------------------------------------
# 3. Methods and hierarchical losses.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, loss, yml", [
    ("end-to-end", "simdis", {"contrastive_weight": 0.5}),
    ("bce", None, {}),
    ("asl", None, {"classifier_loss_options": {"gamma_neg": 2.0}}),
])
def test_methods_on_yeast(method, loss, yml, tmp_path):
    flags = {**YEAST_TINY, "method": method, **({"loss": loss} if loss else {})}
    run, m = train(tmp_path, method, flags, {"encoder_options": fp.TINY_MLP, "projection_dim": 16, **yml})
    assert m["method"] == method
    assert m["loss"] == (loss if method == "end-to-end" else method)
    cfg = fp.read_config_yaml(run)
    for key, value in yml.items():
        assert cfg[key] == value
    with open(run / "logs" / "end_to_end" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    columns = set(rows[0])
    # the contrastive term is trained (and logged) in end-to-end only
    assert ("train/contrastive_loss" in columns) == (method == "end-to-end")
    losses = [float(r["train/classifier_loss"]) for r in rows if r.get("train/classifier_loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    assert not (run / "logs" / "contrastive").exists()


def test_hierarchical_loss_on_debtags(tmp_path):
    run, m = train(tmp_path, "himulcon",
                   {"dataset": "debtags", "encoder": "cnn", "method": "two-stage", "loss": "himulcon",
                    "epochs": 1, "classifier-epochs": 1, "batch-size": 32, "max-examples": 100},
                   {"encoder_options": fp.TINY_CNN, "projection_dim": 16})
    assert m["loss"] == "himulcon"
    with open(run / "logs" / "contrastive" / "metrics.csv") as fh:
        vals = [float(r["train/contrastive_loss"]) for r in csv.DictReader(fh) if r.get("train/contrastive_loss")]
    assert vals and all(math.isfinite(v) and v > 0 for v in vals)


@pytest.mark.parametrize("method", ["two-stage", "end-to-end"])
def test_hierarchical_loss_without_hierarchy_is_a_user_error(method, tmp_path):
    argv = ["train", "--dataset", "yeast", "--encoder", "mlp", "--method", method, "--loss", "himulcon",
            "--epochs", "1", "--max-examples", "40", "--no-progress", "--output", str(tmp_path / "run")]
    rc, _, err = run_cli(argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlsupcon: error:")
    assert "himulcon" in lines[0] and "hierarchy" in lines[0] and "yeast" in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


# --------------------------------------------------------------------------------------------
# 5. compare: losses × seeds → results.csv, report.md, figures.
# --------------------------------------------------------------------------------------------

def test_compare(tmp_path):
    out = tmp_path / "cmp"
    cfg = fp.write_yaml(tmp_path / "c.yaml", {"encoder_options": fp.TINY_MLP, "projection_dim": 16})
    rc, stdout, err = run_cli(["compare", "--dataset", "yeast", "--encoder", "mlp", "--losses", "bce,simdis",
                               "--seeds", "2", "--epochs", "1", "--classifier-epochs", "2", "--batch-size", "32",
                               "--max-examples", "100", "--config", str(cfg), "--output", str(out), "--no-progress"])
    assert rc == 0, err

    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert sorted((r["loss"], int(r["seed"])) for r in rows) == [("bce", 0), ("bce", 1), ("simdis", 0), ("simdis", 1)]
    assert {r["loss"]: r["method"] for r in rows} == {"bce": "bce", "simdis": "two-stage"}
    for r in rows:
        for key in ("micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5", "example_f1", "threshold"):
            assert 0.0 <= float(r[key]) <= 1.0, (key, r[key])
        run = out / r["loss"] / f"seed{r['seed']}"
        m = fp.check_run_folder(run)
        assert float(r["micro_f1"]) == pytest.approx(m["micro_f1"], abs=1e-12)
        assert fp.read_config_yaml(run)["seed"] == int(r["seed"])
    # the two seeds are different runs
    bce = [float(r["map"]) for r in rows if r["loss"] == "bce"]
    assert bce[0] != bce[1]

    report = (out / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| bce ") or line.startswith("| simdis ")]
    assert len(table) == 2 and all("±" in line for line in table)
    # the table's numbers are the mean ± sample std (×100) of results.csv
    for line in table:
        loss = line.split("|")[1].strip()
        vals = [float(r["micro_f1"]) for r in rows if r["loss"] == loss]
        cell = line.split("|")[3].strip().strip("*")
        assert cell == f"{100 * np.mean(vals):.2f} ± {100 * np.std(vals, ddof=1):.2f}"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) >= 2
    for link in links:
        png = out / link
        assert png.is_file(), link
        data = png.read_bytes()
        assert len(data) > 1000 and data[:8] == PNG_MAGIC, link


# --------------------------------------------------------------------------------------------
# 7. Reproducibility.
# --------------------------------------------------------------------------------------------

def test_same_seed_same_metrics(tmp_path):
    flags = {**YEAST_TINY, "method": "end-to-end", "loss": "simdis", "epochs": 2, "seed": 3}
    yml = {"encoder_options": {"hidden_dims": [32], "dropout": 0.2}, "projection_dim": 16}
    run_a, a = train(tmp_path, "a", flags, yml)
    run_b, b = train(tmp_path, "b", flags, yml)
    assert numeric_metrics(a) == numeric_metrics(b)
    assert a["validation"] == b["validation"]
    emb_a, emb_b = np.load(run_a / "embeddings_test.npz"), np.load(run_b / "embeddings_test.npz")
    assert np.array_equal(emb_a["embeddings"], emb_b["embeddings"])
    # ... and the seed matters (otherwise the check above would prove nothing)
    _, c = train(tmp_path, "c", {**flags, "seed": 4}, yml)
    assert numeric_metrics(c) != numeric_metrics(a)
