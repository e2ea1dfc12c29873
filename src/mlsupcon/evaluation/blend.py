"""Blending two score matrices with a weight chosen on the validation split.

``p = w · a + (1 − w) · b`` mixes two classifiers' *probabilities* (e.g. a kNN head on
contrastive embeddings and a linear head). As with thresholds
(:mod:`mlsupcon.evaluation.thresholds`), the weight is a pure function of the validation
split: choose it there, then apply it, unchanged, to the test split::

    w, table = choose_blend_weight(y_val, knn_val, linear_val, metric="map")
    test_scores = blend(knn_test, linear_test, w)

:func:`selection_metric` is the one place that turns a metric name into a number for model
selection (also used by :func:`mlsupcon.evaluation.knn.tune_knn`). For the F1 metrics the
threshold is tuned on the *same* validation scores with
:func:`~mlsupcon.evaluation.thresholds.tune_global_threshold`, so every candidate is judged
at its own best global threshold, as it would be deployed.

Example:
    >>> import numpy as np
    >>> y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    >>> a = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.1, 0.2]])   # ranks perfectly
    >>> b = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.4], [0.9, 0.7]])   # ranks backwards
    >>> w, table = choose_blend_weight(y, a, b, weights=[0.0, 0.5, 1.0], metric="map")
    >>> w, [round(r["value"], 3) for r in table]
    (1.0, [0.417, 0.583, 1.0])
    >>> blend(a, b, 0.25)[0].round(2).tolist()
    [0.3, 0.7]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .metrics import (
    _validate_pair,
    _validate_y,
    macro_auc,
    macro_f1,
    mean_average_precision,
    micro_auc,
    micro_auc_present,
    micro_average_precision,
    micro_f1,
)
from .thresholds import tune_global_threshold

__all__ = ["DEFAULT_WEIGHTS", "SELECTION_METRICS", "blend", "choose_blend_weight", "selection_metric"]

#: Metric names :func:`selection_metric` accepts (higher is better for all of them).
SELECTION_METRICS: tuple[str, ...] = (
    "map", "micro_ap", "macro_auc", "micro_auc", "micro_auc_present", "micro_f1", "macro_f1",
)  # fmt: skip

_RANKING = {
    "map": mean_average_precision,
    "micro_ap": micro_average_precision,
    "macro_auc": macro_auc,
    "micro_auc": micro_auc,
    "micro_auc_present": micro_auc_present,
}
_F1 = {"micro_f1": micro_f1, "macro_f1": macro_f1}

#: Default candidate weights of ``a``: 0, 0.1, ..., 1.
DEFAULT_WEIGHTS: tuple[float, ...] = tuple(float(w) for w in np.linspace(0.0, 1.0, 11))

Metric = str | Callable[[np.ndarray, np.ndarray], float]

# Candidates whose values differ by less than this count as tied (float noise of a blend).
_TIE_TOL = 1e-12


def check_metric(metric: Any) -> Metric:
    """Return ``metric`` if it is a name in :data:`SELECTION_METRICS` or a callable; else ValueError."""
    if callable(metric) or metric in SELECTION_METRICS:
        return metric
    raise ValueError(
        f"metric must be one of {list(SELECTION_METRICS)} or a callable(y, scores) -> float, got {metric!r}"
    )


def selection_metric(y_val: Any, scores_val: Any, metric: Metric = "map") -> tuple[float, float | None]:
    """The validation value of ``metric`` used to pick a model (higher is better).

    Pure function of its arguments (validation data only).

    Args:
        y_val: ``[n, C]`` 0/1 validation labels (dense, scipy.sparse or torch).
        scores_val: ``[n, C]`` validation scores.
        metric: A name from :data:`SELECTION_METRICS` (``"map"``, ``"micro_ap"``,
            ``"macro_auc"``, ``"micro_auc"``, ``"micro_auc_present"``: threshold-free;
            ``"micro_f1"``, ``"macro_f1"``: at the global threshold
            :func:`~mlsupcon.evaluation.thresholds.tune_global_threshold` picks on these
            same scores), or a callable ``metric(y_val, scores_val) -> float``.

    Returns:
        ``(value, threshold)``; ``threshold`` is the tuned threshold for the F1 metrics and
        ``None`` otherwise. ``value`` may be NaN where the metric is undefined.

    Raises:
        ValueError: an unknown metric name, bad inputs, or (F1 metrics) ``y_val`` without
            any positive.

    Example:
        >>> value, t = selection_metric([[1, 0], [0, 1]], [[0.9, 0.4], [0.3, 0.6]], "micro_f1")
        >>> value, round(t, 2)
        (1.0, 0.5)
    """
    metric = check_metric(metric)
    if callable(metric):
        return float(metric(y_val, scores_val)), None
    if metric in _F1:
        t = tune_global_threshold(y_val, scores_val)
        return float(_F1[metric](y_val, scores_val, t)), float(t)
    return float(_RANKING[metric](y_val, scores_val)), None


def _guard_values(y: np.ndarray, scores: np.ndarray, guards: list[Metric],
                  threshold: float | None = None) -> dict[Metric, float]:
    """:func:`selection_metric` of each guard on ``scores``; the F1 metrics share one tuned threshold
    (``threshold`` when the selection metric already tuned it on these scores)."""
    if threshold is None and any(g in _F1 for g in guards):
        threshold = tune_global_threshold(y, scores)
    return {g: float(_F1[g](y, scores, threshold)) if g in _F1 else selection_metric(y, scores, g)[0]
            for g in guards}


def _check_weights(weights: Any) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64) if not isinstance(weights, np.ndarray) else weights.astype(np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D sequence of values in [0, 1], got shape {w.shape}")
    if np.isnan(w).any() or (w < 0).any() or (w > 1).any():
        raise ValueError(f"weights must lie in [0, 1], got {w.tolist()}")
    return w


def _check_probabilities(s: np.ndarray, name: str) -> None:
    if s.size and (s.min() < 0 or s.max() > 1):
        raise ValueError(f"{name} must be probabilities in [0, 1] (apply a sigmoid to logits before blending)")


def _as_float(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def blend(a: Any, b: Any, weight: float) -> Any:
    """``weight · a + (1 − weight) · b`` for numpy arrays or torch tensors of one shape.

    Args:
        a: Probabilities of the first model.
        b: Probabilities of the second model (same shape).
        weight: Weight of ``a``, in ``[0, 1]``.

    Returns:
        The blend, of the inputs' type (a numpy array for numpy or list inputs).

    Example:
        >>> blend([[0.8, 0.0]], [[0.4, 1.0]], 0.5).tolist()
        [[0.6000000000000001, 0.5]]
    """
    w = float(_check_weights([weight])[0])
    if not (hasattr(a, "detach") and hasattr(b, "detach")):  # torch tensors stay tensors
        a, b = _as_float(a), _as_float(b)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"b must have the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    return w * a + (1.0 - w) * b


def choose_blend_weight(
    val_y: Any,
    val_scores_a: Any,
    val_scores_b: Any,
    weights: Any = DEFAULT_WEIGHTS,
    metric: Metric = "map",
    guard: Any = (),
) -> tuple[float, list[dict[str, Any]]]:
    """The weight ``w`` of ``a`` in ``p = w · a + (1 − w) · b`` maximising a validation metric.

    With ``guard``, only blends that lose none of the guard metrics against ``b`` alone (on
    validation) are candidates: a model that ranks well within each label (mAP) but whose
    probabilities are not comparable across labels (a model stopped early, before its
    classifier learnt the label priors) cannot drag the F1 scores of ``b`` down. ``b`` alone
    (``w = 0``) always qualifies.

    **Validation data only**; apply the returned weight unchanged to the test split (with
    :func:`blend`). Pure: it reads only its arguments and is deterministic.

    Ties (values within 1e-12 of the best) go to the **largest** weight of ``a``: when the
    validation split cannot tell the candidates apart the blend leans towards ``a``, so
    pass the model you would rather keep as ``a``. NaN values (metric undefined) never win.

    Args:
        val_y: ``[n, C]`` 0/1 validation labels.
        val_scores_a: ``[n, C]`` validation probabilities of model ``a`` (in ``[0, 1]``).
        val_scores_b: ``[n, C]`` validation probabilities of model ``b``.
        weights: Candidate weights of ``a`` in ``[0, 1]`` (default 0, 0.1, …, 1).
        metric: See :func:`selection_metric`; for ``"micro_f1"`` / ``"macro_f1"`` each
            candidate is scored at the global threshold tuned on its own blended
            validation scores.
        guard: Names from :data:`SELECTION_METRICS` a candidate must not lose against ``b``
            alone (each at its own tuned threshold for the F1 metrics).

    Returns:
        ``(weight, table)``: the chosen weight (a float) and, for every candidate in the
        order given, ``{"weight": w, "value": v, "threshold": t}`` (``t`` is ``None`` for
        threshold-free metrics); with ``guard`` also ``"guard"``: ``{name: value}`` and
        ``"allowed"``: whether it kept every guard metric at least at ``b``'s value.

    Raises:
        ValueError: shape mismatch, scores outside ``[0, 1]``, bad ``weights`` or
            ``metric``, or a metric undefined (NaN) at every weight.

    Example:
        >>> y = [[1, 0], [0, 1]]
        >>> a = [[0.9, 0.1], [0.2, 0.8]]
        >>> b = [[0.6, 0.4], [0.4, 0.6]]   # both rank perfectly: every weight has mAP 1
        >>> choose_blend_weight(y, a, b, weights=[0.0, 0.5, 1.0])[0]   # ties -> the largest
        1.0
    """
    metric = check_metric(metric)
    y = _validate_y(val_y, "val_y")
    _, sa = _validate_pair(y, val_scores_a, "val_y", "val_scores_a")
    _, sb = _validate_pair(y, val_scores_b, "val_y", "val_scores_b")
    _check_probabilities(sa, "val_scores_a")
    _check_probabilities(sb, "val_scores_b")
    ws = _check_weights(weights)
    sa = sa.astype(np.float64, copy=False)
    sb = sb.astype(np.float64, copy=False)

    guards = [check_metric(g) for g in ((guard,) if isinstance(guard, str) else tuple(guard))]
    floor = _guard_values(y, sb, guards)  # b alone
    table: list[dict[str, Any]] = []
    for w in ws:
        scores = blend(sa, sb, float(w))
        value, t = selection_metric(y, scores, metric)
        row: dict[str, Any] = {"weight": float(w), "value": value, "threshold": t}
        if guards:
            row["guard"] = _guard_values(y, scores, guards, t)
            row["allowed"] = bool(w == 0 or all(row["guard"][g] >= floor[g] - _TIE_TOL or math.isnan(floor[g])
                                                for g in guards))
        table.append(row)
    values = np.array([r["value"] for r in table], dtype=np.float64)
    if np.isnan(values).all():
        raise ValueError(f"metric {metric!r} is undefined (NaN) on val_y at every weight")
    allowed = [r for r in table if r.get("allowed", True) and not math.isnan(r["value"])]
    if not allowed:  # no candidate kept the guards (w = 0 was not offered): b's guard values decide nothing
        allowed = [r for r in table if not math.isnan(r["value"])]
    best = max(r["value"] for r in allowed)
    tied = [r["weight"] for r in allowed if r["value"] >= best - _TIE_TOL]
    return max(tied), table
