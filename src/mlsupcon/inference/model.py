"""A trained model for users: ``mlsupcon.load(RUN)`` → labels, scores and embeddings of new inputs.

:class:`TrainedModel` wraps the exported :class:`~mlsupcon.models.Classifier` of a run
(``RUN/model/``) with its label names and its validation-tuned threshold. Inputs are what the
encoder's modality takes: a list of strings (text models), a ``[n, F]`` array of vectors
(vector models), or images (file paths, PIL images, ``HxWx3`` arrays, a ``[n, H, W, 3]``
array). Everything runs batched, in eval mode, without autograd, with a progress bar on
stderr when there are more than a few batches.

The scores are those ``mlsupcon evaluate`` scores (the same preprocessing and the same
forward pass: :func:`~mlsupcon.inference.scoring.score_inputs`);
:func:`~mlsupcon.inference.evaluate.evaluate_model` is that command's library entry point.

Example:
    >>> import mlsupcon
    >>> model = mlsupcon.load("runs/yeast-mulsupcon")            # doctest: +SKIP
    >>> model.labels[:3]                                         # doctest: +SKIP
    ['Class1', 'Class2', 'Class3']
    >>> model.predict(x_new)                                     # doctest: +SKIP
    [['Class1', 'Class12'], ['Class3'], ...]
    >>> model.predict_proba(x_new).shape, model.embed(x_new).shape   # doctest: +SKIP
    ((917, 14), (917, 128))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from mlsupcon.inference.scoring import PROGRESS_MIN_BATCHES, score_inputs
from mlsupcon.inference.storage import load_classifier
from mlsupcon.models import Classifier
from mlsupcon.runs.folder import model_folder

__all__ = ["TrainedModel", "load", "labels_from_scores", "model_folder", "PROGRESS_MIN_BATCHES"]


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedModel:
    """Loads a trained model: a run folder (``mlsupcon train --output RUN``) or its ``model/`` folder.

    Args:
        path: the run folder or its ``model/`` folder.
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"`` …).

    Raises:
        ValueError: one line naming the file, for a missing folder, an unfinished run, or a
            damaged export.
    """
    folder = model_folder(path)
    classifier, meta = load_classifier(folder)
    missing = [k for k in ("label_names", "threshold") if k not in meta]
    if missing:
        raise ValueError(f"model: {folder / 'model.json'} has no {missing[0]!r} (not a run's export); "
                         "re-export it by rerunning the training run")
    return TrainedModel(classifier, meta, device=device, path=folder)


def labels_from_scores(scores: np.ndarray, label_names: Sequence[str], threshold: Any = None,
                       top_k: int | None = None) -> list[list[str]]:
    """Label lists from scores ``[n, C]``, highest score first.

    A label is predicted iff ``score >= threshold`` (the rule of every metric; ``threshold`` is
    one number or one per label); with ``top_k`` the ``top_k`` highest-scoring labels are kept
    (those above the threshold among them when both are given).

    Example:
        >>> s = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2]])
        >>> labels_from_scores(s, ["a", "b", "c"], threshold=0.5)
        [['a', 'c'], []]
        >>> labels_from_scores(s, ["a", "b", "c"], threshold=[0.5, 0.25, 0.7])
        [['a'], ['b']]
        >>> labels_from_scores(s, ["a", "b", "c"], top_k=1)
        [['a'], ['b']]
    """
    scores = np.asarray(scores)
    if threshold is None and top_k is None:
        raise ValueError("labels_from_scores: give threshold, top_k or both")
    if threshold is not None:
        threshold = _check_threshold(threshold, scores.shape[1] if scores.ndim == 2 else len(label_names))
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k: expected an integer >= 1, got {top_k!r}")
    # Stable sort on -score: ties keep the label order.
    order = np.argsort(-scores, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, : int(top_k)]
    out = []
    for row, idx in zip(scores, order):
        keep = idx if threshold is None else idx[row[idx] >= (threshold if threshold.ndim == 0 else threshold[idx])]
        out.append([label_names[j] for j in keep])
    return out


def _check_threshold(threshold: Any, num_labels: int) -> np.ndarray:
    """One threshold (a 0-d array) or one per label (``[C]``), each a number in [0, 1]."""
    expected = f"threshold: expected a number in [0, 1] or {num_labels} of them (one per label), got"
    try:
        t = np.asarray(threshold, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{expected} {threshold!r}") from None
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != num_labels):
        raise ValueError(f"{expected} shape {t.shape}")
    if not ((t >= 0.0) & (t <= 1.0)).all():
        raise ValueError(f"{expected} {threshold!r}" if t.ndim == 0 else f"{expected} values outside [0, 1]")
    return t


class TrainedModel:
    """A run's classifier with its labels and threshold: predictions and embeddings of raw inputs.

    Args:
        classifier: the exported :class:`~mlsupcon.models.Classifier`.
        meta: its ``model.json`` (``label_names``, ``threshold``, ``dataset``, …).
        device: where it runs.
        path: the model folder it came from (for messages).

    Attributes:
        labels: the label names, in the order of the score columns.
        threshold: the global decision threshold tuned on the run's validation split.
        thresholds: the decision rule ``predict`` applies, one threshold per label ``float64 [C]``:
            the per-label thresholds of a run trained with ``threshold: tune-per-label``, else
            ``threshold`` for every label.
        modality: ``"text"``, ``"vector"`` or ``"image"`` (what the inputs must be).
        classifier: the underlying ``nn.Module`` (eval mode).
        meta: the whole ``model.json``.
    """

    def __init__(self, classifier: Classifier, meta: Mapping[str, Any], device: str | torch.device = "cpu",
                 path: str | os.PathLike | None = None) -> None:
        self.classifier = classifier.eval()
        self.meta = dict(meta)
        self.labels: list[str] = [str(lab) for lab in meta["label_names"]]
        self.threshold = float(meta["threshold"])
        per_label = meta.get("thresholds")
        self.thresholds = (np.full(len(self.labels), self.threshold) if per_label is None
                           else np.asarray(per_label, dtype=np.float64))
        self.path = Path(path) if path is not None else None
        self.device = torch.device(device)
        self.classifier.to(self.device)
        self.modality: str = getattr(classifier.encoder, "modality", "")

    # ------------------------------------------------------------------ description
    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def input_dim(self) -> int | None:
        """Width of the vectors a vector model takes (None for other modalities)."""
        return getattr(self.classifier.encoder, "in_dim", None) if self.modality == "vector" else None

    def __repr__(self) -> str:
        enc = getattr(self.classifier.encoder, "name", type(self.classifier.encoder).__name__)
        return (f"TrainedModel({self.modality} encoder {enc!r}, head {self.classifier.head_kind!r}, "
                f"{self.num_labels} labels, threshold {self.threshold:.3f}, method {self.meta.get('method')!r})")

    # ------------------------------------------------------------------ public API
    def predict_proba(self, inputs: Any, batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Scores (sigmoid of the logits) ``float32 [n, C]``, columns in the order of :attr:`labels`."""
        n, get = self._source(inputs)
        with self.scoring():
            return self._run(n, get, batch_size, progress, lambda b: torch.sigmoid(self.classifier.logits(b)),
                             self.num_labels, "scoring")

    @contextmanager
    def scoring(self) -> Iterator[None]:
        """While scoring, the branches of a fusion encoder that the blend gives weight 0 are not run
        (the scores are bit-identical): a run whose TF-IDF blend won all the weight does not run
        MiniLM at prediction. Embeddings still run every branch."""
        from mlsupcon.models.fusion import branches_unused_by

        unused = branches_unused_by(self.classifier.head, self.classifier.encoder)
        if not unused:
            yield
            return
        with self.classifier.encoder.skipping(unused):
            yield

    def predict(self, inputs: Any, threshold: float | None = None, top_k: int | None = None,
                batch_size: int = 64, progress: bool = True) -> list[list[str]]:
        """Predicted label names of each input, highest score first.

        Args:
            inputs: see the class docstring.
            threshold: predict labels scoring ``>= threshold`` (a number, or one per label;
                default: the run's tuned rule, :attr:`thresholds`, unless only ``top_k`` is given).
            top_k: the ``top_k`` best labels of each input (with ``threshold``: those of them
                scoring at least ``threshold``).
            batch_size: inputs per forward pass.
            progress: show a progress bar for long inputs.
        """
        if threshold is None and top_k is None:
            threshold = self.thresholds
        scores = self.predict_proba(inputs, batch_size=batch_size, progress=progress)
        return labels_from_scores(scores, self.labels, threshold, top_k)

    def embed(self, inputs: Any, space: str = "projection", batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Embeddings ``float32 [n, D]``.

        Args:
            space: ``"projection"``: the contrastive space (the projection head's output when
                the run had one, else the encoder's); ``"encoder"``: the pooled encoder output
                the classifier reads.
        """
        if space not in ("projection", "encoder"):
            raise ValueError(f"space: expected 'projection' or 'encoder', got {space!r}")
        part = self.classifier.encoder.embedding_slice  # a fusion's contrastive branch
        width = int(self.classifier.encoder.output_dim) if part is None else part.stop - part.start
        if space == "projection" and self.classifier.projection is not None:
            dim = int(self.classifier.projection(torch.zeros(1, width, device=self.device)).shape[1])
        else:
            dim = width
        n, get = self._source(inputs)
        return self._run(n, get, batch_size, progress, lambda b: self.classifier.embed(b, space), dim, "embedding")

    # ------------------------------------------------------------------ batches
    def _run(self, n: int, get: Callable[[int, int], Any], batch_size: int, progress: bool,
             fn: Callable[[dict], torch.Tensor], width: int, what: str) -> np.ndarray:
        return score_inputs(self.classifier, n, get, batch_size, fn, width, progress, what, self.device)

    def _source(self, inputs: Any) -> tuple[int, Callable[[int, int], Any]]:
        """Checks ``inputs`` against the modality; returns their count and a slice getter."""
        if self.modality == "text":
            return self._texts(inputs)
        if self.modality == "vector":
            return self._vectors(inputs)
        if self.modality == "image":
            return self._images(inputs)
        raise ValueError(f"model: unknown input modality {self.modality!r} of encoder "
                         f"{type(self.classifier.encoder).__name__}")

    def _texts(self, inputs: Any):
        if isinstance(inputs, str):
            inputs = [inputs]
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and not (
                isinstance(inputs, np.ndarray) and inputs.dtype.kind in "UO"):
            raise ValueError(f"inputs: this is a text model; it takes a list of strings, got a "
                             f"{inputs.dtype} array of shape {tuple(inputs.shape)}")
        if not isinstance(inputs, (Sequence, np.ndarray)) or isinstance(inputs, (bytes, Mapping)):
            raise ValueError(f"inputs: this is a text model; it takes a list of strings, got {type(inputs).__name__}")
        texts = list(inputs)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"inputs: this is a text model; item {i} is {type(t).__name__}, expected a string")
        return len(texts), lambda a, b: texts[a:b]

    def _vectors(self, inputs: Any):
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
            raise ValueError(f"inputs: this is a vector model; it takes a numeric array [n, {self.input_dim}], "
                             "got strings")
        try:
            x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
            x = x.astype(np.float32, copy=False)
        except (TypeError, ValueError):
            raise ValueError(f"inputs: this is a vector model; it takes a numeric array [n, {self.input_dim}], "
                             f"got {type(inputs).__name__} that is not one") from None
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"inputs: expected vectors [n, {self.input_dim}], got an array of shape {tuple(x.shape)}")
        if self.input_dim is not None and x.shape[1] != self.input_dim:
            raise ValueError(f"inputs: vectors of width {x.shape[1]}; this model takes width {self.input_dim}")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise ValueError(f"inputs: row {int(np.flatnonzero(bad)[0])} has NaN or infinite values")
        return len(x), lambda a, b: x[a:b]

    def _image_size(self) -> int | None:
        """Side the training data resized image files to (the dataset's ``image_size``), so that a
        file goes through the same resizing as during training."""
        opts = self.meta.get("dataset_options") or {}
        if "image_size" in opts:
            return opts["image_size"]
        spec = str(self.meta.get("dataset") or "")
        try:
            from mlsupcon.data.registry import dataset_option_defaults

            defaults = dataset_option_defaults(spec.partition(":")[0])
            if "image_size" in defaults:
                return defaults["image_size"]
        except (ValueError, ImportError):
            pass
        return getattr(self.classifier.encoder, "image_size", None)

    def _images(self, inputs: Any):
        from mlsupcon.data import ImageFiles

        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        elif isinstance(inputs, (np.ndarray, torch.Tensor)):
            if inputs.ndim == 2 or (inputs.ndim == 3 and inputs.shape[-1] in (1, 3, 4)):
                inputs = [inputs]  # one image (HxW, HxWxC); [n, H, W] is n greyscale ones
            elif inputs.ndim not in (3, 4):
                raise ValueError(f"inputs: this is an image model; got an array of shape {tuple(inputs.shape)}")
        elif isinstance(inputs, Mapping) or not hasattr(inputs, "__len__") or not hasattr(inputs, "__getitem__"):
            raise ValueError("inputs: this is an image model; it takes image paths, PIL images or arrays, "
                             f"got {type(inputs).__name__}")
        n = len(inputs)
        size = self._image_size()
        items = inputs if isinstance(inputs, (np.ndarray, torch.Tensor)) else None
        if items is None:
            seq = inputs if isinstance(inputs, Sequence) else [inputs[i] for i in range(n)]
            for i, item in enumerate(seq):
                if isinstance(item, (str, os.PathLike)):
                    if not os.path.isfile(item):
                        raise ValueError(f"inputs: image file not found: {item}")
                elif isinstance(item, str) or not (hasattr(item, "shape") or hasattr(item, "convert")):
                    raise ValueError(f"inputs: this is an image model; item {i} is {type(item).__name__}, "
                                     "expected a path, a PIL image or an array")

        def one(item: Any) -> Any:
            if isinstance(item, (str, os.PathLike)):  # read as the training data was
                try:
                    return ImageFiles([os.fspath(item)], size)[0]
                except OSError as e:
                    raise ValueError(f"inputs: cannot read image {item}: {e}") from None
            if hasattr(item, "convert"):  # a PIL image: as if read from a file
                from PIL import Image

                im = item.convert("RGB")
                if size is not None:
                    im = im.resize((size, size), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
            return item

        def get(a: int, b: int) -> Any:
            if items is not None:
                return items[a:b]
            return [one(seq[i]) for i in range(a, b)]

        return n, get
