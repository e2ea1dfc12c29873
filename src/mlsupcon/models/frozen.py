"""Frozen pretrained sentence embeddings, computed once and cached on disk, with a trainable MLP on top.

On a CPU, fine-tuning a transformer on tens of thousands of documents takes hours; embedding
them once with a frozen MiniLM takes minutes, and a small MLP trained on the fixed vectors
then costs what the ``mlp`` encoder costs on yeast. :class:`FrozenEncoder` does exactly that:

1. :meth:`FrozenEncoder.prepare` embeds every text of every split once (batched, no grad,
   eval mode, progress bar on stderr) and stores the table on disk
   (:mod:`mlsupcon.models.feature_cache`); a later run with the same model, options and
   texts loads it instead (any split or seed of the same texts: the key is over the set).
2. :meth:`FrozenEncoder.preprocess` looks texts up in the in-memory table -> ``{"x"}``;
   texts never prepared (prediction on new documents) are embedded on the spot and kept
   in memory.
3. :meth:`FrozenEncoder.forward` is the MLP; the transformer is never trained and by
   default is not part of ``state_dict()`` (``config()`` reloads it from ``model_path``).

Embedding = mean of the last hidden states over the real tokens ([CLS]/[SEP] included, as
sentence-transformers pools all-MiniLM-L6-v2), truncated to ``max_length`` tokens, then
L2-normalised (``normalize``). Texts are embedded in batches of similar token counts (little
padding); on a CPU the transformer runs in ONNX Runtime with int8 weights by default
(``runtime``, :mod:`mlsupcon.models.onnx_backbone`: 2.5x PyTorch's speed on 2 cores, cosine
>= 0.99 to its fp32 embeddings); ``runtime="torch"`` gives PyTorch's fp32 values.

Example:
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("frozen", hidden_dims=(32,), progress=False)   # bundled MiniLM
    >>> enc.output_dim, enc.embedding_dim
    (32, 384)
    >>> enc(enc.preprocess(["A short sentence."])).shape
    torch.Size([1, 32])
"""

from __future__ import annotations

import contextlib
import os
import time
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
from .feature_cache import cache_key, default_cache_dir, model_fingerprint, read_table, write_table
from .mlp import MLPEncoder
from .tokenization import _as_text, distinct_texts
from .transformer import TransformerEncoder, _resolve_model_path

__all__ = ["FrozenEncoder"]


@register_encoder
class FrozenEncoder(Encoder):
    """A frozen pretrained transformer's cached sentence embeddings + a trainable MLP.

    Args:
        model_path: Local Hugging Face model directory; None (or ``"minilm"``) = the bundled
            all-MiniLM-L6-v2. Loaded only when a text has to be embedded.
        max_length: Tokens per text, [CLS]/[SEP] included (default 128); longer texts are
            truncated. Above the model's position limit it must be a multiple of it (the
            text is then cut into segments whose token states are averaged).
        pooling: ``"mean"`` over real tokens (default) or ``"cls"``.
        normalize: L2-normalise the embeddings (default True, as sentence-transformers does).
        hidden_dims: Widths of the trainable MLP (``Linear -> ReLU -> Dropout`` blocks, see
            :class:`~mlsupcon.models.mlp.MLPEncoder`); ``()`` = no MLP, the encoder outputs
            the embeddings themselves.
        dropout: Dropout after each MLP block.
        final_activation: ReLU (and dropout) after the last MLP layer too (default True).
        batch_size: Texts per transformer forward pass when embedding (default 32: on a CPU,
            larger batches of sorted texts are no faster).
        runtime: What runs the transformer: ``"torch"`` (eager PyTorch, fp32), ``"onnx"``
            (ONNX Runtime, fp32, same values to ~1e-6), ``"onnx-int8"`` (ONNX Runtime, int8
            weights), or ``"auto"`` (default: ``"onnx-int8"`` on a CPU when onnxruntime is
            installed, else ``"torch"``). The choice is part of the cache key and of ``config()``
            (which records the resolved value, so a saved model embeds as it was trained).
        cache_dir: Folder of the feature tables (default: ``$MLSUPCON_CACHE/features`` or
            ``~/.cache/mlsupcon/features``).
        device: Where the transformer runs when embedding: ``"cpu"``, ``"cuda"``... or None
            (CUDA when available, except in data-loader worker processes).
        progress: Show a progress bar on stderr while embedding.
        save_backbone: Register the transformer as a submodule, so its (frozen) weights are
            in ``state_dict()`` and move with ``.to()``; default False (the state dict holds
            the MLP only and the transformer is reloaded from ``model_path``).

    Attributes:
        backbone_batches: Transformer forward passes run so far (cache hits run none).
        embedding_dim: Size of the cached embeddings (the transformer's hidden size).

    Raises:
        ValueError: For invalid options (named in the message).
        FileNotFoundError: When ``model_path`` does not exist.

    Example:
        >>> enc = FrozenEncoder(hidden_dims=(), progress=False)
        >>> enc.output_dim == enc.embedding_dim == 384
        True
    """

    name = "frozen"
    modality = "text"
    input_keys = ("x",)

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        max_length: int = 128,
        pooling: str = "mean",
        normalize: bool = True,
        hidden_dims: Sequence[int] = (512,),
        dropout: float = 0.1,
        final_activation: bool = True,
        batch_size: int = 32,
        runtime: str = "auto",
        cache_dir: str | os.PathLike | None = None,
        device: str | None = None,
        progress: bool = True,
        save_backbone: bool = False,
    ) -> None:
        super().__init__()
        self.max_length = check_positive_int(max_length, "max_length", 3)
        self.pooling = check_choice(pooling, "pooling", ("mean", "cls"))
        self.normalize = bool(normalize)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.dropout = check_prob(dropout, "dropout")
        self.final_activation = bool(final_activation)
        self.progress = bool(progress)
        self.save_backbone = bool(save_backbone)
        if device is not None and not isinstance(device, str):
            raise ValueError(f"device must be a string such as 'cpu' or 'cuda', or None, got {device!r}")
        self.embed_device = device
        from .onnx_backbone import resolve_runtime

        self.runtime = resolve_runtime(runtime, device, save_backbone)
        self._model_path_arg = None if model_path is None else str(model_path)
        self._cache_dir_arg = None if cache_dir is None else str(cache_dir)
        self.model_dir = _resolve_model_path(model_path)

        # config.json read directly: importing transformers costs seconds, and a cached ONNX export
        # (or a cached table) never needs it.
        self.model_config = _read_model_config(self.model_dir)
        dim = self.model_config.get("hidden_size") or self.model_config.get("dim")
        if not isinstance(dim, int):
            raise ValueError(f"model_path {self.model_dir!r}: its config.json has no hidden_size")
        self.embedding_dim = int(dim)
        max_pos = self.model_config.get("max_position_embeddings")
        self._segment_length = min(self.max_length, max_pos) if isinstance(max_pos, int) else self.max_length

        if isinstance(hidden_dims, (int, np.integer)):
            hidden_dims = (int(hidden_dims),)
        self.hidden_dims = tuple(check_positive_int(d, "hidden_dims") for d in hidden_dims)
        if self.hidden_dims:
            self.mlp: nn.Module = MLPEncoder(
                self.embedding_dim, self.hidden_dims, dropout=self.dropout, final_activation=self.final_activation
            )
            self.output_dim = self.hidden_dims[-1]
        else:
            self.mlp = nn.Identity()
            self.output_dim = self.embedding_dim

        self.backbone_batches = 0
        # Text -> row of the in-memory table; the table grows by doubling (appends are rare).
        self._index: dict[str, int] = {}
        self._table = np.zeros((0, self.embedding_dim), dtype=np.float32)
        self._rows = 0
        # The transformer lives outside the module tree unless save_backbone: then it is not in
        # state_dict(), parameters() or .to(), and optimisers never see it.
        self.__dict__["_frozen"] = None
        if self.save_backbone:
            self.backbone = self._load_backbone()

    # ------------------------------------------------------------------ the transformer
    def _transformer_options(self) -> dict[str, Any]:
        return {"model_path": self.model_dir, "pooling": self.pooling, "segment_length": self._segment_length,
                "max_length": self.max_length, "freeze": True}

    def _torch_transformer(self) -> nn.Module:
        return TransformerEncoder(**self._transformer_options())

    def source_model(self) -> nn.Module:
        """The Hugging Face model (PyTorch) whose embeddings these are; with an ONNX runtime it is
        loaded again from ``model_path`` (exports copy it)."""
        if self.runtime == "torch":
            return self._load_backbone().backbone
        return self._torch_transformer().backbone

    def _load_backbone(self) -> nn.Module:
        if "backbone" in self._modules:
            return self._modules["backbone"]
        if self.__dict__["_frozen"] is None:
            if self.runtime == "torch":
                enc = self._torch_transformer()
            else:
                enc = _OnnxTransformer(self.runtime, model_fingerprint(self.model_dir), self.model_config,
                                       **self._transformer_options())
            enc.eval()
            self.__dict__["_frozen"] = enc
        return self.__dict__["_frozen"]

    @property
    def backbone_loaded(self) -> bool:
        """Whether the transformer has been loaded (a cache hit never loads it)."""
        return "backbone" in self._modules or self.__dict__["_frozen"] is not None

    def _device(self, enc: nn.Module) -> torch.device:
        if self.save_backbone:  # it moves with the module
            return next(enc.parameters()).device
        if self.runtime != "torch":  # ONNX Runtime computes on the CPU: the batches stay there
            return torch.device("cpu")
        if self.embed_device is not None:
            return torch.device(self.embed_device)
        in_worker = torch.utils.data.get_worker_info() is not None
        return torch.device("cuda" if torch.cuda.is_available() and not in_worker else "cpu")

    def identity(self) -> dict[str, Any]:
        """What decides the embeddings: the model files and the options (part of the cache key)."""
        identity = {
            "model": model_fingerprint(self.model_dir),
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
        }
        if self.runtime != "torch":  # torch's key is unchanged: tables cached before runtimes existed stay valid
            from .onnx_backbone import runtime_versions

            identity.update(runtime=self.runtime, **runtime_versions())
        return identity

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Run the transformer on ``texts`` -> ``float32 [n, embedding_dim]`` (no cache involved).

        Texts are batched by similar token counts (less padding); the transformer is in eval
        mode and no autograd graph is built.
        """
        texts = [_as_text(t) for t in texts]
        out = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        if not texts:
            return out
        enc = self._load_backbone()
        enc.eval()
        dev = self._device(enc)
        if not self.save_backbone:
            enc.to(dev)
        # Sorted by token count (truncated at max_length), so a batch pads to little more than its
        # texts; tokenised once, here, and laid out per batch (what enc.preprocess does).
        token_ids = enc._token_cache(texts)
        order = np.argsort([len(ids) for ids in token_ids], kind="stable")
        name = Path(self._model_path_arg).name if self._model_path_arg else "all-MiniLM-L6-v2"
        bar = progress_bar(len(texts), f"embedding with {name}", "texts", enabled=self.progress)
        release = getattr(enc.backbone, "torch_threads_released", contextlib.nullcontext)
        try:
            with release():
                for start in range(0, len(texts), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    batch = enc.layout([token_ids[i].tolist() for i in idx])
                    h = enc({k: v.to(dev) for k, v in batch.items()}).float()
                    if self.normalize:
                        h = F.normalize(h, dim=-1)
                    out[idx] = h.cpu().numpy()
                    self.backbone_batches += 1
                    bar.update(len(idx))
        finally:
            bar.close()
        return out

    # ------------------------------------------------------------------ the table
    def _add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        new = [i for i, t in enumerate(texts) if t not in self._index]
        if not new:
            return
        need = self._rows + len(new)
        if need > len(self._table):
            grown = np.zeros((max(need, 2 * len(self._table)), self.embedding_dim), dtype=np.float32)
            grown[: self._rows] = self._table[: self._rows]
            self._table = grown
        self._table[self._rows : need] = vectors[new]
        for j, i in enumerate(new):
            self._index[texts[i]] = self._rows + j
        self._rows = need

    @property
    def cache_dir(self) -> Path:
        """Folder of the on-disk feature tables."""
        return Path(self._cache_dir_arg).expanduser() if self._cache_dir_arg else default_cache_dir()

    def prepare(self, split_inputs: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
        """Embed every text once (or load the table from the disk cache) and keep it in memory.

        Args:
            split_inputs: ``{split name: texts}`` (lists of strings, or objects with an
                ``inputs`` list such as :class:`~mlsupcon.data.Split`), or one list of texts.

        Returns:
            ``{"texts": distinct texts, "cache": "loaded" | "computed" | "memory",
            "path": the cache file, "seconds": time taken}``.

        Example:
            >>> enc = FrozenEncoder(hidden_dims=(), progress=False)          # doctest: +SKIP
            >>> enc.prepare({"train": ["a", "b"], "test": ["c"]})["texts"]    # doctest: +SKIP
            3
        """
        t0 = time.perf_counter()
        ordered = distinct_texts(split_inputs)
        key = cache_key(self.identity(), ordered)
        path = self.cache_dir / f"{key}.npz"
        if all(t in self._index for t in ordered):
            status = "memory"
        else:
            vectors = read_table(path, key, len(ordered), self.embedding_dim)
            status = "loaded"
            if vectors is None:
                vectors = self.embed(ordered)
                write_table(path, key, vectors)
                status = "computed"
            self._add(ordered, vectors)
        return {"texts": len(ordered), "cache": status, "path": str(path), "seconds": time.perf_counter() - t0}

    def preprocess(self, raw: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Texts -> ``{"x": float32 [n, embedding_dim]}`` from the table.

        Texts not in the table are embedded now and added to it (in memory only; call
        :meth:`prepare` to cache a whole data set on disk).
        """
        texts = [_as_text(t) for t in ([raw] if isinstance(raw, str) else raw)]
        missing = sorted({t for t in texts if t not in self._index})
        if missing:
            self._add(missing, self.embed(missing))
        rows = np.fromiter((self._index[t] for t in texts), dtype=np.int64, count=len(texts))
        return {"x": torch.from_numpy(self._table[rows])}

    # ------------------------------------------------------------------ training
    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{"x": [n, embedding_dim]}`` -> MLP features ``[n, output_dim]``."""
        batch = self._batch_to_device(batch)
        x = batch["x"].float()
        return self.mlp({"x": x}) if self.hidden_dims else x

    def train(self, mode: bool = True) -> FrozenEncoder:
        super().train(mode)
        if "backbone" in self._modules:  # frozen: never dropout
            self._modules["backbone"].eval()
        return self

    def make_view_fn(
        self, p_mask: float = 0.2, noise_std: float = 0.01, **_: Any
    ) -> Callable[..., dict[str, torch.Tensor]]:
        """A function ``batch -> batch`` giving one random contrastive view of the embeddings.

        Masks each embedding coordinate with probability ``p_mask`` and adds Gaussian noise of
        standard deviation ``noise_std`` (:class:`~mlsupcon.data.views.FeatureMaskNoise`). On
        L2-normalised 384-d embeddings a coordinate's typical size is ~0.05, hence the small
        default noise. Other options (text-view options such as ``p_drop``) are ignored.

        Example:
            >>> enc = FrozenEncoder(hidden_dims=(), progress=False)
            >>> view = enc.make_view_fn(p_mask=0.5, noise_std=0.0)
            >>> x = torch.ones(2, 384)
            >>> out = view({"x": x})["x"]
            >>> out.shape, bool(((out == 0) | (out == 1)).all()), bool((x == 1).all())
            (torch.Size([2, 384]), True, True)
        """
        from mlsupcon.data.views import FeatureMaskNoise

        maker = FeatureMaskNoise(p_mask=p_mask, noise_std=noise_std)

        def view(batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None):
            return {**batch, "x": maker(batch["x"], generator)}

        return view

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_path": self._model_path_arg,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "hidden_dims": list(self.hidden_dims),
            "dropout": self.dropout,
            "final_activation": self.final_activation,
            "batch_size": self.batch_size,
            "runtime": self.runtime,
            "cache_dir": self._cache_dir_arg,
            "device": self.embed_device,
            "progress": self.progress,
            "save_backbone": self.save_backbone,
        }

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, model={Path(self.model_dir).name!r}, cached_texts={self._rows}"


def _read_model_config(model_dir: str) -> dict[str, Any]:
    """The model's ``config.json`` as a dict; a ValueError when it is missing or not JSON."""
    import json

    path = Path(model_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"model_path {model_dir!r} is not a Hugging Face model directory: {path} "
                         f"cannot be read as JSON ({type(e).__name__})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"model_path {model_dir!r} is not a Hugging Face model directory: {path} is not an object")
    return cfg


class _OnnxTransformer(TransformerEncoder):
    """The frozen transformer with its backbone run by ONNX Runtime. When the export is cached, neither
    transformers nor the PyTorch weights are loaded (a later run or a ``predict`` starts in well under a
    second); otherwise the model is loaded once and exported (:mod:`~mlsupcon.models.onnx_backbone`)."""

    def __init__(self, runtime: str, fingerprint: dict[str, Any], model_config: dict[str, Any], **opts: Any):
        # Read by _build_backbone, which TransformerEncoder.__init__ calls (nn.Module attributes
        # cannot be set before Module.__init__ runs, hence object.__setattr__).
        object.__setattr__(self, "_onnx_spec", (runtime, fingerprint, model_config))
        super().__init__(**opts)

    def _build_backbone(self, path: str | None, config: Mapping[str, Any] | None) -> nn.Module:
        from types import SimpleNamespace

        from .onnx_backbone import OnnxBackbone

        runtime, fingerprint, model_config = self.__dict__["_onnx_spec"]
        cached = OnnxBackbone.cached(fingerprint, runtime, SimpleNamespace(**model_config))
        if cached is not None:
            return cached
        model = super()._build_backbone(path, config).eval()
        return OnnxBackbone.from_model(model, runtime, fingerprint)
