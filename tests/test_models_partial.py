"""Tests of the ``partial`` encoder: cached lower-layer states + trainable top layers.

A tiny random 3-layer BERT is saved to a temporary folder (with the bundled MiniLM's tokenizer)
and loaded both as a ``partial`` encoder and as a full ``transformer`` encoder; one test uses the
real all-MiniLM-L6-v2 on a handful of texts.
"""

from __future__ import annotations

from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
import torch
from fixtures_pipeline import run_cli

import mlsupcon
from mlsupcon.models import PartialEncoder, TransformerEncoder, build_encoder, minilm_path
from mlsupcon.models.portable import save_hf_tokenizer

TINY = {"hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 32,
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
TEXTS = ["A short sentence.", "Oil prices rose sharply as grain exports fell in March.", "word " * 40, "",
         "Another text, with punctuation; and numbers 1987."]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tinybert")
    torch.manual_seed(0)
    enc = TransformerEncoder(config=TINY, segment_length=32, max_length=32)
    enc.backbone.save_pretrained(str(folder), safe_serialization=True)
    save_hf_tokenizer(enc.tokenizer, minilm_path(), folder)
    return str(folder)


def full_model(path: str, max_length: int = 32) -> TransformerEncoder:
    return TransformerEncoder(model_path=path, segment_length=max_length, max_length=max_length).eval()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_cached_states_give_the_full_models_output_in_float32(tiny_dir, tmp_path, k):
    enc = PartialEncoder(tiny_dir, top_layers=k, max_length=32, state_dtype="float32", cache_dir=tmp_path,
                         progress=False).eval()
    with torch.no_grad():
        ours, ref = enc(enc.preprocess(TEXTS)), full_model(tiny_dir)(full_model(tiny_dir).preprocess(TEXTS))
    assert ours.shape == (len(TEXTS), 16) and enc.output_dim == 16
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_float16_states_match_to_half_precision_and_batches_are_padded(tiny_dir, tmp_path):
    enc = PartialEncoder(tiny_dir, top_layers=1, max_length=32, cache_dir=tmp_path, progress=False).eval()
    b = enc.preprocess(TEXTS)
    assert b["states"].dtype == torch.float16 and b["attention_mask"].dtype == torch.long
    assert b["states"].shape[:2] == b["attention_mask"].shape and b["attention_mask"].shape[1] == 32  # "word " * 40
    assert int(b["attention_mask"][3].sum()) == 2  # "" -> [CLS] [SEP]
    assert float(b["states"][0, int(b["attention_mask"][0].sum()):].abs().sum()) == 0.0
    ref = full_model(tiny_dir)
    with torch.no_grad():
        torch.testing.assert_close(enc(b), ref(ref.preprocess(TEXTS)), rtol=0, atol=2e-2)
    # a text's row does not depend on the batch it is in (padding is masked)
    with torch.no_grad():
        torch.testing.assert_close(enc(enc.preprocess(TEXTS[:1])), enc(b)[:1], rtol=0, atol=1e-5)
    assert enc.cached_bytes == sum(int(m.sum()) for m in b["attention_mask"][[0, 1, 2, 3, 4]]) * 16 * 2


def test_only_the_top_layers_train_and_are_saved(tiny_dir, tmp_path):
    enc = PartialEncoder(tiny_dir, top_layers=1, max_length=32, hidden_dims=[8], cache_dir=tmp_path, progress=False)
    names = [n for n, _ in enc.named_parameters()]
    assert names and all(n.startswith(("top.encoder.layer.0.", "mlp.")) for n in names)
    assert all(k.startswith(("top.encoder.layer.0.", "mlp.")) for k in enc.state_dict())
    lower = enc.__dict__["_lower"].backbone
    assert len(lower.encoder.layer) == 2 and not any(p.requires_grad for p in lower.parameters())
    enc.train()
    enc(enc.preprocess(TEXTS)).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    assert all(p.grad is None for p in lower.parameters())
    assert not lower.training  # the frozen layers never use dropout

    # config() + state_dict rebuild the same (trained) encoder
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.01 * torch.randn_like(p))
    again = build_encoder(**enc.config())
    again.load_state_dict(enc.state_dict())
    enc.eval(), again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(again.preprocess(TEXTS)), enc(enc.preprocess(TEXTS)), rtol=0, atol=1e-6)


def test_disk_cache_is_keyed_and_reloaded(tiny_dir, tmp_path):
    first = PartialEncoder(tiny_dir, top_layers=1, max_length=32, cache_dir=tmp_path, progress=False)
    report = first.prepare({"train": TEXTS[:3], "test": TEXTS[2:]})
    assert report["cache"] == "computed" and report["texts"] == 5 and Path(report["path"]).is_file()
    assert first.prepare({"train": TEXTS})["cache"] == "memory"
    second = PartialEncoder(tiny_dir, top_layers=1, max_length=32, cache_dir=tmp_path, progress=False)
    assert second.prepare([*reversed(TEXTS)])["cache"] == "loaded" and second.lower_batches == 0
    torch.testing.assert_close(second.preprocess(TEXTS), first.preprocess(TEXTS), rtol=0, atol=0)
    # another k, max_length or dtype is another table
    for opts in ({"top_layers": 2, "max_length": 32}, {"top_layers": 1, "max_length": 16},
                 {"top_layers": 1, "max_length": 32, "state_dtype": "float32"}):
        other = PartialEncoder(tiny_dir, cache_dir=tmp_path, progress=False, **opts)
        assert other.prepare(TEXTS)["cache"] == "computed"
    # a damaged file is recomputed, not trusted
    Path(report["path"]).write_bytes(b"not a table")
    third = PartialEncoder(tiny_dir, top_layers=1, max_length=32, cache_dir=tmp_path, progress=False)
    assert third.prepare(TEXTS)["cache"] == "computed"
    assert PartialEncoder(tiny_dir, top_layers=1, max_length=32, disk_cache=False,
                          progress=False).prepare(TEXTS)["path"] is None


def test_views_drop_tokens_but_keep_the_first(tiny_dir, tmp_path):
    enc = PartialEncoder(tiny_dir, top_layers=1, max_length=32, cache_dir=tmp_path, progress=False)
    b = enc.preprocess(TEXTS)
    view = enc.make_view_fn(p_drop=0.5, noise_std=0.1, crop=0.9, p_mask=0.1)  # text-view options ignored
    v = view(b, torch.Generator().manual_seed(0))
    assert v["states"].shape == b["states"].shape and v["states"].dtype == b["states"].dtype
    assert bool((v["attention_mask"] <= b["attention_mask"]).all()) and bool(v["attention_mask"][:, 0].all())
    assert 0 < int(v["attention_mask"].sum()) < int(b["attention_mask"].sum())
    assert not torch.equal(v["states"], b["states"])
    same = enc.make_view_fn(p_drop=0.0)(b)
    assert torch.equal(same["attention_mask"], b["attention_mask"]) and torch.equal(same["states"], b["states"])
    with pytest.raises(ValueError, match="p_drop"):
        enc.make_view_fn(p_drop=1.5)


def test_options_are_checked(tiny_dir):
    with pytest.raises(ValueError, match="top_layers"):
        PartialEncoder(tiny_dir, top_layers=4)
    with pytest.raises(ValueError, match="top_layers"):
        PartialEncoder(tiny_dir, top_layers=0)
    with pytest.raises(ValueError, match="state_dtype"):
        PartialEncoder(tiny_dir, state_dtype="bfloat8")


def test_two_stage_run_exports_a_model_that_predicts_the_same_scores(tiny_dir, tmp_path):
    data = fp.write_jsonl(tmp_path / "docs.jsonl", n=70)
    run = tmp_path / "run"
    yaml = fp.write_yaml(tmp_path / "run.yaml", {
        "encoder_options": {"model_path": tiny_dir, "top_layers": 1, "max_length": 32, "hidden_dims": [8],
                            "cache_dir": str(tmp_path / "cache"), "progress": False},
        "view_options": {"p_drop": 0.2}, "projection_dim": 8})
    rc, _, err = run_cli(["train", "--dataset", f"jsonl:{data}", "--encoder", "partial", "--method", "two-stage",
                          "--loss", "simdis", "--epochs", "1", "--classifier-epochs", "1", "--batch-size", "8",
                          "--no-auto", "--no-blend-linear", "--output", str(run), "--no-progress",
                          "--config", str(yaml)])
    assert rc == 0, err
    model = mlsupcon.load(run / "model")
    assert model.classifier.encoder.name == "partial"
    emb = np.load(run / "embeddings_test.npz")["embeddings"] if (run / "embeddings_test.npz").is_file() else None
    from mlsupcon.data import load_dataset
    from mlsupcon.training.batches import make_loader
    from mlsupcon.training.modules import predict as pipeline_predict

    test = load_dataset(f"jsonl:{data}").splits["test"]
    scores, _ = pipeline_predict(model.classifier, make_loader(test, model.classifier.preprocess, 5, shuffle=False))
    np.testing.assert_allclose(model.predict_proba(list(test.inputs), progress=False), scores, rtol=0, atol=1e-6)
    again = mlsupcon.load(run / "model")
    np.testing.assert_allclose(again.predict_proba(list(test.inputs), batch_size=1, progress=False), scores,
                               rtol=0, atol=1e-5)
    if emb is not None:
        assert emb.shape[0] == len(test.inputs)


def test_real_minilm_top_two_layers_match_the_full_model():
    texts = ["A short sentence.", "Grain exports fell as oil prices rose.", "The central bank cut its rate."]
    enc = PartialEncoder(top_layers=2, state_dtype="float32", disk_cache=False, progress=False).eval()
    ref = TransformerEncoder(max_length=128, segment_length=128).eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(enc.preprocess(texts)), ref(ref.preprocess(texts)), rtol=0, atol=1e-5)
    assert enc.num_layers == 6 and sum(p.numel() for p in enc.parameters()) == 2 * 1_774_464
