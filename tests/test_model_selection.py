"""Model selection in every stage: the contrastive stage 1 scored by kNN mAP on a validation
subset (``val/knn_map``), best epoch kept, early stopping; the warm-up + cosine learning-rate
schedule; the note when a stage reaches its epoch cap while still improving.

The kNN score is scripted (monkeypatched) where a test needs a given curve; the runs are tiny
(yeast, 80 examples per split, an MLP with one hidden layer of 32).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
import torch
from fixtures_pipeline import assert_user_error, run_cli

from mlsupcon.training.modules import KNNMonitor
from mlsupcon.training.schedule import build_scheduler, lr_factor, warmup_steps

STEPS_PER_EPOCH = 5  # 80 training examples, batch 16, last partial batch dropped


def _train(tmp: Path, name: str, yaml_values: dict | None = None, **flags) -> tuple[int, str, str, Path]:
    run = tmp / name
    flags = {"dataset": "yeast", "encoder": "mlp", "batch-size": 16, "max-examples": 80, "seed": 3, **flags}
    argv = ["train", "--output", str(run), "--no-progress"]
    for key, value in flags.items():
        argv += [f"--{key}", str(value)]
    # stated in full, whatever a preset of the dataset says: a linear probe on the frozen encoder
    values = {"encoder_options": fp.TINY_MLP, "projection_dim": 16, "finetune_encoder": False, "patience": 5,
              "stage1_selection": True, "lr_schedule": "cosine",
              **(yaml_values or {})}
    argv += ["--config", str(fp.write_yaml(tmp / f"{name}.yaml", values))]
    rc, out, err = run_cli(argv)
    return rc, out, err, run


def _column(run: Path, stage: str, key: str) -> list[tuple[int, float]]:
    """(epoch, value) of a logged metric, the value rounded to float32 precision (as logged)."""
    with open(run / "logs" / stage / "metrics.csv", newline="") as fh:
        return [(int(r["epoch"]), round(float(r[key]), 6)) for r in csv.DictReader(fh) if r.get(key)]


class _ScriptedScores:
    """Replaces KNNMonitor.score: returns the scripted values in turn and keeps a copy of the
    encoder weights it was asked to score (one per validation epoch)."""

    def __init__(self, monkeypatch, values: list[float]) -> None:
        self.values, self.states = list(values), []
        scripted = self

        def score(monitor, encoder, device):
            assert isinstance(monitor, KNNMonitor)
            scripted.states.append({k: v.detach().clone() for k, v in encoder.state_dict().items()})
            return scripted.values.pop(0)

        monkeypatch.setattr(KNNMonitor, "score", score)


def _exported_encoder(run: Path) -> dict[str, torch.Tensor]:
    from mlsupcon.training.export import load_classifier

    model, _ = load_classifier(run / "model")
    return model.encoder.state_dict()


def test_stage_one_logs_knn_map_keeps_the_best_epoch_stops_early_and_resumes_with_it(monkeypatch, tmp_path):
    # epoch 1 is the best; epochs 2 and 3 are worse, so with patience 2 the stage stops after epoch 3 of 6
    scripted = _ScriptedScores(monkeypatch, [0.2, 0.6, 0.4, 0.3])
    rc, _, err, run = _train(tmp_path, "run", {"patience": 2}, method="two-stage", loss="simdis", epochs=6,
                             **{"classifier-epochs": 1})
    assert rc == 0, err
    assert scripted.values == []  # scored once per epoch, four epochs
    assert _column(run, "contrastive", "val/knn_map") == [(0, 0.2), (1, 0.6), (2, 0.4), (3, 0.3)]
    # the validation contrastive loss is still logged every epoch
    assert [e for e, _ in _column(run, "contrastive", "val/contrastive_loss")] == [0, 1, 2, 3]
    ckpt = torch.load(run / "checkpoints" / "contrastive" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 * STEPS_PER_EPOCH  # early stopping: 4 of the 6 epochs
    state = ckpt["mlsupcon_module"]
    assert state["best_epoch"] == 1 and state["best_score"] == pytest.approx(0.6)
    assert {k.split(".")[0] for k in state["best_state"]} == {"encoder", "projection"}
    # The epochs differ (training went on) and stage 2 got the encoder of epoch 1, not the last one.
    best, last = scripted.states[1], scripted.states[3]
    assert any(not torch.equal(best[k], last[k]) for k in best)
    exported = _exported_encoder(run)
    assert exported.keys() == best.keys()
    for k in best:
        torch.testing.assert_close(exported[k], best[k], rtol=0, atol=0)
    assert "still improving" not in err  # best epoch 1 of a stage stopped early: no cap note
    metrics = json.loads((run / "metrics.json").read_text())
    assert not any("still improving" in n for n in metrics["notes"])

    # --resume of the finished run loads stage 1 with its best state: nothing is scored or
    # trained again, and the numbers are the same.
    rc, _, err = run_cli(["train", "--output", str(run), "--resume", "--no-progress"])
    assert rc == 0, err
    assert "stage 'contrastive' had finished" in err
    again = json.loads((run / "metrics.json").read_text())
    for key in ("map", "micro_f1", "macro_auc", "threshold"):
        assert again[key] == metrics[key] or (math.isnan(again[key]) and math.isnan(metrics[key])), key
    for k, v in _exported_encoder(run).items():
        torch.testing.assert_close(v, best[k], rtol=0, atol=0)


def test_a_stage_at_its_epoch_cap_while_improving_says_so(monkeypatch, tmp_path):
    _ScriptedScores(monkeypatch, [0.1, 0.2, 0.3])
    rc, _, err, run = _train(tmp_path, "run", method="two-stage", loss="any", epochs=3, **{"classifier-epochs": 1})
    assert rc == 0, err
    note = ("stage 'contrastive' reached epochs=3 while val/knn_map was still improving (best at the last epoch); "
            "a larger --epochs may help")
    assert err.count(note) == 1
    assert note in json.loads((run / "metrics.json").read_text())["notes"]
    assert _column(run, "contrastive", "val/knn_map") == [(0, 0.1), (1, 0.2), (2, 0.3)]


def test_the_real_knn_score_is_logged_and_draws_no_global_randomness(tmp_path):
    rc, _, err, run = _train(tmp_path, "run", {"patience": 10}, method="two-stage", loss="simdis", epochs=2,
                             **{"classifier-epochs": 1})
    assert rc == 0, err
    values = _column(run, "contrastive", "val/knn_map")
    assert [e for e, _ in values] == [0, 1] and all(0 < v <= 1 for _, v in values)

    from mlsupcon.training.batches import tensor_loader
    from mlsupcon.training.modules import FeatureInput

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 8, generator=gen), (torch.rand(60, 4, generator=gen) < 0.4).float()
    monitor = KNNMonitor(tensor_loader(x[:40], y[:40], 16, shuffle=False),
                         tensor_loader(x[40:], y[40:], 16, shuffle=False), k=5)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    first = monitor.score(FeatureInput(), "cpu")
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and np.random.get_state()[2] == np_state[2]
    assert monitor.score(FeatureInput(), "cpu") == first
    # labels that the features predict perfectly score 1
    perfect = KNNMonitor(tensor_loader(y[:40] * 5 + 0.01 * x[:40, :4], y[:40], 16, shuffle=False),
                         tensor_loader(y[40:] * 5, y[40:], 16, shuffle=False), k=3)
    assert perfect.score(FeatureInput(), "cpu") > first


def test_lr_schedule_formula():
    # auto warm-up: a tenth of the stage's epochs, at most one epoch
    assert warmup_steps(None, 10, 30) == 10 and warmup_steps(None, 10, 5) == 5 and warmup_steps(0, 10, 5) == 0
    assert warmup_steps(2.5, 10, 5) == 25 and warmup_steps(100, 10, 5) == 50
    w, total, r = 10, 110, 0.05
    assert lr_factor(0, w, total, r) == pytest.approx(1 / w)
    assert lr_factor(w - 1, w, total, r) == pytest.approx(1.0)  # the last warm-up step reaches lr
    assert lr_factor(w, w, total, r) == pytest.approx(1.0)
    assert lr_factor(w + 50, w, total, r) == pytest.approx(r + (1 - r) * 0.5)  # half-way through the decay
    assert lr_factor(total, w, total, r) == pytest.approx(r)
    factors = [lr_factor(s, w, total, r) for s in range(w, total)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))  # monotone decay after the warm-up
    assert lr_factor(0, 0, total, r) == pytest.approx(1.0)  # no warm-up
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert build_scheduler(opt, "constant", 100, 10, None, 0.0) is None
    with pytest.raises(ValueError, match="lr_schedule"):
        build_scheduler(opt, "linear", 100, 10, None, 0.0)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_every_step_of_a_stage_follows_the_schedule(schedule, monkeypatch, tmp_path):
    from mlsupcon.training.modules import ClassifierModule

    lrs = []
    original = ClassifierModule.training_step

    def step(self, batch, idx):
        lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return original(self, batch, idx)

    monkeypatch.setattr(ClassifierModule, "training_step", step)
    lr, epochs, ratio = 0.01, 3, 0.1
    rc, _, err, run = _train(tmp_path, "run", {"patience": 10, "min_lr_ratio": ratio}, method="bce", epochs=epochs,
                             lr=lr, **{"lr-schedule": schedule, "warmup-epochs": 1})
    assert rc == 0, err
    total = epochs * STEPS_PER_EPOCH
    assert len(lrs) == total
    if schedule == "constant":
        assert lrs == [pytest.approx(lr)] * total
        return
    w = STEPS_PER_EPOCH
    expected = [lr * lr_factor(s, w, total, ratio) for s in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs[0] == pytest.approx(lr / w)  # step 0: the first warm-up step
    assert lrs[w] == pytest.approx(lr)  # the end of the warm-up: the full learning rate
    last = lr * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * (total - 1 - w) / (total - w))))
    assert lrs[-1] == pytest.approx(last) and lrs[-1] < 0.2 * lr
    # the learning rate reached at the end of every epoch is in the log
    logged = [v for _, v in _column(run, "end_to_end", "train/lr")]
    assert logged == pytest.approx([lr * lr_factor(s, w, total, ratio) for s in (5, 10, 15)], abs=1e-6)


@pytest.mark.parametrize("key, value, needle", [
    ("lr_schedule", "linear", "lr_schedule: expected 'cosine' or 'constant'"),
    ("warmup_epochs", -1, "warmup_epochs: expected a number >= 0"),
    ("warmup_epochs", "one", "warmup_epochs: expected a number >= 0"),
    ("min_lr_ratio", 1.5, "min_lr_ratio: expected a number in [0, 1]"),
    ("patience", -2, "patience: expected an integer >= 0"),
    ("patience", 2.5, "patience: expected an integer >= 0"),
])
def test_schedule_and_patience_options_are_checked(key, value, needle, tmp_path):
    rc, _, err, _ = _train(tmp_path, "run", {key: value}, method="bce", epochs=1)
    assert_user_error(rc, err, needle)


def test_cli_flags_set_the_schedule_and_patience():
    from mlsupcon.cli.main import _overrides, build_parser
    from mlsupcon.training.config import TrainConfig, load_config

    args = build_parser().parse_args(["train", "--lr-schedule", "constant", "--warmup-epochs", "0.5",
                                      "--patience", "3"])
    cfg = load_config(None, _overrides(args, "train"))
    assert (cfg.lr_schedule, cfg.warmup_epochs, cfg.patience) == ("constant", 0.5, 3)
    defaults = TrainConfig()
    assert (defaults.lr_schedule, defaults.warmup_epochs, defaults.min_lr_ratio) == ("cosine", None, 0.0)
