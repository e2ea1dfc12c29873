"""The ``label-names`` head: cosine prototypes that start at the label names' embeddings."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fixtures_pipeline as fp
import numpy as np
import pytest
import torch
from fixtures_pipeline import run_cli

import mlsupcon
from mlsupcon.data import load_dataset
from mlsupcon.models import build_encoder, build_head
from mlsupcon.models.heads import LabelNameHead, label_name_text


@pytest.mark.parametrize("label, text", [
    ("works-with::image", "works with: image"),
    ("use::editing", "use: editing"),
    ("ICD_401.9", "ICD 401.9"),
    ("a/b--c", "a b c"),
    ("earn", "earn"),
])
def test_label_name_text(label, text):
    assert label_name_text(label) == text


def test_forward_is_a_scaled_cosine_to_the_moved_prototypes_plus_a_bias_in_float64():
    torch.manual_seed(0)
    head = LabelNameHead(5, 3, prior_strength=0.5, scale=7.0).double()
    anchors = torch.randn(3, 5, dtype=torch.float64)
    head.set_label_embeddings(anchors)
    with torch.no_grad():
        head.delta.normal_()
        head.bias.normal_()
    h = torch.randn(4, 5, dtype=torch.float64)
    got = head(h)
    a = anchors / anchors.norm(dim=1, keepdim=True)
    for i in range(4):
        for j in range(3):
            p = a[j] + head.delta[j]
            cos = torch.dot(h[i], p) / (h[i].norm() * p.norm())
            assert torch.allclose(got[i, j], 7.0 * cos + head.bias[j], atol=1e-12)
    assert torch.allclose(head.penalty(), 0.5 * (head.delta ** 2).sum())
    head.set_label_embeddings(anchors)  # resets delta: the penalty is zero at the names
    assert head.penalty().item() == 0.0


def test_options_and_encoders_are_checked():
    with pytest.raises(ValueError, match="prior_strength"):
        LabelNameHead(4, 2, prior_strength=-1)
    with pytest.raises(ValueError, match="scale"):
        LabelNameHead(4, 2, scale=0)
    with pytest.raises(ValueError, match="label embeddings: expected shape"):
        LabelNameHead(4, 2).set_label_embeddings(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="needs a text encoder"):
        build_head("label-names", build_encoder("mlp", in_dim=6, hidden_dims=(8,)), 3)


@pytest.mark.slow
def test_a_run_starts_at_the_names_embeddings_and_its_model_reloads_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSUPCON_CACHE", str(tmp_path / "cache"))
    data = fp.write_jsonl(tmp_path / "docs.jsonl", n=40)
    cfg = fp.write_yaml(tmp_path / "c.yaml", {"head_options": {"prior_strength": 3e-5},
                                              "encoder_options": {"hidden_dims": [], "max_length": 32,
                                                                    "progress": False}})
    rc, _, err = run_cli(["train", "--config", str(cfg), "--dataset", f"jsonl:{data}", "--encoder", "frozen",
                          "--method", "bce", "--head", "label-names", "--epochs", "1", "--lr", "1e-12", "--output",
                          str(tmp_path / "run"), "--no-progress"])
    assert rc == 0, err
    model = mlsupcon.load(tmp_path / "run")
    head = model.classifier.head
    assert isinstance(head, LabelNameHead)
    ds = load_dataset(f"jsonl:{data}")
    names = [label_name_text(n) for n in ds.label_names]
    expected = model.embed(names, space="encoder", progress=False)
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(head.anchors.numpy(), expected, atol=1e-5)
    assert head.prior_strength == 3e-5  # head_options reach the head
    # untrained (one step of lr 1e-12): a text scores highest on the label whose name it is closest to
    texts = list(ds.splits["test"].inputs)
    emb = model.embed(texts, space="encoder", progress=False)
    cos = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ expected.T
    proba = model.predict_proba(texts, progress=False)
    logits = np.log(proba) - np.log1p(-proba)
    np.testing.assert_allclose(logits - head.bias.detach().numpy(), head.log_scale.exp().item() * cos, atol=1e-3)


def test_one_stage_methods_train_the_encoder_at_encoder_lr_ratio_times_the_heads_rate():
    from mlsupcon.config.methods import METHOD_OPTIONS
    from mlsupcon.training.modules import ClassifierModule

    for method in ("bce", "asl", "zlpr", "end-to-end", "two-stage"):
        assert "encoder_lr_ratio" in METHOD_OPTIONS[method]
    enc = build_encoder("mlp", in_dim=6, hidden_dims=(8,))
    module = ClassifierModule(enc, build_head("linear", enc, 3), 1e-2, 0.0, encoder_lr_ratio=0.1)
    groups = module.param_groups()
    enc_ids = {id(p) for p in enc.parameters()}
    assert {id(p) for p in groups[1]["params"]} == enc_ids and groups[1]["lr"] == pytest.approx(1e-3)
    assert not enc_ids & {id(p) for p in groups[0]["params"]}


def test_head_options_reach_the_head_and_unknown_ones_are_one_line_before_any_work():
    from mlsupcon.config.schema import TrainConfig
    from mlsupcon.training.run_config import check_method_options

    ok = TrainConfig(method="bce", head="label-names", head_options={"prior_strength": 1e-5})
    assert check_method_options(ok) is ok
    with pytest.raises(ValueError, match=r"head_options: \['strength'\] are not options of the 'label-names' head"):
        check_method_options(TrainConfig(method="bce", head="label-names", head_options={"strength": 1}))
    with pytest.raises(ValueError, match="head_options: the 'linear' method has no head option"):
        check_method_options(TrainConfig(method="linear", head_options={"dropout": 0.1}))
