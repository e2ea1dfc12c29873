"""The top k layers of a transformer trained over cached lower-layer token states.

Full fine-tuning of a sentence encoder costs a forward and a backward pass through every layer,
every epoch (~22 CPU-minutes per Debtags epoch for all-MiniLM-L6-v2 on 2 cores); a ``frozen``
encoder trains nothing of the transformer. :class:`PartialEncoder` sits in between:

1. :meth:`PartialEncoder.prepare` runs the embeddings and the lower ``L - k`` layers of a local
   Hugging Face encoder (frozen, eval mode, no grad) ONCE per distinct text and keeps their
   token states (only the real tokens, float16 by default) and lengths in memory; with
   ``disk_cache`` the table is also written under the feature cache folder
   (:mod:`mlsupcon.models.feature_cache`), keyed by the model fingerprint, ``max_length``, the
   number of lower layers, the state dtype and the texts.
2. :meth:`PartialEncoder.preprocess` looks texts up -> ``{"states": [n, T, H], "attention_mask":
   [n, T]}`` (padded to the batch's longest text); texts never prepared are run on the spot.
3. :meth:`PartialEncoder.forward` runs the top ``k`` layers (trainable, initialised from the
   pretrained ones) over the states, mean-pools over the real tokens and applies an optional
   MLP. With float32 states it equals the full model's mean-pooled output (to float
   rounding); with float16 states to float16 precision.

Only the top layers (and the MLP) are in ``state_dict()`` and ``parameters()``; the lower
layers come back from ``model_path`` (default the bundled all-MiniLM-L6-v2, as the ``frozen``
encoder's transformer does), so a model folder with the bundled MiniLM needs no extra files.
A model with its own ``model_path`` is rebuilt from that folder (it must still exist).

Memory: H x 2 bytes per token in float16: all-MiniLM-L6-v2 (H = 384) stores 768 bytes a token,
so 10,000 texts of 128 tokens (``max_length`` 128, the default) take ~0.98 GB, shorter texts
less (only real tokens are kept).

Contrastive views (:meth:`PartialEncoder.make_view_fn`): token dropout on the cached states
(each real token but the first is masked out with probability ``p_drop``) and optional
Gaussian noise on the states.

Supported architectures: BERT-like models whose base model has ``embeddings`` and
``encoder.layer`` (BERT, MiniLM, RoBERTa, XLM-R, ELECTRA ...); one segment of at most the
model's position limit.

Example:
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("partial", top_layers=1, progress=False)     # bundled MiniLM
    >>> b = enc.preprocess(["A short sentence."])
    >>> b["states"].dtype, enc(b).shape
    (torch.float16, torch.Size([1, 384]))
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlsupcon.progress import progress_bar

from .base import Encoder, check_choice, check_positive_int, check_prob
from .factory import register_encoder
from .feature_cache import cache_key, default_cache_dir, model_fingerprint
from .mlp import MLPEncoder
from .tokenization import _as_text, distinct_texts

__all__ = ["PartialEncoder"]

logger = logging.getLogger("mlsupcon.models")
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class _PassThrough(nn.Module):
    """Stands in for the embeddings of the top model: returns ``inputs_embeds`` (the cached states)."""

    def forward(self, input_ids=None, inputs_embeds=None, **_: Any) -> torch.Tensor:
        return inputs_embeds


@register_encoder
class PartialEncoder(Encoder):
    """Cached lower-layer token states of a frozen transformer + its top ``k`` layers, trained.

    Args:
        model_path: Local Hugging Face model directory; None (or ``"minilm"``) = the bundled
            all-MiniLM-L6-v2.
        top_layers: k, the number of top layers trained (1 .. number of layers; default 2).
        max_length: Tokens per text, [CLS]/[SEP] included (default 128, at most the model's
            position limit); longer texts are truncated.
        hidden_dims: Widths of an optional MLP after the pooling (default ``()``: none).
        dropout: Dropout after each MLP block.
        normalize: L2-normalise the pooled output before the MLP (default False).
        state_dtype: ``"float16"`` (default, half the memory) or ``"float32"`` (exact).
        batch_size: Texts per lower-layer forward pass when caching.
        cache_dir: Folder of the on-disk tables (default: the feature cache folder).
        disk_cache: Also keep the states on disk (default True): a later run on the same texts
            with the same model, ``max_length``, ``top_layers`` and ``state_dtype`` loads them.
        device: Where the lower layers run when caching (None: CUDA when available).
        progress: Progress bar on stderr while caching.

    Attributes:
        num_layers: Layers of the transformer (L); the lower ``L - top_layers`` are frozen.
        lower_batches: Lower-layer forward passes run so far (cache hits run none).

    Raises:
        ValueError: For invalid options (named in the message) or an unsupported architecture.
        FileNotFoundError: When ``model_path`` does not exist.
    """

    name = "partial"
    modality = "text"
    input_keys = ("states", "attention_mask")

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        top_layers: int = 2,
        max_length: int = 128,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.1,
        normalize: bool = False,
        state_dtype: str = "float16",
        batch_size: int = 64,
        cache_dir: str | os.PathLike | None = None,
        disk_cache: bool = True,
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        from .transformer import TransformerEncoder

        self.top_layers = check_positive_int(top_layers, "top_layers")
        self.max_length = check_positive_int(max_length, "max_length", 3)
        self.dropout = check_prob(dropout, "dropout")
        self.normalize = bool(normalize)
        self.state_dtype = check_choice(state_dtype, "state_dtype", tuple(_DTYPES))
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.disk_cache = bool(disk_cache)
        self.progress = bool(progress)
        if device is not None and not isinstance(device, str):
            raise ValueError(f"device must be a string such as 'cpu' or 'cuda', or None, got {device!r}")
        self.embed_device = device
        self._model_path_arg = None if model_path is None else str(model_path)
        self._cache_dir_arg = None if cache_dir is None else str(cache_dir)

        # The TransformerEncoder gives the tokenizer, the [CLS] ... [SEP] layout and the loaded model.
        self.model_dir = _resolved(model_path)
        tenc = TransformerEncoder(model_path=self.model_dir, segment_length=self.max_length, max_length=self.max_length)
        full = tenc.backbone
        layers = getattr(getattr(full, "encoder", None), "layer", None)
        if not isinstance(layers, nn.ModuleList) or not hasattr(full, "embeddings"):
            raise ValueError(f"partial: {type(full).__name__} is not a BERT-like model (embeddings + encoder.layer)")
        self.num_layers = len(layers)
        if self.top_layers > self.num_layers:
            raise ValueError(f"top_layers ({self.top_layers}) exceeds the model's {self.num_layers} layers")
        self._identity_model = model_fingerprint(self.model_dir)
        lower_layers = nn.ModuleList(list(layers)[: self.num_layers - self.top_layers])
        top_layers_list = nn.ModuleList(list(layers)[self.num_layers - self.top_layers:])
        full.encoder.layer = lower_layers
        # The top model: the same HF model class (same attention-mask handling) whose embeddings
        # pass the cached states through and whose encoder holds the top layers only.
        top = copy.deepcopy(full, {id(full.embeddings): _PassThrough(), id(lower_layers): top_layers_list})
        top.train()
        for p in full.parameters():
            p.requires_grad_(False)
        full.eval()
        self.top = top
        # The lower part lives outside the module tree: not in state_dict(), parameters() or .to().
        self.__dict__["_lower"] = tenc
        self.hidden_size = tenc.hidden_size

        if isinstance(hidden_dims, (int, np.integer)):
            hidden_dims = (int(hidden_dims),)
        self.hidden_dims = tuple(check_positive_int(d, "hidden_dims") for d in hidden_dims)
        if self.hidden_dims:
            self.mlp: nn.Module = MLPEncoder(self.hidden_size, self.hidden_dims, dropout=self.dropout)
            self.output_dim = self.hidden_dims[-1]
        else:
            self.mlp = nn.Identity()
            self.output_dim = self.hidden_size

        self.lower_batches = 0
        # Text -> (offset, length) in a flat token table [tokens, H] grown by doubling.
        self._index: dict[str, tuple[int, int]] = {}
        self._store = torch.zeros((0, self.hidden_size), dtype=_DTYPES[self.state_dtype])
        self._used = 0

    # ------------------------------------------------------------------ misc
    @property
    def sequence_dim(self) -> int:
        return self.hidden_size

    @property
    def cache_dir(self) -> Path:
        """Folder of the on-disk state tables."""
        return Path(self._cache_dir_arg).expanduser() if self._cache_dir_arg else default_cache_dir()

    @property
    def cached_bytes(self) -> int:
        """Bytes of token states held in memory (the used part of the table)."""
        return self._used * self.hidden_size * self._store.element_size()

    def identity(self) -> dict[str, Any]:
        """What decides the cached states (part of the cache key)."""
        return {
            "kind": "partial-states",
            "model": self._identity_model,
            "max_length": self.max_length,
            "lower_layers": self.num_layers - self.top_layers,
            "state_dtype": self.state_dtype,
        }

    def _device(self) -> torch.device:
        if self.embed_device is not None:
            return torch.device(self.embed_device)
        in_worker = torch.utils.data.get_worker_info() is not None
        return torch.device("cuda" if torch.cuda.is_available() and not in_worker else "cpu")

    # ------------------------------------------------------------------ the lower layers
    @torch.no_grad()
    def lower_states(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Run the frozen lower layers -> one ``[length_i, H]`` tensor (state dtype, CPU) per text."""
        texts = [_as_text(t) for t in texts]
        out: list[torch.Tensor | None] = [None] * len(texts)
        if not texts:
            return []
        tenc = self.__dict__["_lower"]
        lower = tenc.backbone
        lower.eval()
        dev = self._device()
        lower.to(dev)
        dtype = _DTYPES[self.state_dtype]
        order = np.argsort([len(t) for t in texts], kind="stable")
        bar = progress_bar(len(texts), f"lower {self.num_layers - self.top_layers} layers", "texts",
                           enabled=self.progress)
        try:
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = tenc.preprocess([texts[i] for i in idx])
                ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
                h = lower(input_ids=ids, attention_mask=mask).last_hidden_state.to("cpu", dtype)
                lengths = batch["attention_mask"].sum(1).tolist()
                for j, i in enumerate(idx):
                    out[i] = h[j, : int(lengths[j])].clone()
                self.lower_batches += 1
                bar.update(len(idx))
        finally:
            bar.close()
        return out  # type: ignore[return-value]

    def _add(self, texts: Sequence[str], states: Sequence[torch.Tensor]) -> None:
        new = [i for i, t in enumerate(texts) if t not in self._index]
        if not new:
            return
        need = self._used + sum(int(states[i].shape[0]) for i in new)
        if need > len(self._store):
            grown = torch.zeros((max(need, 2 * len(self._store)), self.hidden_size), dtype=self._store.dtype)
            grown[: self._used] = self._store[: self._used]
            self._store = grown
        for i in new:
            s = states[i]
            n = int(s.shape[0])
            self._store[self._used : self._used + n] = s.to(self._store.dtype)
            self._index[texts[i]] = (self._used, n)
            self._used += n

    # ------------------------------------------------------------------ disk
    def _read(self, path: Path, key: str, n_texts: int) -> list[torch.Tensor] | None:
        if not path.is_file():
            return None
        problem = None
        try:
            with np.load(path, allow_pickle=False) as z:
                stored_key, digest = str(z["key"]), str(z["digest"])
                states, lengths = z["states"], z["lengths"]
            if stored_key != key:
                problem = "its key differs from the file name's"
            elif (lengths.shape != (n_texts,) or states.ndim != 2 or states.shape[1] != self.hidden_size
                  or states.shape[0] != int(lengths.sum()) or states.dtype != np.dtype(self.state_dtype)):
                problem = f"it holds {states.dtype} {states.shape}, lengths {lengths.shape}: not this table"
            elif hashlib.sha256(np.ascontiguousarray(states).tobytes()).hexdigest() != digest:
                problem = "its checksum does not match its contents"
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            problem = f"it cannot be read ({type(e).__name__}: {e})"
        if problem:
            logger.warning("state cache %s ignored and recomputed: %s", path, problem)
            return None
        flat = torch.from_numpy(states)
        return list(torch.split(flat, [int(v) for v in lengths]))

    def _write(self, path: Path, key: str, states: Sequence[torch.Tensor]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        flat = torch.cat(list(states)).numpy() if states else np.zeros((0, self.hidden_size), self.state_dtype)
        lengths = np.asarray([int(s.shape[0]) for s in states], dtype=np.int64)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, states=flat, lengths=lengths, key=np.array(key),
                         digest=np.array(hashlib.sha256(np.ascontiguousarray(flat).tobytes()).hexdigest()))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ the table
    def prepare(self, split_inputs: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
        """Run the lower layers once on every text (or load the table from disk) and keep it in memory.

        Returns:
            ``{"texts", "cache": "loaded" | "computed" | "memory", "path", "seconds", "megabytes"}``.
        """
        t0 = time.perf_counter()
        ordered = distinct_texts(split_inputs)
        key = cache_key(self.identity(), ordered)
        path = self.cache_dir / f"{key}.states.npz"
        if all(t in self._index for t in ordered):
            status = "memory"
        else:
            states = self._read(path, key, len(ordered)) if self.disk_cache else None
            status = "loaded"
            if states is None:
                states = self.lower_states(ordered)
                status = "computed"
                if self.disk_cache:
                    self._write(path, key, states)
            self._add(ordered, states)
        return {"texts": len(ordered), "cache": status, "path": str(path) if self.disk_cache else None,
                "seconds": time.perf_counter() - t0, "megabytes": self.cached_bytes / 2**20}

    def preprocess(self, raw: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Texts -> ``{"states": [n, T, H] (state dtype), "attention_mask": int64 [n, T]}``, T = longest text."""
        texts = [_as_text(t) for t in ([raw] if isinstance(raw, str) else raw)]
        missing = sorted({t for t in texts if t not in self._index})
        if missing:
            self._add(missing, self.lower_states(missing))
        spans = [self._index[t] for t in texts]
        T = max((n for _, n in spans), default=1)
        states = torch.zeros((len(texts), T, self.hidden_size), dtype=self._store.dtype)
        mask = torch.zeros((len(texts), T), dtype=torch.long)
        for i, (off, n) in enumerate(spans):
            states[i, :n] = self._store[off : off + n]
            mask[i, :n] = 1
        return {"states": states, "attention_mask": mask}

    def collate(self, batches: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-pad preprocessed batches to a common length and concatenate them."""
        if not batches:
            raise ValueError("collate: batches must not be empty")
        T = max(int(b["states"].shape[1]) for b in batches)
        states = [F.pad(b["states"], (0, 0, 0, T - b["states"].shape[1])) for b in batches]
        masks = [F.pad(b["attention_mask"], (0, T - b["attention_mask"].shape[1])) for b in batches]
        return {"states": torch.cat(states), "attention_mask": torch.cat(masks)}

    # ------------------------------------------------------------------ training
    def encode_sequence(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-layer token states ``[n, T, H]`` (zero at padding) and mask ``[n, T]``."""
        batch = self._batch_to_device(batch)
        mask = batch["attention_mask"].long()
        dtype = next(self.top.parameters()).dtype
        states = batch["states"].to(dtype)
        h = self.top(inputs_embeds=states, attention_mask=mask).last_hidden_state
        return h * mask.unsqueeze(-1).to(h.dtype), mask

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean of the top layers' states over the real tokens (then MLP) -> ``[n, output_dim]``."""
        h, mask = self.encode_sequence(batch)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = h.sum(1) / m.sum(1).clamp(min=1.0)
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return self.mlp({"x": pooled}) if self.hidden_dims else pooled

    def make_view_fn(
        self, p_drop: float = 0.1, noise_std: float = 0.0, **_: Any
    ) -> Callable[..., dict[str, torch.Tensor]]:
        """A function ``batch -> batch`` giving one random view of cached states.

        Each real token but the first ([CLS]) is dropped (attention mask 0, so neither attended
        to nor pooled) with probability ``p_drop``; Gaussian noise of standard deviation
        ``noise_std`` is added to the states. Other options (text views' ``crop``, ``p_mask``)
        are ignored.

        Example:
            >>> enc = PartialEncoder(top_layers=1, progress=False, disk_cache=False)
            >>> view = enc.make_view_fn(p_drop=0.5)
            >>> b = {"states": torch.ones(2, 10, 384, dtype=torch.float16), "attention_mask": torch.ones(2, 10)}
            >>> v = view(b)
            >>> v["states"].shape, bool(v["attention_mask"][:, 0].all()), bool(b["attention_mask"].all())
            (torch.Size([2, 10, 384]), True, True)
        """
        p_drop = check_prob(p_drop, "p_drop")
        noise_std = float(noise_std)
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")

        def view(batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None):
            states, mask = batch["states"], batch["attention_mask"]
            out = dict(batch)
            if p_drop > 0:
                keep = torch.rand(mask.shape, generator=generator, device=mask.device) >= p_drop
                keep[:, 0] = True
                out["attention_mask"] = mask * keep.to(mask.dtype)
            if noise_std > 0:
                noise = torch.randn(states.shape, generator=generator, device=states.device) * noise_std
                out["states"] = (states.float() + noise).to(states.dtype)
            return out

        return view

    def train(self, mode: bool = True) -> PartialEncoder:
        super().train(mode)
        self.__dict__["_lower"].backbone.eval()  # frozen: never dropout
        return self

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_path": self._model_path_arg,
            "top_layers": self.top_layers,
            "max_length": self.max_length,
            "hidden_dims": list(self.hidden_dims),
            "dropout": self.dropout,
            "normalize": self.normalize,
            "state_dtype": self.state_dtype,
            "batch_size": self.batch_size,
            "cache_dir": self._cache_dir_arg,
            "disk_cache": self.disk_cache,
            "device": self.embed_device,
            "progress": self.progress,
        }

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, top_layers={self.top_layers}/{self.num_layers}, "
                f"cached_texts={len(self._index)}, cached_mb={self.cached_bytes / 2**20:.1f}")


def _resolved(model_path: str | os.PathLike | None) -> str:
    from .transformer import _resolve_model_path

    return _resolve_model_path(model_path)
