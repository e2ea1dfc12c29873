"""Pick a word, subword or character tokenizer from what the training texts look like.

A word vocabulary (CAML's) needs spaces between words. Chinese, Japanese or Thai text has
none, so a whitespace/punctuation pre-tokeniser turns each sentence into one "word" that
never repeats; emoji and kaomoji are symbols, not words; code glues identifiers and
operators together. :func:`choose_tokenizer` measures a sample of the texts and decides:

==========  ===============================================================================
kind        when (first rule that holds; shares are of the non-space characters)
==========  ===============================================================================
``char``    >= 30 % in scripts written without spaces (CJK ideographs, kana, Thai, Lao,
            Khmer, Myanmar, Tibetan): one token per character, the CNN's kernel then sees
            character n-grams (about a word or two)
``char``    >= 25 % non-ASCII symbols/punctuation (emoji, kaomoji, box drawing) or < 30 %
            letters and digits: texts made of symbols
``subword`` >= 12 % ASCII punctuation/operators (code), mean whitespace-token length >= 12
            characters (identifiers, URLs, compounds), or >= half of the texts of 20+
            characters without any whitespace: byte-level BPE learns the pieces
``word``    otherwise (prose in a space-separated script)
==========  ===============================================================================

English prose has about 2-4 % punctuation and 5-7 characters per whitespace token.

Example:
    >>> choose_tokenizer(["今日はいい天気ですね", "我喜欢学习中文"])[0]
    'char'
    >>> choose_tokenizer(["for (i = 0; i < n; i++) { s += a[i]; }", "x = f(y[0]) * 2;"])[0]
    'subword'
    >>> choose_tokenizer(["fever and cough", "broken left arm after a fall"])[0]
    'word'
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Any, Iterable

__all__ = ["TOKENIZER_KINDS", "text_statistics", "choose_tokenizer"]

#: Tokenizer kinds the text encoders understand ("auto" is resolved to one of them).
TOKENIZER_KINDS = ("word", "subword", "char")

# Scripts written without spaces between words (code point ranges, inclusive).
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3000, 0x303F),  # CJK punctuation
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
)
# Emoji building blocks that are neither symbols nor punctuation by category.
_EMOJI_PARTS = {0x200D, 0xFE0E, 0xFE0F, 0x20E3}

# Sample bounds: the decision needs proportions, not every character of a MIMIC note.
_MAX_TEXTS = 2000
_MAX_CHARS = 2000


def _unspaced(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _UNSPACED_RANGES)


def text_statistics(texts: Iterable[Any], max_texts: int = _MAX_TEXTS) -> dict[str, Any]:
    """Character and token statistics of (an evenly spaced sample of) ``texts``.

    Args:
        texts: Documents (non-strings count as empty, like the tokenizers treat them).
        max_texts: At most this many texts are measured, each up to its first 2,000 characters.

    Returns:
        ``{"texts", "chars", "unspaced_script_share", "symbol_share", "ascii_punct_share",
        "alnum_share", "mean_token_length", "unspaced_text_share"}``: shares of the
        non-space characters, except ``unspaced_text_share`` (share of texts with 20+
        non-space characters and no whitespace at all).

    Example:
        >>> s = text_statistics(["a b", "cd"])
        >>> s["chars"], s["mean_token_length"]
        (4, 1.33)
    """
    docs = [t if isinstance(t, str) else "" for t in texts]
    if len(docs) > max_texts:  # evenly spaced: deterministic, and covers the whole file
        step = len(docs) / max_texts
        docs = [docs[int(i * step)] for i in range(max_texts)]
    counts: Counter[str] = Counter()
    tokens = 0
    long_texts = unspaced_texts = 0
    for doc in docs:
        doc = doc[:_MAX_CHARS]
        counts.update(doc)  # C-speed; each distinct character is classified once below
        words = doc.split()
        tokens += len(words)
        if sum(len(w) for w in words) >= 20:
            long_texts += 1
            unspaced_texts += len(words) == 1
    n = unspaced = symbol = ascii_punct = alnum = 0
    for ch, k in counts.items():
        if ch.isspace():
            continue
        n += k
        cp = ord(ch)
        cat = unicodedata.category(ch)
        if _unspaced(cp):
            unspaced += k
        if cat[0] in "LN":
            alnum += k
        elif cp < 128:
            ascii_punct += k
        elif cat[0] in "SP" or cp in _EMOJI_PARTS:  # skin-tone modifiers are "Sk"
            symbol += k

    def share(x: int) -> float:
        return round(x / n, 4) if n else 0.0

    return {
        "texts": len(docs),
        "chars": n,
        "unspaced_script_share": share(unspaced),
        "symbol_share": share(symbol),
        "ascii_punct_share": share(ascii_punct),
        "alnum_share": share(alnum),
        "mean_token_length": round(n / tokens, 2) if tokens else 0.0,
        "unspaced_text_share": round(unspaced_texts / long_texts, 4) if long_texts else 0.0,
    }


def choose_tokenizer(texts: Iterable[Any], max_texts: int = _MAX_TEXTS) -> tuple[str, dict[str, Any]]:
    """The tokenizer kind for ``texts`` (rules in the module docstring) and why.

    Args:
        texts: Training documents.
        max_texts: Sample size passed to :func:`text_statistics`.

    Returns:
        ``(kind, report)``: kind is ``"word"``, ``"subword"`` or ``"char"``; report is the
        statistics plus ``"kind"`` and ``"reason"`` (one sentence).

    Example:
        >>> kind, report = choose_tokenizer(["😂😂😂", "(╯°□°）╯︵ ┻━┻", "ʕ•ᴥ•ʔ"])
        >>> kind, report["reason"].split(":")[0]
        ('char', 'symbols')
    """
    s = text_statistics(texts, max_texts)
    if not s["chars"]:
        kind, reason = "word", "no characters to measure: the default word tokenizer"
    elif s["unspaced_script_share"] >= 0.3:
        kind, reason = "char", f"unspaced script: {s['unspaced_script_share']:.0%} CJK/Thai-like characters"
    elif s["symbol_share"] >= 0.25 or s["alnum_share"] < 0.3:
        kind, reason = "char", (
            f"symbols: {s['symbol_share']:.0%} emoji/non-ASCII symbols, {s['alnum_share']:.0%} letters or digits"
        )
    elif s["ascii_punct_share"] >= 0.12 or s["mean_token_length"] >= 12 or s["unspaced_text_share"] >= 0.5:
        kind, reason = "subword", (
            f"code or long tokens: {s['ascii_punct_share']:.0%} ASCII punctuation, "
            f"{s['mean_token_length']} characters per whitespace token, "
            f"{s['unspaced_text_share']:.0%} of longer texts without spaces"
        )
    else:
        kind, reason = "word", (
            f"space-separated text: {s['mean_token_length']} characters per whitespace token, "
            f"{s['ascii_punct_share']:.0%} ASCII punctuation"
        )
    return kind, {**s, "kind": kind, "reason": reason}
