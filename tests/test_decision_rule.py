"""The decision rule a run tunes and a user gets: ``threshold: tune`` (one global threshold) or
``tune-per-label`` (per-label thresholds shrunk towards it), in metrics.json, model.json, predict
and evaluate."""

from __future__ import annotations

import json

import fixtures_pipeline as fp
import numpy as np
import pytest
from fixtures_pipeline import assert_user_error, run_cli

import mlsupcon
from mlsupcon.data import load_dataset
from mlsupcon.evaluation import compute_metrics, tune_global_threshold, tune_shrunk_thresholds
from mlsupcon.inference.model import labels_from_scores


def _vectors(path, n=300, width=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype(np.float32)
    w = rng.normal(size=(width, 5))
    bias = np.array([0.3, 0.8, 1.2, 1.6, 2.0])  # frequent to rare labels
    y = (x @ w + rng.normal(scale=0.7, size=(n, 5)) > bias).astype(np.uint8)
    split = np.array(["train", "train", "train", "validation", "test"] * (n // 5))
    np.savez(path, x=x, y=y, label_names=np.array([f"l{j}" for j in range(5)]), split=split)
    return path


def _train(tmp, threshold):
    data = _vectors(tmp / "v.npz")
    run = tmp / f"run-{threshold}"
    rc, _, err = run_cli(["train", "--dataset", f"vectors:{data}", "--encoder", "mlp", "--method", "bce",
                          "--epochs", "2", "--batch-size", "32", "--no-progress", "--output", str(run),
                          "--config", str(fp.write_yaml(tmp / f"{threshold}.yaml", {
                              "encoder_options": fp.TINY_MLP, "threshold": threshold}))])
    assert rc == 0, err
    return data, run


@pytest.fixture(scope="module")
def per_label_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("rule"), "tune-per-label")


def _split_scores(model, data, split):
    part = load_dataset(f"vectors:{data}").splits[split]
    return np.asarray(part.labels.todense()), model.predict_proba(part.inputs, progress=False), part


def test_per_label_thresholds_are_tuned_on_validation_saved_and_applied(per_label_run):
    data, run = per_label_run
    metrics = json.loads((run / "metrics.json").read_text())
    meta = json.loads((run / "model" / "model.json").read_text())
    model = mlsupcon.load(run)
    yv, sv, _ = _split_scores(model, data, "validation")
    expected = tune_shrunk_thresholds(yv, sv)
    np.testing.assert_allclose(metrics["thresholds"], expected, atol=1e-6)
    assert meta["thresholds"] == metrics["thresholds"]
    np.testing.assert_array_equal(model.thresholds, meta["thresholds"])
    assert metrics["threshold"] == pytest.approx(tune_global_threshold(yv, sv), abs=1e-6)
    assert "per label" in metrics["threshold_source"]
    # the test metrics are those of the per-label rule, and both rules are reported
    yt, st, part = _split_scores(model, data, "test")
    again = compute_metrics(yt, st, model.thresholds)
    assert metrics["micro_f1"] == pytest.approx(again["micro_f1"], abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx(again["macro_f1"], abs=1e-6)
    assert metrics["micro_f1_per_label_thresholds"] == pytest.approx(metrics["micro_f1"], abs=1e-12)
    assert metrics["micro_f1_global_threshold"] == pytest.approx(
        compute_metrics(yt, st, metrics["threshold"])["micro_f1"], abs=1e-6)
    # predict applies one threshold per label; the rule differs from the global one somewhere
    assert model.predict(part.inputs, progress=False) == labels_from_scores(st, model.labels, model.thresholds)
    assert not np.allclose(model.thresholds, model.threshold)


def test_evaluate_uses_the_saved_per_label_rule(per_label_run):
    data, run = per_label_run
    metrics = json.loads((run / "metrics.json").read_text())
    rc, out, err = run_cli(["evaluate", str(run), "--json"])
    assert rc == 0, err
    assert "per-label thresholds, global" in out
    again = json.loads(out[out.index("\n{") + 1:])
    assert again["micro_f1"] == pytest.approx(metrics["micro_f1"], abs=1e-6)
    assert again["macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-6)


def test_global_rule_reports_the_per_label_variant_and_predicts_with_one_threshold(tmp_path):
    data, run = _train(tmp_path, "tune")
    metrics = json.loads((run / "metrics.json").read_text())
    assert "thresholds" not in metrics
    assert "thresholds" not in json.loads((run / "model" / "model.json").read_text())
    assert metrics["micro_f1_global_threshold"] == pytest.approx(metrics["micro_f1"], abs=1e-12)
    assert 0 <= metrics["macro_f1_per_label_thresholds"] <= 1
    model = mlsupcon.load(run)
    np.testing.assert_array_equal(model.thresholds, np.full(model.num_labels, model.threshold))


def test_labels_from_scores_takes_one_threshold_per_label():
    s = np.array([[0.9, 0.2, 0.6]])
    assert labels_from_scores(s, ["a", "b", "c"], threshold=[0.95, 0.1, 0.5]) == [["c", "b"]]
    with pytest.raises(ValueError, match="3 of them"):
        labels_from_scores(s, ["a", "b", "c"], threshold=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        labels_from_scores(s, ["a", "b", "c"], threshold=[0.5, 1.5, 0.5])


def test_an_unknown_rule_is_one_line(tmp_path):
    data = _vectors(tmp_path / "v.npz")
    rc, _, err = run_cli(["train", "--dataset", f"vectors:{data}", "--output", str(tmp_path / "r"),
                          "--config", str(fp.write_yaml(tmp_path / "c.yaml", {"threshold": "per-label"}))])
    assert_user_error(rc, err, "threshold", "tune-per-label")
