"""Fast text tokenisation shared by the text encoders.

Everything goes through the Rust ``tokenizers`` library (no ``transformers`` import), so
tokenising tens of thousands of documents takes seconds and a trained tokenizer serialises
to one JSON string that can live inside an encoder's ``config()``.

Example:
    >>> from mlsupcon.models.tokenization import TextTokenizer
    >>> tok = TextTokenizer.train(["the cat sat", "the dog ran"], vocab_size=100)
    >>> ids = tok.encode(["The cat ran"])[0]
    >>> len(ids)
    3
    >>> tok.pad_token_id, tok.mask_token_id
    (0, 2)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["TextTokenizer", "TokenCache", "SPECIAL_ROLES", "TOKENIZER_MODELS"]

#: Token roles a text encoder cares about, in the order they are reported.
SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")

# Spellings used by the common tokenizer families (BERT, RoBERTa, XLNet, T5, GPT-2), used
# when a tokenizer file says nothing about roles. Matching is on the exact token string.
_ROLE_GUESSES = {
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "unk": ("[UNK]", "<unk>", "<|unk|>"),
    "cls": ("[CLS]", "<s>", "<cls>"),
    "sep": ("[SEP]", "</s>", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
    "bos": ("<s>", "<|startoftext|>", "[BOS]"),
    "eos": ("</s>", "<|endoftext|>", "[EOS]"),
}

#: Models :meth:`TextTokenizer.train` can train, and the kind of tokenizer each one is.
TOKENIZER_MODELS = {
    "wordlevel": "word",
    "bpe": "subword",
    "bytelevel_bpe": "subword",
    "wordpiece": "subword",
    "char": "char",
}

#: Special tokens of a tokenizer trained by :meth:`TextTokenizer.train`, in id order.
_TRAINED_SPECIALS = ("[PAD]", "[UNK]", "[MASK]")


def _token_content(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string or {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the ids of its special tokens.

    Encoding never adds special tokens and never truncates or pads: the encoders decide how
    to lay documents out (segments for transformers, one long row for the CNN).

    Args:
        tokenizer: A ``tokenizers.Tokenizer``. Its own truncation/padding settings are
            switched off (tokenizer.json files often ship with e.g. a fixed 128 truncation).
        special_tokens: Optional mapping role -> token string overriding the guessed roles
            (roles: pad, unk, cls, sep, mask, bos, eos).

    Example:
        >>> tok = TextTokenizer.train(["a b c", "a b"], vocab_size=50)
        >>> tok.info()["special_token_ids"]
        [0, 1, 2]
    """

    def __init__(self, tokenizer: Any, special_tokens: dict[str, str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        special = {
            tid: tok.content
            for tid, tok in tokenizer.get_added_tokens_decoder().items()
            if getattr(tok, "special", True)
        }
        ids_by_text = {text: tid for tid, text in special.items()}
        self._role_ids: dict[str, int | None] = {}
        for role in SPECIAL_ROLES:
            tid = None
            if special_tokens and special_tokens.get(role) is not None:
                tid = tokenizer.token_to_id(special_tokens[role])
            if tid is None:
                for guess in _ROLE_GUESSES[role]:
                    if guess in ids_by_text:
                        tid = ids_by_text[guess]
                        break
            self._role_ids[role] = tid
        self._special_ids = sorted(special)

    # ------------------------------------------------------------------ construction
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        model: str = "wordlevel",
        vocab_size: int = 30000,
        min_frequency: int = 1,
        lowercase: bool = True,
    ) -> "TextTokenizer":
        """Train a word, subword or character tokenizer on ``texts``.

        Special tokens are ``[PAD]`` (id 0), ``[UNK]`` (1) and ``[MASK]`` (2) for every model.

        ===================  =========  ==============================================================
        model                kind       pre-tokenisation and vocabulary
        ===================  =========  ==============================================================
        ``"wordlevel"``      word       words and punctuation runs (``\\w+|[^\\w\\s]+``), one id each
        ``"bpe"``            subword    BPE inside those words (a text without spaces is one "word")
        ``"bytelevel_bpe"``  subword    GPT-2 style byte-level BPE: any script, emoji or code, never
                                        ``[UNK]``; CJK runs are split into learned multi-character pieces
        ``"wordpiece"``      subword    BERT pre-tokenisation (each CJK ideograph alone) + WordPiece
        ``"char"``           char       one id per grapheme cluster (an emoji with its skin tone or ZWJ
                                        sequence is one token); whitespace runs become one space token
        ===================  =========  ==============================================================

        Args:
            texts: Training documents.
            model: One of the models in the table (see :data:`TOKENIZER_MODELS`).
            vocab_size: Maximum vocabulary size, special tokens included (byte-level BPE needs
                at least 259: 256 bytes + 3 specials).
            min_frequency: Minimum count for a word/merge/character to enter the vocabulary.
            lowercase: Lowercase before tokenising.

        Returns:
            The trained tokenizer.

        Raises:
            ValueError: For an unknown ``model`` or a too small ``vocab_size``.

        Example:
            >>> TextTokenizer.train(["x y", "y z"], model="bpe", vocab_size=60).vocab_size > 3
            True
            >>> tok = TextTokenizer.train(["我喜欢猫", "我喜欢狗"], model="char")
            >>> len(tok.encode(["我喜欢猫"])[0])
            4
        """
        from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if model not in TOKENIZER_MODELS:
            raise ValueError(f"tokenizer_model must be one of {list(TOKENIZER_MODELS)}, got {model!r}")
        minimum = len(_TRAINED_SPECIALS) + (256 if model == "bytelevel_bpe" else 0)
        if int(vocab_size) <= len(_TRAINED_SPECIALS) or int(vocab_size) < minimum:
            raise ValueError(
                f"vocab_size must be > {len(_TRAINED_SPECIALS)} (>= {minimum} for {model!r}), got {vocab_size}"
            )
        if int(min_frequency) < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        unk = _TRAINED_SPECIALS[1]
        common = {
            "vocab_size": int(vocab_size),
            "min_frequency": int(min_frequency),
            "special_tokens": list(_TRAINED_SPECIALS),
            "show_progress": False,
        }
        # Lowercasing only (as CAML): unicode NFD/accent stripping doubles encoding time.
        norm: list[Any] = [normalizers.Lowercase()] if lowercase else []
        if model in ("wordlevel", "char"):
            tok = Tokenizer(models.WordLevel(unk_token=unk))
            trainer = trainers.WordLevelTrainer(**common)
        elif model == "bpe":
            tok = Tokenizer(models.BPE(unk_token=unk))
            trainer = trainers.BpeTrainer(**common)
        elif model == "bytelevel_bpe":
            tok = Tokenizer(models.BPE())  # every byte is in the alphabet: no unknown token needed
            trainer = trainers.BpeTrainer(initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common)
        else:  # wordpiece
            tok = Tokenizer(models.WordPiece(unk_token=unk))
            trainer = trainers.WordPieceTrainer(**common)
        if model in ("wordlevel", "bpe"):
            tok.pre_tokenizer = pre_tokenizers.Whitespace()
        elif model == "bytelevel_bpe":
            # A leading space on the first word makes it share tokens with the same word mid-text.
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
            tok.decoder = decoders.ByteLevel()
        elif model == "wordpiece":
            norm = [normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                               strip_accents=False, lowercase=bool(lowercase))]
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece()
        else:  # char: grapheme clusters (\X), so "👍🏽" or a family emoji stays one token
            norm.append(normalizers.Replace(Regex(r"\s+"), " "))
            tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\X"), behavior="isolated")
        if norm:
            tok.normalizer = norm[0] if len(norm) == 1 else normalizers.Sequence(norm)
        tok.train_from_iterator((_as_text(t) for t in texts), trainer=trainer)
        return cls(tok)

    @classmethod
    def from_json(cls, text: str, special_tokens: dict[str, str] | None = None) -> "TextTokenizer":
        """Rebuild from the string produced by :meth:`to_json`."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text), special_tokens)

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> "TextTokenizer":
        """Load a Hugging Face tokenizer directory (or a ``tokenizer.json`` file) offline.

        Roles come from ``special_tokens_map.json`` / ``tokenizer_config.json`` when present.
        A directory without ``tokenizer.json`` (e.g. only ``vocab.txt``) is converted through
        ``transformers.AutoTokenizer(local_files_only=True)``.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
        """
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"tokenizer_path {str(path)!r} does not exist")
        if p.is_file():
            from tokenizers import Tokenizer

            return cls(Tokenizer.from_file(str(p)))
        roles: dict[str, str] = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            f = p / name
            if f.is_file():
                try:
                    data = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                for role in SPECIAL_ROLES:
                    content = _token_content(data.get(f"{role}_token"))
                    if content is not None:
                        roles[role] = content
        if (p / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            return cls(Tokenizer.from_file(str(p / "tokenizer.json")), roles)
        # Slow-format directory: let transformers convert it to a fast tokenizer.
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"tokenizer_path {str(path)!r} has no fast (tokenizers) version")
        for role in SPECIAL_ROLES:
            content = getattr(hf, f"{role}_token", None)
            if isinstance(content, str):
                roles.setdefault(role, content)
        return cls(backend, roles)

    def to_json(self) -> str:
        """Serialise the tokenizer (vocabulary, normaliser, ...) to a JSON string."""
        return self.tokenizer.to_str()

    # ------------------------------------------------------------------ use
    @property
    def vocab_size(self) -> int:
        """Number of ids (added tokens included)."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def token_id(self, role: str) -> int | None:
        """Id of the special token with ``role`` (pad, unk, cls, sep, mask, bos, eos) or None."""
        return self._role_ids.get(role)

    @property
    def pad_token_id(self) -> int:
        """Padding id; 0 when the tokenizer has no pad token (the mask hides it anyway)."""
        pid = self._role_ids["pad"]
        return 0 if pid is None else pid

    @property
    def mask_token_id(self) -> int | None:
        """Id of the mask token (None if the tokenizer has none)."""
        return self._role_ids["mask"]

    @property
    def unk_token_id(self) -> int | None:
        """Id of the unknown token (None if the tokenizer has none)."""
        return self._role_ids["unk"]

    @property
    def cls_token_id(self) -> int | None:
        """Id of the classification/start token (None if the tokenizer has none)."""
        return self._role_ids["cls"]

    @property
    def sep_token_id(self) -> int | None:
        """Id of the separator/end token (None if the tokenizer has none)."""
        return self._role_ids["sep"]

    @property
    def all_special_ids(self) -> list[int]:
        """Sorted ids of all special tokens (named like the Hugging Face attribute)."""
        return list(self._special_ids)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens, untruncated."""
        texts = [_as_text(t) for t in texts]
        if not texts:
            return []
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def info(self) -> dict[str, Any]:
        """Ids the data layer needs to build token-dropout views.

        Returns:
            ``{"pad_token_id", "mask_token_id", "unk_token_id", "cls_token_id",
            "sep_token_id", "special_token_ids" (sorted list; also as "all_special_ids"),
            "vocab_size"}``; missing roles are None. The tokenizer object itself has the same
            attributes (``TokenViews.from_tokenizer(encoder.tokenizer)`` works).
        """
        out: dict[str, Any] = {f"{r}_token_id": self._role_ids[r] for r in ("pad", "mask", "unk", "cls", "sep")}
        out["pad_token_id"] = self.pad_token_id
        out["special_token_ids"] = list(self._special_ids)
        out["all_special_ids"] = list(self._special_ids)
        out["vocab_size"] = self.vocab_size
        return out


class TokenCache:
    """Token ids of the texts seen before: a training text is tokenised once, not once per epoch.

    The text encoders tokenise in ``preprocess``, batch by batch in the loader (nothing of size
    "whole split x sequence length" is built up front); this keeps each ``str`` text's ids,
    truncated to ``max_tokens``, as int32 arrays up to ``max_bytes`` in all. Once full, new texts
    are tokenised and not kept; other inputs (None, NaN) are tokenised every time.

    Args:
        tokenizer: The :class:`TextTokenizer` (its ``encode``: no special tokens, untruncated).
        max_tokens: Ids kept per text (the encoder uses no more).
        max_bytes: Memory for all kept ids (0: keep nothing).

    Example:
        >>> tok = TextTokenizer.train(["the cat sat", "the dog ran"], vocab_size=100)
        >>> cache = TokenCache(tok, max_tokens=2)
        >>> texts = ["the cat sat", "the dog", "the cat sat"]
        >>> [r.tolist() for r in cache(texts)] == [ids[:2] for ids in tok.encode(texts)]
        True
        >>> len(cache)  # each distinct text once
        2
    """

    #: Bytes counted per kept text besides its ids (the array object and its dict entry).
    OVERHEAD = 160

    def __init__(self, tokenizer: TextTokenizer, max_tokens: int, max_bytes: int = 256 * 2**20) -> None:
        self.tokenizer, self.max_tokens, self.max_bytes = tokenizer, int(max_tokens), int(max_bytes)
        self._ids: dict[str, np.ndarray] = {}
        self._used = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __getstate__(self) -> dict[str, Any]:
        # A copy (a momentum encoder, a loader worker's encoder) starts empty: no memory doubled or sent.
        return {"tokenizer": self.tokenizer, "max_tokens": self.max_tokens, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __call__(self, texts: Sequence[Any]) -> list[np.ndarray]:
        """int32 ids of each text (at most ``max_tokens``), in order (kept arrays: do not modify)."""
        kept = self._ids
        new = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t not in kept))
        other = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if not new and not other:
            return [kept[t] for t in texts]
        encoded = self._encode(new + [texts[i] for i in other])
        unkept: dict[str, np.ndarray] = {}
        for t, arr in zip(new, encoded):
            cost = arr.nbytes + self.OVERHEAD
            if self._used + cost <= self.max_bytes:
                kept[t] = arr
                self._used += cost
            else:
                unkept[t] = arr
        by_position = dict(zip(other, encoded[len(new):]))
        return [by_position[i] if i in by_position else kept[t] if t in kept else unkept[t]
                for i, t in enumerate(texts)]

    @property
    def max_chars(self) -> int:
        """Characters of a long text that are tokenised (:meth:`_encode`): far more than ``max_tokens`` need."""
        return max(4096, 32 * self.max_tokens)

    def _encode(self, texts: list[Any]) -> list[np.ndarray]:
        """The first ``max_tokens`` ids of each text, exactly, without tokenising all of a huge text.

        A text longer than :attr:`max_chars` is tokenised from a prefix cut at a white space (so
        its ids are a prefix of the whole text's ids); if the prefix gives too few ids (mostly
        white space), the whole text is tokenised after all. A 5 MB text then costs what 4 kB do.
        """
        cap = self.max_chars
        long = [i for i, t in enumerate(texts) if isinstance(t, str) and len(t) > cap]
        heads = list(texts)
        margin = 0
        for i in long:
            head = texts[i][:cap]
            cut = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
            if cut > cap // 2:
                heads[i] = head[:cut]
            else:  # no white space to cut at (e.g. CJK): a margin of ids keeps the cut's effect out of range
                heads[i], margin = head, 16
        encoded = [np.asarray(ids[: self.max_tokens + margin], dtype=np.int32) for ids in self.tokenizer.encode(heads)]
        short = [i for i in long if len(encoded[i]) < self.max_tokens + margin]
        if short:
            for i, ids in zip(short, self.tokenizer.encode([texts[i] for i in short])):
                encoded[i] = np.asarray(ids[: self.max_tokens], dtype=np.int32)
        if long and len(short) < len(long):
            import warnings

            warnings.warn(LongTextNote(
                f"{len(long) - len(short)} text(s) longer than {cap:,} characters: tokenised from their first "
                f"{cap:,} characters only (the encoder reads {self.max_tokens} tokens of a text; the ids are the "
                "same)"), stacklevel=3)
        return [ids[: self.max_tokens] for ids in encoded]


class LongTextNote(UserWarning):
    """Long texts were tokenised from a prefix (the result is unchanged; said once per call)."""


def _as_text(t: Any) -> str:
    """Documents may arrive as None/NaN from data frames: treat them as empty."""
    if t is None:
        return ""
    if isinstance(t, float) and t != t:  # NaN
        return ""
    return t if isinstance(t, str) else str(t)


def distinct_texts(split_inputs: Any) -> list[str]:
    """The sorted distinct texts of ``{split: texts}`` (lists of strings, or objects with an
    ``inputs`` list such as :class:`~mlsupcon.data.Split`), or of one list of texts: what an
    encoder that embeds every text once (``prepare``) computes and keys its disk cache on.
    Sorted, so the key depends on the set of texts, not on splits or order.

    Example:
        >>> distinct_texts({"train": ["b", "a"], "test": ["a", None]})
        ['', 'a', 'b']
    """
    from collections.abc import Mapping

    groups = split_inputs.values() if isinstance(split_inputs, Mapping) else [split_inputs]
    texts: set[str] = set()
    for group in groups:
        items = getattr(group, "inputs", group)
        if isinstance(items, str):
            raise ValueError("prepare: each split must be a list of texts, not one string")
        texts.update(_as_text(t) for t in items)
    return sorted(texts)
