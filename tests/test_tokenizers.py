"""Word, subword and character tokenizers and the CNN encoder's automatic choice.

Text without spaces between words (Chinese, Japanese), emoji/kaomoji-only text and code
snippets: the auto choice, distinct texts -> distinct ids without [UNK], config/JSON round
trips, and a CNN training step on each.
"""

import json

import pytest
import torch

from mlsupcon.models import TextTokenizer, build_encoder
from mlsupcon.models.tokenizer_choice import choose_tokenizer, text_statistics

CHINESE = [
    "我喜欢学习中文。",
    "今天天气很好，我们去公园散步吧。",
    "这个软件包提供了一个文本编辑器。",
    "机器学习是人工智能的一个分支。",
    "他每天早上六点起床跑步。",
]
JAPANESE = [
    "今日はいい天気ですね。",
    "このパッケージはテキストエディタを提供します。",
    "東京から大阪まで新幹線で行きました。",
    "猫が好きですか、それとも犬が好きですか。",
]
EMOJI = [
    "😂😂😂",
    "👍🏽🎉🎉",
    "(╯°□°）╯︵ ┻━┻",
    "¯\\_(ツ)_/¯",
    "ʕ•ᴥ•ʔ ♥",
    "(^_^)/ ☆",
    "👨‍👩‍👧 ❤️",
]
CODE = [
    "def mean(values):\n    return sum(values) / len(values)",
    "for (int i = 0; i < n; i++) { s += a[i]; }",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)",
    "SELECT name, count(*) FROM users WHERE age > 30 GROUP BY name;",
    "if (!ptr) { return -EINVAL; }",
]
ENGLISH = [
    "Fever and cough for three days.",
    "Broken left arm after a fall.",
    "Chest pain, shortness of breath; history of hypertension.",
    "Routine follow-up, no complaints.",
]
CORPORA = {"chinese": CHINESE, "japanese": JAPANESE, "emoji": EMOJI, "code": CODE, "english": ENGLISH}
EXPECTED_KIND = {"chinese": "char", "japanese": "char", "emoji": "char", "code": "subword", "english": "word"}


def small_cnn(texts, **opts):
    opts = {"embed_dim": 8, "num_filters": 6, "kernel_size": 3, "vocab_size": 400, **opts}
    return build_encoder("cnn", train_texts=texts, **opts)


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_auto_choice_per_script(corpus):
    kind, report = choose_tokenizer(CORPORA[corpus])
    assert kind == EXPECTED_KIND[corpus], report
    assert report["kind"] == kind and report["reason"]
    enc = small_cnn(CORPORA[corpus])
    assert enc.tokenizer_kind == kind and enc.config()["tokenizer"] == kind
    assert enc.tokenizer_report["reason"] == report["reason"]


def test_statistics_measure_what_the_rules_use():
    s = text_statistics(CHINESE + ENGLISH)
    assert 0.3 < s["unspaced_script_share"] < 1.0  # a mixed corpus sits between the pure ones
    assert text_statistics(ENGLISH)["unspaced_script_share"] == 0.0
    assert text_statistics(EMOJI)["symbol_share"] > 0.25
    assert text_statistics(["abcdefghijklmnopqrstuvwxyz"] * 3)["unspaced_text_share"] == 1.0
    assert text_statistics(["a " * 10])["mean_token_length"] == 1.0
    # Long inputs are sampled: at most max_texts documents are measured.
    assert text_statistics(ENGLISH * 100, max_texts=7)["texts"] == 7
    assert choose_tokenizer([])[0] == "word" and choose_tokenizer([None, ""])[0] == "word"
    assert choose_tokenizer(["x" * 30, "y" * 40])[0] == "subword"  # long texts without spaces


@pytest.mark.parametrize("corpus", sorted(CORPORA))
@pytest.mark.parametrize("kind", ["auto", "subword", "char"])
def test_distinct_texts_get_distinct_known_ids(corpus, kind):
    texts = CORPORA[corpus]
    enc = small_cnn(texts, tokenizer=kind)
    unk = enc.tokenizer.unk_token_id
    ids = enc.tokenizer.encode(texts)
    assert all(seq for seq in ids)
    assert all(unk not in seq for seq in ids), [enc.tokenizer.tokenizer.decode(s) for s in ids]
    assert len({tuple(seq) for seq in ids}) == len(texts)
    # Unspaced text is more than one token per text (a word vocabulary gives one per sentence;
    # BPE with a vocabulary larger than this tiny corpus may learn whole sentences too).
    if corpus in ("chinese", "japanese") and kind != "subword":
        assert min(len(s) for s in ids) > 3


def test_word_vocabulary_fails_on_unspaced_text_where_char_does_not():
    word = small_cnn(CHINESE, tokenizer="word")
    char = small_cnn(CHINESE, tokenizer="char")
    unseen = ["我喜欢机器学习。"]  # every character occurs in training, the sentence does not
    assert word.tokenizer.encode(unseen)[0][0] == word.tokenizer.unk_token_id
    assert char.tokenizer.unk_token_id not in char.tokenizer.encode(unseen)[0]


def test_char_tokens_are_grapheme_clusters():
    tok = TextTokenizer.train(EMOJI, model="char")
    vocab = tok.tokenizer.get_vocab()
    assert {"👍🏽", "👨‍👩‍👧", "😂", " "} <= set(vocab)  # skin tone and ZWJ family stay whole
    assert len(tok.encode(["👍🏽   😂"])[0]) == 3  # whitespace runs collapse to one space token
    assert tok.pad_token_id == 0 and tok.unk_token_id == 1 and tok.mask_token_id == 2


@pytest.mark.parametrize("model", ["wordlevel", "bpe", "bytelevel_bpe", "wordpiece", "char"])
def test_every_model_round_trips_through_json(model):
    texts = CHINESE + CODE + EMOJI
    tok = TextTokenizer.train(texts, model=model, vocab_size=500)
    again = TextTokenizer.from_json(tok.to_json())
    probe = texts + ["未见过的文字 unseen words 🙃"]
    assert again.encode(probe) == tok.encode(probe)
    assert again.info() == tok.info() and tok.info()["special_token_ids"] == [0, 1, 2]


def test_bytelevel_bpe_never_needs_unk_and_decodes_back():
    tok = TextTokenizer.train(CODE, model="bytelevel_bpe", vocab_size=300, lowercase=False)
    text = "完全没见过 🦜 λx.x"
    ids = tok.encode([text])[0]
    assert tok.unk_token_id not in ids
    assert tok.tokenizer.decode(ids).strip() == text


@pytest.mark.parametrize("corpus", ["chinese", "emoji", "code"])
def test_cnn_config_round_trip_records_the_choice(corpus):
    texts = CORPORA[corpus]
    enc = small_cnn(texts)
    cfg = json.loads(json.dumps(enc.config()))
    assert cfg["tokenizer"] == EXPECTED_KIND[corpus]
    assert cfg["tokenizer_model"] == {"char": "char", "subword": "bytelevel_bpe"}[cfg["tokenizer"]]
    again = build_encoder(**cfg)
    again.load_state_dict(enc.state_dict())
    assert again.tokenizer_kind == enc.tokenizer_kind and again.config() == enc.config()
    enc.eval(), again.eval()
    b = enc.preprocess(texts)
    assert torch.equal(b["input_ids"], again.preprocess(texts)["input_ids"])
    assert torch.equal(enc(b), again(b))
    # The recorded choice retrains the same kind of tokenizer on new data, without "auto".
    retrained = build_encoder(**{**cfg, "tokenizer_json": None, "train_texts": texts})
    assert retrained.tokenizer.encode(texts) == enc.tokenizer.encode(texts)


@pytest.mark.parametrize("corpus", ["chinese", "japanese", "emoji", "code"])
def test_cnn_trains_a_step_on_unspaced_text(corpus):
    torch.manual_seed(0)
    texts = CORPORA[corpus]
    enc = small_cnn(texts).train()
    head = torch.nn.Linear(enc.output_dim, 2)
    y = torch.tensor([[i % 2, (i + 1) % 2] for i in range(len(texts))], dtype=torch.float32)
    opt = torch.optim.SGD(list(enc.parameters()) + list(head.parameters()), lr=0.5)
    batch = enc.preprocess(texts)
    before = enc.embedding.weight.detach().clone()
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(enc(batch)), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert not torch.equal(before, enc.embedding.weight)


def test_explicit_model_beats_auto_and_errors_name_the_option():
    enc = small_cnn(CHINESE, tokenizer_model="bpe")  # pre-existing option keeps its meaning
    assert (enc.tokenizer_kind, enc.tokenizer_model) == ("subword", "bpe")
    gen = small_cnn(t for t in ENGLISH)  # a generator is read once for the choice and training
    assert gen.tokenizer_kind == "word" and gen.tokenizer.vocab_size > 10
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        small_cnn(ENGLISH, tokenizer="sentencepiece")
    with pytest.raises(ValueError, match="tokenizer_model 'char' trains a char tokenizer, but tokenizer='word'"):
        small_cnn(ENGLISH, tokenizer="word", tokenizer_model="char")
    with pytest.raises(ValueError, match="tokenizer_model"):
        small_cnn(ENGLISH, tokenizer_model="unigram")
    with pytest.raises(ValueError, match="vocab_size"):
        small_cnn(CODE, tokenizer="subword", vocab_size=100)  # byte-level needs 256 + 3
