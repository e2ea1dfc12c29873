"""Post-training steps chosen on validation: kNN blend and the wide & deep TF-IDF blend."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_pipeline import check_run_folder, run_cli, write_jsonl


@pytest.mark.slow
def test_knn_and_linear_blend_run_reloads_and_embeds(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", n=150)
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--dataset", f"jsonl:{data}", "--method", "end-to-end", "--loss", "mulsupcon",
                          "--encoder", "sparse", "--epochs", "2", "--knn", "blend", "--blend-linear",
                          "--output", str(out), "--no-progress"])
    assert rc == 0, err
    assert "knn: k=" in err and "blend_linear: weight" in err
    metrics = check_run_folder(out)
    chosen = metrics["chosen_on_validation"]
    assert 0.0 <= chosen["knn"]["blend_weight_of_head"] <= 1.0
    assert 0.0 <= chosen["blend_linear"]["weight_of_model"] <= 1.0
    assert isinstance(chosen["blend_linear"]["excluded_by_guard"], list)
    model_json = json.loads((out / "model" / "model.json").read_text())
    assert model_json["head"]["kind"] == "blend" and model_json["encoder"]["name"] == "fusion"

    import mlsupcon
    from mlsupcon.data import load_dataset
    from mlsupcon.training.inference import evaluate_model

    model = mlsupcon.load(out)
    test = load_dataset(f"jsonl:{data}").splits["test"]
    proba = model.predict_proba(list(test.inputs))
    assert proba.shape == (len(test), len(model.labels))
    assert abs(evaluate_model(out)["map"] - metrics["map"]) < 1e-6
    # The contrastive embedding space is the trained branch's (projection 128), not the linear scores.
    assert model.embed(list(test.inputs)).shape == (len(test), 128)
    assert model.embed(list(test.inputs), space="encoder").shape[1] == model.classifier.encoder.branches[0].output_dim


def test_finish_options_are_validated():
    from mlsupcon.training.config import load_config

    with pytest.raises(ValueError, match="knn: expected one of"):
        load_config(overrides={"dataset": "yeast", "knn": "maybe"})
    with pytest.raises(ValueError, match="knn_options"):
        load_config(overrides={"dataset": "yeast", "knn_options": {"k": 3}})


def test_knn_only_on_vectors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0.5], 1).astype(np.uint8)
    split = np.array(["train"] * 160 + ["validation"] * 40 + ["test"] * 40)
    np.savez(tmp_path / "v.npz", x=x, y=y, label_names=np.array(["a", "b"]), split=split)
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--dataset", f"vectors:{tmp_path / 'v.npz'}", "--method", "bce", "--encoder",
                          "mlp", "--epochs", "2", "--knn", "only", "--output", str(out), "--no-progress",
                          "--no-auto"])
    assert rc == 0, err
    metrics = check_run_folder(out)
    assert metrics["chosen_on_validation"]["knn"]["blend_weight_of_head"] == 0.0
    assert json.loads((out / "model" / "model.json").read_text())["head"]["kind"] == "knn"
    assert metrics["map"] > 0.6
