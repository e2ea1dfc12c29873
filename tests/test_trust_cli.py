"""Issue 19 (trust), the command-line items: nothing destroyed, one line per user error, checks
before the heavy work, progress reports fit for log files, and work skipped where it cannot count.

Items: 2 (output = input), 7 (output is a folder), 8 (disk full in train / predict), 10 (devices
that are not there), 12 (arguments and the folder lock before loading), 13 (progress without a
terminal, --no-progress everywhere), 16 (a score for every listed label), 17 (branches of blend
weight 0 not run), 18 (an output suffix naming another format), 19 (huge texts tokenised from a
prefix, exactly).
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
import torch
from fixtures_pipeline import assert_user_error, run_cli

import mlsupcon.inference.model as inference
from mlsupcon.cli.checks import OutputSuffixWarning
from mlsupcon.progress import LineProgress, progress_bar


def _no_model_load(monkeypatch):
    """Makes loading a model fail loudly: an error reported after it would show the checks ran late."""
    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(inference, "load", refuse)


@pytest.fixture()
def inputs(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"id": "x", "text": "python pip module"}) + "\n")
    return run, src


# ============================================================ 2, 7, 10, 12: before the model loads


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_output_that_is_the_input_is_refused_before_loading(inputs, monkeypatch, tmp_path, command):
    run, src = inputs
    _no_model_load(monkeypatch)
    before = src.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(src)
    hard = tmp_path / "hard.jsonl"
    os.link(src, hard)
    for output in (src, link, hard, tmp_path / "." / "a.jsonl"):
        rc, _, err = run_cli([command, str(run), "--input", str(src), "--output", str(output)])
        assert_user_error(rc, err, "--input file", "overwrite its own input")
    rc, _, err = run_cli([command, str(run), "--input", str(link), "--output", str(src)])  # input through a link
    assert_user_error(rc, err, "--input file")
    assert src.read_bytes() == before


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_output_folder_is_refused_before_loading(inputs, monkeypatch, tmp_path, command):
    run, src = inputs
    _no_model_load(monkeypatch)
    folder = tmp_path / "outdir"
    folder.mkdir()
    rc, _, err = run_cli([command, str(run), "--input", str(src), "--output", str(folder)])
    assert_user_error(rc, err, str(folder), "is a folder")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("device, needle", [("gpu", "expected cpu, cuda or cuda:N"), ("cuda:x", "expected cpu"),
                                            ("tpu", "expected cpu")])
def test_device_names_are_checked_before_loading(inputs, monkeypatch, tmp_path, device, needle):
    run, src = inputs
    _no_model_load(monkeypatch)
    rc, _, err = run_cli(["predict", str(run), "--input", str(src), "--output", str(tmp_path / "p.jsonl"),
                          "--device", device])
    assert_user_error(rc, err, "device", needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(inputs, monkeypatch, tmp_path):
    run, src = inputs
    _no_model_load(monkeypatch)
    for device in ("cuda", "cuda:1"):
        rc, _, err = run_cli(["embed", str(run), "--input", str(src), "--output", str(tmp_path / "e.npz"),
                              "--device", device])
        assert_user_error(rc, err, "device", "use --device cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_train_accelerator_gpu_is_refused_before_the_data(tmp_path, monkeypatch):
    import mlsupcon.training.input_checks as input_checks

    monkeypatch.setattr(input_checks, "load_training_data", lambda cfg: pytest.fail("data read before the check"))
    out = tmp_path / "run"
    for accelerator in ("gpu", "cuda"):
        rc, _, err = run_cli(["train", "--dataset", "yeast", "--accelerator", accelerator, "--output", str(out)])
        assert_user_error(rc, err, "accelerator", "use --accelerator cpu")
    assert not out.exists()


def test_second_train_into_a_locked_folder_is_refused_before_its_data(tmp_path, monkeypatch):
    import mlsupcon.training.input_checks as input_checks

    out = tmp_path / "run"
    out.mkdir()
    holder = open(out / ".mlsupcon.lock", "a+")  # another process's lock (a separate open file)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    holder.write("pid 4242 on elsewhere\n")
    holder.flush()
    monkeypatch.setattr(input_checks, "load_training_data", lambda cfg: pytest.fail("data read before the lock"))
    try:
        rc, _, err = run_cli(["train", "--dataset", "yeast", "--output", str(out), "--no-progress"])
    finally:
        holder.close()
    assert_user_error(rc, err, "another mlsupcon process", "pid 4242")


def test_a_failed_train_leaves_no_folder_it_created(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "labels": "not-a-list"}) + "\n")
    out = tmp_path / "nested" / "run"
    rc, _, err = run_cli(["train", "--dataset", f"jsonl:{bad}", "--output", str(out)])
    assert_user_error(rc, err, "labels")
    assert not out.exists()


# ============================================================ tiny runs for the rest


@pytest.fixture(scope="module")
def vector_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vec")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 12)).astype(np.float32)
    y = (x @ rng.normal(size=(12, 4)) > 0.3).astype(np.uint8)
    split = np.array(["train", "train", "train", "validation", "test"] * 30)
    path = tmp / "genes.npz"
    np.savez(path, x=x, y=y, label_names=np.array(["g1", "g2", "g3", "g4"]), split=split)
    return tmp, path


def _train_vectors(out: Path, data: Path, *extra: str) -> tuple[int, str, str]:
    cfg = fp.write_yaml(data.parent / f"{out.parent.name}-{out.name}.yaml",
                        {"encoder_options": fp.TINY_MLP, "projection_dim": 8})
    return run_cli(["train", "--dataset", f"vectors:{data}", "--config", str(cfg), "--encoder", "mlp", "--method",
                    "two-stage", "--loss", "mulsupcon", "--epochs", "1", "--classifier-epochs", "1",
                    "--batch-size", "16", "--output", str(out), *extra])


@pytest.fixture(scope="module")
def vector_run(vector_data):
    tmp, data = vector_data
    out = tmp / "run"
    rc, _, err = _train_vectors(out, data, "--no-progress")
    assert rc == 0, err
    return tmp, out


def test_disk_full_during_training_is_one_line_and_leaves_nothing(vector_data, monkeypatch):
    import mlsupcon.training.reliability as reliability

    tmp, data = vector_data

    def full(obj, path):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # torch re-raises the write failure as a RuntimeError
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None

    monkeypatch.setattr(reliability, "save_checkpoint_file", full)
    out = tmp / "full" / "run"
    rc, _, err = _train_vectors(out, data, "--no-progress")
    line = assert_user_error(rc, err, "no space left on device", "nothing of this run was kept")
    assert "Traceback" not in err and "RuntimeError" not in line
    assert not out.exists()  # the folder was new: not even config.yaml / logs / the lock stay


def test_disk_full_while_writing_predictions_is_one_line(vector_run, monkeypatch):
    import mlsupcon.runs.io as tio

    tmp, run = vector_run
    np.save(tmp / "x.npy", np.zeros((3, 12), dtype=np.float32))

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(tio, "atomic_write_text", full)
    out = tmp / "pred.jsonl"
    rc, _, err = run_cli(["predict", str(run), "--input", str(tmp / "x.npy"), "--output", str(out)])
    assert_user_error(rc, err, "no space left on device", str(tmp))
    assert not out.exists()


# ============================================================ 16, 18: what predict writes


def test_every_listed_label_has_a_score(vector_run):
    tmp, run = vector_run
    np.save(tmp / "x5.npy", np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32))
    out = tmp / "all.jsonl"
    rc, _, err = run_cli(["predict", str(run), "--input", str(tmp / "x5.npy"), "--output", str(out),
                          "--threshold", "0", "--top-scores", "1"])
    assert rc == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert len(row["labels"]) == 4  # threshold 0: every label
        assert set(row["labels"]) <= set(row["scores"])
        scores = list(row["scores"].values())
        assert scores == sorted(scores, reverse=True)


def test_output_suffix_of_another_format_warns_and_writes_the_command_format(vector_run):
    tmp, run = vector_run
    np.save(tmp / "x2.npy", np.zeros((2, 12), dtype=np.float32))
    out = tmp / "pred.npz"
    with pytest.warns(OutputSuffixWarning, match=r"predict writes JSONL; --output .*pred\.npz has another suffix"):
        rc, _, err = run_cli(["predict", str(run), "--input", str(tmp / "x2.npy"), "--output", str(out)])
    assert rc == 0, err
    assert [json.loads(line) for line in out.read_text().splitlines()][0]["labels"] is not None
    out2 = tmp / "emb.jsonl"
    with pytest.warns(OutputSuffixWarning, match="embed writes NPZ"):
        rc, _, err = run_cli(["embed", str(run), "--input", str(tmp / "x2.npy"), "--output", str(out2)])
    assert rc == 0, err
    assert np.load(out2)["embeddings"].shape[0] == 2


# ============================================================ 13: progress


def test_progress_without_a_terminal_is_lines_not_carriage_returns():
    out = io.StringIO()
    bar = progress_bar(1000, "embedding with all-MiniLM-L6-v2", "texts", stream=out)
    assert isinstance(bar, LineProgress)
    for _ in range(100):
        bar.update(10)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    assert [line.split(": ")[-1].split(" ")[0] for line in text.splitlines()] == ["25%", "50%", "75%", "100%"]
    quiet = io.StringIO()
    bar = progress_bar(1000, "x", "texts", enabled=False, stream=quiet)
    bar.update(1000)
    assert quiet.getvalue() == ""


def test_training_progress_in_a_log_is_one_line_per_epoch(vector_data):
    tmp, data = vector_data
    rc, _, err = _train_vectors(tmp / "progress-run", data)  # progress on, stderr not a terminal
    assert rc == 0, err
    assert "\r" not in err
    assert any(fp.EPOCH_LINE.match(line) for line in err.splitlines()), err


def test_no_progress_silences_the_frozen_encoders_report(monkeypatch, capsys):
    from mlsupcon import progress

    calls = []
    monkeypatch.setattr(progress, "LineProgress", lambda *a, **k: calls.append(a) or progress._NoProgress())
    progress.set_enabled(False)
    try:
        progress_bar(10, "embedding", "texts").update(10)
    finally:
        progress.set_enabled(True)
    assert calls == []
    progress_bar(10, "embedding", "texts").update(10)
    assert len(calls) == 1


def test_evaluate_takes_no_progress(vector_run):
    _, run = vector_run
    rc, out, err = run_cli(["evaluate", str(run), "--no-progress"])
    assert rc == 0, err
    assert "test metrics" in out or "scored split" in out


# ============================================================ 17: branches of weight 0


def test_blend_weight_zero_skips_the_branch_and_keeps_the_scores_bit_identical():
    from mlsupcon.models import BlendHead, Classifier, ScoresHead, SliceHead, build_encoder
    from mlsupcon.models.fusion import FusionEncoder
    from mlsupcon.training.inference import TrainedModel

    texts = ["python pip module", "gcc pointer header", "editor text vim", "image viewer display"] * 3
    deep = build_encoder("cnn", train_texts=texts, **fp.TINY_CNN)
    wide = build_encoder("cnn", train_texts=texts, tokenizer="char", embed_dim=8, num_filters=3, kernel_size=2)
    enc = FusionEncoder.from_encoders([deep, wide], embedding_branch=0)
    d, c = deep.output_dim, 3
    torch.manual_seed(0)
    inner = torch.nn.Linear(wide.output_dim, c)
    head = BlendHead(SliceHead(torch.nn.Linear(d, c), 0, d), SliceHead(ScoresHead(c), d, d + c), weight=0.0)
    head.head_b.inner = _Wrapped(inner, c)
    model = TrainedModel(Classifier(enc, head), {"label_names": ["a", "b", "c"], "threshold": 0.5})
    with torch.no_grad():
        full = torch.sigmoid(model.classifier.logits(model.classifier.preprocess(texts))).numpy()
    runs = []
    original = deep.forward
    deep.forward = lambda batch: runs.append(1) or original(batch)
    fast = model.predict_proba(texts, progress=False)
    assert runs == []  # the deep branch of weight 0 was not run
    assert np.array_equal(fast, full)
    model.embed(texts, progress=False)  # embeddings are the deep branch's: it runs there
    assert runs


class _Wrapped(torch.nn.Module):
    """A pooled-feature head of ``c`` outputs over the wide branch (a stand-in for its linear scores)."""

    def __init__(self, inner: torch.nn.Module, c: int) -> None:
        super().__init__()
        self.inner, self.num_labels = inner, c

    def forward(self, h):
        return self.inner(h)

    def config(self):
        return {}


# ============================================================ 19: huge texts


def test_huge_text_is_tokenised_from_a_prefix_with_the_same_ids():
    from mlsupcon.models.tokenization import LongTextNote, TextTokenizer, TokenCache

    words = "python pip module compiler pointer header gcc editor".split()
    tok = TextTokenizer.train([" ".join(words)] * 4, vocab_size=60)
    rng = np.random.default_rng(0)
    huge = " ".join(rng.choice(words, size=400_000))  # ~2.8 M characters
    spaces = "x " + " " * 200_000 + " ".join(rng.choice(words, size=50))  # mostly white space: the fallback
    unspaced = "".join(rng.choice(list("abcdefgh"), size=300_000))  # no white space to cut at
    seen = []
    original = tok.encode
    tok.encode = lambda texts: seen.extend(len(t) for t in texts) or original(texts)
    cache = TokenCache(tok, max_tokens=64)
    with pytest.warns(LongTextNote, match="tokenised from their first"):
        got = cache([huge, "python pip", spaces, unspaced])
    for text, ids in zip([huge, "python pip", spaces, unspaced], got):
        assert ids.tolist() == original([text])[0][:64]
    assert max(seen[:4]) <= cache.max_chars  # the first pass never saw the huge texts whole


def test_predict_refusals_import_no_torch(inputs):
    """The path / device checks run before anything heavy is imported (a refusal in < 1 s)."""
    import subprocess
    import sys

    run, src = inputs
    code = ("import sys; from mlsupcon.cli.main import main; "
            f"rc = main(['predict', {str(run)!r}, '--input', {str(src)!r}, '--output', {str(src)!r}]); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr


def test_an_output_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder\n")
    rc, _, err = run_cli(["train", "--dataset", "yeast", "--output", str(blocker / "run"), "--no-progress"])
    assert_user_error(rc, err, "cannot create", str(blocker / "run"))


def test_a_full_disk_said_only_in_a_writers_message_is_one_line_in_train(vector_data, monkeypatch):
    """safetensors' writer reports a full disk in its message only (no OSError): the same one line."""
    import mlsupcon.inference.storage as export

    def full(*_a, **_k):
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                           "message: \"No space left on device\" })")

    monkeypatch.setattr(export, "save_weights", full)
    tmp, data = vector_data
    out = tmp / "full-msg" / "run"
    rc, _, err = _train_vectors(out, data, "--no-progress")
    assert_user_error(rc, err, "no space left on device", "--resume")  # the stages' checkpoints are kept
    assert not (out / "model").exists() and not (out / "metrics.json").exists()
