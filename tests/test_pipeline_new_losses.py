"""The pipeline with the losses of issue 21: prototype losses (their prototypes trained with the
projection head, checkpointed, resumed and saved with the model), ``--method zlpr`` and
end-to-end's ``classifier_loss: zlpr`` (decision at logit 0), CL-MTC's losses as contrastive
terms (``cl_jspcl`` on end-to-end's logits, ``cl_icl`` refused), and ``compare`` with them.

Every run is tiny: generated vectors, a one-layer MLP, one epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
import torch
from fixtures_pipeline import assert_user_error, run_cli
from safetensors.torch import load_file

import mlsupcon
from mlsupcon.losses import LabelPrototypes

LABELS = ["g1", "g2", "g3", "g4"]


def write_vectors(path: Path, n: int = 100, width: int = 10, seed: int = 0) -> Path:
    """Random features, four labels that depend on them, a split."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype(np.float32)
    y = (x @ rng.normal(size=(width, 4)) + rng.normal(scale=0.5, size=(n, 4)) > 0.3).astype(np.uint8)
    split = np.array(["train", "train", "train", "validation", "test"] * (n // 5))
    np.savez(path, x=x, y=y, label_names=np.array(LABELS), split=split)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("newlosses")
    cfg = fp.write_yaml(tmp / "tiny.yaml", {"encoder_options": fp.TINY_MLP, "projection_dim": 8})
    return write_vectors(tmp / "genes.npz"), cfg


def train(data, out: Path, *flags: str) -> tuple[int, str]:
    path, cfg = data
    rc, _, err = run_cli(["train", "--dataset", f"vectors:{path}", "--encoder", "mlp", "--epochs", "1",
                          "--classifier-epochs", "1", "--batch-size", "16", "--no-progress", "--config", str(cfg),
                          "--output", str(out), *flags])
    return rc, err


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_msc_two_stage_trains_checkpoints_saves_and_reloads_its_prototypes(data, tmp_path, monkeypatch):
    made: list[tuple[LabelPrototypes, torch.Tensor]] = []
    reset = LabelPrototypes.reset_parameters

    def recording_reset(self):  # every LabelPrototypes the run makes, with its initial weights
        reset(self)
        made.append((self, self.weight.detach().clone()))

    monkeypatch.setattr(LabelPrototypes, "reset_parameters", recording_reset)
    run = tmp_path / "msc"
    rc, err = train(data, run, "--method", "two-stage", "--loss", "msc")
    assert rc == 0, err
    assert metrics(run)["loss"] == "msc" and metrics(run)["threshold_source"] == "validation micro-F1"
    trained, initial = made[0]
    assert trained.weight.shape == (4, 8)  # C labels x projection_dim
    assert not torch.equal(trained.weight.detach(), initial)  # optimised with the projection head
    # saved with the model: model.json says how to rebuild them, the weights file holds them
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["prototypes"] == {"num_labels": 4, "dim": 8}
    assert torch.equal(load_file(str(run / "model" / "weights.safetensors"))["prototypes.weight"],
                       trained.weight.detach())
    model = mlsupcon.load(run)
    assert torch.equal(model.classifier.prototypes.weight.detach(), trained.weight.detach())
    # checkpointed with the module (its best epoch too)
    ckpt = torch.load(run / "checkpoints" / "contrastive" / "last.ckpt", map_location="cpu", weights_only=True)
    assert torch.equal(ckpt["state_dict"]["prototypes.weight"], trained.weight.detach())
    assert torch.equal(ckpt["mlsupcon_module"]["best_state"]["prototypes.weight"], trained.weight.detach())

    # --resume of the finished run: new (random) prototypes, loaded from the checkpoint, saved again
    before = metrics(run)
    made.clear()
    rc, _, err = run_cli(["train", "--output", str(run), "--resume", "--no-progress"])
    assert rc == 0, err
    assert "stage 'contrastive' had finished" in err
    assert not torch.equal(made[0][1], trained.weight.detach())
    again = mlsupcon.load(run)
    assert torch.equal(again.classifier.prototypes.weight.detach(), trained.weight.detach())
    assert {k: metrics(run)[k] for k in ("map", "micro_f1", "threshold")} == {
        k: before[k] for k in ("map", "micro_f1", "threshold")}


def test_prototype_losses_end_to_end_and_with_a_queue(data, tmp_path):
    run = tmp_path / "mscrg"
    rc, err = train(data, run, "--method", "end-to-end", "--loss", "mscrg")
    assert rc == 0, err
    assert mlsupcon.load(run).classifier.prototypes.weight.shape == (4, 8)
    run = tmp_path / "queue"
    rc, err = train(data, run, "--method", "two-stage", "--loss", "proto_only", "--queue-size", "32")
    assert rc == 0, err
    assert metrics(run)["loss"] == "proto_only"
    assert json.loads((run / "model" / "model.json").read_text())["prototypes"] == {"num_labels": 4, "dim": 8}


def test_zlpr_method_decides_at_logit_zero(data, tmp_path):
    run = tmp_path / "zlpr"
    rc, err = train(data, run, "--method", "zlpr")
    assert rc == 0, err
    m = metrics(run)
    assert (m["method"], m["loss"], m["threshold"], m["threshold_source"]) == ("zlpr", "zlpr", 0.5,
                                                                              "zlpr decision: logit 0")
    assert "threshold_macro_f1" not in m  # nothing is tuned on validation
    model = mlsupcon.load(run)
    assert model.threshold == 0.5 and model.classifier.prototypes is None
    x = np.load(data[0])["x"]
    with torch.no_grad():
        logits = model.classifier.logits(model.classifier.preprocess(x)).numpy()
    predicted = model.predict(x, progress=False)
    assert any(predicted) and not all(len(p) == 4 for p in predicted)
    for row, labels in zip(logits, predicted):
        for j, name in enumerate(LABELS):
            if abs(row[j]) > 1e-6:  # (sigmoid rounds to 0.5 within float precision of 0)
                assert (name in labels) == (row[j] > 0), (row, labels)
    # the model json has no prototypes: the run had no prototype loss
    assert "prototypes" not in json.loads((run / "model" / "model.json").read_text())
    # a threshold other than the decision rule's is refused
    bad = fp.write_yaml(tmp_path / "bad.yaml", {"threshold": 0.3})
    rc, _, err = run_cli(["train", "--config", str(bad), "--method", "zlpr", "--dataset", f"vectors:{data[0]}",
                          "--output", str(tmp_path / "bad")])
    assert_user_error(rc, err, "threshold:", "zlpr decision: logit 0", "0.3")
    bad = fp.write_yaml(tmp_path / "bad.yaml", {"threshold": "tune-per-label"})
    rc, _, err = run_cli(["train", "--config", str(bad), "--method", "zlpr", "--dataset", f"vectors:{data[0]}",
                          "--output", str(tmp_path / "bad")])
    assert_user_error(rc, err, "threshold:", "zlpr decision: logit 0", "'tune-per-label'")


def test_end_to_end_with_zlpr_and_cl_scl(data, tmp_path):
    run = tmp_path / "e2e"
    rc, err = train(data, run, "--method", "end-to-end", "--classifier-loss", "zlpr", "--loss", "cl_scl")
    assert rc == 0, err
    m = metrics(run)
    assert (m["method"], m["loss"], m["threshold"], m["threshold_source"]) == ("end-to-end", "cl_scl", 0.5,
                                                                              "zlpr decision: logit 0")
    assert fp.read_config_yaml(run)["classifier_loss"] == "zlpr"
    assert mlsupcon.load(run).classifier.projection is not None
    # the option is end-to-end's; asl and bce are the other choices
    rc, err = train(data, tmp_path / "x", "--method", "bce", "--classifier-loss", "zlpr")
    assert_user_error(rc, err, "classifier_loss: only the end-to-end method uses it")
    rc, err = train(data, tmp_path / "x", "--method", "end-to-end", "--classifier-loss", "nope")
    assert_user_error(rc, err, "classifier_loss: expected one of ('bce', 'asl', 'zlpr')")


def test_label_nce_on_end_to_end_logits(data, tmp_path):
    run = tmp_path / "lnce"
    rc, err = train(data, run, "--method", "end-to-end", "--loss", "label_nce", "--temperature", "0.5")
    assert rc == 0, err
    assert metrics(run)["loss"] == "label_nce"
    assert fp.read_config_yaml(run)["loss_options"] == {"temperature": 0.5}
    assert mlsupcon.load(run).classifier.projection is None  # on the logits: no projection head
    rc, err = train(data, tmp_path / "x", "--method", "two-stage", "--loss", "label_nce")
    assert_user_error(rc, err, "'label_nce' is a contrastive loss on a classifier's logits", "--method end-to-end")


def test_cl_jspcl_on_end_to_end_logits_and_cl_icl_refused(data, tmp_path):
    run = tmp_path / "jspcl"
    rc, err = train(data, run, "--method", "end-to-end", "--loss", "cl_jspcl")
    assert rc == 0, err
    assert metrics(run)["loss"] == "cl_jspcl"
    assert mlsupcon.load(run).classifier.projection is None  # on the logits: no projection head
    rc, err = train(data, tmp_path / "x", "--method", "two-stage", "--loss", "cl_jspcl")
    assert_user_error(rc, err, "'cl_jspcl' is a contrastive loss on a classifier's logits", "--method end-to-end",
                      "build('cl_jspcl')")
    rc, err = train(data, tmp_path / "x", "--method", "end-to-end", "--loss", "cl_jspcl", "--queue-size", "8")
    assert_user_error(rc, err, "queue_size:", "not 'cl_jspcl'")
    for method in ("two-stage", "end-to-end"):
        rc, err = train(data, tmp_path / "x", "--method", method, "--loss", "cl_icl")
        assert_user_error(rc, err, "'cl_icl' takes per-label embeddings [B, C, D]", "build('cl_icl')")
    assert not (tmp_path / "x").exists()
    # zlpr stays a classifier loss of its own method
    rc, err = train(data, tmp_path / "x", "--method", "two-stage", "--loss", "zlpr")
    assert_user_error(rc, err, "loss: 'zlpr' is a classifier loss; use --method zlpr")


def test_compare_rows_bce_zlpr_msc_cl_scl(data, tmp_path):
    path, cfg = data
    out = tmp_path / "cmp"
    rc, _, err = run_cli(["compare", "--dataset", f"vectors:{path}", "--encoder", "mlp", "--epochs", "1",
                          "--classifier-epochs", "1", "--batch-size", "16", "--no-progress", "--config", str(cfg),
                          "--losses", "bce,zlpr,msc,cl_scl", "--seeds", "1", "--output", str(out), "--no-plots"])
    assert rc == 0, err
    lines = (out / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = {r.split(",")[0]: dict(zip(header, r.split(","))) for r in lines[1:]}
    assert list(rows) == ["bce", "zlpr", "msc", "cl_scl"]
    assert {k: r["method"] for k, r in rows.items()} == {"bce": "bce", "zlpr": "zlpr", "msc": "two-stage",
                                                         "cl_scl": "two-stage"}
    assert float(rows["zlpr"]["threshold"]) == 0.5
    assert metrics(next((out / "msc").glob("seed*")))["loss"] == "msc"
    assert "zlpr: 0.5 (zlpr decision: logit 0)" in (out / "report.md").read_text()
    # every row's configuration is checked before any run: cl_jspcl needs end-to-end
    rc, _, err = run_cli(["compare", "--dataset", f"vectors:{path}", "--encoder", "mlp", "--losses", "bce,cl_jspcl",
                          "--config", str(cfg), "--output", str(tmp_path / "cmp2"), "--no-plots"])
    assert_user_error(rc, err, "losses: row 'cl_jspcl'", "--method end-to-end")
    assert not (tmp_path / "cmp2" / "bce").exists()
