"""The one scoring loop: a model's forward pass over many inputs, batch by batch, in eval mode and
without autograd, the outputs gathered on the CPU as ``float32``.

:func:`forward_batches` is the loop; the rest says what it runs over:

* :func:`score_inputs`: raw inputs of a :class:`~mlsupcon.inference.model.TrainedModel` (``predict``,
  ``embed``, ``mlsupcon evaluate``), preprocessed slice by slice, with a progress bar;
* :func:`predict_scores` / :func:`embed_loader`: the batches of a data loader (``(inputs, labels,
  indices)``), as training scores its validation and test splits.

Example:
    >>> import numpy as np, torch
    >>> from mlsupcon.models import Classifier, build_encoder, build_head
    >>> enc = build_encoder("mlp", in_dim=4, hidden_dims=(8,))
    >>> model = Classifier(enc, build_head("linear", enc, 3)).eval()
    >>> x = np.ones((5, 4), dtype=np.float32)
    >>> scores = score_inputs(model, len(x), lambda a, b: x[a:b], batch_size=2,
    ...                       forward=lambda b: torch.sigmoid(model.logits(b)), width=3, progress=False)
    >>> scores.shape, scores.dtype
    ((5, 3), dtype('float32'))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

from mlsupcon.progress import progress_bar

__all__ = ["PROGRESS_MIN_BATCHES", "to_device", "split_inputs", "forward_batches", "quiet_frozen_encoders",
           "score_inputs", "predict_scores", "embed_loader"]

#: More batches than this show a progress bar (``progress=True``).
PROGRESS_MIN_BATCHES = 4

Tag = TypeVar("Tag")
Output = TypeVar("Output")


def to_device(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    """A batch's tensors moved to ``device`` (other values as they are)."""
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def split_inputs(split: Any, idx: np.ndarray) -> Any:
    """The raw inputs of examples ``idx`` of a :class:`~mlsupcon.data.Split`: rows of an array, or a
    list of its texts / images."""
    if isinstance(split.inputs, np.ndarray):
        return split.inputs[idx]
    return [split.inputs[int(i)] for i in idx]


@torch.no_grad()
def forward_batches(batches: Iterable[tuple[Mapping[str, Any], Tag]], forward: Callable[[dict[str, Any]], Output],
                    device: torch.device | str, consume: Callable[[Output, Tag], None]) -> None:
    """``consume(forward(batch on device), tag)`` for each ``(batch, tag)`` of ``batches``.

    Everything runs without autograd, the production of the batches (preprocessing) included.
    """
    for batch, tag in batches:
        consume(forward(to_device(batch, device)), tag)


@contextmanager
def quiet_frozen_encoders(model: torch.nn.Module, quiet: bool = True) -> Iterator[None]:
    """Frozen encoders show their own embedding bar: silenced while the caller's bar runs."""
    saved = []
    if quiet:
        for m in model.modules():
            if getattr(m, "name", "") == "frozen" and isinstance(getattr(m, "progress", None), bool):
                saved.append((m, m.progress))
                m.progress = False
    try:
        yield
    finally:
        for m, value in saved:
            m.progress = value


def score_inputs(classifier: torch.nn.Module, n: int, get: Callable[[int, int], Any], batch_size: int,
                 forward: Callable[[dict[str, Any]], torch.Tensor], width: int, progress: bool = True,
                 what: str = "scoring", device: torch.device | str | None = None) -> np.ndarray:
    """``forward`` over ``n`` raw inputs, ``batch_size`` at a time: ``float32 [n, width]``.

    Args:
        classifier: the model whose ``preprocess`` turns ``get(start, stop)`` (the raw inputs
            ``start:stop``) into a batch; put in eval mode.
        forward: a batch (on ``device``) → ``[b, width]``.
        progress: show a progress bar when there are more than :data:`PROGRESS_MIN_BATCHES` batches.
        what: the progress bar's label.
        device: where the batches go (default: the classifier's first parameter's device, else the CPU).

    Raises:
        ValueError: ``batch_size`` is not an integer >= 1.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    if device is None:
        device = next((p.device for p in classifier.parameters()), torch.device("cpu"))
    classifier.eval()
    out = np.zeros((n, width), dtype=np.float32)
    starts = range(0, n, int(batch_size))
    bar = progress_bar(n, what, "inputs", enabled=progress and len(starts) > PROGRESS_MIN_BATCHES)

    def slices():
        for start in starts:
            stop = min(start + int(batch_size), n)
            yield classifier.preprocess(get(start, stop)), (start, stop)

    def keep(result: torch.Tensor, where: tuple[int, int]) -> None:
        out[where[0]:where[1]] = result.float().cpu().numpy()
        bar.update(where[1] - where[0])

    try:
        # Our report covers the encoders' own (a frozen encoder embedding new texts): one report.
        with quiet_frozen_encoders(classifier):
            forward_batches(slices(), forward, device, keep)
    finally:
        bar.close()
    return out


def _loader_batches(loader: Iterable) -> Iterator[tuple[Mapping[str, Any], torch.Tensor]]:
    for inputs, y, _ in loader:
        yield inputs, y


def predict_scores(model: torch.nn.Module, loader: Iterable, want_embeddings: bool = False, device=None):
    """Sigmoid scores and labels (and, optionally, pooled encoder embeddings: the contrastive
    branch of a fusion encoder) of every batch of ``loader`` (``(inputs, labels, indices)``).

    Returns:
        ``(scores, labels)`` as numpy arrays, ``(scores, labels, embeddings)`` with ``want_embeddings``.
    """
    model.eval()
    device = device or next((p.device for p in model.head.parameters()), model.device)
    scores, labels, embs = [], [], []

    def forward(inputs: dict[str, Any]):
        h = model.encoder(inputs) if want_embeddings else None
        return torch.sigmoid(model.logits(inputs, pooled=h)).float().cpu(), h

    def keep(result, y: torch.Tensor) -> None:
        s, h = result
        scores.append(s)
        if want_embeddings:
            # A fusion's contrastive branch; getattr: a training-time encoder may be a plain module
            # (cached features) rather than an Encoder.
            part = getattr(model.encoder, "embedding_slice", None)
            embs.append((h if part is None else h[:, part]).float().cpu())
        labels.append(y)

    forward_batches(_loader_batches(loader), forward, device, keep)
    out = (torch.cat(scores).numpy(), torch.cat(labels).numpy())
    return out + ((torch.cat(embs).numpy() if embs else None),) if want_embeddings else out


def embed_loader(encoder: torch.nn.Module, loader: Iterable, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled encoder outputs (eval mode) and labels of every batch of ``loader``, as tensors."""
    encoder.eval()
    device = device or encoder.device
    feats, labels = [], []

    def keep(h: torch.Tensor, y: torch.Tensor) -> None:
        feats.append(h.float().cpu())
        labels.append(y)

    forward_batches(_loader_batches(loader), encoder, device, keep)
    return torch.cat(feats), torch.cat(labels)
