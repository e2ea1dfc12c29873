"""The ``frozen`` encoder: offline MiniLM embeddings computed once, cached on disk, MLP on top.

A handful of short texts; every test uses its own cache folder (tmp_path), never ~/.cache.
These tests pin ``runtime="torch"`` (PyTorch's fp32 values, compared exactly with the
transformer encoder); the ONNX runtimes are tested in test_onnx_runtime.py.
"""

import json
import logging
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

from mlsupcon.models import FrozenEncoder, build_encoder, minilm_path
from mlsupcon.models.feature_cache import cache_key, default_cache_dir, model_fingerprint, read_table, write_table

SPLITS = {
    "train": ["A man is playing a guitar.", "Someone plays the guitar on stage.", "The stock market fell sharply."],
    "validation": ["Shares dropped on Monday.", "A man is playing a guitar."],  # a duplicate across splits
    "test": ["The cat sleeps on the sofa."],
}
TEXTS = sorted({t for v in SPLITS.values() for t in v})


def frozen(tmp_path, **opts):
    opts = {"hidden_dims": (16,), "progress": False, "cache_dir": str(tmp_path / "cache"), "batch_size": 2,
            "runtime": "torch", **opts}
    return build_encoder("frozen", **opts)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One encoder that has embedded SPLITS (the transformer is loaded once for several tests)."""
    tmp = tmp_path_factory.mktemp("frozen")
    enc = frozen(tmp)
    report = enc.prepare(SPLITS)
    return tmp, enc, report


def test_cache_written_once_and_reused(prepared, monkeypatch):
    tmp, enc, report = prepared
    assert report["cache"] == "computed" and report["texts"] == len(TEXTS) == 5
    assert enc.backbone_batches == 3  # 5 distinct texts, batch_size 2: each text embedded once
    files = list((tmp / "cache").glob("*.npz"))
    assert [str(f) for f in files] == [report["path"]]
    assert not [f for f in (tmp / "cache").iterdir() if f.suffix != ".npz"]  # no temporary file left

    again = frozen(tmp)
    monkeypatch.setattr(FrozenEncoder, "embed", lambda self, texts: pytest.fail("the transformer ran"))
    # Another split layout and order of the same texts: same key, same file.
    r2 = again.prepare({"train": list(reversed(TEXTS))})
    assert r2["cache"] == "loaded" and r2["path"] == report["path"]
    assert again.backbone_batches == 0 and not again.backbone_loaded
    assert torch.equal(again.preprocess(TEXTS)["x"], enc.preprocess(TEXTS)["x"])
    assert enc.prepare(SPLITS)["cache"] == "memory"


def test_embeddings_are_sentence_embeddings(prepared):
    _, enc, _ = prepared
    x = enc.preprocess(TEXTS)["x"]
    assert x.dtype == torch.float32 and x.shape == (5, 384)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(5))
    sim = x @ x.T
    i, j, k = (TEXTS.index(t) for t in ("A man is playing a guitar.", "Someone plays the guitar on stage.",
                                         "The stock market fell sharply."))
    assert sim[i, j] > sim[i, k] + 0.3
    # Batched by length with padding = each text alone (mean pooling ignores padding).
    alone = np.concatenate([enc.embed([t]) for t in TEXTS])
    np.testing.assert_allclose(x.numpy(), alone, atol=2e-5)
    # Same as the transformer encoder's mean pooling, normalised.
    ref = enc._load_backbone()(enc._load_backbone().preprocess(TEXTS[:2]))
    torch.testing.assert_close(x[:2], torch.nn.functional.normalize(ref, dim=-1), atol=2e-5, rtol=0)


def test_preprocess_of_unseen_text(prepared):
    _, enc, _ = prepared
    before = enc.backbone_batches
    new = ["A completely new sentence about rivers.", TEXTS[0]]
    out = enc.preprocess(new)["x"]
    assert enc.backbone_batches == before + 1  # only the unseen text was embedded
    np.testing.assert_allclose(out[0].numpy(), enc.embed([new[0]])[0], atol=2e-5)
    enc.preprocess(new)
    assert enc.backbone_batches == before + 2  # the embed() call above; preprocess ran none
    assert enc.preprocess("The cat sleeps on the sofa.")["x"].shape == (1, 384)


def test_cache_key_follows_model_files_and_options(tmp_path):
    base = frozen(tmp_path)
    key = cache_key(base.identity(), TEXTS)
    assert cache_key(frozen(tmp_path, hidden_dims=(8,), batch_size=7).identity(), TEXTS) == key  # MLP: no effect
    for opts in ({"max_length": 64}, {"pooling": "cls"}, {"normalize": False}):
        assert cache_key(frozen(tmp_path, **opts).identity(), TEXTS) != key, opts
    assert cache_key(base.identity(), TEXTS[:-1]) != key
    # A copy of the model elsewhere, then with other weights (mtime) or another config.
    copy = tmp_path / "model"
    shutil.copytree(minilm_path(), copy)
    moved = cache_key(frozen(tmp_path, model_path=str(copy)).identity(), TEXTS)
    assert moved != key
    st = (copy / "model.safetensors").stat()
    os.utime(copy / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = cache_key(frozen(tmp_path, model_path=str(copy)).identity(), TEXTS)
    assert touched != moved
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**cfg, "layer_norm_eps": 1e-6}))
    assert cache_key(frozen(tmp_path, model_path=str(copy)).identity(), TEXTS) not in (touched, moved)
    assert set(model_fingerprint(copy)["weights"]) == {"model.safetensors"}


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "other_key"])
def test_corrupt_cache_is_recomputed(prepared, tmp_path, damage, caplog):
    src_tmp, enc, report = prepared
    cache = tmp_path / "cache"
    cache.mkdir()
    path = cache / os.path.basename(report["path"])
    shutil.copy(report["path"], path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF  # inside the vectors
    elif damage == "garbage":
        data = bytearray(b"\0" * 100)
    path.write_bytes(bytes(data))
    if damage == "other_key":
        write_table(path, "0" * 64, enc.preprocess(TEXTS)["x"].numpy())
    fresh = frozen(tmp_path)
    fresh.__dict__["_frozen"] = enc._load_backbone()  # reuse the loaded transformer: loads are slow
    with caplog.at_level(logging.WARNING, logger="mlsupcon.models"):
        r = fresh.prepare(SPLITS)
    assert r["cache"] == "computed" and fresh.backbone_batches > 0
    assert "ignored and recomputed" in caplog.text
    torch.testing.assert_close(fresh.preprocess(TEXTS)["x"], enc.preprocess(TEXTS)["x"], atol=2e-5, rtol=0)
    # The rewritten file is whole again.
    assert read_table(path, os.path.basename(report["path"])[:-4], len(TEXTS), 384) is not None


def test_config_round_trip_and_state_dict_holds_only_the_mlp(prepared, tmp_path):
    _, enc, _ = prepared
    cfg = json.loads(json.dumps(enc.config()))
    assert cfg["name"] == "frozen" and cfg["model_path"] is None and cfg["hidden_dims"] == [16]
    assert sorted(enc.state_dict()) == ["mlp.net.0.bias", "mlp.net.0.weight"]
    again = build_encoder(**cfg)
    again.load_state_dict(enc.state_dict())
    enc.eval(), again.eval()
    assert again.prepare(SPLITS)["cache"] == "loaded"
    assert torch.equal(enc(enc.preprocess(TEXTS)), again(again.preprocess(TEXTS)))
    ident = frozen(tmp_path, hidden_dims=())
    x = torch.randn(3, 384)
    assert ident.output_dim == 384 and torch.equal(ident({"x": x}), x) and not list(ident.parameters())


def test_backbone_stays_frozen_and_in_eval_while_the_mlp_trains(prepared, tmp_path):
    _, enc, _ = prepared
    torch.manual_seed(0)
    enc.train()
    backbone = enc._load_backbone()
    assert not backbone.training and not backbone.backbone.training
    assert not any(p is q for p in enc.parameters() for q in backbone.parameters())
    view = enc.make_view_fn(p_mask=0.2, noise_std=0.01)
    y = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1], [1, 1]])
    head = torch.nn.Linear(enc.output_dim, 2)
    opt = torch.optim.SGD(list(enc.parameters()) + list(head.parameters()), lr=0.5)
    w0 = enc.mlp.net[0].weight.detach().clone()
    b0 = {k: v.clone() for k, v in backbone.state_dict().items()}
    batch = enc.preprocess(TEXTS)
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(enc(view(batch))), y)
        loss.backward()
        opt.step()
    assert not torch.equal(w0, enc.mlp.net[0].weight)
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in b0.items())
    assert not backbone.backbone.training

    # With save_backbone the frozen weights are in the state dict, still without gradients.
    saved = frozen(tmp_path, save_backbone=True).train()
    keys = list(saved.state_dict())
    assert any(k.startswith("backbone.") for k in keys) and "mlp.net.0.weight" in keys
    assert not saved.backbone.backbone.training
    assert all(not p.requires_grad for p in saved.backbone.parameters())
    saved.prepare(SPLITS)
    saved(saved.preprocess(TEXTS)).sum().backward()
    assert all(p.grad is None for p in saved.backbone.parameters())
    assert saved.mlp.net[0].weight.grad is not None


def test_views_mask_and_noise_without_touching_the_input():
    enc = FrozenEncoder(hidden_dims=(), progress=False)
    x = torch.ones(64, 384)
    batch = {"x": x}
    masked = enc.make_view_fn(p_mask=0.3, noise_std=0.0, p_drop=0.5)(batch)["x"]  # p_drop: ignored
    assert torch.equal(x, torch.ones(64, 384)) and masked is not x
    assert 0.25 < float((masked == 0).float().mean()) < 0.35
    noisy = enc.make_view_fn(p_mask=0.0, noise_std=0.05)(batch)["x"]
    assert 0.04 < float((noisy - 1).std()) < 0.06
    view = enc.make_view_fn()
    a = view(batch, torch.Generator().manual_seed(3))["x"]
    b = view(batch, torch.Generator().manual_seed(3))["x"]
    assert torch.equal(a, b) and not torch.equal(a, view(batch, torch.Generator().manual_seed(4))["x"])


def test_options_errors_and_cache_location(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="hidden_dims"):
        FrozenEncoder(hidden_dims=(0,))
    with pytest.raises(ValueError, match="pooling"):
        FrozenEncoder(pooling="max")
    with pytest.raises(ValueError, match="max_length"):
        FrozenEncoder(max_length=2)
    with pytest.raises(ValueError, match="device"):
        FrozenEncoder(device=0)
    with pytest.raises(FileNotFoundError, match="model_path"):
        FrozenEncoder(model_path=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="model_path .* is not a Hugging Face model directory"):
        FrozenEncoder(model_path=str(tmp_path))
    with pytest.raises(ValueError, match="unknown option"):
        build_encoder("frozen", hiden_dims=(3,))
    with pytest.raises(ValueError, match="not one string"):
        FrozenEncoder(progress=False).prepare({"train": "one text"})
    monkeypatch.setenv("MLSUPCON_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "features"
    assert FrozenEncoder(progress=False).cache_dir == tmp_path / "root" / "features"
    monkeypatch.delenv("MLSUPCON_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mlsupcon" / "features"
