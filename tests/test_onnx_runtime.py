"""The frozen encoder's ONNX Runtime backbones: same embeddings (fp32) or close ones (int8), cached
export files that are trusted only when they load, and configs that say which runtime embedded.

Every test shares one ONNX cache folder (the session's $MLSUPCON_CACHE, set in conftest.py),
so each model is exported once per session.
"""

import json
import logging
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx runtimes need onnxruntime (pip install 'mlsupcon[text]')")

from mlsupcon.models import TransformerEncoder, build_encoder  # noqa: E402
from mlsupcon.models import onnx_backbone as ob  # noqa: E402
from mlsupcon.models.feature_cache import cache_key  # noqa: E402

TEXTS = [
    "A man is playing a guitar.",
    "Someone plays the guitar on stage.",
    "The stock market fell sharply on Monday after the central bank raised rates. " * 12,  # > 128 tokens
    "",
    "ok",
    "Ein Mann spielt Gitarre. 男人在弹吉他。",
]


def frozen(tmp_path, runtime, **opts):
    return build_encoder("frozen", hidden_dims=(), progress=False, cache_dir=str(tmp_path / "features"),
                         runtime=runtime, **opts)


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    return {rt: frozen(tmp, rt).embed(TEXTS) for rt in ob.RUNTIMES}


def test_onnx_fp32_matches_torch_and_int8_is_close(embeddings):
    ref = embeddings["torch"]
    np.testing.assert_allclose(embeddings["onnx"], ref, atol=1e-4, rtol=0)
    cos = (embeddings["onnx-int8"] * ref).sum(1)
    sentences = [i for i, t in enumerate(TEXTS) if len(t.split()) >= 5]
    assert cos[sentences].min() >= 0.99 and cos.min() >= 0.98, cos  # "" and "ok": only [CLS]/[SEP] states
    assert not np.allclose(embeddings["onnx-int8"], ref, atol=1e-4)  # it really is another computation
    for v in embeddings.values():
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_int8_embedding_of_a_text_does_not_depend_on_its_batch(tmp_path, embeddings):
    enc = frozen(tmp_path, "onnx-int8", batch_size=4)
    alone = np.concatenate([enc.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(alone, embeddings["onnx-int8"], atol=1e-6, rtol=0)
    # Texts run one per call, on a pool of calls when torch has several threads, else in turn: same values.
    backbone = enc._load_backbone().backbone
    for threads in (1, 3):
        backbone.threads = threads
        np.testing.assert_allclose(enc.embed(TEXTS), embeddings["onnx-int8"], atol=1e-6, rtol=0)
    # Long texts cut into two 512-token segments: the segments are pooled as with torch.
    long = ["word " * 900]
    a = frozen(tmp_path, "onnx", max_length=1024).embed(long)
    b = frozen(tmp_path, "torch", max_length=1024).embed(long)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_runtime_is_in_the_cache_key_and_the_config(tmp_path):
    keys = {rt: cache_key(frozen(tmp_path, rt).identity(), TEXTS) for rt in ob.RUNTIMES}
    assert len(set(keys.values())) == 3
    # torch keeps the key tables had before runtimes existed (no "runtime" entry).
    assert "runtime" not in frozen(tmp_path, "torch").identity()
    ident = frozen(tmp_path, "onnx-int8").identity()
    assert ident["runtime"] == "onnx-int8" and {"onnxruntime", "onnx", "torch"} <= set(ident)
    auto = frozen(tmp_path, "auto")
    cfg = json.loads(json.dumps(auto.config()))
    assert cfg["runtime"] == "onnx-int8"  # the resolved value: a saved model embeds as it was trained
    assert build_encoder(**cfg).runtime == "onnx-int8"


def test_export_is_cached_and_a_damaged_file_is_exported_again(tmp_path, monkeypatch, caplog, embeddings):
    monkeypatch.setenv("MLSUPCON_CACHE", str(tmp_path / "cache"))
    ob._SESSIONS.clear()
    enc = frozen(tmp_path, "onnx-int8")
    first = enc.embed(TEXTS[:2])
    files = list((tmp_path / "cache" / "onnx").iterdir())
    assert len(files) == 1 and files[0].name.endswith("-onnx-int8.onnx")  # no temporary folder left
    # A second encoder reuses the file: exporting again, or even loading the PyTorch model, fails the test.
    monkeypatch.setattr(ob, "_export", lambda *a, **k: pytest.fail("exported again"))
    monkeypatch.setattr(TransformerEncoder, "_build_backbone", lambda *a, **k: pytest.fail("PyTorch model loaded"))
    ob._SESSIONS.clear()
    np.testing.assert_array_equal(frozen(tmp_path, "onnx-int8").embed(TEXTS[:2]), first)
    monkeypatch.undo()
    monkeypatch.setenv("MLSUPCON_CACHE", str(tmp_path / "cache"))
    files[0].write_bytes(files[0].read_bytes()[:1000])  # truncated
    ob._SESSIONS.clear()
    with caplog.at_level(logging.WARNING, logger="mlsupcon.models"):
        again = frozen(tmp_path, "onnx-int8").embed(TEXTS[:2])
    assert "exported again" in caplog.text
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert [f.name for f in (tmp_path / "cache" / "onnx").iterdir()] == [files[0].name]


def test_pickled_encoder_reloads_its_session(tmp_path, embeddings):
    enc = frozen(tmp_path, "onnx")
    enc.embed(TEXTS[:1])
    copy = pickle.loads(pickle.dumps(enc))
    np.testing.assert_allclose(copy.embed(TEXTS), embeddings["onnx"], atol=1e-6)


def test_runtime_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="runtime must be one of"):
        frozen(tmp_path, "tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        frozen(tmp_path, "onnx-int8", device="cuda")
    with pytest.raises(ValueError, match="save_backbone needs runtime 'torch'"):
        frozen(tmp_path, "onnx", save_backbone=True)
    assert frozen(tmp_path, "auto", save_backbone=True).runtime == "torch"
    monkeypatch.setattr(ob, "onnx_available", lambda: False)
    assert frozen(tmp_path, "auto").runtime == "torch"
    with pytest.raises(ValueError, match="needs onnxruntime and onnx"):
        frozen(tmp_path, "onnx")


def test_models_saved_before_runtimes_existed_load_with_torch():
    from mlsupcon.inference.storage import _runtime_of_older_exports

    old = {"name": "fusion", "encoders": [{"name": "sparse"}, {"name": "frozen", "hidden_dims": []}]}
    new = _runtime_of_older_exports(old)
    assert new["encoders"][1]["runtime"] == "torch" and "runtime" not in new["encoders"][0]
    assert "runtime" not in old["encoders"][1]  # the saved dict is not modified
    assert _runtime_of_older_exports({"name": "frozen", "runtime": "onnx"})["runtime"] == "onnx"
    assert torch.get_num_threads() >= 1


def test_a_runs_config_records_the_runtime_that_ran(tmp_path, monkeypatch):
    import fixtures_pipeline as fp
    import yaml
    from fixtures_pipeline import run_cli

    import mlsupcon

    monkeypatch.setenv("MLSUPCON_CACHE", str(tmp_path / "cache"))
    data = fp.write_jsonl(tmp_path / "docs.jsonl", n=30)
    cfg = fp.write_yaml(tmp_path / "c.yaml", {"encoder_options": {"hidden_dims": [8], "max_length": 32,
                                                                    "progress": False}})
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--config", str(cfg), "--dataset", f"jsonl:{data}", "--encoder", "frozen",
                          "--method", "bce", "--epochs", "1", "--output", str(out), "--no-progress"])
    assert rc == 0, err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["encoder_options"]["runtime"] == "onnx-int8"  # "auto", resolved on this CPU machine
    assert mlsupcon.load(out).classifier.encoder.runtime == "onnx-int8"
    # Resuming with the same command on the same machine sees the same configuration.
    rc, _, err = run_cli(["train", "--config", str(cfg), "--dataset", f"jsonl:{data}", "--encoder", "frozen",
                          "--method", "bce", "--epochs", "1", "--output", str(out), "--no-progress", "--resume"])
    assert rc == 0, err


def test_an_onnx_model_embeds_on_the_cpu_of_a_cuda_machine(tmp_path, monkeypatch, embeddings):
    # A run trained with onnx-int8 on a CPU machine, loaded where CUDA is present (device None).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    enc = frozen(tmp_path, "onnx-int8")
    assert enc.runtime == "onnx-int8" and enc._device(None).type == "cpu"
    np.testing.assert_allclose(enc.embed(TEXTS[:3]), embeddings["onnx-int8"][:3], atol=1e-6, rtol=0)
    assert frozen(tmp_path, "auto").runtime == "torch"  # a new run there uses the GPU
