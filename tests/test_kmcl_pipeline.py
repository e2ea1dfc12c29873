"""`mlsupcon train --method kmcl` on every modality, and KMCL in `compare`."""

import json

import fixtures_pipeline as fp
import pytest
from test_pipeline import _case, assert_same_metrics, evaluate_json, train


@pytest.mark.parametrize("modality", ["yeast", "debtags", "fashion-mosaic"])
def test_kmcl_trains_on_every_modality(tmp_path, modality):
    flags, yml, _, _ = _case(modality, tmp_path)
    flags = {**flags, "method": "kmcl"}
    flags.pop("loss", None)
    flags.pop("classifier-epochs", None)
    yml = {**yml, "head_options": {"mode": "isotropic"}}
    run, metrics = train(tmp_path, f"kmcl-{modality}", flags, yml)
    assert metrics["method"] == "kmcl"
    model = json.loads((run / "model" / "model.json").read_text())
    assert model["head"]["class"] == "KMCLClassifier"
    # The three KMCL terms were logged, and predictions reload from the safetensors export.
    log = (run / "logs" / "end_to_end" / "metrics.csv").read_text().splitlines()[0]
    assert all(f"train/kmcl_{t}" in log for t in ("asl", "rec", "con"))
    assert_same_metrics(metrics, evaluate_json(run))


def test_kmcl_anisotropic_head(tmp_path):
    flags, yml, _, _ = _case("yeast", tmp_path)
    flags = {**flags, "method": "kmcl"}
    flags.pop("loss", None)
    flags.pop("classifier-epochs", None)
    run, metrics = train(tmp_path, "kmcl-aniso", flags,
                         {**yml, "head_options": {"mode": "anisotropic", "reduce_dim": 8}})
    assert json.loads((run / "model" / "model.json").read_text())["head"]["mode"] == "anisotropic"
    assert_same_metrics(metrics, evaluate_json(run))


def test_compare_puts_kmcl_in_the_table(tmp_path):
    cfg = fp.write_yaml(tmp_path / "c.yaml", {"encoder_options": fp.TINY_MLP, "projection_dim": 16,
                                               "loss_options": {"temperature": 0.1}})
    out = tmp_path / "cmp"
    rc, stdout, err = fp.run_cli(["compare", "--config", str(cfg), "--dataset", "yeast", "--encoder", "mlp",
                                  "--losses", "bce,kmcl", "--seeds", "1", "--epochs", "1", "--max-examples", "120",
                                  "--batch-size", "32", "--output", str(out), "--no-progress", "--no-plots"])
    assert rc == 0, err
    assert any(line.startswith("| kmcl | 1 |") for line in stdout.splitlines())
    # KMCL keeps its own temperature (0.17), not the contrastive loss's option.
    import yaml

    assert yaml.safe_load((out / "kmcl" / "seed0" / "config.yaml").read_text())["loss_options"] == {}
