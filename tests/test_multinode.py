"""Scale-out proven on CPU with gloo (docs/scaling.md, docs/failures.md "A process dies").

* two torchrun "nodes" (one process each, rendezvous on 127.0.0.1) run the documented
  multi-node command: one set of artefacts (rank 0's), and first-step gradients equal to one
  process on the concatenated batch;
* a 2-process DDP run killed with SIGKILL mid-epoch and resumed ends as an uninterrupted one;
* a process that dies mid-step makes the other stop with one line, not hang.

Every run is tiny (yeast subsample, a 32-wide MLP, a few steps); the runs are subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlsupcon.cli.main import main
from mlsupcon.training.debug import FIRST_STEP_ENV
from mlsupcon.training.reliability import ResumableCheckpoint

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
TINY = {"encoder_options": {"hidden_dims": [32], "dropout": 0.2}, "projection_dim": 16}
# No randomness in a training step (identity views, no dropout, which the yeast preset would
# otherwise bring): gradients comparable across launches.
DETERMINISTIC = {"encoder_options": {"hidden_dims": [32], "dropout": 0.0}, "projection_dim": 16,
                 "view_options": {"p_mask": 0.0, "noise_std": 0.0}}


def _yaml(path: Path, values: dict) -> Path:
    path.write_text(json.dumps(values))  # JSON is YAML
    return path


def _env(**extra) -> dict:
    drop = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
            "MLSUPCON_DEBUG", FIRST_STEP_ENV)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}


def _popen(argv: list[str], **env) -> subprocess.Popen:
    # A session of its own: the run's processes (Lightning's extra rank too) can be killed together.
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env),
                            cwd=ROOT, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _kill_group(proc)
    return proc.returncode, out, err


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reports(err: str) -> list[str]:
    """The lines mlsupcon printed on stderr, but the per-epoch summaries."""
    return [line for line in err.splitlines() if line.startswith("mlsupcon:") and not line.startswith("mlsupcon: [")]


from fixtures_pipeline import metric_numbers as _numbers  # noqa: E402

# ============================================================================ 1. two torchrun nodes

TORCHRUN = Path(sys.executable).with_name("torchrun")
NODE_FLAGS = ["--nnodes", "2", "--nproc-per-node", "1", "--master-addr", "127.0.0.1"]
TRAIN_FLAGS = ["--dataset", "yeast", "--max-examples", "120", "--epochs", "1", "--classifier-epochs", "1",
               "--no-progress", "--accelerator", "cpu", "--devices", "1"]


def _node_command(rank: int, port: int, config: Path, output: Path) -> list[str]:
    """The multi-node command of docs/scaling.md, for node ``rank`` of 2 on this machine."""
    return [str(TORCHRUN), *NODE_FLAGS, "--node-rank", str(rank), "--master-port", str(port),
            "-m", "mlsupcon.cli.main", "train", "--config", str(config), *TRAIN_FLAGS, "--batch-size", "16",
            "--num-nodes", "2", "--strategy", "ddp", "--output", str(output)]


def _flags(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("-")}


def test_the_documented_multinode_command_is_the_tested_one():
    """docs/scaling.md's torchrun recipe uses exactly the launcher and mlsupcon flags of the test below."""
    doc = (ROOT / "docs" / "scaling.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", doc, re.S) if "torchrun" in b)
    argv = shlex.split(" ".join(line.split("#")[0] for line in block.splitlines()).replace("\\", " "))
    tested = _node_command(0, 29400, Path("c.yaml"), Path("out"))
    assert argv[0] == "torchrun" and argv[argv.index("-m") + 1:argv.index("-m") + 3] == ["mlsupcon.cli.main", "train"]
    launcher = argv[:argv.index("-m")]
    assert _flags(launcher) == _flags(tested[:tested.index("-m")])
    # the mlsupcon flags of the recipe, less the data the test chooses (--dataset, --max-examples, ...)
    ours = _flags(tested[tested.index("-m"):]) - _flags(TRAIN_FLAGS[:8]) - {"--batch-size", "--no-progress"}
    assert _flags(argv[argv.index("-m"):]) == ours


def test_two_torchrun_nodes_train_like_one_process_on_the_concatenated_batch(tmp_path, monkeypatch):
    config = _yaml(tmp_path / "det.yaml", DETERMINISTIC)
    dump, outs, port = tmp_path / "dump", [tmp_path / "node0" / "run", tmp_path / "node1" / "run"], _free_port()
    procs = [_popen(_node_command(r, port, config, outs[r]), **{FIRST_STEP_ENV: str(dump)}) for r in (0, 1)]
    results = [_finish(p) for p in procs]
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    # One set of artefacts, rank 0's: node 1 (its own --output here) wrote nothing at all.
    metrics = json.loads((outs[0] / "metrics.json").read_text())
    assert 0 < metrics["map"] <= 1 and (outs[0] / "model" / "weights.safetensors").is_file()
    assert not outs[1].exists()
    assert sum(out.count("wrote") for _, out, _ in results) == 1

    # One process, batch 2 x 16, the same data and seed (in this process).
    monkeypatch.setenv(FIRST_STEP_ENV, str(tmp_path / "dump1"))
    assert main(["train", "--config", str(config), *TRAIN_FLAGS, "--batch-size", "32",
                 "--output", str(tmp_path / "single")]) == 0
    ranks = [torch.load(dump / f"contrastive.rank{r}.pt") for r in (0, 1)]
    single = torch.load(tmp_path / "dump1" / "contrastive.rank0.pt")
    assert [r["world_size"] for r in ranks] == [2, 2] and single["world_size"] == 1
    # The two ranks' batches are the single process's batch, in order ...
    assert torch.equal(torch.cat([r["indices"] for r in ranks]), single["indices"])
    assert len(single["indices"]) == 32
    # ... and the gradients DDP applies (the same on both ranks) are the single process's.
    assert set(single["grads"]) == set(ranks[0]["grads"]) and len(single["grads"]) >= 4
    for name, g in single["grads"].items():
        assert torch.equal(ranks[0]["grads"][name], ranks[1]["grads"][name]), name
        torch.testing.assert_close(ranks[0]["grads"][name], g, rtol=1e-5, atol=1e-6 * float(g.abs().max()))


# ============================================================================ 2. DDP resume, 3. faults

# Runs the CLI (Lightning's launcher re-runs this script for rank 1); logs each rank's training
# steps ("<stage> <global step> <batch indices>") and injects a fault where FAULT says:
# "exit|kill RANK STAGE STEP" (that rank calls os._exit(1), or SIGKILLs the whole run).
_WRAPPER = """
import os, signal, sys, time
from mlsupcon.training import modules
log, fault = os.environ.get("STEPS_LOG"), os.environ.get("FAULT")
for cls in (modules.ContrastiveModule, modules.ClassifierModule):
    def step(self, batch, idx, _orig=cls.training_step):
        if fault:
            what, rank, stage, at = fault.split()
            if (self.global_rank, self.stage, self.global_step) == (int(rank), stage, int(at)):
                with open(os.environ["FAULT_LOG"], "w") as fh:
                    fh.write(repr(time.time()))
                if what == "exit":
                    os._exit(1)
                os.killpg(0, signal.SIGKILL)
        out = _orig(self, batch, idx)
        if log:
            with open(f"{log}.rank{self.global_rank}", "a") as fh:
                fh.write(f"{self.stage} {self.global_step} {batch[2].tolist()}\\n")
        return out
    cls.training_step = step
from mlsupcon.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

# 300 training examples, 2 ranks x 16: 9 steps per epoch; checkpoints every 2 steps.
DDP_FLAGS = ["--dataset", "yeast", "--max-examples", "300", "--epochs", "2", "--classifier-epochs", "2",
             "--batch-size", "16", "--seed", "7", "--checkpoint-every-n-steps", "2", "--no-progress",
             "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]


def _ddp(tmp: Path, argv: list[str], **env) -> subprocess.Popen:
    wrapper = tmp / "wrapper.py"
    wrapper.write_text(_WRAPPER)
    return _popen([sys.executable, str(wrapper), "train", *argv], **env)


def _steps(log: Path, rank: int) -> list[str]:
    path = Path(f"{log}.rank{rank}")
    return path.read_text().splitlines() if path.is_file() else []


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory):
    """An uninterrupted 2-process run: its metrics, each rank's steps and its folder."""
    tmp = tmp_path_factory.mktemp("ddp_reference")
    config = _yaml(tmp / "tiny.yaml", TINY)
    rc, _, err = _finish(_ddp(tmp, ["--config", str(config), *DDP_FLAGS, "--output", str(tmp / "run")],
                              STEPS_LOG=str(tmp / "steps")))
    assert rc == 0, err[-3000:]
    return (json.loads((tmp / "run" / "metrics.json").read_text()), [_steps(tmp / "steps", r) for r in (0, 1)],
            tmp / "run")


def test_ddp_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(ddp_reference, tmp_path):
    reference, ref_steps, _ = ddp_reference
    config, run = _yaml(tmp_path / "tiny.yaml", TINY), tmp_path / "run"
    # SIGKILL to both processes at step 13 (epoch 1, batch 4 of 9): the last checkpoint is step 12's.
    proc = _ddp(tmp_path, ["--config", str(config), *DDP_FLAGS, "--output", str(run)],
                FAULT="kill 0 contrastive 13", FAULT_LOG=str(tmp_path / "fault"), STEPS_LOG=str(tmp_path / "killed"))
    rc, _, err = _finish(proc)
    assert rc == -signal.SIGKILL, err[-3000:]
    ckpt = torch.load(run / "checkpoints" / "contrastive" / "last.ckpt", weights_only=True)
    state = ckpt["callbacks"][ResumableCheckpoint.STATE_KEY]
    assert (state["epoch"], state["batches_done"], state["global_step"]) == (1, 3, 12)
    # every rank's random state is in rank 0's checkpoint, and the ranks draw different views
    rngs = state["rng_by_rank"]
    assert len(rngs) == 2 and not torch.equal(rngs[0]["torch"], rngs[1]["torch"])
    assert not (run / "metrics.json").exists()

    rc, out, err = _finish(_ddp(tmp_path, ["--output", str(run), "--resume", "--no-progress"],
                                STEPS_LOG=str(tmp_path / "resumed")))
    assert rc == 0, err[-3000:]
    ckpt_path = run / "checkpoints" / "contrastive" / "last.ckpt"
    assert [line for line in _reports(err) if "resuming" in line] == [
        f"mlsupcon: resuming stage 'contrastive' from {ckpt_path} (epoch 1, batch 3 of it, step 12)"]
    # Each rank takes exactly the remaining steps of the uninterrupted run, with the same examples ...
    for rank in (0, 1):
        assert _steps(tmp_path / "resumed", rank) == ref_steps[rank][12:], rank
    # ... and the run ends with exactly its numbers (test and validation metrics, threshold).
    assert _numbers(json.loads((run / "metrics.json").read_text())) == _numbers(reference)
    assert out.count("wrote") == 1


def test_validation_metric_covers_the_whole_split_under_ddp(ddp_reference):
    """Each rank validates half the split; the logged val/map (which selects the best epoch and
    stops early) is that of the whole split, the same as the exported model's validation mAP."""
    import csv

    reference, _, run = ddp_reference
    with open(run / "logs" / "classifier" / "metrics.csv") as fh:
        logged = [float(r["val/map"]) for r in csv.DictReader(fh) if r.get("val/map")]
    assert len(logged) == 2
    assert reference["validation"]["map"] == pytest.approx(max(logged), abs=1e-6)


def test_a_process_that_dies_mid_step_stops_the_other_with_one_line(tmp_path):
    """Rank 1 (the process Lightning's launcher started) exits in the middle of step 3; rank 0
    stops at once with one line (exit 2) instead of waiting for it. (Rank 0 dying instead makes
    rank 1 stop the same way; left out to keep the file fast.)"""
    config, run = _yaml(tmp_path / "tiny.yaml", TINY), tmp_path / "run"
    proc = _ddp(tmp_path, ["--config", str(config), *DDP_FLAGS, "--output", str(run)],
                FAULT="exit 1 contrastive 3", FAULT_LOG=str(tmp_path / "fault"))
    try:
        _, err = proc.communicate(timeout=300)  # returns once both have exited (both hold the pipes)
        stopped = time.time()
    finally:
        _kill_group(proc)
    died = float((tmp_path / "fault").read_text())
    assert stopped - died < 60, err[-3000:]
    assert proc.returncode == 2, err[-3000:]
    lines = _reports(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith("mlsupcon: error: distributed: process 0 of 2 lost contact with the others in "
                               "stage 'contrastive' (step 3: ")
    assert "distributed_timeout=600 s" in lines[0] and f"--output {run} --resume" in lines[0]
    assert not (run / "metrics.json").exists()


def test_distributed_timeout_is_the_process_group_timeout(tmp_path, capsys):
    from datetime import timedelta

    from mlsupcon.training.config import TrainConfig
    from mlsupcon.training.scale import lightning_strategy

    strategy = lightning_strategy(TrainConfig(strategy="ddp", distributed_timeout=42))
    assert strategy._timeout == timedelta(seconds=42)
    assert main(["train", "--dataset", "yeast", "--distributed-timeout", "0", "--output", str(tmp_path / "r")]) == 2
    assert "mlsupcon: error: distributed_timeout: expected a number of seconds > 0, got 0.0" in capsys.readouterr().err


def test_which_errors_mean_a_lost_process():
    import torch.distributed as dist

    from mlsupcon.training.reliability import distributed_failure, is_distributed_failure

    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                        "[127.0.0.1]:19894: Connection reset by peer. This is typically caused by a remote worker")
    assert is_distributed_failure(gloo) and is_distributed_failure(dist.DistStoreError("Timed out after 16 s"))
    # other errors of a distributed run stay what they are
    assert not is_distributed_failure(RuntimeError("DataLoader timed out after 5 seconds"))
    assert not is_distributed_failure(ValueError("gloo"))
    msg = str(distributed_failure(gloo, "contrastive", 0, 2, 3, 600, "Last checkpoint: none"))
    assert "(step 3: Read error [127.0.0.1]:19894: Connection reset by peer); another" in msg and "\n" not in msg
