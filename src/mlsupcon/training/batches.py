"""From dataset splits to batches: loaders, contrastive views, label formats for each loss."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch

from mlsupcon.data import MultiLabelDataset, Split, make_views

# The raw inputs of a split's examples: one home, shared with the inference side's evaluation.
from mlsupcon.inference.scoring import split_inputs
from mlsupcon.models import Encoder

Batch = dict[str, torch.Tensor]

#: The old name of :func:`mlsupcon.inference.scoring.split_inputs`.
raw_inputs = split_inputs


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed derived from ``(seed, epoch)`` (independent streams per epoch)."""
    state = np.random.SeedSequence([int(seed) % 2**32, int(epoch)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class EpochSampler(torch.utils.data.Sampler):
    """Indices ``0..n-1`` in an order that depends only on ``(seed, epoch)``.

    ``set_epoch`` is called by Lightning at the start of every epoch. After
    :meth:`resume_at`, the next iteration of that epoch skips the items already consumed,
    so a run resumed mid-epoch sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = int(n), int(seed), bool(shuffle)
        self.epoch = 0
        self._skip_epoch: int | None = None
        self._skip_items = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.n, generator=g)

    def resume_at(self, epoch: int, items_done: int) -> None:
        """The next iteration of ``epoch`` starts after its first ``items_done`` items."""
        self.epoch = int(epoch)
        self._skip_epoch, self._skip_items = int(epoch), int(items_done)

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch).tolist()
        skip = 0
        if self._skip_epoch is not None:
            if self._skip_epoch == self.epoch:
                skip = self._skip_items
            self._skip_epoch, self._skip_items = None, 0
        yield from order[skip:]

    def __len__(self) -> int:
        return self.n


class DistributedEpochSampler(torch.utils.data.DistributedSampler):
    """One rank's share of an :class:`EpochSampler`'s order, step by step.

    Global step ``k`` of ``W`` ranks with per-rank batch ``B`` takes items ``[k·B·W, (k+1)·B·W)``
    of the epoch's order, rank ``r`` the ``r``-th block of ``B``: the ranks together see,
    step by step, the batches of one process with batch ``B·W``. With ``drop_last`` the items
    after the last full global batch are dropped (as one process with batch ``B·W`` drops
    them); otherwise they are split evenly, padded from the start of the order (as
    :class:`~torch.utils.data.DistributedSampler` does), so that every rank takes the same
    number of steps. :meth:`resume_at` skips this rank's items already consumed, so a resumed
    distributed run continues mid-epoch exactly where it was stopped.

    A :class:`~torch.utils.data.DistributedSampler` only so that Lightning keeps it instead of
    wrapping it in its own sharding.

    Example:
        >>> s = DistributedEpochSampler(EpochSampler(11, shuffle=False), batch_size=2, num_replicas=2, rank=1,
        ...                             drop_last=False)
        >>> list(s), len(s)  # steps 0 and 1, then the last 3 items padded to 2 per rank
        ([2, 3, 6, 7, 10, 0], 6)
    """

    def __init__(self, base: EpochSampler, batch_size: int, num_replicas: int, rank: int, drop_last: bool) -> None:
        # DistributedSampler's own state is not used: no super().__init__ (it would need a
        # process group or a dataset).
        self.base, self.batch_size = base, int(batch_size)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed = base.shuffle, base.seed
        self.drop_last = bool(drop_last) and base.n >= self.batch_size * self.num_replicas
        self.epoch = base.epoch
        self._skip_epoch: int | None = None
        self._skip_items = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.base.set_epoch(epoch)

    def shard(self, epoch: int) -> list[int]:
        """This rank's items of ``epoch``, in the order it takes them."""
        order = self.base.order(epoch).tolist()
        b, w, r = self.batch_size, self.num_replicas, self.rank
        full = len(order) // (b * w)
        items = [i for k in range(full) for i in order[k * b * w + r * b: k * b * w + (r + 1) * b]]
        rest = order[full * b * w:]
        if rest and not self.drop_last:
            per = -(-len(rest) // w)
            rest = (rest + order * (1 + per * w // len(order)))[:per * w]
            items += rest[r * per:(r + 1) * per]
        return items

    def resume_at(self, epoch: int, items_done: int) -> None:
        """The next iteration of ``epoch`` starts after this rank's first ``items_done`` items."""
        self.set_epoch(epoch)
        self._skip_epoch, self._skip_items = int(epoch), int(items_done)

    def __iter__(self) -> Iterator[int]:
        skip = self._skip_items if self._skip_epoch == self.epoch else 0
        self._skip_epoch, self._skip_items = None, 0
        yield from self.shard(self.epoch)[skip:]

    def __len__(self) -> int:
        b, w, n = self.batch_size, self.num_replicas, self.base.n
        rest = n % (b * w)
        return (n // (b * w)) * b + (0 if self.drop_last or not rest else -(-rest // w))


def shard_loader(loader: torch.utils.data.DataLoader, num_replicas: int, rank: int) -> torch.utils.data.DataLoader:
    """The same loader for one rank of ``num_replicas``: a :class:`DistributedEpochSampler` over
    its :class:`EpochSampler` (the loader itself is not changed: a later stage may reuse it)."""
    sampler = DistributedEpochSampler(loader.sampler, loader.batch_size, num_replicas, rank, loader.drop_last)
    generator = torch.Generator().manual_seed(int(loader.generator.initial_seed())) if loader.generator else None
    return torch.utils.data.DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler, collate_fn=loader.collate_fn,
        generator=generator, drop_last=False, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
    )


def make_loader(
    split: Split,
    preprocess: Callable[[Any], Batch],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """Batches ``(inputs: dict, labels: float [b, C], indices: long [b])``.

    Preprocessing (tokenisation, image decoding) runs per batch in the loader, so nothing of
    size "whole split × sequence length" is ever held in memory (MIMIC notes are long).
    """
    labels = split.labels

    def collate(indices: list[int]):
        idx = np.asarray(indices, dtype=np.int64)
        y = torch.from_numpy(np.asarray(labels[idx].todense(), dtype=np.float32))
        return preprocess(split_inputs(split, idx)), y, torch.from_numpy(idx)

    # The order of epoch e is a function of (seed, e) alone (resumable mid-epoch), and the
    # loader's own generator keeps creating an iterator from drawing on the global torch RNG
    # (which the views and dropout use).
    drop = drop_last and len(split) > batch_size
    return torch.utils.data.DataLoader(
        _Indices(len(split)), batch_size=batch_size, sampler=EpochSampler(len(split), seed, shuffle),
        collate_fn=collate, generator=torch.Generator().manual_seed(seed), drop_last=drop,
        num_workers=num_workers,
    )


def tensor_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0):
    """Loader over cached embeddings, in the same ``(inputs, labels, indices)`` format."""
    idx = torch.arange(len(x))

    def collate(items):
        i = torch.as_tensor(items)
        return {"x": x[i]}, y[i], idx[i]

    return torch.utils.data.DataLoader(
        _Indices(len(x)), batch_size=batch_size, sampler=EpochSampler(len(x), seed, shuffle), collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )


def build_view_fn(encoder: Encoder, options: dict[str, Any]) -> Callable[[Batch], Batch]:
    """One random view of a preprocessed batch.

    An encoder with its own batch format defines ``make_view_fn(**options) -> (batch -> batch)``
    and that is used; otherwise the views of the encoder's modality
    (:func:`mlsupcon.data.make_views`: token masking / deletion, feature noise, image crops).
    """
    own = getattr(encoder, "make_view_fn", None)
    if callable(own):
        return own(**options)
    modality = encoder.modality
    if modality == "text":
        info = encoder.tokenizer_info
        mask_id = info.get("mask_token_id")
        if mask_id is None:
            mask_id = info.get("unk_token_id")
        if mask_id is None:
            mask_id = info["pad_token_id"]  # masking then equals deleting
        opts = {"mask_token_id": mask_id, "pad_token_id": info["pad_token_id"],
                "special_ids": info.get("special_token_ids", ()), **options}
        maker = make_views("text", **opts)

        def text_view(batch: Batch) -> Batch:
            ids, mask = maker(batch["input_ids"], batch["attention_mask"])
            return {**batch, "input_ids": ids, "attention_mask": mask}

        return text_view
    if modality == "vector":
        maker = make_views("vector", **options)
        return lambda batch: {**batch, "x": maker(batch["x"])}
    if modality == "image":
        maker = make_views("image", **options)
        return lambda batch: {**batch, "pixel_values": maker(batch["pixel_values"])}
    raise ValueError(f"encoder: unknown modality {modality!r}")


def concat_batches(batches: list[Batch]) -> Batch:
    """Stack V views of one batch into one batch of V·B rows (view-major).

    2-D tensors of different widths (padded token ids and masks, or any other padded rows, e.g.
    sparse features' ``ids`` / ``weights``) are right-padded with 0 to the widest first.

    Example:
        >>> a = {"ids": torch.tensor([[1, 2]]), "weights": torch.tensor([[0.5, 0.5]])}
        >>> b = {"ids": torch.tensor([[3, 4, 5]]), "weights": torch.tensor([[0.2, 0.3, 0.5]])}
        >>> out = concat_batches([a, b])
        >>> out["ids"].tolist(), out["weights"].shape
        ([[1, 2, 0], [3, 4, 5]], torch.Size([2, 3]))
    """
    out = {}
    for key in batches[0]:
        parts = [b[key] for b in batches]
        if parts[0].ndim == 2 and len({p.shape[1] for p in parts}) > 1:
            width = max(p.shape[1] for p in parts)
            parts = [torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]
        out[key] = torch.cat(parts)
    return out


class LossLabels:
    """Turns a batch's multi-hot labels into what a contrastive loss expects (its ``label_format``;
    prototype and logit losses take the multi-hot rows)."""

    def __init__(self, loss: str, dataset: MultiLabelDataset) -> None:
        from mlsupcon.training.contrastive_losses import contrastive_term_losses

        self.loss = loss
        self.label_format = contrastive_term_losses()[loss.lower()].label_format
        self.hierarchy = dataset.hierarchy
        if self.label_format == "hierarchy_levels" and self.hierarchy is None:
            raise ValueError(
                f"loss: '{loss}' needs a label hierarchy and dataset '{dataset.name}' has none; "
                "use a flat loss (all, any, mulsupcon, simdis, jaccard, mlcl)"
            )

    def __call__(self, y: torch.Tensor):
        if self.label_format == "none":
            return None
        if self.label_format == "class_ids":
            if not bool((y.sum(1) == 1).all()):
                raise ValueError(
                    f"loss: '{self.loss}' needs exactly one label per example; this batch has rows with "
                    f"{sorted(set(y.sum(1).long().tolist()))} labels. Use 'any' (SupCon's multi-label form) or 'simdis'"
                )
            return y.argmax(1)
        if self.label_format == "hierarchy_levels":
            return [t.to(y.dtype) for t in self.hierarchy.levels(y)]
        return y
