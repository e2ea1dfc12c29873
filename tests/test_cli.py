"""The ``mlsupcon`` command: config precedence, user errors (exit 2, one line, no traceback),
and one real subprocess run of the installed console script."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import fixtures_pipeline as fp
import pytest
from fixtures_pipeline import assert_user_error, run_cli

from mlsupcon.cli.main import main

TINY = ["--dataset", "yeast", "--encoder", "mlp", "--method", "bce", "--epochs", "1", "--batch-size", "16",
        "--max-examples", "40", "--no-progress"]


# ---------------------------------------------------------------------------------- precedence

def test_flags_override_yaml(tmp_path):
    yml = {"method": "end-to-end", "loss": "all", "epochs": 3, "batch_size": 64, "lr": 0.005,
           "encoder_options": {"hidden_dims": [16]}, "dataset_options": {"max_examples_per_split": 200},
           "loss_options": {"temperature": 0.3}, "projection_dim": 8, "seed": 11}
    cfg = fp.write_yaml(tmp_path / "cfg.yaml", yml)
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--config", str(cfg), "--dataset", "yeast", "--encoder", "mlp", "--epochs", "1",
                          "--batch-size", "16", "--max-examples", "50", "--temperature", "0.2", "--loss", "simdis",
                          "--seed", "5", "--no-progress", "--output", str(out)])
    assert rc == 0, err
    saved = fp.read_config_yaml(out)
    # flags win ...
    assert saved["epochs"] == 1 and saved["batch_size"] == 16 and saved["loss"] == "simdis" and saved["seed"] == 5
    assert saved["dataset_options"] == {"max_examples_per_split": 50}
    assert saved["loss_options"] == {"temperature": 0.2}
    assert saved["progress"] is False and saved["output"] == str(out)
    # ... over the YAML, which wins over the defaults
    assert saved["method"] == "end-to-end" and saved["lr"] == 0.005 and saved["projection_dim"] == 8
    assert saved["encoder_options"] == {"hidden_dims": [16], "dropout": 0.2}  # the preset's dropout stays
    assert saved == fp.expected_config(
        yml, {"dataset": "yeast", "encoder": "mlp", "epochs": 1, "batch_size": 16, "loss": "simdis", "seed": 5,
              "progress": False, "output": str(out)},
        {"dataset_options": {"max_examples_per_split": 50}, "loss_options": {"temperature": 0.2}})
    # and the run really used them
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_test"] == 50 and m["seed"] == 5 and m["loss"] == "simdis" and m["method"] == "end-to-end"
    with open(out / "logs" / "end_to_end" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {int(r["epoch"]) for r in rows} == {0}
    assert max(int(r["step"]) for r in rows) == 50 // 16 - 1  # batches of 16, last partial one dropped


def test_load_config_precedence(tmp_path):
    from mlsupcon.training.config import TrainConfig, load_config

    cfg_path = fp.write_yaml(tmp_path / "c.yaml", {"epochs": 4, "lr": 0.01, "head": "attention"})
    cfg = load_config(cfg_path, {"epochs": 2, "lr": None})
    assert isinstance(cfg, TrainConfig)
    assert (cfg.epochs, cfg.lr, cfg.head, cfg.batch_size) == (2, 0.01, "attention", TrainConfig().batch_size)
    assert load_config(None, {}).to_dict() == TrainConfig().to_dict()


# ---------------------------------------------------------------------------------- user errors

def test_unknown_yaml_key(tmp_path):
    cfg = fp.write_yaml(tmp_path / "cfg.yaml", {"epochs": 1, "frobnicate": 3})
    rc, _, err = run_cli(["train", *TINY, "--config", str(cfg), "--output", str(tmp_path / "run")])
    assert_user_error(rc, err, "frobnicate", str(cfg))
    assert not (tmp_path / "run").exists()


BAD_VALUES = {
    "epochs 0": (["--epochs", "0"], ["epochs"]),
    "batch size 0": (["--batch-size", "0"], ["batch_size"]),
    "unknown encoder": (["--encoder", "nope"], ["nope", "mlp"]),
    "unknown method": (["--method", "nope"], ["nope", "two-stage"]),
    "unknown loss": (["--method", "two-stage", "--loss", "nope"], ["nope", "simdis"]),
    "unknown head": (["--head", "nope"], ["nope", "linear"]),
    "unknown dataset": (["--dataset", "nope"], ["nope", "yeast"]),
    "missing jsonl": (["--dataset", "jsonl:{tmp}/missing.jsonl"], ["missing.jsonl"]),
    "missing mimic dir": (["--dataset", "mimic-caml:{tmp}/no_mimic"], ["no_mimic"]),
    "missing coco file": (["--dataset", "coco:{tmp}/none.json"], ["none.json"]),
    "missing config": (["--config", "{tmp}/absent.yaml"], ["absent.yaml"]),
    "encoder/modality mismatch": (["--encoder", "cnn"], ["cnn", "yeast"]),
    "attention head on vectors": (["--head", "attention"], ["attention"]),
    "max examples 0": (["--max-examples", "0"], ["max_examples_per_split"]),
    "negative lr": (["--lr", "-1"], ["lr"]),
    "missing model path": (["--encoder", "resnet", "--model-path", "{tmp}/no_model"], ["no_model"]),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_are_user_errors(case, tmp_path):
    extra, needles = BAD_VALUES[case]
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", *TINY, *extra, "--output", str(out)])
    assert_user_error(rc, err, *[n.replace("{tmp}", str(tmp_path)) for n in needles])
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("name, values, method, needle", [
    ("bad encoder option", {"encoder_options": {"widths": 3}}, "bce", "widths"),
    ("bad dataset option", {"dataset_options": {"colour": 3}}, "bce", "colour"),
    ("bad loss option", {"loss": "simdis", "loss_options": {"temprature": 0.1}}, "two-stage", "temprature"),
    ("bad view option", {"loss": "simdis", "view_options": {"bogus": 1}}, "end-to-end", "bogus"),
    ("threshold out of range", {"threshold": 1.5}, "bce", "threshold"),
    ("not a mapping", ["epochs", 1], "bce", "mapping"),
])
def test_bad_yaml_values_are_user_errors(name, values, method, needle, tmp_path):
    cfg = fp.write_yaml(tmp_path / "cfg.yaml", values)
    rc, _, err = run_cli(["train", *TINY, "--method", method, "--config", str(cfg),
                          "--output", str(tmp_path / "run")])
    assert_user_error(rc, err, needle)
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--devices", "abc"], "devices"),
    (["--devices", "0"], "devices"),
    (["--accelerator", "bogus"], "bogus"),
    (["--strategy", "bogus"], "bogus"),
])
def test_bad_trainer_settings_are_user_errors(extra, needle, tmp_path):
    rc, _, err = run_cli(["train", *TINY, *extra, "--output", str(tmp_path / "run")])
    assert_user_error(rc, err, "trainer", needle)


def test_invalid_yaml_is_one_line(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("epochs: [1\nlr: 0.1\n")
    rc, _, err = run_cli(["train", *TINY, "--config", str(cfg), "--output", str(tmp_path / "run")])
    assert_user_error(rc, err, "broken.yaml", "not valid YAML", "line")


def test_failed_run_leaves_previous_run_intact(tmp_path):
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", *TINY, "--output", str(out)])
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in (out / "config.yaml", out / "metrics.json")}
    # --overwrite (without it the folder is refused at once): nothing goes before the data is known good
    rc, _, err = run_cli(["train", *TINY, "--dataset", "nope", "--overwrite", "--output", str(out)])
    assert_user_error(rc, err, "nope")
    # the folder still describes the successful run: config.yaml matches metrics.json
    assert {p.name: p.read_bytes() for p in (out / "config.yaml", out / "metrics.json")} == before


def test_evaluate_errors(tmp_path):
    rc, _, err = run_cli(["evaluate", str(tmp_path / "nothing")])
    assert_user_error(rc, err, "model.json")
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", *TINY, "--output", str(out)])
    assert rc == 0, err
    rc, _, err = run_cli(["evaluate", str(out), "--split", "holdout"])
    assert_user_error(rc, err, "holdout", "validation")
    (out / "model" / "weights.safetensors").write_bytes(b"garbage")
    rc, _, err = run_cli(["evaluate", str(out)])
    assert_user_error(rc, err, "weights.safetensors")


@pytest.mark.parametrize("extra, needle", [
    (["--losses", "bce,nope", "--seeds", "1"], "nope"),
    (["--losses", "bce", "--seeds", "0"], "seeds"),
    (["--losses", ",", "--seeds", "1"], "losses"),
    (["--losses", "bce", "--epochs", "0"], "epochs"),
])
def test_compare_user_errors(extra, needle, tmp_path):
    rc, _, err = run_cli(["compare", "--dataset", "yeast", *extra, "--output", str(tmp_path / "cmp")])
    assert_user_error(rc, err, needle)
    assert not (tmp_path / "cmp" / "results.csv").exists()


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "abc"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main([]) == 2


def test_listing_commands(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    assert "simdis" in out and "himulcon" in out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("debtags", "yeast", "fashion-mosaic", "jsonl", "mimic-caml", "mimic-repro", "coco"):
        assert name in out


# ---------------------------------------------------------------------------------- subprocess

def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "mlsupcon"
    assert script.is_file(), f"console script {script} not installed (pip install -e .)"
    return [str(script)]


def test_console_script_subprocess(tmp_path):
    """The installed ``mlsupcon`` script: train, evaluate --json, and a user error, as a user runs them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore"}
    env.pop("MLSUPCON_DEBUG", None)
    out = tmp_path / "run"
    cmd = _console_script()
    p = subprocess.run([*cmd, "train", *TINY, "--output", str(out)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert f"wrote {out}/metrics.json" in p.stdout and "micro_f1" in p.stdout
    m = fp.check_run_folder(out)

    p = subprocess.run([*cmd, "evaluate", str(out), "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    again = json.loads(p.stdout[p.stdout.index("{"):])
    for key in ("micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5", "threshold"):
        assert again[key] == pytest.approx(m[key], abs=1e-6), key

    p = subprocess.run([*cmd, "train", *TINY, "--epochs", "0", "--output", str(tmp_path / "bad")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert_user_error(p.returncode, p.stderr, "epochs")
