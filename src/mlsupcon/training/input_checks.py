"""A run's data, checked before any work: what would fail or mislead after training is reported
before it starts (docs/failures.md, "Bad data" and "Degenerate settings").

The ``mlsupcon train`` command loads and checks the data (:func:`load_training_data`) before it
imports torch or Lightning, so a data mistake costs about a second, not the 10-15 s those
imports take; :func:`~mlsupcon.training.runner.run_training` checks a dataset it is given too.
Neither this module nor the loaders import torch.

Errors (``ValueError``, one line naming the dataset, the file and what was expected):

* a split (train, validation, test) without examples;
* no labels at all (an empty label vocabulary), or none in the training split;
* a contrastive method with a single training example (nothing to contrast it with).

Warnings (:class:`~mlsupcon.data.DataWarning`): splits under :data:`SMALL_SPLIT` examples, with
their sizes; labels without a training example, and labels that occur only in the test split,
with counts and examples; the loaders add theirs (numbers as label names, label cells that look
joined by another separator, skipped images).
"""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any

from mlsupcon.data import SPLIT_NAMES, DataWarning

if TYPE_CHECKING:
    from mlsupcon.config.schema import TrainConfig
    from mlsupcon.data import MultiLabelDataset

__all__ = ["SMALL_SPLIT", "load_training_data", "check_training_data"]

#: Splits with fewer examples are reported: one example then moves micro-F1 or mAP by two
#: points or more, so a difference between runs is mostly noise (and training on so few learns little).
SMALL_SPLIT = 50


def load_training_data(cfg: TrainConfig) -> MultiLabelDataset:
    """The run's dataset (``cfg.dataset``, ``cfg.dataset_options``), loaded and checked
    (:func:`check_training_data`), without importing torch."""
    from mlsupcon.data import load_dataset  # looked up at call time (tests replace it)

    ds = load_dataset(cfg.dataset, **cfg.dataset_options)
    check_training_data(cfg, ds)
    return ds


def _describe(ds: MultiLabelDataset) -> tuple[str, str]:
    """``(dataset spec, its file)`` for messages."""
    spec = str(ds.info.get("spec") or ds.name)
    source = ds.info.get("source") or spec.partition(":")[2] or spec
    return spec, str(source)


def _loader_default(spec: str, option: str) -> Any:
    """The default of a loader option (e.g. ``label_field``), None when the loader has none."""
    from mlsupcon.data.registry import _loaders

    entry = _loaders().get(spec.partition(":")[0].strip().lower())
    param = inspect.signature(entry[0]).parameters.get(option) if entry else None
    return None if param is None else param.default


def _option(ds: MultiLabelDataset, option: str) -> Any:
    spec, _ = _describe(ds)
    options = ds.info.get("options") or {}
    return options[option] if option in options else _loader_default(spec, option)


def _sizes(ds: MultiLabelDataset) -> str:
    return ", ".join(f"{k} {len(ds.splits[k])}" for k in SPLIT_NAMES)


def _empty_split(ds: MultiLabelDataset, split: str) -> str:
    spec, source = _describe(ds)
    how = ds.info.get("split") or {}
    head = f"dataset {spec}: the {split} split has no examples ({_sizes(ds)})"
    if how.get("seeded") is True:
        fractions = "/".join(f"{round(100 * f)}" for f in how.get("fractions", ()))
        n = sum(len(ds.splits[k]) for k in SPLIT_NAMES)
        return (f"{head}: the seeded {fractions} split of {n} examples leaves it none; give more examples, "
                "or a split field naming train, validation and test rows")
    field = _option(ds, "split_field")
    if how.get("seeded") is False and field:
        return (f"{head}: field '{field}' of {source} names no {split} rows; give some rows "
                f"'{field}': '{split}', or leave the field out of every row for a seeded 80/10/10 split")
    return f"{head}; a run trains on train, selects on validation and reports test: each needs examples"


def _examples(names: list[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


def _warn_unlearnable_labels(ds: MultiLabelDataset) -> None:
    """Labels without a training example cannot be learnt (a small file split 80/10/10 leaves many
    rare labels in validation or test only); those only in test are not tuned on validation either."""
    import numpy as np

    spec, _ = _describe(ds)
    present = {k: np.asarray(ds.splits[k].labels.getnnz(axis=0)).reshape(-1) > 0 for k in SPLIT_NAMES}
    names = ds.label_names
    no_train = [names[j] for j in np.flatnonzero(~present["train"])]
    only_test = [names[j] for j in np.flatnonzero(~present["train"] & ~present["validation"] & present["test"])]
    capped = (ds.info.get("options") or {}).get("max_examples_per_split")
    why = f" (max_examples_per_split={capped})" if capped is not None else ""
    if no_train:
        warnings.warn(f"dataset {spec}: {len(no_train)} of {len(names)} labels have no training example{why} "
                      f"(e.g. {_examples(no_train)}); they cannot be learnt and count as zeros in macro metrics",
                      DataWarning, stacklevel=3)
    if only_test:
        warnings.warn(f"dataset {spec}: {len(only_test)} of {len(names)} labels occur only in the test split "
                      f"(e.g. {_examples(only_test)}); the run neither learns nor tunes them, and the test scores "
                      "count them as misses: give them training examples, or leave them out", DataWarning,
                      stacklevel=3)


def check_training_data(cfg: TrainConfig, ds: MultiLabelDataset) -> list[str]:
    """Raises ``ValueError`` for data a run cannot use; warns about data it can use but that
    is probably a mistake. A dataset already checked for the same method and batch size is not
    checked (nor warned about) again.

    Returns:
        Notes for ``metrics.json`` (``notes``): e.g. how many unreadable images were skipped.

    Example:
        >>> from mlsupcon.data import MultiLabelDataset, Split, encode_labels
        >>> from mlsupcon.config.schema import TrainConfig
        >>> y = encode_labels([["a"], ["b"], []], ["a", "b"])
        >>> ds = MultiLabelDataset("toy", "text", ["a", "b"],
        ...                        {s: Split(s, ["x", "y", "z"], y, ["0", "1", "2"]) for s in SPLIT_NAMES})
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as seen:
        ...     warnings.simplefilter("always")
        ...     check_training_data(TrainConfig(method="bce"), ds)
        []
        >>> print(str(seen[0].message).split(" (")[0])
        small splits: train 3, validation 3, test 3 examples
    """
    from mlsupcon.training.methods import get_method

    key = {"method": cfg.method, "batch_size": cfg.batch_size}
    done = ds.info.get("input_checks")
    if isinstance(done, dict) and done.get("for") == key:
        return list(done["notes"])
    spec, source = _describe(ds)
    for split in SPLIT_NAMES:
        if len(ds.splits[split]) == 0:
            raise ValueError(_empty_split(ds, split))
    field = _option(ds, "label_field")
    in_field = f" (field '{field}' of {source} is empty in every record)" if field else f" in {source}"
    if ds.num_labels == 0:
        raise ValueError(f"dataset {spec}: no labels{in_field}; a multi-label dataset needs at least one label")
    train = ds.splits["train"]
    if train.labels.nnz == 0:
        raise ValueError(f"dataset {spec}: no example of the train split has a label ({len(train)} examples; "
                         "the labels appear only in validation or test); nothing can be learnt")
    if get_method(cfg.method).uses_contrastive_loss and len(train) < 2:
        raise ValueError(f"dataset {spec}: the train split has {len(train)} example; a contrastive loss compares "
                         "the examples of a batch, so it needs at least 2")
    _warn_unlearnable_labels(ds)
    small = [k for k in SPLIT_NAMES if len(ds.splits[k]) < SMALL_SPLIT]
    if small:
        cap = (ds.info.get("options") or {}).get("max_examples_per_split")
        why = f"max_examples_per_split={cap} (--max-examples); " if cap is not None and cap < SMALL_SPLIT else ""
        warnings.warn(f"small splits: {', '.join(f'{k} {len(ds.splits[k])}' for k in small)} examples ({why}fewer "
                      f"than {SMALL_SPLIT}: metrics on so few examples are mostly noise)", DataWarning, stacklevel=2)
    notes = []
    bad = ds.info.get("bad_images")
    if bad:
        by_split = ", ".join(f"{k} {v}" for k, v in bad["by_split"].items())
        notes.append(f"dataset: skipped {bad['skipped']} unreadable image(s) (on_bad_image: skip; {by_split}), "
                     f"e.g. {bad['examples'][0]}")
    ds.info["input_checks"] = {"for": key, "notes": notes}
    return list(notes)
