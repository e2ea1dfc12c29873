"""Text encoders tokenise a text once: cached batches equal freshly tokenised ones."""

import torch

from mlsupcon.models import build_encoder
from mlsupcon.models.tokenization import TokenCache

TEXTS = ["the cat sat on the mat", "a dog ran", "the cat sat on the mat", "", "ünïcödé text 北京 here",
         "a much longer text " * 20]


def _cnn():
    return build_encoder("cnn", train_texts=TEXTS * 3, max_length=16, embed_dim=8, num_filters=8,
                         kernel_size=3, vocab_size=200, min_frequency=1)


def test_cached_batches_equal_uncached_ones():
    enc = _cnn()
    fresh = _cnn()
    fresh._token_cache = TokenCache(fresh.tokenizer, fresh.max_length, max_bytes=0)  # keeps nothing
    for batch in (TEXTS, TEXTS[::-1], TEXTS[2:4], TEXTS):  # the second and last pass read the cache
        got, expected = enc.preprocess(batch), fresh.preprocess(batch)
        assert got.keys() == expected.keys()
        for key in got:
            assert torch.equal(got[key], expected[key]), key
    assert len(enc._token_cache) == len(set(TEXTS)) and len(fresh._token_cache) == 0


def test_a_full_cache_still_tokenises_new_texts():
    enc = _cnn()
    enc._token_cache = TokenCache(enc.tokenizer, enc.max_length, max_bytes=TokenCache.OVERHEAD + 64)
    first = enc.preprocess(TEXTS)
    assert 0 < len(enc._token_cache) < len(set(TEXTS))  # room for one text only
    again = enc.preprocess(TEXTS)
    for key in first:
        assert torch.equal(first[key], again[key])
