"""CAML-style convolutional text encoder (Mullenbach et al. 2018).

Word embeddings -> dropout -> one 1-D convolution (kernel 10, 50 filters) -> tanh gives a
feature map over tokens; the pooled output is its max over (real) tokens and
:meth:`CNNEncoder.encode_sequence` hands the feature map to label-wise attention.

Example:
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("cnn", train_texts=["fever and cough", "broken left arm"])
    >>> batch = enc.preprocess(["cough and a broken arm"])
    >>> enc(batch).shape
    torch.Size([1, 50])
    >>> seq, mask = enc.encode_sequence(batch)
    >>> seq.shape, mask.shape
    (torch.Size([1, 5, 50]), torch.Size([1, 5]))
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Encoder, check_choice, check_positive_int, check_prob, pad_text_batches
from .factory import register_encoder
from .tokenization import TOKENIZER_MODELS, TextTokenizer, TokenCache
from .tokenizer_choice import TOKENIZER_KINDS, choose_tokenizer

__all__ = ["CNNEncoder"]

# The model trained for each tokenizer kind unless tokenizer_model says otherwise.
_DEFAULT_MODEL = {"word": "wordlevel", "subword": "bytelevel_bpe", "char": "char"}


@register_encoder
class CNNEncoder(Encoder):
    """CAML's CNN over a word, subword or character vocabulary.

    The tokenizer comes from exactly one of ``train_texts`` (trained here, in seconds),
    ``tokenizer_path`` (borrowed from a Hugging Face tokenizer directory, e.g. a BERT
    vocabulary) or ``tokenizer_json`` (what :meth:`config` stores).

    When training, ``tokenizer="auto"`` measures the texts and picks ``"word"`` for prose in
    a space-separated script (CAML's vocabulary), ``"char"`` for Chinese/Japanese/Thai text
    or emoji/kaomoji, ``"subword"`` (byte-level BPE) for code and long unspaced tokens (rules:
    :mod:`mlsupcon.models.tokenizer_choice`). The resolved kind and model are what
    :meth:`config` records, and :attr:`tokenizer_report` says why.

    Args:
        train_texts: Documents to train the tokenizer on (the training split).
        tokenizer_path: Local tokenizer directory or ``tokenizer.json`` file.
        tokenizer_json: Serialised tokenizer (from :meth:`config`).
        tokenizer: ``"auto"`` (default), ``"word"``, ``"subword"`` or ``"char"``.
        tokenizer_model: The algorithm, when the kind's default is not wanted: ``"wordlevel"``
            (word; default of ``"word"``), ``"bytelevel_bpe"`` (subword; its default),
            ``"bpe"`` or ``"wordpiece"`` (subword), ``"char"`` (char). With
            ``tokenizer="auto"`` it decides the kind (an explicit choice beats the guess).
        vocab_size: Maximum vocabulary size when training (default 30000).
        min_frequency: Minimum word/merge/character count when training (default 1).
        lowercase: Lowercase when training (default True).
        max_length: Tokens kept per document (default 512; CAML used 2500 on MIMIC).
        embed_dim: Word-embedding size (default 100, CAML).
        num_filters: Convolution filters = ``output_dim`` (default 50, CAML).
        kernel_size: Convolution width (default 10, CAML).
        dropout: Dropout on the embeddings (default 0.2, CAML).

    Raises:
        ValueError: When no tokenizer source (or more than one) is given, or an option is
            invalid.
        FileNotFoundError: When ``tokenizer_path`` does not exist.

    Example:
        >>> enc = CNNEncoder(train_texts=["a b c", "b c d"], embed_dim=8, num_filters=4, kernel_size=3)
        >>> enc.tokenizer_info["pad_token_id"], enc.output_dim
        (0, 4)
        >>> zh = CNNEncoder(train_texts=["我喜欢猫", "我喜欢狗"], embed_dim=8, num_filters=4, kernel_size=3)
        >>> zh.config()["tokenizer"], zh.preprocess(["我喜欢猫"])["input_ids"].shape
        ('char', torch.Size([1, 4]))
    """

    name = "cnn"
    modality = "text"
    input_keys = ("input_ids", "attention_mask")

    def __init__(
        self,
        train_texts: Iterable[str] | None = None,
        tokenizer_path: str | None = None,
        tokenizer_json: str | None = None,
        tokenizer: str = "auto",
        tokenizer_model: str | None = None,
        vocab_size: int = 30000,
        min_frequency: int = 1,
        lowercase: bool = True,
        max_length: int = 512,
        embed_dim: int = 100,
        num_filters: int = 50,
        kernel_size: int = 10,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        given = {"train_texts": train_texts, "tokenizer_path": tokenizer_path, "tokenizer_json": tokenizer_json}
        sources = [n for n, v in given.items() if v is not None]
        if not sources:
            raise ValueError(
                "cnn encoder requires train_texts (to train a tokenizer) or tokenizer_path (or tokenizer_json)"
            )
        if len(sources) > 1:
            raise ValueError(
                f"cnn encoder takes only one of train_texts, tokenizer_path, tokenizer_json; got {sources}"
            )
        self.max_length = check_positive_int(max_length, "max_length")
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.num_filters = check_positive_int(num_filters, "num_filters")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.dropout_p = check_prob(dropout, "dropout")
        kind = check_choice(tokenizer, "tokenizer", ("auto",) + TOKENIZER_KINDS)
        if tokenizer_model is not None:
            implied = TOKENIZER_MODELS[check_choice(tokenizer_model, "tokenizer_model", list(TOKENIZER_MODELS))]
            if kind not in ("auto", implied):
                raise ValueError(
                    f"tokenizer_model {tokenizer_model!r} trains a {implied} tokenizer, but tokenizer={kind!r}"
                )
            kind = implied  # an explicit model decides the kind
        #: Why the tokenizer is what it is (statistics of the texts when ``tokenizer="auto"``).
        self.tokenizer_report: dict[str, Any] = {}
        if tokenizer_json is not None:
            if not isinstance(tokenizer_json, str):
                raise ValueError("tokenizer_json must be the JSON string of a tokenizers.Tokenizer")
            try:
                self.tokenizer = TextTokenizer.from_json(tokenizer_json)
            except Exception as e:  # tokenizers raises a bare Exception on bad JSON
                raise ValueError(f"tokenizer_json could not be parsed: {e}") from None
        elif tokenizer_path is not None:
            self.tokenizer = TextTokenizer.from_path(tokenizer_path)
        else:
            if isinstance(train_texts, str):
                raise ValueError("train_texts must be a list of documents, not one string")
            train_texts = list(train_texts)  # read twice (auto choice, training): a generator would be empty
            if tokenizer_model is not None:
                self.tokenizer_report = {"kind": kind, "reason": f"tokenizer_model={tokenizer_model!r}"}
            elif kind == "auto":
                kind, self.tokenizer_report = choose_tokenizer(train_texts)
            else:
                self.tokenizer_report = {"kind": kind, "reason": f"tokenizer={kind!r}"}
            tokenizer_model = tokenizer_model or _DEFAULT_MODEL[kind]
            self.tokenizer = TextTokenizer.train(
                train_texts,
                model=tokenizer_model,
                vocab_size=check_positive_int(vocab_size, "vocab_size", 4),
                min_frequency=check_positive_int(min_frequency, "min_frequency"),
                lowercase=bool(lowercase),
            )
        # Recorded as given for borrowed/serialised tokenizers (tokenizer_json rebuilds them exactly).
        self.tokenizer_kind, self.tokenizer_model = kind, tokenizer_model
        self.pad_token_id = self.tokenizer.pad_token_id
        unk = self.tokenizer.token_id("unk")
        # An empty document still needs one real token so max-pooling has something to pool.
        self._empty_id = unk if unk is not None else self.pad_token_id
        # Each training text is tokenised once, in its first epoch (the loader preprocesses per batch).
        self._token_cache = TokenCache(self.tokenizer, self.max_length)
        # padding_idx only when the tokenizer really has a pad token (else id 0 is a real word).
        self.embedding = nn.Embedding(
            self.tokenizer.vocab_size, self.embed_dim, padding_idx=self.tokenizer.token_id("pad")
        )
        self.embed_dropout = nn.Dropout(self.dropout_p)
        self.conv = nn.Conv1d(self.embed_dim, self.num_filters, self.kernel_size)
        nn.init.xavier_uniform_(self.conv.weight)  # CAML's initialisation
        self.output_dim = self.num_filters

    @property
    def tokenizer_info(self) -> dict[str, Any]:
        """Special ids for token-dropout views (see :meth:`TextTokenizer.info`)."""
        return self.tokenizer.info()

    @property
    def sequence_dim(self) -> int:
        return self.num_filters

    def preprocess(self, raw: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Texts -> ``{"input_ids", "attention_mask"}`` int64 ``[n, T]``.

        Documents are truncated to ``max_length`` tokens and right-padded to the longest one
        in the batch (T <= max_length). No special tokens are added.
        """
        texts = [raw] if isinstance(raw, str) else list(raw)
        if self._token_cache.max_tokens != self.max_length:  # max_length changed after construction
            self._token_cache = TokenCache(self.tokenizer, self.max_length)
        rows = self._token_cache(texts)
        n = len(rows)
        lengths = np.fromiter((max(len(r), 1) for r in rows), dtype=np.int64, count=n)
        length = int(lengths.max()) if n else 1
        input_ids = torch.full((n, length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        if n:
            empty = np.array([self._empty_id], dtype=np.int32)
            real = torch.from_numpy(np.arange(length) < lengths[:, None])  # row-major: the ids' order
            input_ids[real] = torch.from_numpy(np.concatenate([r if len(r) else empty for r in rows]).astype(np.int64))
            mask[real] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def collate(self, batches: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-pad preprocessed batches to a common length and concatenate them."""
        return pad_text_batches(batches, self.pad_token_id)

    def _feature_map(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """tanh(conv) ``[n, num_filters, T]`` (padding positions not zeroed) and the mask ``[n, T]``."""
        batch = self._batch_to_device(batch)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        m = mask.unsqueeze(-1).to(self.embedding.weight.dtype)
        # Zeroing padded embeddings makes real positions' outputs independent of how much
        # padding follows (the convolution's own zero padding sees the same zeros). In place
        # where autograd allows it: each full-size temporary of a large batch is memory the
        # allocator maps (and the kernel zeroes) afresh in every step.
        x = self.embed_dropout(self.embedding(ids).mul_(m)).transpose(1, 2)  # [n, E, T]
        k = self.kernel_size
        x = F.pad(x, ((k - 1) // 2, k // 2))  # "same" length output, so the mask still lines up
        return self.conv(x).tanh_(), mask

    def encode_sequence(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv feature map ``[n, T, num_filters]`` (zero at padding) and the mask ``[n, T]``."""
        feats, mask = self._feature_map(batch)
        return feats.transpose(1, 2) * mask.unsqueeze(-1).to(feats.dtype), mask

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Max over real tokens of the feature map -> ``[n, num_filters]``."""
        feats, mask = self._feature_map(batch)
        keep = mask.to(torch.bool).unsqueeze(1)  # [n, 1, T]
        # Padding is filled with finfo.min here, so it need not be zeroed first (encode_sequence does).
        pooled = feats.masked_fill(~keep, torch.finfo(feats.dtype).min).max(dim=2).values
        # A row without any real token pools to zeros instead of finfo.min.
        return torch.where(keep.any(dim=2), pooled, torch.zeros_like(pooled))

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tokenizer_json": self.tokenizer.to_json(),
            "tokenizer": self.tokenizer_kind,
            "tokenizer_model": self.tokenizer_model,
            "max_length": self.max_length,
            "embed_dim": self.embed_dim,
            "num_filters": self.num_filters,
            "kernel_size": self.kernel_size,
            "dropout": self.dropout_p,
        }
