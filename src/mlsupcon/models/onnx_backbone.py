"""A frozen Hugging Face encoder run by ONNX Runtime on the CPU, in fp32 or with int8 weights.

Embedding texts once with a frozen transformer is the first cost of every text run. On a
2-core CPU, ONNX Runtime runs all-MiniLM-L6-v2 1.9x as fast as eager PyTorch at the same
fp32 values, and with dynamically quantised int8 weights 2.5x as fast (3.0x the speed of the
PyTorch path it replaced, which padded batches of 64 sorted by characters; docs/benchmarks.md).
:class:`OnnxBackbone` stands in for the Hugging Face model inside
:class:`~mlsupcon.models.transformer.TransformerEncoder`: ``backbone(input_ids=...,
attention_mask=...).last_hidden_state``, so segment pooling and everything above it is shared.

Runtimes (:data:`RUNTIMES`):

- ``"onnx"``: the model exported to ONNX, fp32 (cosine to PyTorch's embeddings > 0.99999).
- ``"onnx-int8"``: the same graph with per-channel int8 weights and 8-bit activations
  (ONNX Runtime's dynamic quantisation) in every linear layer except the feed-forward down
  projections (the layers that shrink the width, e.g. 1536 -> 384): their inputs, the GELU
  outputs, have too wide a range for 8 bits, and keeping them in fp32 lifts the worst cosine
  to the fp32 embeddings on Debtags from 0.987 to 0.993 for ~20 % of the speed-up.

The exported file is cached (``$MLSUPCON_CACHE/onnx`` or ``~/.cache/mlsupcon/onnx``), named by
a sha256 over the model's fingerprint, the runtime and the versions of torch, onnx and
onnxruntime (which decide the graph and its numbers); it is written atomically, and a file
that ONNX Runtime cannot load is logged and exported again.

Example:
    >>> from mlsupcon.models import TransformerEncoder, minilm_path
    >>> enc = TransformerEncoder(max_length=32, freeze=True)              # doctest: +SKIP
    >>> from mlsupcon.models.feature_cache import model_fingerprint
    >>> enc.backbone = OnnxBackbone.from_model(enc.backbone, "onnx",     # doctest: +SKIP
    ...                                        model_fingerprint(minilm_path()))
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["RUNTIMES", "OnnxBackbone", "onnx_available", "onnx_cache_dir", "onnx_path", "resolve_runtime"]

logger = logging.getLogger("mlsupcon.models")

#: How a frozen encoder runs its transformer: eager PyTorch, ONNX Runtime fp32, ONNX Runtime int8.
RUNTIMES = ("torch", "onnx", "onnx-int8")
_OPSET = 17
# (path, threads) -> InferenceSession, shared in a process (loading one costs ~0.3 s)
_SESSIONS: dict[tuple[str, int], Any] = {}
_LOCK = threading.Lock()


def onnx_available() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` (needed to export) are importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def resolve_runtime(runtime: str, device: str | None, save_backbone: bool = False) -> str:
    """``"auto"`` -> ``"onnx-int8"`` when the transformer will run on a CPU (``device`` ``"cpu"``, or
    None without CUDA) and ONNX Runtime is installed, else ``"torch"``; any other value is checked
    and returned. An ONNX runtime with ``device`` None runs on the CPU even where CUDA is present
    (a model trained with it embeds the same way on a GPU machine). With ``save_backbone`` (the
    frozen encoder's weights saved in its ``state_dict()``, as a PyTorch module) it is ``"torch"``.

    Raises:
        ValueError: An unknown runtime, an ONNX runtime with a non-CPU ``device`` or with
            ``save_backbone``, or an ONNX runtime without onnxruntime/onnx installed (the message
            says what to install).

    Example:
        >>> resolve_runtime("torch", None)
        'torch'
        >>> resolve_runtime("onnx", "cuda")
        Traceback (most recent call last):
        ...
        ValueError: runtime 'onnx' runs on the CPU only; use runtime 'torch' with device 'cuda'
    """
    if runtime not in (*RUNTIMES, "auto"):
        raise ValueError(f"runtime must be one of {['auto', *RUNTIMES]}, got {runtime!r}")
    if save_backbone:
        if runtime not in ("auto", "torch"):
            raise ValueError(f"save_backbone needs runtime 'torch' (the weights are saved as a PyTorch module), "
                             f"got runtime {runtime!r}")
        return "torch"
    if runtime == "auto":
        on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
        return "onnx-int8" if on_cpu and onnx_available() else "torch"
    if runtime != "torch":
        if device is not None and device != "cpu":
            raise ValueError(f"runtime {runtime!r} runs on the CPU only; use runtime 'torch' with device {device!r}")
        if not onnx_available():
            raise ValueError(f"runtime {runtime!r} needs onnxruntime and onnx (pip install 'mlsupcon[text]'), "
                             "or use runtime 'torch'")
    return runtime


def onnx_cache_dir() -> Path:
    """``$MLSUPCON_CACHE/onnx``, else ``$XDG_CACHE_HOME/mlsupcon/onnx`` (default ``~/.cache``)."""
    from .feature_cache import default_cache_dir

    return default_cache_dir().parent / "onnx"


def runtime_versions() -> dict[str, str]:
    """Versions that decide an exported graph and its numbers (part of every cache key)."""
    from importlib.metadata import version  # not importing them: onnx alone takes ~0.3 s

    return {"torch": torch.__version__, "onnx": version("onnx"), "onnxruntime": version("onnxruntime"),
            "opset": str(_OPSET)}


def onnx_path(fingerprint: dict[str, Any], runtime: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the export of the model identified by ``fingerprint`` for ``runtime`` is cached."""
    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    key = hashlib.sha256(json.dumps({"model": fingerprint, "runtime": runtime, **runtime_versions()},
                                    sort_keys=True, default=str).encode()).hexdigest()[:40]
    return folder / f"{key}-{runtime}.onnx"


class _LastHidden(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _export(model: nn.Module, path: Path) -> None:
    """The model's ``last_hidden_state`` as an fp32 ONNX graph with dynamic batch and length."""
    ids = torch.ones(2, 8, dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "hidden")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: the model is a plain encoder (no control flow that
        # depends on values) and it needs no onnxscript.
        torch.onnx.export(_LastHidden(model).eval(), (ids, torch.ones_like(ids)), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                          dynamic_axes=dynamic, opset_version=_OPSET, dynamo=False)


def _quantize(src: Path, dst: Path) -> None:
    """int8 weights (per channel) and dynamic 8-bit activations, except width-shrinking MatMuls."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    keep_fp32 = [n.name for n in graph.node if n.op_type == "MatMul"
                 and any(len(shapes.get(i, ())) == 2 and shapes[i][0] > shapes[i][1] for i in n.input)]
    logging.getLogger().disabled, was = True, logging.getLogger().disabled  # its "pre-process" advice
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=keep_fp32, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.getLogger().disabled = was


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxBackbone(nn.Module):
    """A Hugging Face encoder's ``last_hidden_state``, computed by ONNX Runtime (no parameters).

    Build it with :meth:`from_model`. Called like the model it replaces:
    ``backbone(input_ids=..., attention_mask=...)`` returns an object whose
    ``last_hidden_state`` is a float32 tensor ``[n, T, H]``. It has no gradients and no
    ``state_dict`` entries; pickling keeps the file path and reloads the session on first use.

    Args:
        path: The ``.onnx`` file.
        runtime: ``"onnx"`` or ``"onnx-int8"`` (informative).
    """

    def __init__(self, path: str | os.PathLike, runtime: str) -> None:
        super().__init__()
        self.path, self.runtime = str(path), runtime
        # As many threads as torch uses where the backbone was built (OMP_NUM_THREADS, torch.set_num_threads).
        self.threads = max(1, torch.get_num_threads())
        self.config = None  # set by from_model: the Hugging Face config of the exported model
        self._session: Any = None

    @classmethod
    def from_model(cls, model: nn.Module, runtime: str, fingerprint: dict[str, Any],
                   cache_dir: str | os.PathLike | None = None) -> OnnxBackbone:
        """The ONNX version of ``model`` (exported once, then read from the cache).

        Args:
            model: A Hugging Face encoder (``AutoModel``) whose output has ``last_hidden_state``.
            runtime: ``"onnx"`` or ``"onnx-int8"``.
            fingerprint: What identifies the model's weights
                (:func:`~mlsupcon.models.feature_cache.model_fingerprint` of its directory).
            cache_dir: Folder of the exported files (default :func:`onnx_cache_dir`).
        """
        if runtime not in RUNTIMES[1:]:
            raise ValueError(f"runtime must be 'onnx' or 'onnx-int8', got {runtime!r}")
        path = onnx_path(fingerprint, runtime, cache_dir)
        folder = path.parent
        with _LOCK:
            out = cls.cached(fingerprint, runtime, getattr(model, "config", None), cache_dir)
            if out is not None:
                return out
            out = cls(path, runtime)
            out.config = getattr(model, "config", None)
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
                fp32 = Path(tmp) / "model.onnx"
                _export(model, fp32)
                final = fp32
                if runtime == "onnx-int8":
                    final = Path(tmp) / "model-int8.onnx"
                    _quantize(fp32, final)
                os.replace(final, path)  # same folder: atomic, a killed export leaves no file under this name
            out._load()
        return out

    @classmethod
    def cached(cls, fingerprint: dict[str, Any], runtime: str, config: Any = None,
               cache_dir: str | os.PathLike | None = None) -> OnnxBackbone | None:
        """The cached export for ``fingerprint`` and ``runtime`` when there is one that ONNX Runtime
        loads, else None (a file it cannot load is logged and left for :meth:`from_model` to replace).
        Needs neither transformers nor the model's weights: this is what makes a later load fast.

        Args:
            config: What ``backbone.config`` should be (the model's ``config.json`` values).
        """
        path = onnx_path(fingerprint, runtime, cache_dir)
        if not path.is_file():
            return None
        out = cls(path, runtime)
        out.config = config
        try:
            out._load()
        except Exception as e:  # noqa: BLE001 - any unreadable file is rebuilt, not trusted
            logger.warning("ONNX model %s ignored and exported again: it cannot be loaded (%s)", path,
                           str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
            _SESSIONS.pop((str(path), out._session_threads), None)
            return None
        return out

    def get_input_embeddings(self) -> None:
        """No embedding table to inspect (the graph holds it)."""
        return None

    @property
    def _session_threads(self) -> int:
        # int8 runs one text per call, several calls at once (forward): one thread each is ~25 %
        # faster on 2 cores than two threads sharing each small product.
        return 1 if self.runtime == "onnx-int8" else self.threads

    def _load(self) -> Any:
        if self._session is None:
            key = (self.path, self._session_threads)
            sess = _SESSIONS.get(key)
            if sess is None:
                sess = _session(Path(self.path), self._session_threads)
                _SESSIONS[key] = sess
            self._session = sess
        return self._session

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None  # an InferenceSession does not pickle; reloaded from the path
        return state

    @contextlib.contextmanager
    def torch_threads_released(self):
        """Runs the block with torch on one thread: its idle OpenMP workers would otherwise spin on
        the cores ONNX Runtime computes on (measured ~10 % of the embedding time on 2 cores)."""
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> SimpleNamespace:
        sess = self._load()
        feed = {"input_ids": np.ascontiguousarray(input_ids.detach().cpu().numpy(), dtype=np.int64),
                "attention_mask": np.ascontiguousarray(attention_mask.detach().cpu().numpy(), dtype=np.int64)}
        if self.runtime != "onnx-int8":
            (hidden,) = sess.run(None, feed)
            return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))
        # int8: one text per run, cut to its own length. Dynamic quantisation scales activations
        # per tensor, so in a batch a text's embedding would depend on its neighbours and its
        # padding; alone it does not, and on a CPU it costs no speed (measured: 206 texts/s both).
        ids, mask = feed["input_ids"], feed["attention_mask"]
        n, t = ids.shape
        # Up to each row's last real token (rows are right-padded; a masked token inside stays masked).
        lengths = np.where(mask.any(1), t - np.argmax(mask[:, ::-1] != 0, axis=1), 1)

        def row(i: int) -> np.ndarray:
            k = int(lengths[i])
            return sess.run(None, {"input_ids": ids[i : i + 1, :k], "attention_mask": mask[i : i + 1, :k]})[0][0]

        if self.threads > 1 and n > 1:  # ONNX Runtime releases the GIL while it runs
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.threads, n)) as pool:
                states = list(pool.map(row, range(n)))
        else:
            states = [row(i) for i in range(n)]
        hidden = np.zeros((n, t, states[0].shape[-1]), dtype=np.float32)
        for i, h in enumerate(states):
            hidden[i, : len(h)] = h
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))

    def extra_repr(self) -> str:
        return f"runtime={self.runtime!r}, path={self.path!r}"
