"""Core containers (:class:`Split`, :class:`MultiLabelDataset`) and shared helpers.

Labels are always a ``scipy.sparse.csr_matrix`` of ``uint8`` ``[n, C]`` over the
dataset's fixed ``label_names``: MIMIC-III full has ~9k codes, so dense label
matrices of whole splits would waste memory; batches are densified on demand with
:meth:`Split.label_tensor`.

Example:
    >>> import scipy.sparse as sp
    >>> s = Split("train", ["a doc", "b doc"], encode_labels([["x"], ["x", "y"]], ["x", "y"]), ["0", "1"])
    >>> len(s), s.label_tensor().tolist()
    (2, [[1.0, 0.0], [1.0, 1.0]])
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .hierarchy import LabelHierarchy

if TYPE_CHECKING:  # reading and checking data needs no torch (the CLI reports data errors before importing it)
    import torch

__all__ = [
    "DataWarning",
    "SPLIT_NAMES",
    "MODALITIES",
    "Split",
    "MultiLabelDataset",
    "encode_labels",
    "seeded_split",
    "normalise_split_name",
]

logger = logging.getLogger("mlsupcon.data")

SPLIT_NAMES = ("train", "validation", "test")


class DataWarning(UserWarning):
    """Data (or a setting) that mlsupcon accepts but that is probably not what was meant: tiny
    splits, labels without a training example, numbers as label names, label cells that look
    joined by another separator, skipped images (docs/failures.md). The ``mlsupcon`` command
    prints it as ``mlsupcon: warning: ...``."""

MODALITIES = ("text", "vector", "image")

# Accepted spellings of split names in files (caml-mimic says "dev", Edin et al. "val").
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def normalise_split_name(value: Any) -> str | None:
    """Map a split spelling (``val``, ``dev``, ``Train``…) to train/validation/test, else None."""
    return _SPLIT_ALIASES.get(str(value).strip().lower())


def _subset_inputs(inputs: Any, idx: np.ndarray) -> Any:
    if isinstance(inputs, np.ndarray):
        return inputs[idx]
    if isinstance(inputs, list):
        return [inputs[int(i)] for i in idx]
    if hasattr(inputs, "subset"):
        return inputs.subset(idx)
    raise TypeError(f"cannot subset inputs of type {type(inputs).__name__}")


@dataclass
class Split:
    """One split of a dataset.

    Attributes:
        name: ``"train"``, ``"validation"`` or ``"test"``.
        inputs: text: ``list[str]``; vector: ``float32`` array ``[n, F]``; image: an
            :class:`~mlsupcon.data.images.ImageArray` / :class:`~mlsupcon.data.images.ImageFiles`.
        labels: ``csr_matrix`` ``uint8`` ``[n, C]``.
        ids: One string id per example.

    Example:
        >>> s = Split("test", ["t"], encode_labels([["a"]], ["a"]), ["id0"])
        >>> s.subset([0]).ids
        ['id0']
    """

    name: str
    inputs: Any
    labels: sp.csr_matrix
    ids: list[str]

    def __post_init__(self) -> None:
        if not sp.issparse(self.labels):
            self.labels = sp.csr_matrix(np.asarray(self.labels, dtype=np.uint8))
        self.labels = sp.csr_matrix(self.labels, dtype=np.uint8)
        n = self.labels.shape[0]
        if len(self.inputs) != n or len(self.ids) != n:
            raise ValueError(
                f"split '{self.name}': {len(self.inputs)} inputs, {n} label rows, "
                f"{len(self.ids)} ids must be equal"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_labels(self) -> int:
        """Number of label columns C."""
        return int(self.labels.shape[1])

    def subset(self, indices: Sequence[int] | np.ndarray) -> Split:
        """The examples at ``indices`` (in that order) as a new split."""
        idx = np.asarray(indices, dtype=np.int64)
        return Split(
            self.name,
            _subset_inputs(self.inputs, idx),
            self.labels[idx],
            [self.ids[int(i)] for i in idx],
        )

    def label_array(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Dense ``float32`` labels ``[n, C]`` (all rows or ``indices``)."""
        m = self.labels if indices is None else self.labels[np.asarray(indices, dtype=np.int64)]
        return m.toarray().astype(np.float32)

    def label_tensor(
        self, indices: Sequence[int] | np.ndarray | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Dense label tensor ``[n, C]`` (all rows or ``indices``) for losses (``dtype``: float32 by default)."""
        import torch

        return torch.from_numpy(self.label_array(indices)).to(dtype or torch.float32)

    def label_counts(self) -> np.ndarray:
        """Examples per label, int64 ``[C]``."""
        return np.asarray(self.labels.sum(axis=0), dtype=np.int64).reshape(-1)

    def label_lists(self, label_names: Sequence[str]) -> list[list[str]]:
        """Per example the list of its label names."""
        m = self.labels
        return [[label_names[j] for j in m.indices[m.indptr[i] : m.indptr[i + 1]]] for i in range(len(self))]

    def __repr__(self) -> str:
        return f"Split({self.name!r}, n={len(self)}, labels={self.num_labels})"


@dataclass
class MultiLabelDataset:
    """A multi-label dataset with fixed train/validation/test splits.

    Attributes:
        name: Dataset name (e.g. ``"debtags"``, ``"jsonl:notes.jsonl"``).
        modality: ``"text"``, ``"vector"`` or ``"image"``.
        label_names: The fixed vocabulary, length C (column order of every split's labels).
        splits: ``{"train": Split, "validation": Split, "test": Split}``.
        hierarchy: Coarse levels for hierarchical losses, or None.
        info: Provenance and processing report (source files, options, label
            restriction, subsampling, standardisation statistics…).

    Example:
        >>> from mlsupcon.data import load_dataset
        >>> ds = load_dataset("yeast")                          # doctest: +SKIP
        >>> ds.splits["train"].inputs.shape, ds.num_labels      # doctest: +SKIP
        ((1200, 103), 14)
    """

    name: str
    modality: str
    label_names: list[str]
    splits: dict[str, Split]
    hierarchy: LabelHierarchy | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        missing = [s for s in SPLIT_NAMES if s not in self.splits]
        if missing:
            raise ValueError(f"dataset '{self.name}' lacks split(s) {missing}")
        for s in self.splits.values():
            if s.num_labels != len(self.label_names):
                raise ValueError(
                    f"split '{s.name}' has {s.num_labels} label columns, vocabulary has {len(self.label_names)}"
                )
        if self.hierarchy is not None and self.hierarchy.fine_names != list(self.label_names):
            raise ValueError("hierarchy fine names must equal label_names")

    @property
    def num_labels(self) -> int:
        """C, the size of the label vocabulary."""
        return len(self.label_names)

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]

    def restrict_labels(self, indices: Sequence[int] | np.ndarray) -> MultiLabelDataset:
        """A copy keeping only the label columns ``indices`` (examples are all kept)."""
        idx = np.asarray(indices, dtype=np.int64)
        splits = {
            k: Split(s.name, s.inputs, s.labels[:, idx], s.ids) for k, s in self.splits.items()
        }
        hier = self.hierarchy.subset(idx) if self.hierarchy is not None else None
        return MultiLabelDataset(
            self.name,
            self.modality,
            [self.label_names[int(i)] for i in idx],
            splits,
            hier,
            dict(self.info),
        )

    def summary(self) -> str:
        """A few lines describing sizes and label statistics."""
        lines = [f"{self.name} ({self.modality}): {self.num_labels} labels"]
        for k in SPLIT_NAMES:
            s = self.splits[k]
            card = s.labels.sum() / max(len(s), 1)
            lines.append(f"  {k}: {len(s)} examples, {card:.2f} labels/example")
        if self.hierarchy is not None:
            lines.append(f"  hierarchy: {self.hierarchy!r}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(self.splits[k])}" for k in SPLIT_NAMES)
        return f"MultiLabelDataset({self.name!r}, {self.modality}, C={self.num_labels}, {sizes})"


def encode_labels(label_lists: Iterable[Iterable[str]], label_names: Sequence[str]) -> sp.csr_matrix:
    """Multi-hot ``uint8`` CSR matrix from per-example label lists.

    Labels outside ``label_names`` are ignored (used after top-k restriction);
    duplicates within an example count once.

    Example:
        >>> encode_labels([["b", "a", "b"], []], ["a", "b"]).toarray().tolist()
        [[1, 1], [0, 0]]
    """
    col = {n: i for i, n in enumerate(label_names)}
    indptr = [0]
    indices: list[int] = []
    for labels in label_lists:
        row = sorted({col[l] for l in labels if l in col})
        indices.extend(row)
        indptr.append(len(indices))
    n = len(indptr) - 1
    data = np.ones(len(indices), dtype=np.uint8)
    return sp.csr_matrix(
        (data, np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
        shape=(n, len(label_names)),
    )


def seeded_split(
    n: int, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, np.ndarray]:
    """Deterministic random train/validation/test partition of ``range(n)``.

    The same ``(n, seed, fractions)`` always gives the same split (NumPy PCG64);
    indices inside each split are sorted so file order is kept.

    Args:
        n: Number of examples.
        seed: Random seed.
        fractions: Train/validation/test fractions (non-negative, summing to 1).

    Example:
        >>> {k: len(v) for k, v in seeded_split(10, seed=1).items()}
        {'train': 8, 'validation': 1, 'test': 1}
    """
    f = [float(x) for x in fractions]
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1, got {fractions!r}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(f[0] * n))
    n_val = min(int(round(f[1] * n)), n - n_train)
    return {
        "train": np.sort(perm[:n_train]),
        "validation": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def split_seed(seed: int, name: str) -> np.random.Generator:
    """A generator derived from ``seed`` and a split name (stable across Python runs)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def top_k_restrict(ds: MultiLabelDataset, k: int) -> MultiLabelDataset:
    """Keep the ``k`` labels most frequent in train (ties: vocabulary order); report in ``info``.

    Examples are never dropped; the number left without any label is reported in
    ``info["top_k_labels"]`` and logged.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_k_labels must be a positive integer, got {k!r}")
    counts = ds.splits["train"].label_counts()
    c = len(counts)
    # Stable sort on -count keeps vocabulary order among ties: deterministic.
    order = np.argsort(-counts, kind="stable")[: min(int(k), c)]
    keep = np.sort(order)
    out = ds.restrict_labels(keep) if len(keep) < c else ds
    report: dict[str, Any] = {
        "k": int(k),
        "labels_before": c,
        "labels_kept": int(len(keep)),
        "min_train_count_kept": int(counts[keep].min()) if len(keep) else 0,
        "examples_without_labels": {},
        "label_occurrences_dropped": {},
    }
    for name in SPLIT_NAMES:
        before = int(ds.splits[name].labels.sum())
        after_split = out.splits[name]
        after = int(after_split.labels.sum())
        empty = int((np.diff(after_split.labels.indptr) == 0).sum())
        report["examples_without_labels"][name] = empty
        report["label_occurrences_dropped"][name] = before - after
    out.info = dict(out.info)
    out.info["top_k_labels"] = report
    logger.info(
        "%s: kept the %d most frequent train labels of %d; examples left without labels: %s",
        ds.name,
        len(keep),
        c,
        report["examples_without_labels"],
    )
    return out


def _check_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def subsample(ds: MultiLabelDataset, max_examples: int, seed: int = 0) -> MultiLabelDataset:
    """Keep at most ``max_examples`` per split: a seeded random subset, in original order."""
    _check_count(max_examples, "max_examples_per_split")
    splits = {}
    report = {}
    for name, s in ds.splits.items():
        if len(s) > max_examples:
            idx = np.sort(split_seed(seed, name).choice(len(s), size=int(max_examples), replace=False))
            splits[name] = s.subset(idx)
        else:
            splits[name] = s
        report[name] = [len(s), len(splits[name])]
    info = dict(ds.info)
    info["max_examples_per_split"] = {"max": int(max_examples), "sizes_before_after": report}
    return MultiLabelDataset(ds.name, ds.modality, ds.label_names, splits, ds.hierarchy, info)


def subsample_train(ds: MultiLabelDataset, max_examples: int, seed: int = 0) -> MultiLabelDataset:
    """Keep at most ``max_examples`` training examples (seeded, in original order); other splits as
    they are. The subsets are nested: a permutation drawn once per seed is cut at ``max_examples``.

    Example:
        >>> from mlsupcon.data.registry import load_dataset
        >>> ds = load_dataset("yeast", max_train_examples=100)
        >>> len(ds.splits["train"]), len(ds.splits["test"])
        (100, 917)
    """
    _check_count(max_examples, "max_train_examples")
    train = ds.splits["train"]
    splits = dict(ds.splits)
    if len(train) > max_examples:
        order = split_seed(seed, "train-prefix").permutation(len(train))
        splits["train"] = train.subset(np.sort(order[: int(max_examples)]))
    info = dict(ds.info)
    info["max_train_examples"] = {"max": int(max_examples), "train_before_after": [len(train), len(splits["train"])]}
    return MultiLabelDataset(ds.name, ds.modality, ds.label_names, splits, ds.hierarchy, info)
