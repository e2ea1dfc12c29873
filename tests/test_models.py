"""Tests of mlsupcon.models: heads, MLP, CNN, tiny transformer, ResNet, factory.

Only tiny models are built (random init); the bundled MiniLM is tested in
test_models_minilm.py. Nothing is downloaded.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

from mlsupcon.models import (
    ENCODERS,
    CNNEncoder,
    LabelWiseAttention,
    LinearClassifier,
    ProjectionHead,
    TextTokenizer,
    build_encoder,
    encoder_options,
    minilm_path,
)

TINY_BERT = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
DOCS = [
    "Fever and cough for three days.",
    "Broken left arm after a fall.",
    "Chest pain, shortness of breath; history of hypertension.",
    "Routine follow-up, no complaints.",
    "The patient reports a persistent cough and mild fever.",
]


def _grads_flow(module, out):
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


# --------------------------------------------------------------------------- heads
def test_projection_head_and_classifier_shapes():
    h = torch.randn(5, 12)
    ph = ProjectionHead(12)
    assert ph.hidden_dim == 12 and ph(h).shape == (5, 128)
    assert isinstance(ph.net[1], torch.nn.ReLU)
    assert ProjectionHead(12, hidden_dim=7, out_dim=3)(h).shape == (5, 3)
    clf = LinearClassifier(12, 4, dropout=0.1)
    assert clf(h).shape == (5, 4)
    _grads_flow(ph, ph(h))
    with pytest.raises(ValueError, match="out_dim"):
        ProjectionHead(12, out_dim=0)
    with pytest.raises(ValueError, match="num_labels"):
        LinearClassifier(12, 0)


def _laat_reference(att, seq, mask):
    """Per-label loop straight from the LAAT formulas."""
    n, T, H = seq.shape
    out = torch.zeros(n, att.num_labels)
    for i in range(n):
        Hi = seq[i][mask[i].bool()]  # real tokens only: [t, H]
        Z = torch.tanh(att.W.weight @ Hi.T)  # [da, t]
        A = torch.softmax(att.U.weight @ Z, dim=1)  # [C, t]
        for c in range(att.num_labels):
            v = A[c] @ Hi
            out[i, c] = att.weight[c] @ v + att.bias[c]
    return out


def test_label_wise_attention_matches_formula_and_masks_padding():
    torch.manual_seed(0)
    att = LabelWiseAttention(8, 5, attention_dim=6)
    with torch.no_grad():
        att.bias.normal_()
    seq = torch.randn(3, 7, 8)
    mask = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]])
    logits, a = att(seq, mask, return_attention=True)
    assert logits.shape == (3, 5) and a.shape == (3, 5, 7)
    torch.testing.assert_close(logits, _laat_reference(att, seq, mask), rtol=1e-5, atol=1e-5)
    assert torch.all(a[1, :, 4:] == 0) and torch.all(a[2, :, 1:] == 0)
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 5))
    # Extra padding with garbage states changes nothing.
    seq2 = torch.cat([seq, 100 * torch.randn(3, 4, 8)], dim=1)
    mask2 = torch.cat([mask, torch.zeros(3, 4, dtype=mask.dtype)], dim=1)
    torch.testing.assert_close(att(seq2, mask2), logits, rtol=1e-5, atol=1e-5)
    # Garbage at already-padded positions changes nothing either.
    seq3 = seq.clone()
    seq3[1, 4:] = 50.0
    torch.testing.assert_close(att(seq3, mask), logits)
    # label_vectors agrees with the factorised logits.
    v = att.label_vectors(seq, mask)
    torch.testing.assert_close((v * att.weight).sum(-1) + att.bias, logits, rtol=1e-5, atol=1e-5)
    _grads_flow(att, logits)


def test_label_wise_attention_caml_form_and_empty_rows():
    att = LabelWiseAttention(4, 3, form="caml")
    assert att.W is None
    seq = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    out = att(seq, mask)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="form"):
        LabelWiseAttention(4, 3, form="bogus")
    with pytest.raises(ValueError, match="seq"):
        att(torch.randn(2, 5, 6), mask)


# --------------------------------------------------------------------------- mlp
def test_mlp_shapes_config_and_errors():
    enc = build_encoder("mlp", in_dim=103)
    assert enc.modality == "vector" and enc.output_dim == 256
    widths = [m.out_features for m in enc.net if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 512, 256]
    x = np.random.default_rng(0).normal(size=(6, 103))
    batch = enc.preprocess(x)
    assert set(batch) == {"x"} and batch["x"].dtype == torch.float32
    h = enc(batch)
    assert h.shape == (6, 256)
    assert enc.preprocess(x[0])["x"].shape == (1, 103)
    _grads_flow(enc, h)

    enc2 = build_encoder("mlp", in_dim=4, hidden_dims=[8, 3], dropout=0.2, batchnorm=True, final_activation=False)
    enc2.eval()
    re = build_encoder(**json.loads(json.dumps(enc2.config())))
    re.load_state_dict(enc2.state_dict())
    re.eval()
    b = enc2.preprocess([[1, 2, 3, 4], [0, 0, 1, 0]])
    assert torch.equal(enc2(b), re(b))

    with pytest.raises(ValueError, match="in_dim"):
        build_encoder("mlp")
    with pytest.raises(ValueError, match="hidden_dims"):
        build_encoder("mlp", in_dim=3, hidden_dims=[4, 0])
    with pytest.raises(ValueError, match="dropout"):
        build_encoder("mlp", in_dim=3, dropout=1.5)
    with pytest.raises(ValueError, match="103"):
        enc.preprocess(np.zeros((2, 5)))


# --------------------------------------------------------------------------- cnn
def test_cnn_tokenizer_trained_on_a_few_texts():
    tok = TextTokenizer.train(DOCS, vocab_size=200)
    vocab = tok.tokenizer.get_vocab()
    assert {"fever", "cough", "hypertension", ";"} <= set(vocab)
    assert tok.pad_token_id == 0 and tok.token_id("unk") == 1 and tok.mask_token_id == 2
    ids = tok.encode(["FEVER zebra"])[0]
    assert ids == [vocab["fever"], tok.token_id("unk")]
    small = TextTokenizer.train(DOCS, vocab_size=10)
    assert small.vocab_size == 10
    bpe = TextTokenizer.train(DOCS, model="bpe", vocab_size=120)
    assert bpe.vocab_size <= 120 and len(bpe.encode(["coughing"])[0]) >= 1
    assert TextTokenizer.from_json(tok.to_json()).encode(["fever cough"]) == tok.encode(["fever cough"])


def test_cnn_shapes_masking_and_sequence():
    torch.manual_seed(0)
    enc = build_encoder("cnn", train_texts=DOCS, max_length=8, embed_dim=12, num_filters=6, kernel_size=3)
    assert enc.modality == "text" and enc.output_dim == 6 and enc.sequence_dim == 6
    info = enc.tokenizer_info
    assert info["pad_token_id"] == 0 and info["mask_token_id"] == 2 and info["special_token_ids"] == [0, 1, 2]
    batch = enc.preprocess(["fever and cough", DOCS[2], ""])
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (3, 8)  # truncated to max_length
    assert batch["attention_mask"].sum(1).tolist() == [3, 8, 1]  # empty doc -> one [UNK]
    enc.eval()
    h = enc(batch)
    seq, mask = enc.encode_sequence(batch)
    assert h.shape == (3, 6) and seq.shape == (3, 8, 6) and torch.equal(mask, batch["attention_mask"])
    assert torch.all(seq[0, 3:] == 0)
    # Padding does not change the outputs: the short doc alone equals it inside the batch.
    alone = enc.preprocess(["fever and cough"])
    assert alone["input_ids"].shape == (1, 3)
    torch.testing.assert_close(enc(alone)[0], h[0])
    torch.testing.assert_close(enc.encode_sequence(alone)[0][0], seq[0, :3])
    coll = enc.collate([alone, enc.preprocess([DOCS[2]])])
    assert coll["input_ids"].shape == (2, 8)
    torch.testing.assert_close(enc(coll), h[:2])
    # Label-wise attention on the CNN feature map is padding-invariant too.
    att = LabelWiseAttention(enc.sequence_dim, 4)
    torch.testing.assert_close(att(*enc.encode_sequence(alone))[0], att(seq, mask)[0], rtol=1e-5, atol=1e-6)
    enc.train()
    _grads_flow(enc, enc(batch))


def test_cnn_config_round_trip_and_borrowed_tokenizer():
    enc = build_encoder("cnn", train_texts=DOCS, tokenizer_model="bpe", vocab_size=150, embed_dim=8, num_filters=4)
    cfg = enc.config()
    assert "train_texts" not in cfg and isinstance(cfg["tokenizer_json"], str)
    re = build_encoder(**json.loads(json.dumps(cfg)))
    re.load_state_dict(enc.state_dict())
    enc.eval(), re.eval()
    b = enc.preprocess(DOCS)
    assert torch.equal(b["input_ids"], re.preprocess(DOCS)["input_ids"])
    assert torch.equal(enc(b), re(b))

    borrowed = build_encoder("cnn", tokenizer_path=minilm_path(), embed_dim=4, num_filters=3, kernel_size=2)
    assert borrowed.embedding.num_embeddings == 30522
    assert borrowed.tokenizer_info["mask_token_id"] == 103
    bb = borrowed.preprocess(["hello world"])
    assert bb["input_ids"].tolist() == [[7592, 2088]]  # no [CLS]/[SEP] for the CNN
    assert borrowed(bb).shape == (1, 3)


def test_cnn_errors():
    with pytest.raises(ValueError, match="train_texts"):
        build_encoder("cnn")
    with pytest.raises(ValueError, match="only one"):
        build_encoder("cnn", train_texts=DOCS, tokenizer_path=minilm_path())
    with pytest.raises(ValueError, match="kernel_size"):
        build_encoder("cnn", train_texts=DOCS, kernel_size=0)
    with pytest.raises(ValueError, match="tokenizer_model"):
        build_encoder("cnn", train_texts=DOCS, tokenizer_model="sentencepiece")
    with pytest.raises(ValueError, match="train_texts"):
        build_encoder("cnn", train_texts="one string")
    with pytest.raises(FileNotFoundError, match="tokenizer_path"):
        build_encoder("cnn", tokenizer_path="/nonexistent/tokenizer")
    with pytest.raises(ValueError, match="max_length"):
        build_encoder("cnn", train_texts=DOCS, max_length=-3)


# --------------------------------------------------------------------------- transformer (tiny)
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    enc = build_encoder("transformer", model_path=None, config=TINY_BERT, segment_length=16, max_length=64)
    return enc.eval()


def test_transformer_segment_layout(tiny):
    info = tiny.tokenizer_info
    cls_, sep, pad = info["cls_token_id"], info["sep_token_id"], info["pad_token_id"]
    words = " ".join(["fever"] * 40)  # 40 tokens -> chunks of 14: 14, 14, 12 -> 3 segments
    b = tiny.preprocess([words, "cough", " ".join(["pain"] * 200)])
    ids, mask = b["input_ids"], b["attention_mask"]
    assert ids.shape == (3, 64)  # S = 4 (the 200-word doc is truncated to max_length)
    seg_ids, seg_mask = ids.view(3, 4, 16), mask.view(3, 4, 16)
    assert seg_mask.sum(-1).tolist() == [[16, 16, 14, 0], [3, 0, 0, 0], [16, 16, 16, 16]]
    for i, s in [(0, 0), (0, 1), (0, 2), (1, 0), (2, 3)]:
        k = int(seg_mask[i, s].sum())
        assert seg_ids[i, s, 0] == cls_ and seg_ids[i, s, k - 1] == sep
        assert torch.all(seg_ids[i, s, k:] == pad)
    assert torch.all(seg_ids[0, 3] == pad)
    # A batch of short docs is not padded to segment_length.
    short = tiny.preprocess(["cough", "fever and cough"])
    assert short["input_ids"].shape == (2, 5) and short["attention_mask"].sum(1).tolist() == [3, 5]
    # max_length <= segment_length: one truncated segment.
    one = build_encoder("transformer", config=TINY_BERT, segment_length=16, max_length=10)
    assert one.preprocess([words])["attention_mask"].sum().item() == 10


def test_transformer_encode_sequence_matches_per_segment_runs(tiny):
    words = " ".join(["fever", "cough", "pain"] * 12)  # 36 tokens -> 3 segments
    b = tiny.preprocess([words, "cough"])
    seq, mask = tiny.encode_sequence(b)
    assert seq.shape == (2, 48, 16) and torch.equal(mask, b["attention_mask"])
    ids = b["input_ids"].view(2, 3, 16)
    m = b["attention_mask"].view(2, 3, 16)
    with torch.no_grad():
        for s in range(3):
            k = int(m[0, s].sum())
            ref = tiny.backbone(input_ids=ids[0, s : s + 1, :k],
                                attention_mask=m[0, s : s + 1, :k]).last_hidden_state[0]
            torch.testing.assert_close(seq[0, s * 16 : s * 16 + k], ref, rtol=1e-4, atol=1e-5)
    assert torch.all(seq[0, 2 * 16 + 10 :] == 0)  # last segment: [CLS] + 8 + [SEP] and torch.all(seq[1, 3:] == 0)
    # Pooled = mean over every real token of every segment.
    h = tiny(b)
    ref = (seq * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(h, ref)
    # The short doc gives the same output alone (padding and segment skipping change nothing).
    alone = tiny.preprocess(["cough"])
    torch.testing.assert_close(tiny(alone)[0], h[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tiny.encode_sequence(alone)[0][0], seq[1, :3], rtol=1e-5, atol=1e-6)
    # collate pads a one-segment batch up to the multi-segment layout.
    coll = tiny.collate([tiny.preprocess([words]), alone])
    assert torch.equal(coll["input_ids"], b["input_ids"])
    # Label-wise attention over concatenated segments ignores padding.
    att = LabelWiseAttention(16, 3)
    torch.testing.assert_close(att(*tiny.encode_sequence(alone))[0], att(seq, mask)[1], rtol=1e-5, atol=1e-6)


def test_transformer_relayout_after_token_deletion(tiny):
    info = tiny.tokenizer_info
    cls_, sep = info["cls_token_id"], info["sep_token_id"]
    docs = [list(range(1000, 1040)), list(range(2000, 2005)), list(range(3000, 3100))]
    b = tiny.layout(docs)
    assert b["input_ids"].shape == (3, 64)
    # Identity on canonical layouts.
    ids, mask = tiny.relayout(b["input_ids"], b["attention_mask"])
    assert torch.equal(ids, b["input_ids"]) and torch.equal(mask, b["attention_mask"])
    # Delete content tokens and pack rows to the left (what token-dropout views do): the
    # encoder re-cuts segments exactly as if the shorter documents had been laid out.
    g = torch.Generator().manual_seed(0)
    drop = ((torch.rand(b["input_ids"].shape, generator=g) < 0.4)
            & ~torch.isin(b["input_ids"], torch.tensor([cls_, sep])))
    survive = b["attention_mask"].bool() & ~drop
    order = torch.argsort((~survive).to(torch.int8), dim=1, stable=True)
    v_ids = torch.gather(b["input_ids"], 1, order)
    v_mask = torch.gather(survive, 1, order).long()
    v_ids = torch.where(v_mask.bool(), v_ids, torch.zeros_like(v_ids))
    kept = [[t for t, k in zip(b["input_ids"][i].tolist(), survive[i].tolist()) if k and t not in (cls_, sep)]
            for i in range(3)]
    expect = tiny.layout(kept)
    ids, mask = tiny.relayout(v_ids, v_mask)
    assert torch.equal(ids[:, : expect["input_ids"].shape[1]], expect["input_ids"])
    assert torch.equal(mask[:, : expect["input_ids"].shape[1]], expect["attention_mask"])
    torch.testing.assert_close(tiny({"input_ids": v_ids, "attention_mask": v_mask}), tiny(expect), rtol=1e-5, atol=1e-6)
    # A flat [CLS] ... [SEP] sequence (any tokenizer's output) is segmented too.
    flat = torch.tensor([[cls_] + docs[0] + [sep]])
    ids, mask = tiny.relayout(flat, torch.ones_like(flat))
    assert torch.equal(ids, tiny.layout(docs[:1])["input_ids"])
    # max_length truncation applies.
    ids, mask = tiny.relayout(torch.tensor([[cls_] + docs[2] + [sep]]), torch.ones(1, 102, dtype=torch.long))
    assert ids.shape == (1, 64) and int(mask.sum()) == 64


def test_transformer_cls_pooling_freeze_and_grads(tiny):
    enc = build_encoder("transformer", config=TINY_BERT, segment_length=16, max_length=32, pooling="cls")
    b = enc.preprocess([" ".join(["fever"] * 20), "cough"])  # 2 segments, 1 segment
    enc.eval()
    seq, _ = enc.encode_sequence(b)
    h = enc(b)
    torch.testing.assert_close(h[0], (seq[0, 0] + seq[0, 16]) / 2)
    torch.testing.assert_close(h[1], seq[1, 0])
    enc.train()
    _grads_flow(enc, enc(b))

    ckpt = build_encoder("transformer", config=TINY_BERT, segment_length=16, max_length=32, gradient_checkpointing=True)
    _grads_flow(ckpt, ckpt(b))

    frozen = build_encoder("transformer", config=TINY_BERT, segment_length=16, max_length=32, freeze=True)
    frozen.train()
    assert not frozen.backbone.training and frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())
    out = frozen(b)
    assert not out.requires_grad
    head = LinearClassifier(frozen.output_dim, 2)
    _grads_flow(head, head(out))


def test_transformer_config_round_trip_and_local_path(tiny, tmp_path):
    cfg = json.loads(json.dumps(tiny.config()))
    assert cfg["model_path"] is None and cfg["config"] == TINY_BERT
    re = build_encoder(**cfg)
    re.load_state_dict(tiny.state_dict())
    re.eval()
    b = tiny.preprocess(DOCS + [" ".join(DOCS * 3)])
    assert torch.equal(tiny(b), re(b))
    # A model saved to a local directory loads through model_path (offline).
    tiny.backbone.save_pretrained(tmp_path / "m")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / "m" / f).write_bytes(open(os.path.join(minilm_path(), f), "rb").read())
    loaded = build_encoder("transformer", model_path=str(tmp_path / "m"), segment_length=16, max_length=64).eval()
    torch.testing.assert_close(loaded(b), tiny(b))


def test_transformer_errors():
    with pytest.raises(ValueError, match="pooling"):
        build_encoder("transformer", config=TINY_BERT, pooling="max")
    with pytest.raises(ValueError, match="max_length"):
        build_encoder("transformer", config=TINY_BERT, segment_length=16, max_length=40)
    with pytest.raises(ValueError, match="segment_length"):
        build_encoder("transformer", config=TINY_BERT, segment_length=0)
    with pytest.raises(ValueError, match="segment_length"):
        build_encoder("transformer", config={**TINY_BERT, "max_position_embeddings": 8}, segment_length=16)
    with pytest.raises(ValueError, match="model_path"):
        build_encoder("transformer", model_path=minilm_path(), config=TINY_BERT)
    with pytest.raises(FileNotFoundError, match="model_path"):
        build_encoder("transformer", model_path="/nonexistent/model")
    with pytest.raises(FileNotFoundError, match="tokenizer_path"):
        build_encoder("transformer", config=TINY_BERT, tokenizer_path="/nonexistent/tok")


# --------------------------------------------------------------------------- resnet
def test_resnet_preprocess_shapes_and_grads():
    torch.manual_seed(0)
    enc = build_encoder("resnet", image_size=32)
    assert enc.modality == "image" and enc.output_dim == 256
    rng = np.random.default_rng(0)
    imgs = [
        rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8),
        rng.integers(0, 256, size=(32, 32), dtype=np.uint8),  # grayscale
        rng.random((20, 20, 4)).astype(np.float32),  # RGBA float
    ]
    b = enc.preprocess(imgs)
    pv = b["pixel_values"]
    assert set(b) == {"pixel_values"} and pv.shape == (3, 3, 32, 32) and pv.dtype == torch.float32
    assert 0.0 <= float(pv.min()) and float(pv.max()) <= 1.0
    torch.testing.assert_close(pv[1], torch.from_numpy(imgs[1] / 255.0).float().expand(3, 32, 32))
    assert enc.preprocess(np.stack([imgs[0]] * 2))["pixel_values"].shape == (2, 3, 32, 32)
    assert enc.preprocess(imgs[0])["pixel_values"].shape == (1, 3, 32, 32)
    h = enc(b)
    assert h.shape == (3, 256)
    _grads_flow(enc, h)
    # Normalisation statistics are config, not weights.
    assert not any(k in ("_mean", "_std") for k in enc.state_dict())


def test_resnet_config_round_trip_presets_and_local_path(tmp_path):
    enc = build_encoder("resnet", config={"depths": [1, 1], "hidden_sizes": [8, 16], "embedding_size": 8},
                        image_size=16, mean=[0.5] * 3, std=[0.25] * 3)
    assert enc.output_dim == 16
    enc.eval()
    re = build_encoder(**json.loads(json.dumps(enc.config())))
    re.load_state_dict(enc.state_dict())
    re.eval()
    b = enc.preprocess(np.random.default_rng(1).integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8))
    assert torch.equal(enc(b), re(b))
    manual = enc.backbone(pixel_values=(b["pixel_values"] - 0.5) / 0.25).pooler_output.flatten(1)
    torch.testing.assert_close(enc(b), manual)
    assert build_encoder("resnet", preset="resnet18", image_size=32).output_dim == 512
    enc.backbone.save_pretrained(tmp_path / "r")
    loaded = build_encoder("resnet", model_path=str(tmp_path / "r"), image_size=16, mean=[0.5] * 3,
                           std=[0.25] * 3).eval()
    torch.testing.assert_close(loaded(b), enc(b))
    frozen = build_encoder("resnet", model_path=str(tmp_path / "r"), image_size=16, freeze=True)
    frozen.train()
    assert not frozen.backbone.training and not any(p.requires_grad for p in frozen.parameters())


def test_resnet_errors():
    with pytest.raises(ValueError, match="preset"):
        build_encoder("resnet", preset="resnet9000")
    with pytest.raises(ValueError, match="image_size"):
        build_encoder("resnet", image_size=0)
    with pytest.raises(ValueError, match="std"):
        build_encoder("resnet", image_size=16, std=[0.2, 0.2])
    with pytest.raises(FileNotFoundError, match="model_path"):
        build_encoder("resnet", model_path="/nonexistent/resnet")
    with pytest.raises(NotImplementedError):
        build_encoder("resnet", image_size=16).encode_sequence({"pixel_values": torch.zeros(1, 3, 16, 16)})


# --------------------------------------------------------------------------- factory
def test_factory_errors_and_options():
    assert {"mlp", "cnn", "transformer", "resnet", "frozen"} <= set(ENCODERS)  # others register more
    with pytest.raises(ValueError, match="name"):
        build_encoder("lstm")
    with pytest.raises(ValueError, match="hiden_dims"):
        build_encoder("mlp", in_dim=3, hiden_dims=[4])
    assert encoder_options("cnn")["kernel_size"] == 10
    assert encoder_options("transformer")["segment_length"] == 128
    assert isinstance(build_encoder("cnn", train_texts=DOCS), CNNEncoder)
    enc = build_encoder("mlp", in_dim=3, hidden_dims=[2])
    out = enc.encode(np.ones((5, 3)), batch_size=2)
    assert out.shape == (5, 2) and enc.training
