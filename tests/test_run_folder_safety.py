"""Run folders that never lie (docs/failures.md, "Run folders"): a folder holds exactly one run.

A new run into a folder that holds an earlier one is refused unless ``--resume`` or
``--overwrite``; ``--overwrite`` deletes only what mlsupcon wrote; ``metrics.json`` and
``model/`` appear only complete; ``--resume`` without a run is an error before any work; Ctrl-C
ends with the resume hint (exit 130); a closed stdout pipe ends quietly.

Runs are tiny (yeast subsamples, a 32-unit MLP, one epoch of ``bce``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fixtures_pipeline as fp
import pytest
from fixtures_pipeline import assert_user_error, run_cli

TINY_YAML = {"encoder_options": {"hidden_dims": [32]}}


def train_argv(tmp: Path, run: Path, *extra: str, **flags) -> list[str]:
    """``mlsupcon train`` of a one-epoch bce run on 48 yeast examples per split, into ``run``."""
    flags = {"dataset": "yeast", "encoder": "mlp", "method": "bce", "batch_size": 16, "max_examples": 48,
             "epochs": 1, **flags}
    argv = ["train", "--output", str(run), "--no-progress", "--config", str(fp.write_yaml(tmp / "cfg.yaml", TINY_YAML))]
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv + list(extra)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) → sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _patch_load_dataset(monkeypatch, fn) -> None:
    """Every dataset loader of the registry is ``fn``, whoever calls ``load_dataset``."""
    from mlsupcon.data import registry

    loaders = registry._loaders()
    monkeypatch.setattr(registry, "_loaders", lambda: {name: (fn, *rest) for name, (_, *rest) in loaders.items()})


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("MLSUPCON_DEBUG", None)
    return env


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    run = tmp / "run"
    rc, _, err = run_cli(train_argv(tmp, run))
    assert rc == 0, err
    fp.check_run_folder(run)
    return run


@pytest.fixture
def old_run(finished, tmp_path) -> Path:
    """A copy of the finished run, to be written over."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run


# ---------------------------------------------------------------------------- refuse / --overwrite


def test_a_new_run_into_a_finished_run_is_refused_and_changes_nothing(old_run, tmp_path):
    before = snapshot(old_run)
    rc, _, err = run_cli(train_argv(tmp_path, old_run, seed=3))
    assert_user_error(rc, err, f"output: {old_run} already holds a run", "--resume", "--overwrite")
    assert snapshot(old_run) == before


def test_overwrite_of_a_run_that_then_fails_leaves_nothing_of_the_old_run(old_run, tmp_path):
    """lr = 1e30 diverges in the first steps: the new run fails after the folder was started."""
    rc, _, err = run_cli(train_argv(tmp_path, old_run, "--overwrite", lr=1e30, epochs=3, max_nonfinite_steps=2))
    assert_user_error(rc, err, "learning rate too high")
    assert not (old_run / "metrics.json").exists()
    assert not (old_run / "model").exists()
    assert not (old_run / "embeddings_test.npz").exists()
    assert fp.read_config_yaml(old_run)["lr"] == 1e30  # the folder describes the failed run, only it
    assert fp.read_config_yaml(old_run)["overwrite"] is False
    rc, _, err = run_cli(["evaluate", str(old_run)])
    assert_user_error(rc, err, "not found", "has not finished", f"--output {old_run} --resume")


def test_overwrite_with_data_that_fails_to_load_keeps_the_old_run(old_run, tmp_path):
    """Nothing is deleted before the data, encoder and method are known to be valid."""
    before = snapshot(old_run)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "labels": ["x"], "split": "train"}\n{"text": oops}\n')
    rc, _, err = run_cli(train_argv(tmp_path, old_run, "--overwrite", dataset=f"jsonl:{bad}"))
    assert_user_error(rc, err, str(bad))
    assert snapshot(old_run) == before


def test_overwrite_replaces_the_run_and_leaves_no_stale_file(old_run, tmp_path):
    (old_run / "logs" / "old_stage").mkdir()
    (old_run / "logs" / "old_stage" / "metrics.csv").write_text("epoch\n0\n")
    (old_run / "checkpoints" / "old_stage").mkdir()
    (old_run / ".metrics.json.abc123.tmp").write_text("half")  # a leftover of an interrupted write
    rc, _, err = run_cli(train_argv(tmp_path, old_run, "--overwrite", seed=5))
    assert rc == 0, err
    fp.check_run_folder(old_run)
    assert json.loads((old_run / "metrics.json").read_text())["seed"] == 5
    assert sorted(p.name for p in (old_run / "logs").iterdir()) == ["end_to_end"]
    assert sorted(p.name for p in (old_run / "checkpoints").iterdir()) == ["end_to_end"]
    assert not list(old_run.glob(".*.tmp"))
    assert fp.read_config_yaml(old_run)["overwrite"] is False


def test_overwrite_never_deletes_files_it_did_not_write(old_run, tmp_path):
    (old_run / "notes.txt").write_text("mine")
    before = snapshot(old_run)
    rc, _, err = run_cli(train_argv(tmp_path, old_run, "--overwrite"))
    assert_user_error(rc, err, str(old_run), "notes.txt", "--overwrite deletes only")
    assert snapshot(old_run) == before
    rc, _, err = run_cli(train_argv(tmp_path, old_run))  # without --overwrite: no advice to use it
    line = assert_user_error(rc, err, "already holds a run", "--resume")
    assert "--overwrite" not in line


def test_a_folder_of_other_files_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.csv").write_text("x\n")
    for extra in ([], ["--overwrite"]):
        rc, _, err = run_cli(train_argv(tmp_path, out, *extra))
        assert_user_error(rc, err, str(out), "data.csv", "new or empty --output")
    assert sorted(p.name for p in out.iterdir()) == ["data.csv"]


def test_resume_and_overwrite_together_are_refused(tmp_path):
    rc, _, err = run_cli(train_argv(tmp_path, tmp_path / "run", "--resume", "--overwrite"))
    assert_user_error(rc, err, "--resume", "--overwrite")


# ---------------------------------------------------------------------------- only complete artefacts


def test_atomic_dir_replaces_a_folder_only_when_complete(tmp_path):
    from mlsupcon.training.io import atomic_dir

    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "a").write_text("new, half")
        raise RuntimeError("killed while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (dest / "a").read_text() == "old"
    with atomic_dir(dest) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in dest.iterdir()) == ["b"]


def test_a_run_failing_while_exporting_leaves_no_model_and_no_metrics(monkeypatch, tmp_path):
    from mlsupcon.inference import storage as export

    def fail(path, obj):  # model.json is the export's last file
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(export, "write_json", fail)
    run = tmp_path / "run"
    rc, _, err = run_cli(train_argv(tmp_path, run))
    # one line; the finished stages' checkpoints are kept for --resume once there is space again
    assert_user_error(rc, err, "no space left on device", "--resume")
    assert (run / "config.yaml").is_file()
    assert not (run / "model").exists() and not (run / "metrics.json").exists()
    assert not list(run.glob(".model.*"))


# ---------------------------------------------------------------------------- --resume without a run


@pytest.mark.parametrize("state", ["missing", "empty", "lock only"])
def test_resume_without_a_run_is_an_error_before_any_work(state, monkeypatch, tmp_path):
    def no_data(*args, **kwargs):
        raise AssertionError("the data was read")

    _patch_load_dataset(monkeypatch, no_data)
    out = tmp_path / "run"
    if state != "missing":
        out.mkdir()
    if state == "lock only":
        (out / ".mlsupcon.lock").write_text("pid 1 on elsewhere\n")
    start = time.perf_counter()
    rc, _, err = run_cli(["train", "--output", str(out), "--resume", "--no-progress"])
    assert_user_error(rc, err, f"resume: nothing to resume in {out}", "without --resume")
    assert time.perf_counter() - start < 10
    assert (out.exists()) == (state != "missing")


# ---------------------------------------------------------------------------- compare


def test_compare_follows_the_same_rules(tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", "--dataset", "yeast", "--encoder", "mlp", "--losses", "bce", "--seeds", "1", "--epochs", "1",
            "--batch-size", "16", "--max-examples", "48", "--no-plots", "--no-progress", "--output", str(out),
            "--config", str(fp.write_yaml(tmp_path / "cfg.yaml", TINY_YAML))]
    rc, _, err = run_cli(argv + ["--resume"])
    assert_user_error(rc, err, f"nothing to resume in {out}")
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    before = snapshot(out)
    rc, _, err = run_cli(argv)
    assert_user_error(rc, err, f"output: {out} already holds a compare", "--resume", "--overwrite")
    assert snapshot(out) == before
    (out / "bce" / "seed0" / "notes.txt").write_text("mine")  # not ours: --overwrite refuses
    rc, _, err = run_cli(argv + ["--overwrite"])
    assert_user_error(rc, err, "--overwrite deletes only", str(out))
    assert (out / "bce" / "seed0" / "notes.txt").is_file() and (out / "results.csv").is_file()
    (out / "bce" / "seed0" / "notes.txt").unlink()
    (out / "report.md").write_text("stale")
    rc, _, err = run_cli(argv + ["--overwrite"])
    assert rc == 0, err
    assert (out / "report.md").read_text() != "stale"
    assert sorted(p.name for p in out.iterdir()) == ["bce", "report.md", "results.csv"]


# ---------------------------------------------------------------------------- Ctrl-C, closed pipes


def test_ctrl_c_during_training_prints_the_resume_hint(tmp_path):
    run = tmp_path / "run"
    # Long enough to be interrupted: many epochs, no early stop; a checkpoint every 5 steps.
    argv = train_argv(tmp_path, run, epochs=500, patience=1000, max_examples=300, checkpoint_every_n_steps=5)
    # As at a terminal: a test suite started in the background (`cmd &` without job control)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "mlsupcon.cli.main", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = run / "checkpoints" / "end_to_end" / "last.ckpt"
    try:
        deadline = time.monotonic() + 120
        while not ckpt.is_file():
            assert proc.poll() is None, f"the run ended before it could be interrupted:\n{proc.stderr.read()}"
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = fp.report_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("mlsupcon: interrupted (Ctrl-C) in stage 'end_to_end'"), lines[0]
    assert f"`mlsupcon train --output {run} --resume`" in lines[0]
    assert not (run / "metrics.json").exists() and not (run / "model").exists()


def test_ctrl_c_before_training_says_nothing_started(monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    _patch_load_dataset(monkeypatch, interrupted)
    rc, _, err = run_cli(train_argv(tmp_path, tmp_path / "run"))
    assert rc == 130
    assert err.strip() == f"mlsupcon: interrupted (Ctrl-C) before the run started in {tmp_path / 'run'}"


def test_a_closed_stdout_pipe_ends_quietly(finished):
    cmd = f"{sys.executable} -m mlsupcon.cli.main evaluate {finished} --json | head -c 10; exit ${{PIPESTATUS[0]}}"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.stdout == "scored spl"
    assert p.stderr == "", p.stderr
    assert p.returncode in (0, 141)
