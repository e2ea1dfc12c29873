"""The ``fusion`` encoder: text encoders side by side (sparse TF-IDF + frozen MiniLM, two CNNs)."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from mlsupcon.models import FusionEncoder, build_encoder

DOCS = [
    "text editor for the terminal",
    "image viewer with thumbnails",
    "python interpreter module",
    "c compiler and debugger",
    "a small text viewer",
    "python module for images",
]


def sparse_frozen(tmp_path, train_texts=DOCS):
    return build_encoder("fusion", train_texts=train_texts, encoders=[
        {"name": "sparse", "featurizer": {"min_df": 1}, "hidden_dims": [8]},
        {"name": "frozen", "hidden_dims": [6], "progress": False, "cache_dir": str(tmp_path)},
    ])


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    torch.manual_seed(0)
    return sparse_frozen(tmp_path_factory.mktemp("fusion-cache"))


def test_keys_are_prefixed_and_outputs_concatenated(fused):
    enc = fused.eval()
    assert enc.modality == "text" and enc.output_dim == 14
    assert enc.input_keys == ("sparse0.ids", "sparse0.weights", "frozen1.x")
    batch = enc.preprocess(DOCS[:3])
    assert set(batch) == set(enc.input_keys) and batch["frozen1.x"].shape == (3, 384)
    sparse, frozen = enc.branches
    want = torch.cat([sparse(sparse.preprocess(DOCS[:3])), frozen(frozen.preprocess(DOCS[:3]))], dim=1)
    torch.testing.assert_close(enc(batch), want)
    with pytest.raises(KeyError, match="frozen1.x"):
        enc({k: v for k, v in batch.items() if k != "frozen1.x"})


def test_prepare_is_forwarded_to_the_branches_that_have_one(fused):
    report = fused.prepare({"train": DOCS[:4], "test": DOCS[4:]})
    assert list(report) == ["frozen1"] and report["frozen1"]["texts"] == len(DOCS)
    assert report["frozen1"]["cache"] in ("computed", "memory")


def test_config_round_trip(fused, tmp_path):
    cfg = json.loads(json.dumps(fused.config()))
    assert cfg["name"] == "fusion" and [c["name"] for c in cfg["encoders"]] == ["sparse", "frozen"]
    again = build_encoder(**cfg)
    again.load_state_dict(fused.state_dict())
    fused.eval(), again.eval()
    assert not any(k.startswith("branches.1.backbone") for k in fused.state_dict())  # frozen weights stay out
    torch.testing.assert_close(again(again.preprocess(DOCS)), fused(fused.preprocess(DOCS)))
    # train_texts are not applied to saved sub-configs (they carry their fitted state).
    again2 = build_encoder(**cfg, train_texts=["other texts entirely"])
    assert again2.branches[0].num_features == fused.branches[0].num_features


def test_views_apply_per_branch(fused):
    batch = fused.preprocess(DOCS)
    view = fused.make_view_fn(per_branch=[{"p_drop": 0.5}, {"p_mask": 0.5, "noise_std": 0.0}])
    torch.manual_seed(1)
    out = view(batch)
    assert set(out) == set(batch) and torch.equal(out["sparse0.ids"], batch["sparse0.ids"])
    assert (out["sparse0.weights"] == 0).sum() > (batch["sparse0.weights"] == 0).sum()  # features dropped
    x, vx = batch["frozen1.x"], out["frozen1.x"]
    assert bool(((vx == 0) | (vx == x)).all()) and 0.3 < float((vx == 0).float().mean()) < 0.7
    only_sparse = fused.make_view_fn(per_branch=[{"p_drop": 0.5}, {"p_mask": 0.0, "noise_std": 0.0}])(batch)
    assert torch.equal(only_sparse["frozen1.x"], x)
    with pytest.raises(ValueError, match="per_branch must have one dict per branch"):
        fused.make_view_fn(per_branch=[{}])


def test_two_cnns_collate_views_and_train_a_step():
    torch.manual_seed(0)
    enc = build_encoder("fusion", train_texts=DOCS, encoders=[
        {"name": "cnn", "embed_dim": 8, "num_filters": 4, "kernel_size": 2},
        {"name": "cnn", "tokenizer": "char", "embed_dim": 8, "num_filters": 3, "kernel_size": 3},
    ])
    assert [b.tokenizer_kind for b in enc.branches] == ["word", "char"]
    short, long = enc.preprocess(DOCS[4:5]), enc.preprocess(DOCS[:1])
    both = enc.collate([short, long])
    assert both["cnn0.input_ids"].shape[1] == 5 and both["cnn1.input_ids"].shape[1] == len(DOCS[0])
    enc.eval()
    torch.testing.assert_close(enc(both)[:1], enc(short))  # padding per branch changes nothing
    view = enc.make_view_fn(p_drop=0.3, p_mask=0.2, crop=0.9, noise_std=0.5)  # noise_std: not a token option
    batch = enc.preprocess(DOCS)
    v = view(batch)
    assert {k: t.shape for k, t in v.items()} == {k: t.shape for k, t in batch.items()}
    assert not torch.equal(v["cnn1.input_ids"], batch["cnn1.input_ids"])
    enc.train()
    loss = enc(v).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_errors_name_the_branch(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        FusionEncoder([{"name": "cnn", "train_texts": DOCS}])
    with pytest.raises(ValueError, match=r"encoders\[1\] \(cnn\): cnn encoder requires train_texts"):
        FusionEncoder([{"name": "frozen", "progress": False}, {"name": "cnn"}])
    with pytest.raises(ValueError, match=r"encoders\[0\] \(cnn\): unknown option\(s\) \['kernel'\]"):
        FusionEncoder([{"name": "cnn", "kernel": 3}, {"name": "cnn"}], train_texts=DOCS)
    with pytest.raises(ValueError, match=r"encoders\[0\]: 'mlp' takes vector inputs"):
        FusionEncoder([{"name": "mlp", "in_dim": 3}, {"name": "cnn"}], train_texts=DOCS)
    with pytest.raises(ValueError, match="cannot contain another fusion"):
        FusionEncoder([{"name": "fusion"}, {"name": "cnn"}], train_texts=DOCS)
    with pytest.raises(ValueError, match=r"encoders\[1\] must be a dict"):
        FusionEncoder([{"name": "cnn"}, "cnn"], train_texts=DOCS)
    with pytest.raises(ValueError, match="not one string"):
        FusionEncoder([{"name": "cnn"}, {"name": "cnn"}], train_texts="one text")
