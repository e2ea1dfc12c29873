"""``mlsupcon evaluate``: a run's model and threshold on a split of its dataset (or of another
dataset whose labels are among the model's), with the metrics training reports.

Example:
    >>> from mlsupcon.inference.evaluate import evaluate_model
    >>> m = evaluate_model("runs/yeast-mulsupcon", split="test")     # doctest: +SKIP
    >>> sorted(m)[:3]                                                # doctest: +SKIP
    ['example_f1', 'macro_auc', 'macro_f1']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlsupcon.inference.model import load
from mlsupcon.inference.scoring import score_inputs, split_inputs

__all__ = ["evaluate_model"]


def evaluate_model(path: str | os.PathLike, split: str = "test", dataset: str | None = None,
                   dataset_options: Mapping[str, Any] | None = None, ks: Sequence[int] = (1, 5, 8, 15),
                   batch_size: int = 512, return_scores: bool = False) -> dict[str, Any]:
    """Scores a split with the run's model and threshold: ``mlsupcon evaluate``.

    The data may carry a subset of the model's labels: the model scores all of its labels and
    the metrics are computed over the data's labels (their columns of the scores). A label the
    model does not know is an error naming it.

    Args:
        path: a run folder or its ``model/`` folder.
        split: the split to score; ``"all"``: every example of the dataset (train, validation
            and test together: a file without a split column is otherwise split 80/10/10 by seed,
            and ``test`` is a tenth of it).
        dataset: a dataset spec (default: the run's).
        dataset_options: options of the dataset, over the run's own (those the dataset takes);
            a value of None removes a run option.
        ks: P@k / R@k cut-offs.
        batch_size: inputs per forward pass.
        return_scores: also return ``scores`` (``[n, C_model]``) and ``labels`` (``[n, C_data]``).

    Returns:
        The metrics, plus ``threshold``, ``split``, ``dataset``, ``num_examples`` and
        ``num_labels`` (the data's labels scored).
    """
    from mlsupcon.data import dataset_options as valid_options
    from mlsupcon.data import load_dataset
    from mlsupcon.evaluation import compute_metrics

    model = load(path)
    meta = model.meta
    spec = dataset or meta.get("dataset")
    if not spec:
        raise ValueError(f"dataset: {model.path}/model.json names no dataset; give one with --dataset")
    try:
        accepted = set(valid_options(str(spec).partition(":")[0].strip().lower()))
    except ValueError:
        accepted = set()  # load_dataset reports the unknown dataset
    options = {k: v for k, v in (meta.get("dataset_options") or {}).items() if k in accepted}
    from mlsupcon.data.text import DefaultField

    for key in ("split_field", "id_field"):  # named for the run's file: used where this file has them too
        if isinstance(options.get(key), str):
            options[key] = DefaultField(options[key])
    for key, value in (dataset_options or {}).items():
        if value is None:
            options.pop(key, None)
        else:
            options[key] = value
    ds = load_dataset(spec, **options)
    if split not in ds.splits and split != "all":
        raise ValueError(f"split: expected one of {sorted(ds.splits)} or 'all' (every example), got {split!r}")
    if ds.modality != model.modality:
        raise ValueError(f"dataset: {spec!r} is {ds.modality} data; this model takes {model.modality} inputs")
    column = {lab: j for j, lab in enumerate(model.labels)}
    unknown = [lab for lab in ds.label_names if lab not in column]
    if unknown:
        absent = [lab for lab in model.labels if lab not in set(ds.label_names)]
        detail = f"; the model's labels not in the data: {absent[:3]}" if absent else ""
        raise ValueError(
            f"dataset: the label vocabulary of {spec!r} ({ds.num_labels} labels) has {len(unknown)} the model "
            f"({len(model.labels)} labels) does not know: {unknown[:5]}{detail}; evaluate on data whose labels "
            "are among the model's")
    parts = [ds.splits[k] for k in (ds.splits if split == "all" else [split])]  # "all": every split, in turn
    with model.scoring():  # branches of blend weight 0 are neither prepared nor run
        prepare = getattr(model.classifier.encoder, "prepare", None)
        if callable(prepare):  # e.g. a frozen encoder embeds (and caches) the split once, as training did
            prepare({part.name: part.inputs for part in parts})
        scores = np.concatenate([
            score_inputs(model.classifier, len(part), lambda a, b, part=part: split_inputs(part, np.arange(a, b)),
                         batch_size, lambda b: torch.sigmoid(model.classifier.logits(b)), model.num_labels, False,
                         "scoring", model.device)
            for part in parts])
    y = np.concatenate([np.asarray(part.labels.todense(), dtype=np.float32) for part in parts])
    cols = [column[lab] for lab in ds.label_names]
    result = compute_metrics(y, scores[:, cols], model.thresholds[cols], ks=tuple(ks))
    result.update({"threshold": model.threshold, "per_label_thresholds": "thresholds" in model.meta,
                   "split": split, "dataset": ds.name,
                   "num_examples": int(len(y)), "num_labels": len(cols)})
    if return_scores:
        result.update(scores=scores, labels=y)
    return result
