"""Classifier (encoder + head + projection), the head registry, and save/load of exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mlsupcon.models import (
    HEADS,
    Classifier,
    KMCLClassifier,
    LabelWiseAttention,
    LinearClassifier,
    ProjectionHead,
    build_encoder,
    build_head,
)
from mlsupcon.training.export import load_classifier, save_classifier
from mlsupcon.training.io import file_sha256, save_weights, write_json

TEXTS = ["the python interpreter", "a small c compiler with headers", "editor for text", "an image viewer"]


def _cnn():
    return build_encoder("cnn", train_texts=TEXTS, embed_dim=8, num_filters=6, kernel_size=3, max_length=16)


def _mlp():
    return build_encoder("mlp", in_dim=5, hidden_dims=(7,))


def _batch(encoder):
    raw = TEXTS if encoder.modality == "text" else np.random.default_rng(0).random((4, 5))
    return encoder.preprocess(raw)


@pytest.mark.parametrize("kind, make_encoder", [("linear", _mlp), ("attention", _cnn), ("kmcl", _mlp)])
def test_logits_follow_the_head_input(kind, make_encoder):
    torch.manual_seed(0)
    enc = make_encoder()
    head = build_head(kind, enc, 3)
    model = Classifier(enc, head).eval()
    batch = _batch(enc)
    logits = model.logits(batch)
    assert logits.shape == (4, 3)
    # the same computation written out by hand, per kind
    if kind == "attention":
        seq, mask = enc.encode_sequence(batch)
        expected = head(seq, mask)
    elif kind == "kmcl":
        expected = head.kmcl(enc(batch)).pi
    else:
        expected = head(enc(batch))
    assert torch.equal(logits, expected)
    assert model.head_kind == kind and isinstance(head, HEADS[kind])


def test_embed_spaces():
    torch.manual_seed(0)
    enc = _mlp()
    batch = _batch(enc)
    with_proj = Classifier(enc, build_head("linear", enc, 2), ProjectionHead(7, out_dim=4)).eval()
    assert with_proj.embed(batch).shape == (4, 4)
    assert torch.equal(with_proj.embed(batch), with_proj.projection(enc(batch)))
    assert torch.equal(with_proj.embed(batch, "encoder"), enc(batch))
    # no projection (e.g. a bce run): the "projection" space falls back to the encoder output
    plain = Classifier(enc, build_head("linear", enc, 2)).eval()
    assert torch.equal(plain.embed(batch), enc(batch))
    with pytest.raises(ValueError, match="space"):
        plain.embed(batch, "pixels")


@pytest.mark.parametrize("kind, make_encoder, options", [
    ("linear", _mlp, {"dropout": 0.2}),
    ("attention", _cnn, {"form": "caml"}),
    ("attention", _cnn, {"attention_dim": 5}),
    ("kmcl", _mlp, {"mode": "anisotropic", "reduce_dim": 3}),
])
def test_config_round_trip_is_json_and_rebuilds_the_same_model(kind, make_encoder, options):
    torch.manual_seed(1)
    enc = make_encoder()
    proj = ProjectionHead(enc.output_dim, out_dim=4) if kind != "kmcl" else None
    model = Classifier(enc, build_head(kind, enc, 3, **options), proj).eval()
    cfg = json.loads(json.dumps(model.config()))
    assert cfg["head"]["kind"] == kind and cfg["head"]["class"] == type(model.head).__name__
    assert (cfg["projection"] is None) == (proj is None)
    torch.manual_seed(2)  # other random weights ...
    again = Classifier.from_config(cfg).eval()
    batch = _batch(enc)
    assert not torch.equal(again.logits(batch), model.logits(batch))
    again.load_state_dict(model.state_dict())  # ... until the weights are loaded
    assert torch.equal(again.logits(batch), model.logits(batch))
    assert again.config() == cfg


def test_head_registry_errors():
    enc = _mlp()
    with pytest.raises(ValueError, match=r"head: expected one of .*'linear'.*got 'nope'"):
        build_head("nope", enc, 3)
    with pytest.raises(ValueError, match="'attention' needs a text encoder .*'mlp'"):
        build_head("attention", enc, 3)
    with pytest.raises(ValueError, match=r"head_options: \['mdoe'\] .*'kmcl' head"):
        build_head("kmcl", enc, 3, mdoe="anisotropic")


def test_init_prior_sets_the_label_biases():
    enc = _mlp()
    prior = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    lin, kmcl = build_head("linear", enc, 3), build_head("kmcl", enc, 3)
    lin.init_prior(prior)
    assert torch.equal(lin.linear.bias, prior.float())
    before = kmcl.kmcl.pi.bias.clone()
    kmcl.init_prior(prior)  # no per-label bias to set: unchanged
    assert torch.equal(kmcl.kmcl.pi.bias, before)
    att = LabelWiseAttention(4, 3)
    att.init_prior(prior)
    assert torch.equal(att.bias, prior.float())


# ---------------------------------------------------------------------------------- export


@pytest.mark.parametrize("kind, make_encoder", [("linear", _mlp), ("attention", _cnn), ("kmcl", _mlp)])
def test_save_and_load_round_trip(kind, make_encoder, tmp_path):
    torch.manual_seed(3)
    enc = make_encoder()
    proj = ProjectionHead(enc.output_dim, out_dim=4)
    model = Classifier(enc, build_head(kind, enc, 3), proj).eval()
    save_classifier(model, tmp_path / "m", {"threshold": 0.25, "label_names": ["a", "b", "c"]})
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["format"] == "mlsupcon-model/2" and meta["threshold"] == 0.25
    assert meta["weights_sha256"] == file_sha256(tmp_path / "m" / "weights.safetensors")
    again, meta2 = load_classifier(tmp_path / "m")
    assert meta2 == meta
    batch = _batch(enc)
    assert torch.equal(again.logits(batch), model.logits(batch))
    assert torch.equal(again.embed(batch), model.embed(batch))  # the projection travels too


def _write_v1(folder, encoder, head, head_json):
    """An export as mlsupcon wrote it before model/2: encoder + head only."""
    folder.mkdir()
    save_weights(folder / "weights.safetensors", {"encoder": encoder, "head": head})
    write_json(folder / "model.json", {
        "format": "mlsupcon-model/1", "encoder": encoder.config(), "head": head_json,
        "label_names": ["a", "b", "c"], "threshold": 0.4, "dataset": "yeast", "dataset_options": {},
        "method": "bce", "weights_sha256": file_sha256(folder / "weights.safetensors")})


def test_old_format_1_exports_still_load(tmp_path):
    torch.manual_seed(4)
    mlp, cnn = _mlp(), _cnn()
    cases = [
        (mlp, LinearClassifier(7, 3), {"kind": "linear", "class": "LinearClassifier", "in_dim": 7, "num_labels": 3}),
        (cnn, LabelWiseAttention(cnn.sequence_dim, 3),
         {"kind": "attention", "class": "LabelWiseAttention", "hidden_dim": cnn.sequence_dim, "num_labels": 3}),
        # KMCL runs stored kind "linear" with the class name KMCLClassifier
        (mlp, KMCLClassifier(7, 3, mode="anisotropic", reduce_dim=2),
         {"kind": "linear", "class": "KMCLClassifier", "in_dim": 7, "num_classes": 3, "mode": "anisotropic",
          "reduce_dim": 2, "isotropic_mean": "scalar"}),
    ]
    for i, (enc, head, head_json) in enumerate(cases):
        _write_v1(tmp_path / f"v1_{i}", enc, head, head_json)
        model, meta = load_classifier(tmp_path / f"v1_{i}")
        assert meta["format"] == "mlsupcon-model/1" and model.projection is None
        batch = _batch(enc)
        assert torch.equal(model.logits(batch), Classifier(enc, head).eval().logits(batch))


def test_load_errors_are_one_line(tmp_path):
    torch.manual_seed(5)
    enc = _mlp()
    model = Classifier(enc, build_head("linear", enc, 3))
    with pytest.raises(ValueError, match="model.json not found"):
        load_classifier(tmp_path / "absent")
    save_classifier(model, tmp_path / "m")
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": "mlsupcon-model/9"}))
    with pytest.raises(ValueError, match="format 'mlsupcon-model/9'"):
        load_classifier(tmp_path / "m")
    meta_path.write_text(json.dumps({**meta, "head": {**meta["head"], "kind": "nope"}}))
    with pytest.raises(ValueError, match="does not describe a model .*head: expected one of"):
        load_classifier(tmp_path / "m")
    meta_path.write_text(json.dumps(meta))
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_classifier(tmp_path / "m")
