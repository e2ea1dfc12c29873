"""Reliability (docs/failures.md): data errors, non-finite losses, out of memory, crash-safe
checkpoints and exact resume after SIGKILL, safe loading of checkpoints and models,
recorded environments.

Every run is tiny (yeast subsamples, tiny MLPs, a few epochs). The kill tests run the CLI in
subprocesses; everything else runs ``main([...])`` in-process.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
import torch
from fixtures_pipeline import assert_user_error, run_cli

pytestmark = pytest.mark.slow

TINY_MLP = {"hidden_dims": [32], "dropout": 0.2}


def train_argv(run: Path, **flags) -> list[str]:
    argv = ["train", "--output", str(run), "--no-progress"]
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def yeast_flags(**extra):
    return {"dataset": "yeast", "encoder": "mlp", "batch_size": 16, "max_examples": 80, "epochs": 2, **extra}


def with_config(tmp: Path, argv: list[str], values: dict, name: str = "cfg.yaml") -> list[str]:
    return argv + ["--config", str(fp.write_yaml(tmp / name, values))]


numbers = fp.metric_numbers


# ============================================================================ 1. data errors


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _good_rows(n: int = 12) -> list[dict]:
    return [{"id": f"d{i}", "text": f"some words number {i}", "labels": ["a", "b"][: 1 + i % 2],
             "split": ("train", "validation", "test")[i % 3]} for i in range(n)]


def _data_case(case: str, tmp: Path) -> tuple[str, list[str], dict]:
    """(dataset spec, needles the one-line error must contain, YAML values) of one bad-data case."""
    rows = _good_rows()
    if case == "missing jsonl file":
        return f"jsonl:{tmp / 'absent.jsonl'}", ["absent.jsonl", "not found"], {}
    if case == "missing csv file":
        return f"csv:{tmp / 'absent.csv'}", ["absent.csv", "not found"], {}
    if case == "malformed jsonl line":
        lines = [json.dumps(r) for r in rows]
        lines[3] = '{"text": "broken", "labels": ["a"'
        p = _jsonl(tmp / "bad.jsonl", lines)
        return f"jsonl:{p}", [str(p), "line 4", "malformed JSONL"], {}
    if case == "missing field":
        del rows[2]["labels"]
        p = _jsonl(tmp / "bad.jsonl", rows)
        return f"jsonl:{p}", [str(p), "line 3", "missing field 'labels'"], {}
    if case == "misnamed field option":
        p = _jsonl(tmp / "ok.jsonl", rows)
        return f"jsonl:{p}", [str(p), "line 1", "missing field 'tags'"], {"dataset_options": {"label_field": "tags"}}
    if case == "labels not a list":
        rows[1]["labels"] = "a;b"
        p = _jsonl(tmp / "bad.jsonl", rows)
        return f"jsonl:{p}", [str(p), "line 2", "'labels' must be a list"], {}
    if case == "empty text jsonl":
        rows[4]["text"] = "   "
        p = _jsonl(tmp / "bad.jsonl", rows)
        return f"jsonl:{p}", [str(p), "line 5", "empty text", "'text'"], {}
    if case == "unknown split name":
        rows[5]["split"] = "holdout"
        p = _jsonl(tmp / "bad.jsonl", rows)
        return f"jsonl:{p}", [str(p), "'holdout'", "line 6", "split"], {}
    if case == "misnamed csv column":
        p = tmp / "bad.csv"
        p.write_text("id,text,label,split\n" + "".join(f"d{i},words {i},a,train\n" for i in range(6)))
        return f"csv:{p}", [str(p), "missing column 'labels'", "label"], {}
    if case == "empty text csv":
        p = tmp / "bad.csv"
        p.write_text("id,text,labels,split\nd0,words,a,train\nd1,more words,a,train\nd2,,a,test\n")
        return f"csv:{p}", [str(p), "row 3", "empty text"], {}
    raise AssertionError(case)


DATA_CASES = ["missing jsonl file", "missing csv file", "malformed jsonl line", "missing field",
              "misnamed field option", "labels not a list", "empty text jsonl", "unknown split name",
              "misnamed csv column", "empty text csv"]


@pytest.mark.parametrize("case", DATA_CASES)
def test_data_errors_are_one_line_naming_the_place(case, tmp_path):
    spec, needles, yml = _data_case(case, tmp_path)
    run = tmp_path / "run"
    argv = train_argv(run, dataset=spec, encoder="cnn", method="bce", epochs=1, batch_size=4)
    argv = with_config(tmp_path, argv, {"encoder_options": fp.TINY_CNN, **yml})
    rc, _, err = run_cli(argv)
    assert_user_error(rc, err, *needles)
    assert not (run / "metrics.json").exists()


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jsonl_run")
    data = fp.write_jsonl(tmp / "train.jsonl", n=70)
    run = tmp / "run"
    argv = with_config(tmp, train_argv(run, dataset=f"jsonl:{data}", encoder="cnn", method="bce", epochs=1,
                                       batch_size=8), {"encoder_options": fp.TINY_CNN})
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    return tmp, data, run


def test_evaluate_on_other_data_checks_the_label_vocabulary(jsonl_run):
    tmp, data, run = jsonl_run
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    # Same labels, other texts: accepted.
    same = _jsonl(tmp / "same.jsonl", [{**r, "text": r["text"] + " extra"} for r in rows])
    rc, out, err = run_cli(["evaluate", str(run), "--dataset", f"jsonl:{same}", "--json"])
    assert rc == 0, err
    assert json.loads(out[out.index("{"):])["num_examples"] > 0
    # One label renamed: the model's head would score the wrong labels.
    other = [{**r, "labels": ["lang::rust" if l == "lang::c" else l for l in r["labels"]]} for r in rows]
    other_path = _jsonl(tmp / "other.jsonl", other)
    rc, _, err = run_cli(["evaluate", str(run), "--dataset", f"jsonl:{other_path}"])
    assert_user_error(rc, err, "label vocabulary", "other.jsonl", "lang::c", "lang::rust")
    # A label missing from the new data entirely (fewer labels): accepted, scored over the data's
    # 4 labels (tests/test_inference.py checks the numbers).
    fewer = [{**r, "labels": [l for l in r["labels"] if l != "use::viewing"]} for r in rows]
    fewer_path = _jsonl(tmp / "fewer.jsonl", fewer)
    rc, out, err = run_cli(["evaluate", str(run), "--dataset", f"jsonl:{fewer_path}", "--json"])
    assert rc == 0, err
    assert json.loads(out[out.index("{"):])["num_labels"] == 4


# ============================================================================ 2. non-finite losses


class NaNInjector:
    """Wraps a loss function: training-mode calls number ``n`` in ``at`` return NaN."""

    def __init__(self, at):
        self.at, self.calls = set(at), 0

    def wrap(self, fn, *, module_of=lambda args: args[0]):
        injector = self

        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            if not module_of(args).training:
                return out
            injector.calls += 1
            if injector.calls in injector.at or "all" in injector.at:
                if isinstance(out, tuple):
                    return (out[0] * float("nan"),) + tuple(out[1:])
                return out * float("nan")
            return out

        return wrapped


def _patch_loss(monkeypatch, method: str, injector: NaNInjector) -> None:
    from mlsupcon.training import modules

    if method == "two-stage":
        monkeypatch.setattr(modules.ContrastiveModule, "_loss", injector.wrap(modules.ContrastiveModule._loss))
    elif method in ("bce", "end-to-end"):
        monkeypatch.setattr(modules.ClassifierModule, "_cls_loss", injector.wrap(modules.ClassifierModule._cls_loss))
    elif method == "kmcl":
        from mlsupcon.losses.kmcl import KMCLLoss

        monkeypatch.setattr(KMCLLoss, "forward", injector.wrap(KMCLLoss.forward))
    else:
        raise AssertionError(method)


class WeightWatch:
    """Records every trained module's parameters at the start and end of each fit."""

    def __init__(self, monkeypatch):
        from mlsupcon.training import modules

        self.start, self.end = {}, {}
        watch = self

        def on_train_start(module):
            watch.start[module.stage] = {k: v.detach().clone() for k, v in module.named_parameters()}

        def on_train_end(module):
            watch.end[module.stage] = {k: v.detach().clone() for k, v in module.named_parameters()}

        monkeypatch.setattr(modules._Base, "on_train_start", on_train_start, raising=False)
        monkeypatch.setattr(modules._Base, "on_train_end", on_train_end, raising=False)


@pytest.mark.parametrize("method, stage", [("two-stage", "contrastive"), ("bce", "end_to_end"),
                                           ("end-to-end", "end_to_end"), ("kmcl", "end_to_end")])
def test_nonfinite_steps_are_skipped_and_counted(method, stage, monkeypatch, tmp_path):
    injector = NaNInjector(at={2, 3, 7})
    _patch_loss(monkeypatch, method, injector)
    run = tmp_path / "run"
    argv = with_config(tmp_path, train_argv(run, **yeast_flags(method=method, loss="simdis", classifier_epochs=1)),
                       {"encoder_options": TINY_MLP, "projection_dim": 8})
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    assert injector.calls >= 8  # 2 epochs of 5 steps (80 examples, batch 16)
    m = fp.check_run_folder(run)
    assert m["skipped_nonfinite_steps"] == 3
    assert m["skipped_nonfinite_by_stage"][stage] == 3
    with open(run / "logs" / stage / "metrics.csv") as fh:
        logged = [float(r["train/skipped_nonfinite"]) for r in csv.DictReader(fh) if r.get("train/skipped_nonfinite")]
    assert logged == [2.0, 3.0]  # cumulative count at the end of epochs 0 and 1
    weights = (run / "model" / "weights.safetensors")
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(weights)).values())


@pytest.mark.parametrize("method, stage", [("two-stage", "contrastive"), ("bce", "end_to_end"), ("kmcl", "end_to_end")])
def test_a_skipped_step_does_not_update_the_weights(method, stage, monkeypatch, tmp_path):
    """Every step non-finite (and never stopping): the trained weights are exactly the initial ones."""
    injector = NaNInjector(at={"all"})
    _patch_loss(monkeypatch, method, injector)
    watch = WeightWatch(monkeypatch)
    run = tmp_path / "run"
    argv = with_config(tmp_path, train_argv(run, **yeast_flags(method=method, loss="simdis", epochs=1,
                                                               classifier_epochs=1, max_nonfinite_steps=0)),
                       {"encoder_options": TINY_MLP, "projection_dim": 8, "lr": 0.1})
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    start, end = watch.start[stage], watch.end[stage]
    assert start.keys() == end.keys() and len(start) > 2
    for name in start:
        assert torch.equal(start[name], end[name]), name
    assert json.loads((run / "metrics.json").read_text())["skipped_nonfinite_steps"] == injector.calls == 5


def test_consecutive_nonfinite_steps_stop_with_a_clear_error(monkeypatch, tmp_path):
    injector = NaNInjector(at=set(range(3, 100)))
    _patch_loss(monkeypatch, "two-stage", injector)
    run = tmp_path / "run"
    argv = with_config(tmp_path, train_argv(run, **yeast_flags(method="two-stage", loss="simdis", epochs=3,
                                                               max_nonfinite_steps=4)),
                       {"encoder_options": TINY_MLP, "projection_dim": 8})
    rc, _, err = run_cli(argv)
    assert_user_error(rc, err, "NaN or infinite", "4 consecutive", "'contrastive'", "learning rate", "bad inputs",
                      "max_nonfinite_steps")
    assert injector.calls == 6  # 2 finite steps, then the 4th non-finite one in a row stops training
    assert not (run / "metrics.json").exists()


def test_a_huge_learning_rate_is_reported_not_a_traceback(tmp_path):
    """A real divergence (no injection): lr = 1e30 sends the weights to inf within a step or two."""
    run = tmp_path / "run"
    argv = with_config(tmp_path, train_argv(run, **yeast_flags(method="bce", epochs=4, lr=1e30)),
                       {"encoder_options": {"hidden_dims": [32]}})
    rc, _, err = run_cli(argv)
    assert_user_error(rc, err, "10 consecutive", "lr=1e+30", "learning rate too high")
    assert not (run / "metrics.json").exists()


@pytest.mark.parametrize("error", [
    lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)"),
    lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: "
                         "you tried to allocate 68719476736 bytes."),
], ids=["cuda", "cpu"])
@pytest.mark.parametrize("method, target", [("two-stage", "ContrastiveModule"), ("end-to-end", "ClassifierModule")])
def test_out_of_memory_gives_guidance(error, method, target, monkeypatch, tmp_path):
    from mlsupcon.training import modules

    def boom(self, batch, batch_idx):
        raise error()

    monkeypatch.setattr(getattr(modules, target), "training_step", boom)
    run = tmp_path / "run"
    argv = with_config(tmp_path, train_argv(run, **yeast_flags(method=method, loss="simdis", epochs=1)),
                       {"encoder_options": TINY_MLP, "projection_dim": 8})
    rc, _, err = run_cli(argv)
    line = assert_user_error(rc, err, "out of", "memory", "--batch-size", "chunk_size", "max_length",
                             "gradient_checkpointing", "--resume")
    assert ("'contrastive'" if method == "two-stage" else "'end_to_end'") in line


def test_other_runtime_errors_are_not_disguised(monkeypatch, tmp_path):
    from mlsupcon.training import modules
    from mlsupcon.training.config import load_config
    from mlsupcon.training.runner import run_training

    def boom(self, batch, batch_idx):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (16x3 and 4x5)")

    monkeypatch.setattr(modules.ClassifierModule, "training_step", boom)
    cfg = load_config(None, {"dataset": "yeast", "encoder": "mlp", "method": "bce", "epochs": 1,
                             "output": str(tmp_path / "run"), "progress": False,
                             "dataset_options": {"max_examples_per_split": 40}})
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_training(cfg)


# ============================================================================ 3. checkpoints and resume


def test_checkpoints_every_n_steps_and_every_epoch(monkeypatch, tmp_path):
    from mlsupcon.training import reliability

    saved = []
    original = reliability.AtomicCheckpointIO.save_checkpoint

    def record(self, checkpoint, path, storage_options=None):
        state = checkpoint["callbacks"][reliability.ResumableCheckpoint.STATE_KEY]
        saved.append((Path(path).parent.name, checkpoint["global_step"], state["epoch"], state["batches_done"]))
        return original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(reliability.AtomicCheckpointIO, "save_checkpoint", record)
    run = tmp_path / "run"
    # 80 training examples, batch 16: 5 steps per epoch; a step checkpoint every 2 steps.
    argv = with_config(tmp_path, train_argv(run, **yeast_flags(method="bce", checkpoint_every_n_steps=2)),
                       {"encoder_options": TINY_MLP, "patience": 10})
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    # (stage, global step, epoch to continue, batches of it done): steps 2 and 4 mid-epoch, the
    # epoch end at step 5, steps 6 and 8, and at step 10 the epoch end only (no step save on
    # the last batch of an epoch).
    assert saved == [("end_to_end", 2, 0, 2), ("end_to_end", 4, 0, 4), ("end_to_end", 5, 1, 0),
                     ("end_to_end", 6, 1, 1), ("end_to_end", 8, 1, 3), ("end_to_end", 10, 2, 0)]
    assert json.loads((run / "checkpoints" / "end_to_end" / "done.json").read_text())["finished"] is True
    assert not list((run / "checkpoints").rglob("*.tmp"))


_WRITER = """
import os, signal, sys, torch
from mlsupcon.training import io as mio
from mlsupcon.training.reliability import AtomicCheckpointIO
ckpt_io, path = AtomicCheckpointIO(), sys.argv[1]
ckpt_io.save_checkpoint({"i": 1, "x": torch.full((100_000,), 1.0)}, path)


class Dying:
    # A file whose writing stops halfway: the process is SIGKILLed in the middle of it.
    def __init__(self, fh):
        self.fh, self.written = fh, 0
    def __getattr__(self, name):
        return getattr(self.fh, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)
    def write(self, data):
        if self.written + len(data) > 200_000:
            self.fh.write(bytes(data[: max(0, 200_000 - self.written)]))
            self.fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self.written += len(data)
        return self.fh.write(data)


real_fdopen = os.fdopen
mio.os.fdopen = lambda fd, mode: Dying(real_fdopen(fd, mode))
ckpt_io.save_checkpoint({"i": 2, "x": torch.full((100_000,), 2.0)}, path)
"""


def test_a_process_killed_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    from mlsupcon.training.reliability import load_checkpoint_file

    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    path = tmp_path / "last.ckpt"
    p = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, env=_env(),
                       timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    ckpt = load_checkpoint_file(path)
    assert ckpt["i"] == 1 and bool((ckpt["x"] == 1.0).all())
    partial = list(tmp_path.glob(".last.ckpt.*.tmp"))  # the half-written new one, never renamed
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < path.stat().st_size


def test_an_interrupted_checkpoint_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from mlsupcon.training import io as mio
    from mlsupcon.training.reliability import AtomicCheckpointIO, load_checkpoint_file

    ckpt_io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    ckpt_io.save_checkpoint({"i": 1}, path)

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(mio.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save_checkpoint({"i": 2}, path)
    assert load_checkpoint_file(path)["i"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_resume_refuses_another_configuration(tmp_path):
    run = tmp_path / "run"
    argv = with_config(tmp_path, train_argv(run, **yeast_flags(method="bce", epochs=1)), {"encoder_options": TINY_MLP})
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    before = (run / "config.yaml").read_text()
    rc, _, err = run_cli(argv + ["--resume", "--lr", "0.5"])
    assert_user_error(rc, err, "resume", "lr: 0.001 -> 0.5", str(run / "config.yaml"), "without --resume")
    assert (run / "config.yaml").read_text() == before


def test_two_processes_cannot_train_into_the_same_folder(tmp_path):
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    argv = with_config(tmp_path, train_argv(run, **yeast_flags(method="bce", epochs=1)), {"encoder_options": TINY_MLP})
    with open(run / ".mlsupcon.lock", "a+") as held:  # as another running process holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 4242 on elsewhere\n")
        held.flush()
        rc, _, err = run_cli(argv)
        assert_user_error(rc, err, "another mlsupcon process", "pid 4242", str(run))
        assert not (run / "config.yaml").exists()
    rc, _, err = run_cli(argv)  # released (the kernel also releases it when the holder dies)
    assert rc == 0, err


# ---------------------------------------------------------------------------- SIGKILL mid-epoch

# Runs the CLI; optionally slows one stage's training steps (so that a test can kill the
# process at a chosen moment) and logs each finished training step as "<stage> <global step>".
_WRAPPER = """
import os, sys, time
from mlsupcon.training import modules
slow, delay, log = os.environ.get("SLOW_STAGE"), float(os.environ.get("STEP_DELAY", "0")), os.environ["STEPS_LOG"]
for cls in (modules.ContrastiveModule, modules.ClassifierModule):
    def step(self, batch, idx, _orig=cls.training_step):
        if self.stage == slow:
            time.sleep(delay)
        out = _orig(self, batch, idx)
        with open(log, "a") as fh:
            fh.write(f"{self.stage} {self.global_step}\\n")
        return out
    cls.training_step = step
from mlsupcon.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

EVERY = 4
# 300 training examples, batch 16: 18 steps per epoch (contrastive); the probe (batch 16,
# no dropped last batch): 19 steps per epoch.
KILL_FLAGS = {"dataset": "yeast", "encoder": "mlp", "method": "two-stage", "loss": "simdis", "epochs": 3,
              "classifier_epochs": 3, "batch_size": 16, "max_examples": 300, "seed": 7,
              "checkpoint_every_n_steps": EVERY}
KILL_YAML = {"encoder_options": TINY_MLP, "projection_dim": 16, "probe_batch_size": 16, "patience": 10,
             "classifier_lr": 0.01}


def _env(**extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore", **extra}
    env.pop("MLSUPCON_DEBUG", None)
    return env


def _cli(tmp: Path, argv: list[str], steps_log: Path, **env) -> subprocess.Popen:
    wrapper = tmp / "wrapper.py"
    if not wrapper.exists():
        wrapper.write_text(_WRAPPER)
    return subprocess.Popen([sys.executable, str(wrapper), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(STEPS_LOG=str(steps_log), **env))


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _steps(log: Path, stage: str) -> list[int]:
    if not log.is_file():
        return []
    return [int(line.split()[1]) for line in log.read_text().splitlines() if line.split()[0] == stage]


def _resume_state(path: Path) -> dict | None:
    from mlsupcon.training.reliability import ResumableCheckpoint

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not there yet
        return None
    return ckpt["callbacks"][ResumableCheckpoint.STATE_KEY]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same configuration run without interruption (in a subprocess too)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    run = tmp / "run"
    argv = with_config(tmp, train_argv(run, **KILL_FLAGS), KILL_YAML)
    rc, out, err = _finish(_cli(tmp, argv, tmp / "steps.log"))
    assert rc == 0, err
    return json.loads((run / "metrics.json").read_text()), {s: _steps(tmp / "steps.log", s)
                                                            for s in ("contrastive", "classifier")}


def _kill_mid_epoch(tmp: Path, stage: str, sig=signal.SIGKILL) -> tuple[Path, dict, int]:
    """Starts the run with ``stage`` slowed down, sends ``sig`` once that stage has written a
    mid-epoch checkpoint in its second epoch or later; returns (run, checkpoint state, steps done)."""
    run = tmp / "run"
    argv = with_config(tmp, train_argv(run, **KILL_FLAGS), KILL_YAML)
    log = tmp / "killed_steps.log"
    proc = _cli(tmp, argv, log, SLOW_STAGE=stage, STEP_DELAY="0.05")
    ckpt = run / "checkpoints" / stage / "last.ckpt"
    deadline = time.monotonic() + 300
    try:
        while True:
            assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stderr.read()}"
            assert time.monotonic() < deadline, "no mid-epoch checkpoint appeared"
            state = _resume_state(ckpt) if ckpt.is_file() else None
            if state is not None and state["epoch"] >= 1 and state["batches_done"] > 0:
                break
            time.sleep(0.02)
        time.sleep(0.08)  # a step or two past the checkpoint: work that is lost and redone
        proc.send_signal(sig)
        if sig == signal.SIGTERM:
            _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # Lightning stops after the current batch; the CLI says so and exits 128 + 15
        assert proc.returncode == 143, err
        lines = fp.report_lines(err)  # besides the summaries of the finished epochs
        assert len(lines) == 1 and lines[0].startswith(f"mlsupcon: stopped by SIGTERM in stage '{stage}'"), err
        assert "--resume" in lines[0] and "Traceback" not in err
    state = _resume_state(ckpt)
    assert state is not None and state["batches_done"] > 0, "the last checkpoint is not mid-epoch"
    assert not (run / "metrics.json").exists()
    return run, state, len(_steps(log, stage))


def _resume(tmp: Path, run: Path, log_name: str = "resumed_steps.log") -> tuple[str, Path]:
    log = tmp / log_name
    rc, out, err = _finish(_cli(tmp, ["train", "--output", str(run), "--resume", "--no-progress"], log))
    assert rc == 0, err
    return err, log


def _val_rows_per_epoch(path: Path) -> list[int]:
    with open(path) as fh:
        return sorted(int(r["epoch"]) for r in csv.DictReader(fh) if r.get("val/map") or r.get("val/contrastive_loss"))


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_result(uninterrupted, tmp_path):
    reference, ref_steps = uninterrupted
    run, state, done_steps = _kill_mid_epoch(tmp_path, "contrastive")
    # At most one checkpoint interval of work is lost.
    assert state["global_step"] >= done_steps - EVERY
    err, log = _resume(tmp_path, run)
    assert (f"resuming stage 'contrastive' from {run / 'checkpoints' / 'contrastive' / 'last.ckpt'} "
            f"(epoch {state['epoch']}, batch {state['batches_done']} of it, step {state['global_step']})") in err
    # The resumed process continues mid-epoch: exactly the steps after the checkpoint.
    assert _steps(log, "contrastive") == ref_steps["contrastive"][state["global_step"]:]
    assert _steps(log, "classifier") == ref_steps["classifier"]
    resumed = json.loads((run / "metrics.json").read_text())
    assert numbers(resumed) == numbers(reference)
    assert len(numbers(reference)) > 40
    # the training curves cover every epoch once, before and after the interruption
    assert _val_rows_per_epoch(run / "logs" / "contrastive" / "metrics.csv") == [0, 1, 2]
    env = json.loads((run / "environment.json").read_text())
    assert len(env["resumes"]) == 1 and env["resumes"][0]["packages"]["mlsupcon"]


def test_sigterm_saves_a_checkpoint_where_it_stops(uninterrupted, tmp_path):
    """A preempted job (SIGTERM) loses nothing: the checkpoint is taken at the step it stopped."""
    reference, ref_steps = uninterrupted
    run, state, done_steps = _kill_mid_epoch(tmp_path, "contrastive", signal.SIGTERM)
    assert state["global_step"] == done_steps  # (the step checkpoints are every 4 steps)
    err, log = _resume(tmp_path, run)
    assert f"batch {state['batches_done']} of it, step {state['global_step']})" in err
    assert _steps(log, "contrastive") == ref_steps["contrastive"][state["global_step"]:]
    assert numbers(json.loads((run / "metrics.json").read_text())) == numbers(reference)


def test_sigkill_in_stage_two_then_resume(uninterrupted, tmp_path):
    reference, ref_steps = uninterrupted
    run, state, done_steps = _kill_mid_epoch(tmp_path, "classifier")
    assert state["global_step"] >= done_steps - EVERY
    err, log = _resume(tmp_path, run)
    assert "stage 'contrastive' had finished" in err and "resuming stage 'classifier'" in err
    assert _steps(log, "contrastive") == []  # the finished stage is not trained again
    assert _steps(log, "classifier") == ref_steps["classifier"][state["global_step"]:]
    assert numbers(json.loads((run / "metrics.json").read_text())) == numbers(reference)
    assert _val_rows_per_epoch(run / "logs" / "classifier" / "metrics.csv") == [0, 1, 2]
    # Resuming a finished run trains nothing and gives the same numbers again.
    err, log = _resume(tmp_path, run, "resumed_again_steps.log")
    assert "stage 'contrastive' had finished" in err and "stage 'classifier' had finished" in err
    assert not log.exists()
    assert numbers(json.loads((run / "metrics.json").read_text())) == numbers(reference)


# ============================================================================ 4. safe loading


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finished")
    run = tmp / "run"
    argv = with_config(tmp, train_argv(run, **yeast_flags(method="bce", epochs=1, max_examples=48)),
                       {"encoder_options": TINY_MLP})
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    return run


def _copy(run: Path, tmp: Path) -> Path:
    dst = tmp / "copy"
    shutil.copytree(run, dst)
    # the config records the original output folder; the copy is resumed with --output dst
    return dst


def _resume_inprocess(run: Path):
    return run_cli(["train", "--output", str(run), "--resume", "--no-progress"])


def test_resume_of_a_finished_run_loads_its_checkpoint(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    rc, _, err = _resume_inprocess(run)
    assert rc == 0, err
    assert "stage 'end_to_end' had finished" in err
    assert numbers(json.loads((run / "metrics.json").read_text())) == numbers(
        json.loads((finished_run / "metrics.json").read_text()))


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "empty"])
def test_damaged_checkpoint_is_a_clear_error(damage, finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    ckpt = run / "checkpoints" / "end_to_end" / "last.ckpt"
    data = bytearray(ckpt.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped byte":
        import zipfile

        with zipfile.ZipFile(ckpt) as zf:  # a byte inside a tensor's data: torch.load alone would not notice
            info = max(zf.infolist(), key=lambda i: i.file_size)
        data[info.header_offset + 100 + info.file_size // 2] ^= 0xFF
    else:
        data = bytearray()
    ckpt.write_bytes(bytes(data))
    rc, _, err = _resume_inprocess(run)
    assert_user_error(rc, err, str(ckpt), "delete it", "without --resume")
    assert ("CRC" in err) if damage == "flipped byte" else ("truncated or corrupt" in err)


class _Evil:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(path: Path, marker: Path, like: Path) -> None:
    ckpt = torch.load(like, map_location="cpu", weights_only=True)
    ckpt["callbacks"]["payload"] = _Evil(str(marker))
    torch.save(ckpt, path)


def test_a_checkpoint_with_code_is_refused_not_run(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    ckpt = run / "checkpoints" / "end_to_end" / "last.ckpt"
    marker = tmp_path / "pwned"
    # the payload is real: an unrestricted unpickler creates the marker
    probe = tmp_path / "probe.ckpt"
    _evil_checkpoint(probe, marker, ckpt)
    torch.load(probe, weights_only=False)
    assert marker.exists()
    marker.unlink()

    _evil_checkpoint(ckpt, marker, ckpt)
    rc, _, err = _resume_inprocess(run)
    assert_user_error(rc, err, str(ckpt), "refusing to load", "could run code")
    assert not marker.exists()

    from mlsupcon.training.reliability import AtomicCheckpointIO, CheckpointError

    with pytest.raises(CheckpointError, match="refusing"):
        AtomicCheckpointIO().load_checkpoint(ckpt)  # what Lightning's fit(ckpt_path=...) calls
    assert not marker.exists()


def test_checkpoint_contents_load_with_weights_only(finished_run):
    ckpt = torch.load(finished_run / "checkpoints" / "end_to_end" / "last.ckpt", weights_only=True)
    state = ckpt["callbacks"]["mlsupcon_resume"]
    assert state["rng"]["torch"].dtype == torch.uint8
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert "best_state" in ckpt["mlsupcon_module"] and ckpt["optimizer_states"]


@pytest.mark.parametrize("damage, needles", [
    ("truncate weights", ["weights.safetensors", "sha256"]),
    ("flip a weight byte", ["weights.safetensors", "tampered"]),
    ("truncate model.json", ["model.json", "not valid JSON"]),
    ("model.json without encoder", ["model.json", "'encoder'"]),
    ("model.json with a bad head", ["model.json", "does not describe a model"]),
])
def test_damaged_model_files_are_clear_errors(damage, needles, finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    weights, meta_path = run / "model" / "weights.safetensors", run / "model" / "model.json"
    meta = json.loads(meta_path.read_text())
    if damage == "truncate weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "flip a weight byte":
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF  # inside the last tensor: safetensors itself would load it
        weights.write_bytes(bytes(data))
    elif damage == "truncate model.json":
        meta_path.write_text(meta_path.read_text()[:40])
    elif damage == "model.json without encoder":
        del meta["encoder"]
        meta_path.write_text(json.dumps(meta))
    else:
        meta["head"] = {"class": "LinearClassifier", "kind": "linear", "in_dim": "many"}
        meta_path.write_text(json.dumps(meta))
    rc, _, err = run_cli(["evaluate", str(run)])
    assert_user_error(rc, err, *needles)


def test_evaluate_an_interrupted_run_says_how_to_finish_it(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    shutil.rmtree(run / "model")
    rc, _, err = run_cli(["evaluate", str(run)])
    assert_user_error(rc, err, "model.json", "--resume")


# ============================================================================ 5. reproducibility


def test_environment_and_config_are_recorded(finished_run):
    env = json.loads((finished_run / "environment.json").read_text())
    import importlib.metadata as md

    import lightning

    import mlsupcon

    assert env["mlsupcon_version"] == mlsupcon.__version__
    for pkg, version in (("mlsupcon", md.version("mlsupcon")), ("torch", torch.__version__),
                         ("lightning", lightning.__version__), ("numpy", np.__version__)):
        assert env["packages"][pkg] == version, pkg
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["torch"]["num_threads"] >= 1 and "cuda_available" in env["torch"]
    cfg = fp.read_config_yaml(finished_run)
    assert cfg["seed"] == 0 and cfg["checkpoint_every_n_steps"] == 100 and cfg["max_nonfinite_steps"] == 10
    assert cfg["resume"] is False


def test_training_order_depends_on_seed_and_epoch_only():
    from mlsupcon.training.batches import EpochSampler

    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    b.set_epoch(2)
    list(b)  # b has been used: a fresh sampler gives the same order for the same epoch
    a.set_epoch(2)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b) and sorted(a) == list(range(50))
    c = EpochSampler(50, seed=4)
    c.set_epoch(2)
    assert list(c) != list(b)
    # resuming mid-epoch: the rest of that epoch's order, once
    d = EpochSampler(50, seed=3)
    d.resume_at(2, 20)
    assert list(d) == list(b)[20:]
    assert list(d) == list(b)


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    from mlsupcon.training.reliability import capture_rng, load_checkpoint_file, restore_rng, save_checkpoint_file

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # a cached gaussian in numpy's state
    save_checkpoint_file({"rng": capture_rng()}, tmp_path / "r.ckpt")
    expected = (torch.rand(3), np.random.normal(size=3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng(load_checkpoint_file(tmp_path / "r.ckpt")["rng"])
    got = (torch.rand(3), np.random.normal(size=3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]
