"""A :class:`~mlsupcon.models.Classifier` on disk (a run's ``model/`` folder): ``weights.safetensors`` + ``model.json``.

``model.json`` says how to rebuild the model (:meth:`Classifier.config`), plus whatever the
caller adds (a run adds ``label_names``, ``threshold``, ``dataset``, ``dataset_options`` and
``method``), and the sha256 of the weights file, written second: a ``model.json`` always
describes the weights next to it, and :func:`load_classifier` notices a damaged, swapped or
tampered weights file. Last comes ``manifest.json``: the sha256 of every file of the folder
(``model.json`` and ``encoder/`` included), checked on load, so that an edited label list or a
replaced encoder file is an error rather than wrong predictions (folders written before it have
no manifest and still load). Nothing is unpickled: weights are accepted only as safetensors
(a ``.bin`` / ``.pt`` / ``.pkl`` file in the folder is refused), the rest is JSON.

Formats: ``mlsupcon-model/2`` (written now) stores the head's ``kind`` and options, the
projection head and, for a run trained with a prototype loss, its label prototypes (weights
``prototypes.weight``, ``model.json`` key ``prototypes``; older folders have neither);
``mlsupcon-model/1`` (runs before it: encoder + head only, a KMCL head stored with kind
``linear`` and class ``KMCLClassifier``) still loads.

Example:
    >>> import tempfile, numpy as np, torch
    >>> from mlsupcon.models import Classifier, build_encoder, build_head
    >>> enc = build_encoder("mlp", in_dim=4, hidden_dims=(8,))
    >>> model = Classifier(enc, build_head("linear", enc, 3))
    >>> folder = tempfile.mkdtemp()
    >>> save_classifier(model, folder, {"threshold": 0.5})
    >>> again, meta = load_classifier(folder)
    >>> batch = model.preprocess(np.ones((2, 4)))
    >>> meta["format"], meta["threshold"], bool(torch.equal(again.logits(batch), model.logits(batch)))
    ('mlsupcon-model/2', 0.5, True)
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Mapping

from mlsupcon.models import Classifier
from mlsupcon.models.portable import resolve_encoder_assets, save_encoder_assets
from mlsupcon.runs.folder import CHECKPOINTS_DIR, CONFIG_FILE
from mlsupcon.runs.io import (
    MANIFEST,
    check_manifest,
    file_sha256,
    folder_files,
    load_weights,
    read_manifest,
    save_weights,
    write_json,
    write_manifest,
)

__all__ = ["FORMAT", "READABLE_FORMATS", "HF_EXPORT_FORMAT", "WEIGHTS", "META", "save_classifier", "load_classifier",
           "check_weight_files", "PICKLE_SUFFIXES"]

FORMAT = "mlsupcon-model/2"
READABLE_FORMATS = ("mlsupcon-model/1", FORMAT)
WEIGHTS, META = "weights.safetensors", "model.json"
#: Weight files that are (or may be) pickles: never loaded from a model folder, whatever their name says.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".h5", ".msgpack")
#: Format of the ``mlsupcon.json`` of a Hugging Face export (:mod:`mlsupcon.inference.export`).
HF_EXPORT_FORMAT = "mlsupcon-hf/1"
_RERUN = ("re-export it by rerunning the training run (`mlsupcon train --output RUN --resume` trains nothing more "
          "when its checkpoints are there)")


def _parts(model: Classifier) -> dict[str, Any]:
    parts = {"encoder": model.encoder, "head": model.head}
    if model.projection is not None:
        parts["projection"] = model.projection
    if getattr(model, "prototypes", None) is not None:  # a prototype loss's label prototypes
        parts["prototypes"] = model.prototypes
    return parts


def save_classifier(model: Classifier, folder: str | Path, extra_meta: Mapping[str, Any] | None = None,
                    backbone: str = "auto", manifest: Mapping[str, Any] | None = None) -> None:
    """Writes ``folder/weights.safetensors``, ``folder/encoder/``, ``folder/model.json`` and
    ``folder/manifest.json`` (atomically, in that order).

    ``encoder/`` holds what the encoder needs besides its weights (a transformer's tokenizer and
    architecture, …: :mod:`mlsupcon.models.portable`), so the folder loads without the model
    folders the run was trained from.

    Args:
        model: the classifier.
        folder: created if needed.
        extra_meta: JSON-able keys stored in ``model.json`` next to the model's config.
        backbone: whether a ``frozen`` encoder's transformer is copied too (``"auto"``: unless
            it is the bundled MiniLM; ``"always"``; ``"never"``).
        manifest: more keys of ``manifest.json`` (an export records ``{"export": "mlsupcon"}``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, **model.config(), **dict(extra_meta or {})}
    save_weights(folder / WEIGHTS, _parts(model))
    assets = save_encoder_assets(model.encoder, folder, backbone)
    if assets is not None:
        meta["encoder_assets"] = assets
    weights_sha = file_sha256(folder / WEIGHTS)
    meta["weights_sha256"] = weights_sha
    meta["manifest"] = MANIFEST
    write_json(folder / META, meta)
    write_manifest(folder, dict(manifest or {}), known={WEIGHTS: weights_sha})


def _config_v1(meta: dict[str, Any]) -> dict[str, Any]:
    """The :meth:`Classifier.config` of a ``mlsupcon-model/1`` export (its head kind by class)."""
    head = dict(meta["head"])
    kinds = {"LinearClassifier": "linear", "LabelWiseAttention": "attention", "KMCLClassifier": "kmcl"}
    if head.get("class") not in kinds:
        raise ValueError(f"unknown head class {head.get('class')!r}")
    head["kind"] = kinds[head["class"]]
    return {"encoder": meta["encoder"], "head": head, "projection": None}


def load_classifier(folder: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuilds the classifier saved in ``folder`` (``mlsupcon-model/1`` or ``/2``); no pickle.

    Returns:
        ``(classifier, meta)``: the model in eval mode on the CPU and the whole ``model.json``.

    Raises:
        ValueError: one line naming the file, for a missing, truncated, edited or foreign
            ``model.json`` and for weights that do not match it.
    """
    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        _refuse_hf_export(folder)
        hint = ""
        runs = [d for d in (folder, folder.parent) if (d / CONFIG_FILE).is_file() or (d / CHECKPOINTS_DIR).is_dir()]
        if runs:  # a run folder without its export: the run stopped before its end
            hint = (f"; the run has not finished (interrupted or failed): continue it with "
                    f"`mlsupcon train --output {runs[0]} --resume`")
        raise ValueError(f"model: {meta_path} not found (expected a run folder's model/ export){hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"model: {meta_path} is not valid JSON ({exc}); the file is truncated or was edited: "
                         "re-export it by rerunning the training run") from None
    if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"model: {meta_path} has format {got!r}, expected one of {list(READABLE_FORMATS)}")
    manifest = read_manifest(folder)
    fix = _RERUN
    if manifest is not None and manifest.get("export"):
        fix = (f"export it again (`mlsupcon export RUN --format {manifest['export']} --output {folder} --force`)")
    hashes: dict[str, str] = {}
    if manifest is not None:  # every file but model.json now; model.json once it is known to describe a model
        hashes = check_manifest(folder, manifest, fix, skip=(META,))
    elif meta.get("manifest"):
        raise ValueError(f"model: {folder / MANIFEST} is missing (the sha256 of every file of the folder; "
                         f"{meta_path} says it has one); copy the whole folder, or {fix}")
    check_weight_files(folder, fix)
    source, assets = meta, meta.get("encoder_assets")
    if assets is not None and isinstance(meta.get("encoder"), dict):  # build from the export's own files
        source = {**meta, "encoder": resolve_encoder_assets(meta["encoder"], assets, folder)}
    try:
        config = _config_v1(source) if meta["format"] == "mlsupcon-model/1" else source
        config = {**config, "encoder": _runtime_of_older_exports(config["encoder"])}
        with _no_weight_init():  # every parameter is then read from weights.safetensors (strict)
            model = Classifier.from_config(config)
        if "label_names" in meta and not isinstance(meta["label_names"], list):
            raise ValueError("label_names must be a list")
        if "threshold" in meta and not 0 <= float(meta["threshold"]) <= 1:
            raise ValueError("threshold must be a number in [0, 1]")
        if "thresholds" in meta and not (isinstance(meta["thresholds"], list)
                                         and len(meta["thresholds"]) == len(meta.get("label_names", ()))
                                         and all(0 <= float(t) <= 1 for t in meta["thresholds"])):
            raise ValueError("thresholds must be one number in [0, 1] per label")
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing key {exc.args[0]!r}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:200]
        raise ValueError(f"model: {meta_path} does not describe a model ({what}); the file was edited or "
                         "damaged: re-export it by rerunning the training run") from None
    if manifest is not None:
        check_manifest(folder, manifest, fix, only=(META,))
    weights = folder / WEIGHTS
    expected = meta.get("weights_sha256")
    if expected is not None and weights.is_file() and (hashes.get(WEIGHTS) or file_sha256(weights)) != expected:
        raise ValueError(f"weights: {weights} does not match the sha256 recorded in {meta_path} (damaged, "
                         "replaced or tampered with); re-export it by rerunning the training run")
    load_weights(weights, _parts(model))
    return model.eval(), meta


def _runtime_of_older_exports(encoder: Any) -> Any:
    """A ``frozen`` encoder saved before it had a ``runtime`` embedded with PyTorch: say so, or
    it would be rebuilt with today's default (int8 ONNX) and see slightly other features."""
    if not isinstance(encoder, dict):
        return encoder
    out = dict(encoder)
    if out.get("name") == "frozen":
        out.setdefault("runtime", "torch")
    if isinstance(out.get("encoders"), list):  # fusion: its branches
        out["encoders"] = [_runtime_of_older_exports(e) for e in out["encoders"]]
    return out


@contextlib.contextmanager
def _no_weight_init():
    """``torch.nn.init``'s initialisers leave tensors as they are while a model is rebuilt only
    to receive saved weights: drawing random weights that are overwritten costs time (a large
    TF-IDF layer: a third of a load) and nothing else reads them."""
    import torch

    names = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
             "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")
    saved = {n: getattr(torch.nn.init, n) for n in names if hasattr(torch.nn.init, n)}
    try:
        for n in saved:
            setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def check_weight_files(folder: str | Path, fix: str = _RERUN) -> None:
    """Refuses, in one line naming the file, weights in ``folder`` that mlsupcon must not load:
    a pickle format (:data:`PICKLE_SUFFIXES`: unpickling can run code) or a ``.safetensors`` file
    whose header does not describe the file (truncated, damaged, not safetensors).

    Only headers are read (cheap); ``weights.safetensors`` is checked where it is loaded.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    for rel in folder_files(folder):
        path = folder / rel
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise ValueError(f"model: {path} is not a safetensors file: mlsupcon loads weights only from *.safetensors "
                             f"(loading a pickle could run code); delete it, or {fix}")
        if path.suffix == ".safetensors" and rel != WEIGHTS:
            try:
                with safe_open(str(path), framework="pt"):
                    pass
            except (SafetensorError, OSError, ValueError) as exc:
                raise ValueError(f"model: {path} is damaged ({' '.join(str(exc).split())[:160]}); {fix}") from None


def _refuse_hf_export(folder: Path) -> None:
    """A Hugging Face export (``mlsupcon.json``) is not an mlsupcon model folder: says how to load it."""
    info = folder / "mlsupcon.json"
    if not info.is_file():
        return
    try:
        fmt = json.loads(info.read_text(encoding="utf-8")).get("format")
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, AttributeError):
        return
    if fmt == HF_EXPORT_FORMAT:
        raise ValueError(f"model: {folder} is a Hugging Face export (mlsupcon export --format hf), which mlsupcon.load "
                         "does not read: load it with transformers (AutoModel.from_pretrained and "
                         "AutoTokenizer.from_pretrained on the folder, then the heads in mlsupcon_head.safetensors and "
                         "the labels, threshold and pooling in mlsupcon.json), or give mlsupcon.load the run folder or "
                         "an export made with --format mlsupcon")
