"""The :class:`Encoder` interface every backbone implements, and small shared helpers.

An encoder turns raw inputs into a dict of CPU tensors (:meth:`Encoder.preprocess`, run in
data-loader workers) and that dict into pooled features (:meth:`Encoder.forward`). Keeping
preprocessing on the encoder means the data layer never needs to know which tokenizer or
image size a model wants, and augmentations (token dropout, image crops) act on the
preprocessed tensors.

Example:
    >>> import numpy as np
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("mlp", in_dim=4, hidden_dims=(8,))
    >>> enc(enc.preprocess(np.ones((2, 4)))).shape
    torch.Size([2, 8])
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

__all__ = ["Encoder", "pad_sequences", "pad_text_batches"]


class Encoder(nn.Module):
    """Base class: a backbone with its own preprocessing and a rebuildable config.

    Attributes:
        name: Registry name used by :func:`mlsupcon.models.build_encoder`.
        modality: ``"vector"``, ``"text"`` or ``"image"``.
        output_dim: Size of the pooled features returned by :meth:`forward`.
        input_keys: Keys of the batch dict :meth:`preprocess` produces.
        embedding_slice: Columns of :meth:`forward`'s output that are the contrastive embedding;
            None (default): all of them. A fusion encoder whose contrastive branch is one of
            several overrides it.
        tokenizer_info: The tokenizer's special ids (``pad_token_id``, ``mask_token_id``, …) of an
            encoder that reads token ids (cnn, transformer), for token views; None otherwise.
        prepare: Optional hook ``prepare(split_inputs) -> report``, run once before the encoder
            is used (e.g. a frozen encoder embeds and caches every text); None: nothing to do.
        make_view_fn: Optional ``make_view_fn(**options) -> (batch -> batch)`` of an encoder with
            its own batch format (sparse, frozen, fusion); None: the views of its modality.
    """

    name: str = ""
    modality: str = ""
    input_keys: tuple[str, ...] = ()
    embedding_slice: slice | None = None
    tokenizer_info: dict[str, Any] | None = None
    # Optional hooks, declared so that callers test ``enc.prepare is not None`` (subclasses define methods).
    prepare: ClassVar[Callable[..., dict[str, Any]] | None] = None
    make_view_fn: ClassVar[Callable[..., Callable[..., dict[str, torch.Tensor]]] | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.output_dim: int = 0

    # -------------------------------------------------------------- to implement
    def preprocess(self, raw: Any) -> dict[str, torch.Tensor]:
        """Raw inputs -> batch dict of CPU tensors (see the subclass for formats)."""
        raise NotImplementedError

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        """Batch dict -> pooled features ``[n, output_dim]``."""
        raise NotImplementedError

    def encode_sequence(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-level states ``[n, T, H]`` and mask ``[n, T]`` (text encoders only).

        Raises:
            NotImplementedError: For encoders without a token sequence (vector, image).
        """
        raise NotImplementedError(f"encoder {self.name!r} ({self.modality}) has no token sequence")

    def config(self) -> dict[str, Any]:
        """JSON-able options such that ``build_encoder(**enc.config())`` rebuilds the module."""
        raise NotImplementedError

    # -------------------------------------------------------------- shared
    @property
    def sequence_dim(self) -> int | None:
        """Hidden size of :meth:`encode_sequence` states (None for non-text encoders)."""
        return None

    @property
    def device(self) -> torch.device:
        """Device of the encoder's parameters (CPU when it has none)."""
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def _batch_to_device(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Check the keys and move tensors to the encoder's device (no-op when already there)."""
        missing = [k for k in self.input_keys if k not in batch]
        if missing:
            raise KeyError(
                f"{type(self).__name__} expects batch keys {list(self.input_keys)}, missing {missing}"
            )
        dev = self.device
        return {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    def collate(self, batches: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Concatenate preprocessed batches (e.g. single documents) into one batch.

        Text batches are right-padded to a common length first (see the text encoders).
        """
        if not batches:
            raise ValueError("collate: batches must not be empty")
        return {k: torch.cat([b[k] for b in batches], dim=0) for k in self.input_keys}

    @torch.no_grad()
    def encode(self, raw: Any, batch_size: int = 64) -> torch.Tensor:
        """Convenience inference: preprocess + forward in eval mode, in chunks, on CPU output.

        Args:
            raw: Raw inputs as accepted by :meth:`preprocess`.
            batch_size: Inputs per forward pass.

        Returns:
            Pooled features ``[n, output_dim]`` (float32, CPU).
        """
        was_training = self.training
        self.eval()
        try:
            n = len(raw)
            outs = [
                self(self.preprocess(raw[i : i + batch_size])).float().cpu()
                for i in range(0, n, batch_size)
            ]
        finally:
            self.train(was_training)
        if not outs:
            return torch.zeros(0, self.output_dim)
        return torch.cat(outs, dim=0)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, modality={self.modality!r}, output_dim={self.output_dim}"


def pad_sequences(seqs: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists to ``length`` -> (ids int64 ``[n, length]``, mask int64 ``[n, length]``).

    Example:
        >>> ids, mask = pad_sequences([[5, 6], [7]], 3, pad_id=0)
        >>> ids.tolist(), mask.tolist()
        ([[5, 6, 0], [7, 0, 0]], [[1, 1, 0], [1, 0, 0]])
    """
    n = len(seqs)
    ids = torch.full((n, length), int(pad_id), dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    for i, s in enumerate(seqs):
        k = min(len(s), length)
        if k:
            ids[i, :k] = torch.as_tensor(list(s[:k]), dtype=torch.long)
            mask[i, :k] = 1
    return ids, mask


def pad_text_batches(
    batches: Sequence[Mapping[str, torch.Tensor]], pad_id: int, multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids``/``attention_mask`` of several batches to one length and stack.

    Args:
        batches: Dicts with ``input_ids`` and ``attention_mask`` ``[n_i, T_i]``.
        pad_id: Id used for padding.
        multiple_of: If the common length exceeds this, round it up to a multiple of it
            (transformer segments); None for no rounding.
    """
    if not batches:
        raise ValueError("collate: batches must not be empty")
    length = max(int(b["input_ids"].shape[1]) for b in batches)
    if multiple_of and length > multiple_of and length % multiple_of:
        length += multiple_of - length % multiple_of
    ids, masks = [], []
    for b in batches:
        x, m = b["input_ids"], b["attention_mask"]
        extra = length - x.shape[1]
        if extra:
            x = torch.nn.functional.pad(x, (0, extra), value=int(pad_id))
            m = torch.nn.functional.pad(m, (0, extra), value=0)
        ids.append(x)
        masks.append(m)
    return {"input_ids": torch.cat(ids, 0), "attention_mask": torch.cat(masks, 0)}


def check_positive_int(value: Any, arg: str, minimum: int = 1) -> int:
    """Validate an integer option, naming it in the error."""
    import operator

    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)  # accepts numpy ints, rejects floats and strings
    except TypeError:
        raise ValueError(f"{arg} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{arg} must be an integer >= {minimum}, got {value!r}")
    return v


def check_positive_float(value: Any, arg: str) -> float:
    """Validate a finite number > 0 (not a bool), naming it in the error."""
    try:
        if isinstance(value, bool):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{arg} must be a positive number, got {value!r}")
    return v


def check_choice(value: Any, arg: str, choices: Sequence[str]) -> str:
    """Validate a string option against its allowed values, naming it in the error."""
    if value not in choices:
        raise ValueError(f"{arg} must be one of {list(choices)}, got {value!r}")
    return value


def check_prob(value: Any, arg: str) -> float:
    """Validate a probability in [0, 1)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be a float in [0, 1), got {value!r}") from None
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{arg} must be a float in [0, 1), got {value!r}")
    return v
