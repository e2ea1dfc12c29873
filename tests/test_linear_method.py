"""The ``linear`` method: TF-IDF / standardised features + one-vs-rest linear models, as a run."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_pipeline import check_run_folder, run_cli, write_jsonl


@pytest.mark.slow
def test_linear_text_run_matches_sklearn_and_reloads(tmp_path):
    """The run's test scores equal a plain scikit-learn fit on the same features, and the
    exported model reproduces them (evaluate)."""
    from sklearn.svm import LinearSVC

    from mlsupcon import load
    from mlsupcon.data import load_dataset
    from mlsupcon.models.text_features import TextFeaturizer

    data = write_jsonl(tmp_path / "d.jsonl", n=120)
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--dataset", f"jsonl:{data}", "--method", "linear", "--output", str(out),
                          "--no-progress"])
    assert rc == 0, err
    metrics = check_run_folder(out)
    assert metrics["method"] == "linear" and metrics["loss"] == "linear"

    ds = load_dataset(f"jsonl:{data}")
    train, test = ds.splits["train"], ds.splits["test"]
    fz = TextFeaturizer(max_features=200_000).fit(list(train.inputs))
    xtr, xte = fz.transform(list(train.inputs)), fz.transform(list(test.inputs))
    y = train.labels.toarray()
    model = load(out)
    proba = model.predict_proba(list(test.inputs))
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            ref = LinearSVC(C=0.5, random_state=0).fit(xtr, y[:, j]).decision_function(xte)
            np.testing.assert_allclose(proba[:, j], 1 / (1 + np.exp(-ref)), atol=1e-4)
    from mlsupcon.training.inference import evaluate_model

    again = evaluate_model(out)
    assert abs(again["map"] - metrics["map"]) < 1e-6


def test_linear_vectors_learns(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32) * 10 + 50
    y = np.stack([x[:, 0] > 50, x[:, 1] > 52, x[:, 0] + x[:, 2] > 100], 1).astype(np.uint8)
    split = np.array(["train"] * 200 + ["validation"] * 50 + ["test"] * 50)
    np.savez(tmp_path / "v.npz", x=x, y=y, label_names=np.array(["a", "b", "c"]), split=split)
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--dataset", f"vectors:{tmp_path / 'v.npz'}", "--method", "linear",
                          "--output", str(out), "--no-progress"])
    assert rc == 0, err
    metrics = check_run_folder(out)
    assert metrics["map"] > 0.9  # separable labels: a linear model must rank them almost perfectly


def test_linear_bad_option_is_one_line(tmp_path):

    from mlsupcon.training.config import load_config

    with pytest.raises(ValueError, match="linear_options.estimator"):
        load_config(overrides={"method": "linear", "linear_options": {"estimator": "tree"}})
    with pytest.raises(ValueError, match="linear_options: unknown"):
        load_config(overrides={"method": "linear", "linear_options": {"alpha": 1}})
