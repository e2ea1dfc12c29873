"""Decision-threshold tuning: pure functions of the validation split.

Tune on the **validation** split, then apply the returned threshold(s),
unchanged, to the test split::

    t = tune_global_threshold(y_val, scores_val)
    test_metrics = compute_metrics(y_test, scores_test, threshold=t)

Never pass test data to these functions: a threshold chosen on the split it
is evaluated on inflates every thresholded metric (F1, precision, recall,
example-F1, Hamming loss, subset accuracy). The functions read only their
arguments, never modify them, and keep no state, so the same inputs always
give the same threshold.

The prediction rule matches :mod:`mlsupcon.evaluation.metrics`: a label is
predicted iff ``score >= threshold``.

Both tuners are sort-based sweeps, so they are exact: with ``grid=None``
the best F1 over *all* thresholds is found, not just one on a grid (every
cut between distinct scores is covered; only cuts at a positive's score can
win, so only those are scored), in ``O(N log N)`` time for
``N = n_examples * n_labels`` entries (about a second for ``N = 1e7``). Any
threshold strictly between two consecutive distinct scores gives the same
predictions on the validation split; the midpoint of the winning gap is
returned. With an explicit ``grid`` (e.g. ``np.linspace(0.01, 0.99, 99)`` as
in Edin et al.) the best grid value is returned instead. Ties in F1 go to
the smallest threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import _BLOCK_ELEMS, _positive_groups, _validate_pair

__all__ = [
    "RULE_CV_FOLDS",
    "choose_threshold_rule",
    "tune_global_threshold",
    "tune_global_threshold_macro_f1",
    "tune_per_label_thresholds",
    "tune_shrunk_thresholds",
]

#: Candidate cuts x labels above which the macro-F1 sweep scores evenly spaced quantiles of the
#: positives' scores instead of every one (the sweep is then near-exact, not exact).
MACRO_SWEEP_MAX_ENTRIES = 50_000_000


def _validate_grid(grid: Any) -> np.ndarray:
    g = np.asarray(grid)
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"grid must be a non-empty 1-D sequence of thresholds, got shape {g.shape}")
    if g.dtype.kind not in "biuf":
        raise ValueError(f"grid must be numeric, got dtype {g.dtype}")
    g = np.sort(g.astype(np.float64))
    if np.isnan(g).any():
        raise ValueError("grid contains NaN")
    return g


def _gap_midpoint(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """A threshold ``t`` with ``lower < t <= upper`` (midpoint when representable)."""
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        mid = lower / 2.0 + upper / 2.0
    ok = (mid > lower) & (mid <= upper)
    return np.where(ok, mid, upper)


def tune_global_threshold(y_true_val: Any, scores_val: Any, grid: Any = None) -> float:
    """One global threshold maximising micro-F1 on the validation split.

    **Validation data only.** Never give this function test data; apply the
    returned value unchanged to the test split.

    Pure function: it reads only its arguments (never modifies them) and is
    deterministic.

    Args:
        y_true_val: ``[n, C]`` 0/1 validation labels (numpy, scipy.sparse or
            torch).
        scores_val: ``[n, C]`` validation scores (probabilities or logits; the
            threshold is returned on the same scale).
        grid: candidate thresholds. ``None`` (default) sweeps every distinct
            score exactly and returns the midpoint of the winning gap between
            consecutive distinct scores (or the smallest score, if predicting
            everything wins).

    Returns:
        The threshold, a Python float; predict a label iff ``score >= t``.
        Ties in micro-F1 go to the smallest threshold.

    Raises:
        ValueError: bad input (see :func:`~mlsupcon.evaluation.metrics.compute_metrics`),
            a bad ``grid``, or ``y_true_val`` without any positive (every
            threshold then has micro-F1 0).

    Example:
        >>> y = [[1, 0], [0, 1], [1, 0]]
        >>> s = [[0.9, 0.7], [0.3, 0.35], [0.8, 0.1]]
        >>> # cuts: >=0.9 F1 .5, >=0.8 F1 .8, >=0.7 F1 .67, >=0.35 F1 .86, >=0.3 F1 .75
        >>> tune_global_threshold(y, s)
        0.32499999999999996
        >>> tune_global_threshold(y, s, grid=[0.2, 0.32, 0.5])
        0.32
    """
    y, s = _validate_pair(y_true_val, scores_val, "y_true_val", "scores_val")
    flat = s.ravel()
    pos_scores = np.sort(flat[y.ravel()])
    n_pos = pos_scores.size
    if n_pos == 0:
        raise ValueError("y_true_val has no positive label; micro-F1 is 0 at every threshold")
    all_sorted = np.sort(flat)
    n_all = all_sorted.size

    if grid is None:
        # Only cuts at a positive's score can be optimal: for a fixed TP,
        # raising the cut to the lowest included positive only drops false
        # positives. So the candidates are the distinct positive scores.
        keep = np.ones(n_pos, dtype=bool)
        np.not_equal(pos_scores[1:], pos_scores[:-1], out=keep[1:])
        cand = pos_scores[keep]  # ascending
        below = np.searchsorted(all_sorted, cand, side="left")
        n_pred = n_all - below
    else:
        cand = _validate_grid(grid)
        n_pred = n_all - np.searchsorted(all_sorted, cand, side="left")
    tp = n_pos - np.searchsorted(pos_scores, cand, side="left")
    f1 = 2.0 * tp / (n_pred + n_pos)  # n_pos > 0, so never 0/0
    best = int(np.argmax(f1))  # first maximum = smallest threshold
    if grid is not None or below[best] == 0:
        return float(cand[best])
    # any t in (next lower distinct score, cand[best]] gives the same predictions
    return float(_gap_midpoint(all_sorted[below[best] - 1], cand[best]))


def tune_global_threshold_macro_f1(y_true_val: Any, scores_val: Any, grid: Any = None) -> float:
    """One global threshold maximising macro-F1 (over labels present in validation) on the validation split.

    The threshold each metric is best at differs: one tuned for micro-F1 (the run's threshold,
    :func:`tune_global_threshold`) is set by the frequent labels, while macro-F1 weighs every
    label alike and usually prefers a lower cut. Papers that choose "the threshold on validation"
    per metric (the MulSupCon authors' code picks the best of 0.1..0.9 for each metric) report
    macro-F1 at this threshold; runs report it as ``macro_f1_macro_threshold``, next to
    ``macro_f1`` at the run's threshold.

    **Validation data only.** Pure function, deterministic.

    Args:
        y_true_val: ``[n, C]`` 0/1 validation labels.
        scores_val: ``[n, C]`` validation scores.
        grid: candidate thresholds. ``None`` sweeps every distinct positive score (exact: raising
            a cut up to the next positive only drops false positives, for every label); when
            candidates × labels exceed :data:`MACRO_SWEEP_MAX_ENTRIES`, evenly spaced quantiles
            of them are swept instead.

    Returns:
        The threshold (midpoint of the winning gap, as :func:`tune_global_threshold`); ties go
        to the smallest threshold.

    Raises:
        ValueError: bad input or a bad ``grid``, or no positive label at all.

    Example:
        >>> y = [[1, 0], [0, 1], [1, 0], [0, 0]]
        >>> s = [[0.9, 0.3], [0.6, 0.2], [0.8, 0.1], [0.5, 0.05]]
        >>> t_micro = tune_global_threshold(y, s)     # the rare label 1 is not worth its false positives
        >>> t_macro = tune_global_threshold_macro_f1(y, s)
        >>> round(t_micro, 3), round(t_macro, 3)
        (0.7, 0.15)
    """
    y, s = _validate_pair(y_true_val, scores_val, "y_true_val", "scores_val")
    n_pos = y.sum(axis=0)
    present = np.flatnonzero(n_pos)
    if present.size == 0:
        raise ValueError("y_true_val has no positive label; macro-F1 is undefined at every threshold")
    flat = s.ravel()
    if grid is None:
        cand = np.unique(flat[y.ravel()])  # ascending distinct positive scores
        most = max(1, MACRO_SWEEP_MAX_ENTRIES // present.size)
        if cand.size > most:
            cand = np.unique(cand[np.linspace(0, cand.size - 1, most).round().astype(np.int64)])
    else:
        cand = _validate_grid(grid)
    f1_sum = np.zeros(cand.size, dtype=np.float64)
    n = y.shape[0]
    for j in present:
        col = s[:, j]
        pos = np.sort(col[y[:, j]])
        n_pred = n - np.searchsorted(np.sort(col), cand, side="left")
        tp = pos.size - np.searchsorted(pos, cand, side="left")
        f1_sum += 2.0 * tp / (n_pred + pos.size)
    best = int(np.argmax(f1_sum))  # first maximum = smallest threshold
    if grid is not None:
        return float(cand[best])
    lower = flat[flat < cand[best]]  # the next lower distinct score, if any, bounds the gap
    if lower.size == 0:
        return float(cand[best])
    return float(_gap_midpoint(lower.max(), cand[best]))


def tune_per_label_thresholds(
    y_true_val: Any, scores_val: Any, grid: Any = None, fallback: float | None = None
) -> np.ndarray:
    """One threshold per label, each maximising that label's F1 on the validation split.

    **Validation data only.** Never give this function test data.

    Caution: per-label thresholds overfit badly on rare labels (a label with
    one or two validation positives gets a threshold fitted to those
    examples), which is why the medical-coding literature (Edin et al.)
    reports a single global threshold. Prefer :func:`tune_global_threshold`
    unless the validation split is large for every label.

    Pure function: it reads only its arguments, never modifies them, and is
    deterministic.

    Args:
        y_true_val: ``[n, C]`` 0/1 validation labels.
        scores_val: ``[n, C]`` validation scores.
        grid: candidate thresholds; ``None`` sweeps each label's distinct
            scores exactly (midpoint of the winning gap, as in
            :func:`tune_global_threshold`).
        fallback: threshold for labels with no validation positive (their F1
            is 0 at every threshold). ``None`` uses
            ``tune_global_threshold(y_true_val, scores_val, grid)``.

    Returns:
        A float64 array of shape ``[C]``; predict label ``j`` iff
        ``score[:, j] >= t[j]``. Ties go to the smallest threshold.

    Raises:
        ValueError: bad input, a bad ``grid`` or ``fallback``, or
            ``fallback=None`` while ``y_true_val`` has no positive at all.

    Example:
        >>> y = [[1, 0, 0], [0, 1, 0], [1, 1, 0]]
        >>> s = [[0.9, 0.2, 0.5], [0.6, 0.3, 0.4], [0.4, 0.8, 0.1]]
        >>> tune_per_label_thresholds(y, s, fallback=0.5).round(3).tolist()
        [0.4, 0.25, 0.5]
    """
    y, s = _validate_pair(y_true_val, scores_val, "y_true_val", "scores_val")
    n, c = y.shape
    g = None if grid is None else _validate_grid(grid)
    n_pos = y.sum(axis=0)
    out = np.empty(c, dtype=np.float64)

    if g is None:
        # Only cuts at the start of a tie group holding a positive can be
        # optimal (for a fixed TP, starting the cut higher only removes false
        # positives), so candidates are the positives' tie-group starts.
        for grp in _positive_groups(y, s):
            f1 = 2.0 * (grp.n_pos[grp.row] - grp.pos_below) / (n - grp.a + grp.n_pos[grp.row])
            # per label: highest F1, ties -> lowest cut (smallest threshold)
            best = np.lexsort((grp.a, -f1, grp.row))
            first_of_row = np.ones(best.size, dtype=bool)
            first_of_row[1:] = grp.row[best][1:] != grp.row[best][:-1]
            best = best[first_of_row]  # one per label of the block, in label order
            a, r = grp.a[best], grp.row[best]
            upper = grp.sorted_scores[r * n + a]
            lower = grp.sorted_scores[r * n + np.maximum(a - 1, 0)]
            out[grp.sel] = np.where(a == 0, upper, _gap_midpoint(lower, upper))
    else:
        cols = max(1, _BLOCK_ELEMS // n)
        for c0 in range(0, c, cols):  # blocks of labels
            sl = slice(c0, c0 + cols)
            sb, yb, pb = s[:, sl], y[:, sl], n_pos[sl]
            # bin[i, l] = number of grid values <= score, i.e. the score is
            # predicted positive exactly for grid indices < bin.
            n_g = g.size
            bins = np.searchsorted(g, sb, side="right")
            flat = bins + (n_g + 1) * np.arange(sb.shape[1])[None, :]
            size = (n_g + 1) * sb.shape[1]
            hist_all = np.bincount(flat.ravel(), minlength=size).reshape(sb.shape[1], n_g + 1)
            hist_pos = np.bincount(flat[yb], minlength=size).reshape(sb.shape[1], n_g + 1)
            # predicted at grid index i: entries with bin > i
            n_pred = np.cumsum(hist_all[:, ::-1], axis=1)[:, ::-1][:, 1:]
            tp = np.cumsum(hist_pos[:, ::-1], axis=1)[:, ::-1][:, 1:]
            den = n_pred + pb[:, None]
            f1 = np.zeros(den.shape, dtype=np.float64)
            np.divide(2.0 * tp, den, out=f1, where=den > 0)
            out[sl] = g[np.argmax(f1, axis=1)]

    absent = n_pos == 0
    if absent.any():
        if fallback is None:
            if absent.all():
                raise ValueError(
                    "y_true_val has no positive label; no threshold can be tuned "
                    "(pass an explicit fallback)"
                )
            fb = tune_global_threshold(y, s, grid)
        else:
            fb = float(fallback)
            if np.isnan(fb):
                raise ValueError("fallback is NaN")
        out[absent] = fb
    return out


#: Validation positives at which a label's own threshold and the global one weigh the same in
#: :func:`tune_shrunk_thresholds` (docs/results.md, "Decision rule").
DEFAULT_SHRINK_STRENGTH = 3.0


def tune_shrunk_thresholds(
    y_true_val: Any,
    scores_val: Any,
    strength: float = DEFAULT_SHRINK_STRENGTH,
    grid: Any = None,
    global_threshold: float | None = None,
) -> np.ndarray:
    """Per-label thresholds shrunk towards the global one by the label's number of validation positives.

    ``t_j = (n_j * t_label_j + strength * t_global) / (n_j + strength)``, where ``t_label_j`` is
    the label's own F1-optimal threshold (:func:`tune_per_label_thresholds`), ``t_global`` the
    micro-F1-optimal global threshold (:func:`tune_global_threshold`) and ``n_j`` the label's
    positives in the validation split. A label seen once in validation keeps mostly the global
    threshold (its own optimum is fitted to one example); a frequent label gets its own. Labels
    without a validation positive get ``t_global``. ``strength=0`` is the raw per-label rule,
    ``strength=inf`` the global one.

    **Validation data only.** Pure function, deterministic.

    Args:
        y_true_val: ``[n, C]`` 0/1 validation labels.
        scores_val: ``[n, C]`` validation scores.
        strength: validation positives at which both thresholds weigh the same (>= 0).
        grid: as in :func:`tune_global_threshold`.
        global_threshold: ``tune_global_threshold(y_true_val, scores_val, grid)`` when the caller
            has it already (None: tuned here).

    Returns:
        A float64 array ``[C]``; predict label ``j`` iff ``score[:, j] >= t[j]``.

    Raises:
        ValueError: bad input, a negative or NaN ``strength``, or no positive in ``y_true_val``.

    Example:
        >>> y = [[1, 0], [0, 1], [1, 0], [1, 1], [0, 0]]
        >>> s = [[0.9, 0.2], [0.6, 0.3], [0.4, 0.1], [0.8, 0.7], [0.5, 0.6]]
        >>> tune_shrunk_thresholds(y, s, strength=0).round(3).tolist()   # each label's own
        [0.7, 0.25]
        >>> tune_shrunk_thresholds(y, s, strength=float("inf")).round(3).tolist()  # the global one
        [0.25, 0.25]
        >>> tune_shrunk_thresholds(y, s, strength=2).round(3).tolist()   # (3 * 0.7 + 2 * 0.25) / 5
        [0.52, 0.25]
    """
    try:
        k = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a number >= 0, got {strength!r}") from None
    if not k >= 0:
        raise ValueError(f"strength must be a number >= 0, got {strength!r}")
    y, s = _validate_pair(y_true_val, scores_val, "y_true_val", "scores_val")
    t_global = tune_global_threshold(y, s, grid) if global_threshold is None else float(global_threshold)
    if np.isinf(k):
        return np.full(y.shape[1], t_global, dtype=np.float64)
    own = tune_per_label_thresholds(y, s, grid, fallback=t_global)
    if k == 0:
        return own
    n_pos = y.sum(axis=0).astype(np.float64)
    return np.where(n_pos > 0, (n_pos * own + k * t_global) / (n_pos + k), t_global)


#: Folds of :func:`choose_threshold_rule`'s cross-validation on the validation split.
RULE_CV_FOLDS = 5


def choose_threshold_rule(
    y_true_val: Any,
    scores_val: Any,
    folds: int = RULE_CV_FOLDS,
    seed: int = 0,
    strength: float = DEFAULT_SHRINK_STRENGTH,
) -> tuple[str, dict[str, Any]]:
    """``"tune"`` (one global threshold) or ``"tune-per-label"`` (:func:`tune_shrunk_thresholds`),
    chosen by cross-validation on the validation split.

    Each rule is tuned on ``folds − 1`` folds of the validation examples and applied to the held-out
    fold; the held-out decisions of all folds are pooled and scored with micro- and macro-F1. The
    per-label rule is chosen iff it keeps the global rule's cross-validated micro-F1 (≥) and raises
    its macro-F1 (>): per-label thresholds help the rare labels (macro-F1) when validation has enough
    of their positives, and cost micro-F1 when their optima are fitted to a few examples — which
    scoring a rule on the examples it was tuned on would never show. Then tune the chosen rule on the
    whole validation split.

    **Validation data only.** Pure and deterministic (the folds are a permutation drawn with ``seed``).

    Args:
        y_true_val: ``[n, C]`` 0/1 validation labels.
        scores_val: ``[n, C]`` validation scores.
        folds: K >= 2 (at most n).
        seed: seed of the fold assignment.
        strength: of :func:`tune_shrunk_thresholds`.

    Returns:
        ``(rule, table)``; ``table``: ``{"folds": K, "tune": {"micro_f1", "macro_f1"},
        "tune-per-label": {...}}`` (the cross-validated scores).

    Raises:
        ValueError: bad input, K < 2 or K > n, or no positive in ``y_true_val``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = (rng.random((400, 3)) < 0.3).astype(int)
        >>> s = np.clip(y * [[0.1, 0.5, 0.3]] + rng.random((400, 3)) * [[0.2, 1.0, 0.5]], 0, 1)  # other scales
        >>> rule, table = choose_threshold_rule(y, s)
        >>> rule, table["tune-per-label"]["macro_f1"] > table["tune"]["macro_f1"]
        ('tune-per-label', True)
    """
    from .metrics import macro_f1, micro_f1

    y, s = _validate_pair(y_true_val, scores_val, "y_true_val", "scores_val")
    n = y.shape[0]
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= n:
        raise ValueError(f"folds must be an integer in [2, {n}] (the validation examples), got {folds!r}")
    if not y.any():
        raise ValueError("y_true_val has no positive label: nothing to tune a threshold on")
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % folds
    decided = {"tune": np.zeros(y.shape, dtype=bool), "tune-per-label": np.zeros(y.shape, dtype=bool)}
    for k in range(folds):
        held, fit = fold_of == k, fold_of != k
        y_fit, s_fit = y[fit], s[fit]
        if not y_fit.any():  # nothing to tune on these folds: predict nothing on the held-out one
            continue
        t_global = tune_global_threshold(y_fit, s_fit)
        t_labels = tune_shrunk_thresholds(y_fit, s_fit, strength=strength, global_threshold=t_global)
        decided["tune"][held] = s[held] >= t_global
        decided["tune-per-label"][held] = s[held] >= t_labels[None, :]
    table: dict[str, Any] = {"folds": folds}
    for rule, pred in decided.items():
        # a decision matrix scored at threshold 0.5 is the decisions themselves
        scores = pred.astype(np.float64)
        table[rule] = {"micro_f1": float(micro_f1(y, scores, 0.5)), "macro_f1": float(macro_f1(y, scores, 0.5))}
    per_label, single = table["tune-per-label"], table["tune"]
    better = per_label["micro_f1"] >= single["micro_f1"] and per_label["macro_f1"] > single["macro_f1"]
    return ("tune-per-label" if better else "tune"), table
