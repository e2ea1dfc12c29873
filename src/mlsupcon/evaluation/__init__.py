"""Evaluation layer: multi-label metrics and validation-only threshold tuning.

Metrics and thresholds are numpy / scipy / scikit-learn only; torch tensors are
accepted and converted with ``np.asarray``. See :mod:`mlsupcon.evaluation.metrics`
for the exact convention behind every metric name, and
:mod:`mlsupcon.evaluation.thresholds` for threshold tuning (validation split
only). :mod:`mlsupcon.evaluation.knn` scores labels by kNN votes on embeddings
(torch, the search of :class:`mlsupcon.models.KNNHead`) and
:mod:`mlsupcon.evaluation.blend` picks a blend weight of two models, both tuned
on the validation split only (the function ``blend(a, b, w)`` stays in that
module, so ``mlsupcon.evaluation.blend`` names the module, not the function).

Example:
    >>> import numpy as np
    >>> from mlsupcon.evaluation import compute_metrics, tune_global_threshold
    >>> y_val = np.array([[1, 0], [0, 1], [1, 0]])
    >>> s_val = np.array([[0.9, 0.7], [0.3, 0.35], [0.8, 0.1]])
    >>> t = tune_global_threshold(y_val, s_val)   # validation split only
    >>> m = compute_metrics(y_val, s_val, threshold=t, ks=(1,))
    >>> round(m["micro_f1"], 4), m["p@1"]
    (0.8571, 1.0)
"""

from .blend import SELECTION_METRICS, choose_blend_weight, selection_metric
from .knn import knn_scores, tune_knn
from .metrics import (
    DEFAULT_KS,
    compute_metrics,
    example_f1,
    hamming_loss,
    macro_auc,
    macro_f1,
    macro_f1_all,
    macro_f1_pr,
    macro_precision,
    macro_recall,
    mean_average_precision,
    micro_auc,
    micro_auc_present,
    micro_average_precision,
    micro_f1,
    micro_precision,
    micro_recall,
    per_label_auc,
    per_label_average_precision,
    per_label_f1,
    precision_at_k,
    recall_at_k,
    subset_accuracy,
)
from .thresholds import (
    choose_threshold_rule,
    tune_global_threshold,
    tune_global_threshold_macro_f1,
    tune_per_label_thresholds,
    tune_shrunk_thresholds,
)

__all__ = [
    "DEFAULT_KS",
    "compute_metrics",
    "example_f1",
    "hamming_loss",
    "macro_auc",
    "macro_f1",
    "macro_f1_all",
    "macro_f1_pr",
    "macro_precision",
    "macro_recall",
    "mean_average_precision",
    "micro_auc",
    "micro_auc_present",
    "micro_average_precision",
    "micro_f1",
    "micro_precision",
    "micro_recall",
    "per_label_auc",
    "per_label_average_precision",
    "per_label_f1",
    "precision_at_k",
    "recall_at_k",
    "subset_accuracy",
    "tune_global_threshold",
    "tune_global_threshold_macro_f1",
    "tune_per_label_thresholds",
    "tune_shrunk_thresholds",
    "choose_threshold_rule",
    "knn_scores",
    "tune_knn",
    "choose_blend_weight",
    "selection_metric",
    "SELECTION_METRICS",
]
