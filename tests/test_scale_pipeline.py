"""Scale-out through the CLI: memory queue + momentum keys, and a real 2-process DDP run (gloo)."""

import csv
import json
import os
import subprocess
import sys

import pytest

from mlsupcon.cli.main import main

TINY = ["--dataset", "yeast", "--encoder", "mlp", "--method", "two-stage", "--epochs", "2",
        "--classifier-epochs", "2", "--batch-size", "64", "--no-progress"]


def _steps_per_epoch(run):
    with open(run / "logs" / "contrastive" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train/contrastive_loss")]
    return int(rows[0]["step"]) + 1


def test_queue_and_momentum_run_and_checkpoint_the_queue(tmp_path):
    run = tmp_path / "q"
    assert main(["train", *TINY, "--loss", "mulsupcon", "--queue-size", "256", "--momentum", "0.99",
                 "--output", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert 0 < m["map"] <= 1
    import torch

    state = torch.load(run / "checkpoints" / "contrastive" / "last.ckpt", weights_only=True)["state_dict"]
    assert "loss_fn.queue.features" in state and state["loss_fn.queue.features"].shape == (256, 128)
    assert int(state["loss_fn.queue.filled"]) == 256  # 36 steps × 64 rows wrapped around
    assert any(k.startswith("momentum_encoder.encoder.") for k in state)


def test_queue_rejects_bad_combinations(tmp_path, capsys):
    assert main(["train", *TINY, "--loss", "simdis", "--momentum", "0.99", "--output", str(tmp_path / "a")]) == 2
    assert "queue_size" in capsys.readouterr().err
    assert main(["train", *TINY, "--loss", "simdis", "--queue-size", "-1", "--output", str(tmp_path / "b")]) == 2
    assert "queue_size" in capsys.readouterr().err


@pytest.mark.distributed
def test_two_process_ddp_training_writes_metrics(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(["train", *TINY, "--loss", "simdis", "--output", str(single)]) == 0
    cmd = [sys.executable, "-m", "mlsupcon.cli.main", "train", *TINY, "--loss", "simdis", "--queue-size", "128",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--output", str(ddp)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads((ddp / "metrics.json").read_text())
    for key in ("micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5", "threshold"):
        assert 0 <= m[key] <= 1
    # Each of the 2 ranks sees half the batches of an epoch.
    assert _steps_per_epoch(ddp) <= (_steps_per_epoch(single) + 1) // 2
    assert out.stdout.count("wrote") == 1  # only rank 0 reports and writes
