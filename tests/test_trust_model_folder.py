"""What mlsupcon trusts in a model folder and what `mlsupcon export` may write or delete (issue 19).

* ``export --force`` replaces only an earlier export: never the run being exported, another run
  or foreign files (item 1);
* ``model/manifest.json`` covers every file of a model folder (item 5);
* only safetensors weights are loaded, a truncated one is one line (item 9);
* Hugging Face exports: a fusion run says what to change, ``mlsupcon.load`` says how to read it,
  ``AutoModel`` loads it without "newly initialized" weights (item 14);
* exports and atomic folders keep the umask (item 15);
* a full disk while exporting is one line and leaves nothing behind (item 8).

Runs are tiny (a cnn and a 1-layer, 16-wide transformer, one epoch); the frozen fusion folder is
saved directly, without training.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import stat
from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
import torch
from fixtures_pipeline import assert_user_error, run_cli

import mlsupcon
from mlsupcon.training.export import load_classifier, save_classifier

TINY_BERT = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}


def _train(tmp: Path, name: str, flags: dict, yaml_values: dict) -> Path:
    run = tmp / name
    argv = ["train", "--output", str(run), "--no-progress", "--config",
            str(fp.write_yaml(tmp / f"{name}.yaml", yaml_values))]
    for key, value in flags.items():
        argv += [f"--{key}"] + ([] if value is None else [str(value)])
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    return run


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnn")
    data = fp.write_jsonl(tmp / "docs.jsonl", n=60)
    return _train(tmp, "run", {"dataset": f"jsonl:{data}", "encoder": "cnn", "method": "bce", "epochs": 1,
                               "batch-size": 16, "no-auto": None}, {"encoder_options": fp.TINY_CNN})


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transformer")
    data = fp.write_jsonl(tmp / "docs.jsonl", n=60)
    return _train(tmp, "run", {"dataset": f"jsonl:{data}", "encoder": "transformer", "method": "bce", "epochs": 1,
                               "batch-size": 16, "no-auto": None},
                  {"encoder_options": {"config": TINY_BERT, "max_length": 32, "segment_length": 32}})


def _tiny_hf_model(folder: Path, seed: int) -> Path:
    """A 1-layer BERT saved with save_pretrained (safetensors) and the MiniLM tokenizer files."""
    from transformers import BertConfig, BertModel

    from mlsupcon.models import minilm_path
    from mlsupcon.models.portable import TOKENIZER_FILES

    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=30522, max_position_embeddings=64, **TINY_BERT)).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (Path(minilm_path()) / name).is_file():
            shutil.copy(Path(minilm_path()) / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def frozen_fusion(tmp_path_factory):
    """A model folder whose encoder is a fusion of two frozen transformers of its own (copied into
    model/encoder/0 and model/encoder/1, each with its model.safetensors), as a run writes it."""
    from mlsupcon.models import Classifier, build_encoder, build_head
    from mlsupcon.training.io import atomic_dir

    tmp = tmp_path_factory.mktemp("frozen")
    branches = [{"name": "frozen", "model_path": str(_tiny_hf_model(tmp / f"tiny{i}", seed=i)), "max_length": 16,
                 "hidden_dims": [8], "progress": False, "cache_dir": str(tmp / "cache")} for i in range(2)]
    enc = build_encoder("fusion", encoders=branches)
    model = Classifier(enc, build_head("linear", enc, 3)).eval()
    with atomic_dir(tmp / "run" / "model") as folder:
        save_classifier(model, folder, {"label_names": ["a", "b", "c"], "threshold": 0.5}, backbone="always")
    return tmp / "run"


def _copy(run: Path, tmp: Path, name: str = "run") -> Path:
    dest = tmp / name
    shutil.copytree(run, dest)
    return dest


def _as_old_folder(model: Path) -> None:
    """Makes a model folder look like one written before manifests."""
    (model / "manifest.json").unlink()
    meta = json.loads((model / "model.json").read_text())
    del meta["manifest"]
    (model / "model.json").write_text(json.dumps(meta))


# ============================================================================ 1. export --force


def test_export_force_never_deletes_a_run_or_foreign_files(cnn_run, tmp_path):
    project = tmp_path / "project"
    run = _copy(cnn_run, project / "runs", "run")
    other = _copy(cnn_run, tmp_path, "other-run")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    cases = [
        (project, ("holds the run being exported",)),
        (run, ("holds the run being exported",)),
        (run / "model", ("inside the run being exported",)),
        (run / "exports", ("inside the run being exported",)),
        (other, ("training run",)),
        (other / "model", ("training run",)),
        (notes, ("notes.txt", "holds no earlier mlsupcon export")),
    ]
    for out, needles in cases:
        for fmt in ("mlsupcon", "hf"):
            rc, _, err = run_cli(["export", str(run), "--format", fmt, "--output", str(out), "--force"])
            assert_user_error(rc, err, str(out), *needles)
    assert (notes / "notes.txt").read_text() == "mine"
    assert mlsupcon.load(run).labels == mlsupcon.load(other).labels  # both runs are whole
    assert (run / "config.yaml").is_file() and (other / "config.yaml").is_file()
    assert sorted(p.name for p in project.iterdir()) == ["runs"]


def test_export_force_replaces_an_earlier_export_only(cnn_run, tmp_path):
    out = tmp_path / "exports" / "cnn"
    out.parent.mkdir()
    (out.parent / "config.yaml").write_text("dataset: yeast\n")  # a user's config next to the exports is no run
    rc, _, err = run_cli(["export", str(cnn_run), "--format", "mlsupcon", "--output", str(out)])
    assert rc == 0, err
    assert json.loads((out / "manifest.json").read_text())["export"] == "mlsupcon"
    rc, _, err = run_cli(["export", str(cnn_run), "--format", "mlsupcon", "--output", str(out)])
    assert_user_error(rc, err, "not empty", "--force")
    rc, _, err = run_cli(["export", str(cnn_run), "--format", "mlsupcon", "--output", str(out), "--force"])
    assert rc == 0, err
    # an export written before manifests (model.json, weights, no manifest) is recognised too
    _as_old_folder(out)
    rc, _, err = run_cli(["export", str(cnn_run), "--format", "mlsupcon", "--output", str(out), "--force"])
    assert rc == 0, err
    assert mlsupcon.load(out).labels == mlsupcon.load(cnn_run).labels
    # ... but not with a file of the user's next to it
    (out / "notes.txt").write_text("mine")
    rc, _, err = run_cli(["export", str(cnn_run), "--format", "mlsupcon", "--output", str(out), "--force"])
    assert_user_error(rc, err, "notes.txt", "earlier export")
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.json").is_file()


# ============================================================================ 5. the manifest


def test_manifest_covers_every_file_of_the_model_folder(cnn_run, frozen_fusion, tmp_path):
    # two label names swapped in model.json: valid JSON, a valid model, the wrong labels
    run = _copy(cnn_run, tmp_path, "swapped")
    meta_path = run / "model" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["label_names"][0], meta["label_names"][1] = meta["label_names"][1], meta["label_names"][0]
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "python editor"}) + "\n")
    rc, _, err = run_cli(["predict", str(run), "--input", str(tmp_path / "x.jsonl"), "--output",
                          str(tmp_path / "p.jsonl")])
    assert_user_error(rc, err, "model.json", "does not match the sha256", "manifest.json")
    with pytest.raises(ValueError, match="model.json is damaged or was replaced"):
        mlsupcon.load(run)

    # encoder/0's weights replaced by other valid weights (encoder/1's)
    fusion = _copy(frozen_fusion, tmp_path, "fusion")
    shutil.copy(fusion / "model" / "encoder" / "1" / "model.safetensors",
                fusion / "model" / "encoder" / "0" / "model.safetensors")
    with pytest.raises(ValueError, match=r"encoder/0/model.safetensors is damaged or was replaced.*re-export"):
        mlsupcon.load(fusion)

    # a file missing, a file added
    fusion = _copy(frozen_fusion, tmp_path, "fusion2")
    (fusion / "model" / "encoder" / "1" / "vocab.txt").unlink()
    with pytest.raises(ValueError, match="encoder/1/vocab.txt is missing"):
        mlsupcon.load(fusion)
    fusion = _copy(frozen_fusion, tmp_path, "fusion3")
    (fusion / "model" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt is not part of this model folder"):
        mlsupcon.load(fusion)
    manifest = json.loads((cnn_run / "model" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.json", "weights.safetensors"}
    files = json.loads((frozen_fusion / "model" / "manifest.json").read_text())["files"]
    assert {"model.json", "weights.safetensors", "encoder/0/model.safetensors", "encoder/1/vocab.txt"} <= set(files)
    # manifest.json deleted while model.json says there is one
    fusion = _copy(frozen_fusion, tmp_path, "fusion4")
    (fusion / "model" / "manifest.json").unlink()
    with pytest.raises(ValueError, match="manifest.json is missing"):
        mlsupcon.load(fusion)


def test_folders_written_before_manifests_still_load(cnn_run, tmp_path):
    run = _copy(cnn_run, tmp_path)
    _as_old_folder(run / "model")
    assert mlsupcon.load(run).labels == mlsupcon.load(cnn_run).labels
    (run / "model" / "weights.safetensors").write_bytes(b"garbage")  # the weights_sha256 check still applies
    with pytest.raises(ValueError, match="does not match the sha256 recorded in .*model.json"):
        mlsupcon.load(run)


# ============================================================================ 9. safetensors only


def test_damaged_or_pickled_encoder_files_are_one_line(frozen_fusion, tmp_path, monkeypatch):
    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load called on a model folder file")

    monkeypatch.setattr(torch, "load", no_torch_load)
    texts = tmp_path / "x.jsonl"
    texts.write_text(json.dumps({"text": "python editor"}) + "\n")
    out = tmp_path / "p.jsonl"
    rc, _, err = run_cli(["predict", str(frozen_fusion), "--input", str(texts), "--output", str(out)])
    assert rc == 0, err

    for manifest in (True, False):
        # truncated (with a manifest: its sha256; without: its safetensors header)
        run = _copy(frozen_fusion, tmp_path, f"truncated-{manifest}")
        if not manifest:
            _as_old_folder(run / "model")
        weights = run / "model" / "encoder" / "0" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        rc, _, err = run_cli(["predict", str(run), "--input", str(texts), "--output", str(out)])
        line = assert_user_error(rc, err, "model: ", "encoder/0/model.safetensors is damaged")
        assert "Safetensor" not in line or not manifest

        # a pickle in place of the safetensors weights: never handed to torch.load
        run = _copy(frozen_fusion, tmp_path, f"pickle-{manifest}")
        if not manifest:
            _as_old_folder(run / "model")
        weights = run / "model" / "encoder" / "0" / "model.safetensors"
        weights.rename(weights.with_name("pytorch_model.bin"))
        rc, _, err = run_cli(["predict", str(run), "--input", str(texts), "--output", str(out)])
        assert_user_error(rc, err, "encoder/0/")
        if not manifest:
            assert_user_error(rc, err, "pytorch_model.bin is not a safetensors file")
            # without the .bin either: the folder has no weights at all
            (weights.with_name("pytorch_model.bin")).unlink()
            rc, _, err = run_cli(["predict", str(run), "--input", str(texts), "--output", str(out)])
            assert_user_error(rc, err, "encoder/0 holds no *.safetensors weights")


# ============================================================================ 14. Hugging Face exports


def test_hf_export_of_a_blended_fusion_run_says_what_to_change(transformer_run, tmp_path):
    from mlsupcon.models import BlendHead, Classifier, ScoresHead, SliceHead, build_encoder
    from mlsupcon.models.fusion import FusionEncoder

    model = mlsupcon.load(transformer_run)
    texts = ["python editor with cursor", "gcc compiler header", "image viewer window"]
    linear = build_encoder("sparse", train_texts=texts, hidden_dims=(model.num_labels,), final_activation=False,
                           cache_nnz=0)
    d, c = model.classifier.encoder.output_dim, model.num_labels
    fused = FusionEncoder.from_encoders([model.classifier.encoder, linear], embedding_branch=0)
    head = BlendHead(SliceHead(model.classifier.head, 0, d), SliceHead(ScoresHead(c), d, d + c), 0.5)
    run = tmp_path / "blended"
    save_classifier(Classifier(fused, head), run / "model", {"label_names": model.labels, "threshold": 0.5})
    rc, _, err = run_cli(["export", str(run), "--format", "hf", "--output", str(tmp_path / "hf")])
    assert_user_error(rc, err, "fusion", "--no-blend-linear", "blend_linear", "transformer (branch 0)",
                      "--format mlsupcon")
    assert not (tmp_path / "hf").exists()


def test_hf_export_loads_without_new_weights_and_load_says_what_it_is(transformer_run, tmp_path):
    import transformers
    from transformers import AutoModel

    hf = tmp_path / "hf"
    rc, _, err = run_cli(["export", str(transformer_run), "--format", "hf", "--output", str(hf)])
    assert rc == 0, err
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger = transformers.logging.get_logger()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    logger.addHandler(handler)
    try:
        backbone, info = AutoModel.from_pretrained(hf, local_files_only=True, output_loading_info=True)
    finally:
        logger.removeHandler(handler)
        transformers.logging.set_verbosity(verbosity)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert "newly initialized" not in buffer.getvalue() and "pooler" not in buffer.getvalue()
    # the pooler added for AutoModel does not change the states the run's encoder pools
    model = mlsupcon.load(transformer_run)
    batch = model.classifier.encoder.preprocess(["python editor with cursor and buffer"])
    with torch.no_grad():
        states = backbone.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        mine = model.classifier.encoder.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    np.testing.assert_allclose(states.last_hidden_state.numpy(), mine.last_hidden_state.numpy(), atol=1e-6)

    with pytest.raises(ValueError, match="is a Hugging Face export .*AutoModel.from_pretrained"):
        mlsupcon.load(hf)
    rc, _, err = run_cli(["evaluate", str(hf)])
    assert_user_error(rc, err, "Hugging Face export", "mlsupcon_head.safetensors")


# ============================================================================ 15. the umask


def _modes(folder: Path) -> set[tuple[str, int]]:
    found = {("dir", stat.S_IMODE(folder.stat().st_mode))}
    for p in folder.rglob("*"):
        found.add(("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)))
    return found


def test_exports_and_model_folders_keep_the_umask(transformer_run, frozen_fusion, tmp_path):
    from mlsupcon.models import Classifier, build_encoder, build_head
    from mlsupcon.training.io import atomic_dir, atomic_write_text

    previous = os.umask(0o022)
    try:
        for fmt in ("hf", "mlsupcon"):
            out = tmp_path / fmt
            rc, _, err = run_cli(["export", str(transformer_run), "--format", fmt, "--output", str(out)])
            assert rc == 0, err
            assert _modes(out) == {("dir", 0o755), ("file", 0o644)}, (fmt, _modes(out))
        # a run's model/ (atomic_dir), a frozen transformer saved by save_pretrained inside it
        model, _ = load_classifier(frozen_fusion / "model")
        with atomic_dir(tmp_path / "run" / "model") as folder:
            save_classifier(model, folder, {"label_names": ["a", "b", "c"], "threshold": 0.5}, backbone="always")
            os.chmod(folder / "model.json", 0o600)  # as a writer using mkstemp would leave it
        assert _modes(tmp_path / "run" / "model") == {("dir", 0o755), ("file", 0o644)}
        atomic_write_text(tmp_path / "one.txt", "x")
        assert stat.S_IMODE((tmp_path / "one.txt").stat().st_mode) == 0o644
        os.umask(0o077)
        enc = build_encoder("mlp", in_dim=4, hidden_dims=(8,))
        with atomic_dir(tmp_path / "private") as folder:
            save_classifier(Classifier(enc, build_head("linear", enc, 2)), folder)
        assert _modes(tmp_path / "private") == {("dir", 0o700), ("file", 0o600)}
    finally:
        os.umask(previous)


# ============================================================================ 8. a full disk


@pytest.mark.parametrize("fmt", ["mlsupcon", "hf"])
def test_a_full_disk_while_exporting_is_one_line_and_leaves_nothing(fmt, transformer_run, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_rust(*args, **kwargs):  # how safetensors reports it
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    if fmt == "mlsupcon":
        monkeypatch.setattr("mlsupcon.inference.storage.save_weights", full)
    else:
        monkeypatch.setattr("safetensors.torch.save_file", full_rust)
    exports = tmp_path / "exports"
    exports.mkdir()
    out = exports / "model"
    rc, _, err = run_cli(["export", str(transformer_run), "--format", fmt, "--output", str(out)])
    line = assert_user_error(rc, err)
    assert line == f"mlsupcon: error: no space left on device ({out})"
    assert list(exports.iterdir()) == []


def test_disk_errors_passes_other_errors_through(tmp_path):
    from mlsupcon.training.io import disk_errors

    with pytest.raises(PermissionError), disk_errors(tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(ValueError, match=r"^no space left on device \(.*\)$"), disk_errors(tmp_path):
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as exc:
            raise RuntimeError("writing failed") from exc
