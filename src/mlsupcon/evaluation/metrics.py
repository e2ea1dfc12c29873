"""Multi-label classification metrics with explicitly named variants.

Every function takes ``y_true`` of shape ``[n_examples, n_labels]`` holding
0/1 (a dense array, a ``scipy.sparse`` matrix, or anything ``np.asarray``
accepts, including CPU/GPU torch tensors, which are copied to numpy) and
``scores`` of the same shape. Scores are usually probabilities; logits work
equally well for every *ranking* metric (AUC, AP, P@k, R@k are invariant to
the monotone sigmoid), and for the *thresholded* metrics if the threshold is
given on the same scale (``threshold=0.0`` on logits is ``0.5`` on
probabilities).

The layout follows Edin et al. (2023, "Automated medical coding on
MIMIC-III and MIMIC-IV: a critical review and replicability study"): one
explicitly named function per metric variant, and threshold tuning kept out of
this module as a pure function of the validation split
(:mod:`mlsupcon.evaluation.thresholds`).

Conventions (read these before comparing numbers with a paper):

* **Prediction rule.** A label is predicted iff ``score >= threshold``.
  ``threshold`` is a scalar or one value per label (shape ``[n_labels]``).
* **Zero division.** Any precision, recall or F1 whose denominator is zero is
  ``0`` (scikit-learn's ``zero_division=0``), with one exception: the
  per-example F1 of an example with no true and no predicted labels is ``1``
  (the prediction is exactly right; scikit-learn's
  ``f1_score(average="samples", zero_division=1)``).
* **Present labels.** A label is *present* in a split if it has at least one
  positive in ``y_true``.

  - ``macro_f1``, ``macro_precision``, ``macro_recall``: mean of the per-label
    value over present labels only (absent labels, whose recall is undefined,
    are ignored; scikit-learn's ``f1_score(average="macro",
    labels=present)``).
  - ``macro_f1_all``: mean of per-label F1 over *all* labels, an absent label
    contributing ``0`` (scikit-learn's ``average="macro",
    zero_division=0``). This is lower than ``macro_f1`` whenever labels are
    absent.
  - ``macro_f1_pr``: harmonic mean of ``macro_precision`` and
    ``macro_recall`` (the formula of Mullenbach et al.'s caml-mimic code,
    here over present labels). It is not the mean of per-label F1 and is
    usually higher than ``macro_f1``.
  - ``macro_auc``: mean per-label ROC AUC over labels with at least one
    positive *and* one negative in the split (ROC AUC is undefined
    otherwise).
  - ``map``: mean per-label average precision over present labels (AP is
    defined as soon as a label has a positive; a label positive on every
    example has AP 1).
* **Micro averages** pool all ``n_examples * n_labels`` decisions:
  ``micro_auc`` and ``micro_ap`` are the AUC / AP of the flattened matrix,
  *including* the columns of labels absent from the split (all negatives;
  scikit-learn's ``roc_auc_score(y, s, average="micro")`` on the full matrix).
  ``micro_auc_present`` is the micro AUC over the present labels' columns only
  (``roc_auc_score(y[:, present], s[:, present], average="micro")``, what
  scikit-learn users get after dropping absent labels). The two differ
  whenever a label is absent: absent columns add negatives only, usually
  scored low, which tends to raise ``micro_auc``.
* **P@k and R@k.** The top ``k`` labels of each example are taken by score,
  ties broken towards the lower label index. ``P@k`` is the mean over *all*
  examples of ``|top-k ∩ true| / k`` (if ``k > n_labels`` every label is
  taken and the denominator stays ``k``). ``R@k`` is the mean over examples
  with at least one true label of ``|top-k ∩ true| / |true|``.
* **Example-based.** ``example_f1`` is the mean over examples of the
  per-example F1 ``2|pred ∩ true| / (|pred| + |true|)`` (1 if both are
  empty, see above) — the "example-F1" MulSupCon reports. ``hamming_loss``
  is the fraction of wrong label decisions, ``subset_accuracy`` the fraction
  of examples whose predicted label set is exactly right.
* **Undefined metrics.** A metric with nothing to average over in the whole
  split (``macro_f1`` with no present label, ``macro_auc`` with no label
  having both classes, ``micro_auc`` when ``y_true`` is constant,
  ``micro_auc_present`` when no label is present or every present column is
  all positive, ``map`` /
  ``micro_ap`` with no positive, ``R@k`` with no example having a label) is
  ``float("nan")``. Every other metric is a finite float.
* **Ties in scores** are handled exactly as scikit-learn does: ROC AUC uses
  average ranks (the area under the trapezoidal ROC curve) and AP evaluates
  precision once per distinct score.

Example:
    >>> import numpy as np
    >>> y = np.array([[1, 0, 1], [0, 1, 0]])
    >>> s = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3]])
    >>> m = compute_metrics(y, s, threshold=0.5, ks=(1, 2))
    >>> round(m["micro_f1"], 4), m["p@1"], m["r@2"], m["macro_auc"]
    (0.8, 1.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = [
    "DEFAULT_KS",
    "compute_metrics",
    "micro_f1",
    "macro_f1",
    "macro_f1_all",
    "macro_f1_pr",
    "micro_precision",
    "micro_recall",
    "macro_precision",
    "macro_recall",
    "per_label_f1",
    "micro_auc",
    "micro_auc_present",
    "macro_auc",
    "per_label_auc",
    "mean_average_precision",
    "micro_average_precision",
    "per_label_average_precision",
    "precision_at_k",
    "recall_at_k",
    "example_f1",
    "hamming_loss",
    "subset_accuracy",
]

#: Default cut-offs for P@k / R@k (5, 8 and 15 are the MIMIC-50 / MIMIC-full
#: conventions of Mullenbach et al.; 1 is the usual multi-label image one).
DEFAULT_KS: tuple[int, ...] = (1, 5, 8, 15)

# Work on blocks of about this many matrix entries so that temporaries
# (ranks, sort orders, boolean masks) stay in the tens of megabytes even for
# MIMIC-full sized matrices (~3e7 entries).
_BLOCK_ELEMS = 1 << 22


# --------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------


def _to_numpy(x: Any) -> Any:
    """Return ``x`` as a numpy array (sparse matrices are passed through).

    torch tensors are detected by duck typing (``.detach``), so this module
    never imports torch.
    """
    if sp.issparse(x):
        return x
    if hasattr(x, "detach") and callable(x.detach):
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
        try:
            return np.asarray(x.numpy())
        except (TypeError, RuntimeError):  # e.g. bfloat16 has no numpy dtype
            return np.asarray(x.float().numpy())
    return np.asarray(x)


def _check_2d(shape: tuple[int, ...], name: str) -> None:
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be 2-D with shape [n_examples, n_labels], got shape {tuple(shape)}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}); need at least one example and one label")


def _validate_y(y_true: Any, name: str = "y_true") -> np.ndarray:
    """Validate a 0/1 label matrix and return it as a dense boolean array."""
    y = _to_numpy(y_true)
    if sp.issparse(y):
        _check_2d(y.shape, name)
        data = np.asarray(y.data)
        if data.size and not np.all((data == 0) | (data == 1)):
            raise ValueError(f"{name} must contain only 0/1 values")
        return np.asarray(y.toarray()) != 0
    _check_2d(y.shape, name)
    if y.dtype == np.bool_:
        return y
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric 0/1 array, got dtype {y.dtype}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{name} must contain only 0/1 values")
    return y == 1


def _validate_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """Validate a score matrix and return it as a float32/float64 array."""
    s = _to_numpy(scores)
    if sp.issparse(s):
        _check_2d(s.shape, name)
        s = np.asarray(s.toarray())
    _check_2d(s.shape, name)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {s.dtype}")
    if not (s.dtype == np.float32 or s.dtype == np.float64):
        s = s.astype(np.float64)
    if np.isnan(s).any():
        raise ValueError(f"{name} contains NaN")
    return s


def _validate_pair(
    y_true: Any, scores: Any, y_name: str = "y_true", s_name: str = "scores"
) -> tuple[np.ndarray, np.ndarray]:
    y = _validate_y(y_true, y_name)
    s = _validate_scores(scores, s_name)
    if y.shape != s.shape:
        raise ValueError(
            f"{y_name} and {s_name} must have the same shape, got {tuple(y.shape)} and {tuple(s.shape)}"
        )
    return y, s


def _validate_threshold(threshold: Any, n_labels: int, name: str = "threshold") -> np.ndarray:
    """Return the threshold as a 0-d array or a ``[n_labels]`` array."""
    t = _to_numpy(threshold)
    if sp.issparse(t):
        raise ValueError(f"{name} must be a scalar or a 1-D array, not a sparse matrix")
    if t.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {t.dtype}")
    t = t.astype(np.float64)
    if t.ndim == 1 and t.shape[0] == 1:
        t = t.reshape(())
    if not (t.ndim == 0 or (t.ndim == 1 and t.shape[0] == n_labels)):
        raise ValueError(
            f"{name} must be a scalar or a 1-D array of length n_labels={n_labels}, got shape {t.shape}"
        )
    if np.isnan(t).any():
        raise ValueError(f"{name} contains NaN")
    return t


def _validate_k(k: Any, name: str = "k") -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    return int(k)


def _validate_ks(ks: Iterable[int] | int, name: str = "ks") -> tuple[int, ...]:
    if isinstance(ks, numbers.Integral) and not isinstance(ks, (bool, np.bool_)):
        ks = (ks,)
    try:
        items = list(ks)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an iterable of integers >= 1, got {ks!r}") from None
    out: list[int] = []
    for k in items:
        kk = _validate_k(k, name=f"{name} entry")
        if kk not in out:
            out.append(kk)
    return tuple(out)


# --------------------------------------------------------------------------
# vectorised building blocks
# --------------------------------------------------------------------------


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, 0 where ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _mean_or_nan(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else math.nan


@dataclass(frozen=True)
class _Counts:
    """Confusion counts per label and per example at one threshold."""

    tp: np.ndarray  # [C] true positives per label
    fp: np.ndarray  # [C]
    fn: np.ndarray  # [C]
    ex_tp: np.ndarray  # [n] |pred ∩ true| per example
    ex_pred: np.ndarray  # [n] |pred|
    ex_true: np.ndarray  # [n] |true|

    @property
    def n_examples(self) -> int:
        return int(self.ex_tp.shape[0])

    @property
    def n_labels(self) -> int:
        return int(self.tp.shape[0])

    @property
    def present(self) -> np.ndarray:
        return (self.tp + self.fn) > 0


def _counts(y: np.ndarray, s: np.ndarray, t: np.ndarray) -> _Counts:
    n, c = y.shape
    tp = np.zeros(c, dtype=np.int64)
    n_pred = np.zeros(c, dtype=np.int64)
    n_true = np.zeros(c, dtype=np.int64)
    ex_tp = np.empty(n, dtype=np.int64)
    ex_pred = np.empty(n, dtype=np.int64)
    ex_true = np.empty(n, dtype=np.int64)
    rows = max(1, _BLOCK_ELEMS // c)
    for r0 in range(0, n, rows):  # blocks of examples, not single examples
        sl = slice(r0, r0 + rows)
        yb = y[sl]
        pb = s[sl] >= t
        hit = yb & pb
        tp += hit.sum(axis=0)
        n_pred += pb.sum(axis=0)
        n_true += yb.sum(axis=0)
        ex_tp[sl] = hit.sum(axis=1)
        ex_pred[sl] = pb.sum(axis=1)
        ex_true[sl] = yb.sum(axis=1)
    return _Counts(tp=tp, fp=n_pred - tp, fn=n_true - tp, ex_tp=ex_tp, ex_pred=ex_pred, ex_true=ex_true)


def _per_label_prf(c: _Counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prec = _safe_div(c.tp, c.tp + c.fp)
    rec = _safe_div(c.tp, c.tp + c.fn)
    f1 = _safe_div(2 * c.tp, 2 * c.tp + c.fp + c.fn)
    return prec, rec, f1


def _micro_prf(c: _Counts) -> tuple[float, float, float]:
    tp, fp, fn = int(c.tp.sum()), int(c.fp.sum()), int(c.fn.sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return float(prec), float(rec), float(f1)


def _macro_prf(c: _Counts) -> dict[str, float]:
    prec, rec, f1 = _per_label_prf(c)
    present = c.present
    mp = _mean_or_nan(prec[present])
    mr = _mean_or_nan(rec[present])
    if math.isnan(mp):
        f1_pr = math.nan
    else:
        f1_pr = 2 * mp * mr / (mp + mr) if (mp + mr) > 0 else 0.0
    return {
        "macro_f1": _mean_or_nan(f1[present]),
        "macro_f1_all": float(np.mean(f1)),
        "macro_f1_pr": float(f1_pr),
        "macro_precision": mp,
        "macro_recall": mr,
    }


def _example_based(c: _Counts) -> dict[str, float]:
    den = c.ex_pred + c.ex_true
    ex_f1 = np.ones(c.n_examples, dtype=np.float64)
    np.divide(2.0 * c.ex_tp, den, out=ex_f1, where=den != 0)
    wrong = c.ex_pred + c.ex_true - 2 * c.ex_tp  # FP + FN per example
    return {
        "example_f1": float(np.mean(ex_f1)),
        "hamming_loss": float(wrong.sum() / (c.n_examples * c.n_labels)),
        "subset_accuracy": float(np.mean(wrong == 0)),
    }


@dataclass(frozen=True)
class _PositiveGroups:
    """Sort-order facts about the positives of a block of labels.

    Each label's scores are sorted ascending and split into tie groups; for
    every positive (flattened, label-major, ascending within its label):
    ``row`` is its label's index in the block, ``[a, b)`` the sorted positions
    of its tie group, ``pos_below`` / ``pos_to_b`` the number of positives of
    its label at positions ``< a`` / ``< b``.
    """

    sel: np.ndarray  # [k] label indices of the block
    n: int  # examples
    n_pos: np.ndarray  # [k] positives per label
    sorted_scores: np.ndarray  # [k * n] each label's scores sorted ascending, flattened
    row: np.ndarray  # [P]
    a: np.ndarray  # [P]
    b: np.ndarray  # [P]
    pos_below: np.ndarray  # [P]
    pos_to_b: np.ndarray  # [P]


def _positive_groups(y: np.ndarray, s: np.ndarray) -> Iterable[_PositiveGroups]:
    """Yield :class:`_PositiveGroups` for blocks of the labels that have a positive.

    One argsort per block of labels; everything after it is ``O(#positives log n)``.
    """
    n, c = y.shape
    n_pos_all = y.sum(axis=0)
    useful = np.flatnonzero(n_pos_all > 0)
    cols = max(1, _BLOCK_ELEMS // n)
    for b0 in range(0, useful.size, cols):  # blocks of labels
        sel = useful[b0 : b0 + cols]
        k = sel.size
        st = np.ascontiguousarray(s[:, sel].T)  # [k, n], one label per row
        order = np.argsort(st, axis=1)  # ascending; order inside ties is irrelevant
        ss = np.take_along_axis(st, order, axis=1).ravel()
        ys = np.take_along_axis(np.ascontiguousarray(y[:, sel].T), order, axis=1).ravel()
        del st, order
        # flat start positions of all tie groups (every row starts a group), plus a sentinel
        first = np.ones(k * n, dtype=bool)
        np.not_equal(ss[1:], ss[:-1], out=first[1:])
        first[::n] = True
        starts = np.append(np.flatnonzero(first), k * n)
        pf = np.flatnonzero(ys)  # flat positions of the positives, sorted
        row = pf // n
        n_pos = n_pos_all[sel]
        row_off = np.concatenate(([0], np.cumsum(n_pos)[:-1]))[row]  # positives in earlier rows
        g = np.searchsorted(starts, pf, side="right") - 1
        g_start, g_end = starts[g], starts[g + 1]
        yield _PositiveGroups(
            sel=sel,
            n=n,
            n_pos=n_pos,
            sorted_scores=ss,
            row=row,
            a=g_start - row * n,
            b=g_end - row * n,
            pos_below=np.searchsorted(pf, g_start, side="left") - row_off,
            pos_to_b=np.searchsorted(pf, g_end, side="left") - row_off,
        )


def _auc_ap_columns(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ROC AUC and average precision from one sort per column.

    A positive whose tie group occupies sorted (ascending) positions ``[a, b)``:

    * beats the negatives below ``a`` and ties the negatives in ``[a, b)``, so
      ``AUC = sum(neg_below + neg_tied / 2) / (P * N)`` (Mann-Whitney U with
      average ranks = scikit-learn's trapezoidal ROC AUC);
    * sees precision ``#{pos at >= a} / (n - a)`` at the end of its tie group
      (scores descending), so ``AP`` is the mean of that over the positives
      (scikit-learn's step-wise AP over distinct thresholds).

    Returns:
        ``(auc, ap)``, two ``[C]`` arrays; AUC is NaN for columns without both
        classes, AP is NaN for columns without a positive.
    """
    n, c = y.shape
    auc = np.full(c, np.nan)
    ap = np.full(c, np.nan)
    for g in _positive_groups(y, s):
        k = g.sel.size
        neg_below = g.a - g.pos_below
        neg_tied = (g.b - g.a) - (g.pos_to_b - g.pos_below)
        u = np.bincount(g.row, weights=neg_below + 0.5 * neg_tied, minlength=k)
        prec = (g.n_pos[g.row] - g.pos_below) / (n - g.a)
        ap[g.sel] = np.bincount(g.row, weights=prec, minlength=k) / g.n_pos
        neg = (n - g.n_pos).astype(np.float64)
        auc[g.sel] = np.where(neg > 0, u / np.maximum(g.n_pos * neg, 1.0), np.nan)
    return auc, ap


def _micro_auc_ap(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """ROC AUC and AP of the flattened matrix from two plain sorts (no argsort).

    For a positive with score ``v``: its average rank is ``#{< v} + (#{== v} + 1) / 2``
    (Mann-Whitney U), and the precision at the end of its tie group is
    ``#{positives >= v} / #{all >= v}``. Same values as :func:`_auc_ap_columns`
    on one column, several times faster for ``n * C ~ 1e7``.
    """
    flat = s.ravel()
    pos_sorted = np.sort(flat[y.ravel()])
    n_all, n_pos = flat.size, pos_sorted.size
    n_neg = n_all - n_pos
    if n_pos == 0:
        return math.nan, math.nan
    all_sorted = np.sort(flat)
    below = np.searchsorted(all_sorted, pos_sorted, side="left")
    if n_neg == 0:
        auc = math.nan
    else:
        at_most = np.searchsorted(all_sorted, pos_sorted, side="right")
        rank_sum = float(np.sum(below + (at_most - below + 1) / 2.0))
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (float(n_pos) * float(n_neg))
    pos_below = np.searchsorted(pos_sorted, pos_sorted, side="left")
    ap = float(np.mean((n_pos - pos_below) / (n_all - below).astype(np.float64)))
    return float(auc), ap


def _topk_hits(y: np.ndarray, s: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """``|top-k ∩ true|`` per example for each ``k`` (ties → lower label index)."""
    n, c = y.shape
    hits = {k: np.empty(n, dtype=np.int64) for k in ks}
    if not ks:
        return hits
    kk = {k: min(k, c) for k in ks}
    kth = sorted({c - v for v in kk.values()})
    rows = max(1, _BLOCK_ELEMS // c)
    for r0 in range(0, n, rows):  # blocks of examples
        sl = slice(r0, r0 + rows)
        sb, yb = s[sl], y[sl]
        part = np.partition(sb, kth, axis=1)
        for k in ks:
            v = part[:, c - kk[k]][:, None]  # k-th largest score of each row
            above = sb > v
            tied = sb == v
            need = kk[k] - above.sum(axis=1)
            take = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int64) <= need[:, None]))
            hits[k][sl] = (take & yb).sum(axis=1)
    return hits


def _p_r_at_k(hits: np.ndarray, n_true: np.ndarray, k: int) -> tuple[float, float]:
    p = float(np.mean(hits / float(k)))
    has = n_true > 0
    r = float(np.mean(hits[has] / n_true[has])) if has.any() else math.nan
    return p, r


# --------------------------------------------------------------------------
# public metrics: thresholded
# --------------------------------------------------------------------------


def _thresholded_counts(y_true: Any, scores: Any, threshold: Any) -> _Counts:
    y, s = _validate_pair(y_true, scores)
    t = _validate_threshold(threshold, y.shape[1])
    return _counts(y, s, t)


def micro_f1(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Micro-averaged F1: ``2 TP / (2 TP + FP + FN)`` pooled over all labels.

    Args:
        y_true: ``[n, C]`` 0/1 labels (dense, scipy.sparse or torch).
        scores: ``[n, C]`` scores; a label is predicted iff ``score >= threshold``.
            Hard 0/1 predictions work with the default ``threshold=0.5``.
        threshold: scalar, or one threshold per label (shape ``[C]``).

    Returns:
        The micro F1; 0 if there is no positive and no prediction at all.

    Example:
        >>> micro_f1([[1, 0], [1, 1]], [[0.9, 0.6], [0.2, 0.7]])
        0.6666666666666666
    """
    return _micro_prf(_thresholded_counts(y_true, scores, threshold))[2]


def micro_precision(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Micro-averaged precision ``TP / (TP + FP)``; 0 if nothing is predicted.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Example:
        >>> micro_precision([[1, 0], [1, 1]], [[0.9, 0.6], [0.2, 0.7]])
        0.6666666666666666
    """
    return _micro_prf(_thresholded_counts(y_true, scores, threshold))[0]


def micro_recall(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Micro-averaged recall ``TP / (TP + FN)``; 0 if ``y_true`` has no positive.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Example:
        >>> micro_recall([[1, 0], [1, 1]], [[0.9, 0.6], [0.2, 0.7]])
        0.6666666666666666
    """
    return _micro_prf(_thresholded_counts(y_true, scores, threshold))[1]


def per_label_f1(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """F1 of every label (``[C]`` array), 0 where ``2 TP + FP + FN == 0``.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Example:
        >>> per_label_f1([[1, 0], [1, 0]], [[0.9, 0.1], [0.2, 0.3]]).tolist()
        [0.6666666666666666, 0.0]
    """
    return _per_label_prf(_thresholded_counts(y_true, scores, threshold))[2]


def macro_f1(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Macro F1 over labels *present* in the split (at least one positive).

    Labels with no positive in ``y_true`` are ignored (their recall is
    undefined); see :func:`macro_f1_all` for the all-labels variant.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Returns:
        Mean per-label F1 over present labels; NaN if no label is present.

    Example:
        >>> # label 1 has no positive: ignored here, counted as 0 by macro_f1_all
        >>> macro_f1([[1, 0], [1, 0]], [[0.9, 0.1], [0.2, 0.3]])
        0.6666666666666666
    """
    return _macro_prf(_thresholded_counts(y_true, scores, threshold))["macro_f1"]


def macro_f1_all(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Macro F1 over *all* labels, with scikit-learn's ``zero_division=0``.

    A label with no positive and no prediction has F1 0 (not 1), so absent
    labels pull this value down; equals ``sklearn.metrics.f1_score(y, pred,
    average="macro", zero_division=0)``.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Example:
        >>> macro_f1_all([[1, 0], [1, 0]], [[0.9, 0.1], [0.2, 0.3]])
        0.3333333333333333
    """
    return _macro_prf(_thresholded_counts(y_true, scores, threshold))["macro_f1_all"]


def macro_precision(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Mean per-label precision over present labels (0 for a present label never predicted).

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Returns:
        The macro precision; NaN if no label is present.

    Example:
        >>> # label 0: P = 1/2; label 1: never predicted, P = 0
        >>> macro_precision([[1, 1], [0, 1]], [[0.9, 0.1], [0.8, 0.2]])
        0.25
    """
    return _macro_prf(_thresholded_counts(y_true, scores, threshold))["macro_precision"]


def macro_recall(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Mean per-label recall over present labels.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Returns:
        The macro recall; NaN if no label is present.

    Example:
        >>> macro_recall([[1, 1], [0, 1]], [[0.9, 0.1], [0.8, 0.2]])
        0.5
    """
    return _macro_prf(_thresholded_counts(y_true, scores, threshold))["macro_recall"]


def macro_f1_pr(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Harmonic mean of :func:`macro_precision` and :func:`macro_recall`.

    The macro-F1 formula of Mullenbach et al.'s caml-mimic (and work that
    reuses its evaluation), computed here over present labels. It is *not*
    the mean of per-label F1 (:func:`macro_f1`) and is generally larger.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Returns:
        ``2 P R / (P + R)`` (0 if ``P + R == 0``); NaN if no label is present.

    Example:
        >>> # macro P = 0.25, macro R = 0.5 -> 2 * 0.25 * 0.5 / 0.75
        >>> round(macro_f1_pr([[1, 1], [0, 1]], [[0.9, 0.1], [0.8, 0.2]]), 4)
        0.3333
    """
    return _macro_prf(_thresholded_counts(y_true, scores, threshold))["macro_f1_pr"]


def example_f1(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Example-based F1: mean over examples of ``2|pred ∩ true| / (|pred| + |true|)``.

    An example with no true and no predicted label scores 1 (an exactly
    right empty prediction); this is scikit-learn's ``f1_score(y, pred,
    average="samples", zero_division=1)``, and the "example-F1" reported by
    MulSupCon.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Example:
        >>> # example 0: F1 = 2*1/(2+1); example 1: nothing true, nothing predicted -> 1
        >>> round(example_f1([[1, 1], [0, 0]], [[0.9, 0.1], [0.2, 0.3]]), 4)
        0.8333
    """
    return _example_based(_thresholded_counts(y_true, scores, threshold))["example_f1"]


def hamming_loss(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Fraction of the ``n * C`` label decisions that are wrong.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Example:
        >>> hamming_loss([[1, 1], [0, 0]], [[0.9, 0.1], [0.2, 0.3]])
        0.25
    """
    return _example_based(_thresholded_counts(y_true, scores, threshold))["hamming_loss"]


def subset_accuracy(y_true: Any, scores: Any, threshold: float | np.ndarray = 0.5) -> float:
    """Fraction of examples whose predicted label set equals the true one (exact match).

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores, predicted iff ``score >= threshold``.
        threshold: scalar or ``[C]`` per-label thresholds.

    Example:
        >>> subset_accuracy([[1, 1], [0, 0]], [[0.9, 0.1], [0.2, 0.3]])
        0.5
    """
    return _example_based(_thresholded_counts(y_true, scores, threshold))["subset_accuracy"]


# --------------------------------------------------------------------------
# public metrics: ranking (threshold-free)
# --------------------------------------------------------------------------


def per_label_auc(y_true: Any, scores: Any) -> np.ndarray:
    """ROC AUC of every label (``[C]`` array), NaN for labels lacking a positive or a negative.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.

    Example:
        >>> per_label_auc([[1, 0], [0, 0], [1, 0]], [[0.9, 0.3], [0.5, 0.2], [0.4, 0.1]]).tolist()
        [0.5, nan]
    """
    y, s = _validate_pair(y_true, scores)
    return _auc_ap_columns(y, s)[0]


def macro_auc(y_true: Any, scores: Any) -> float:
    """Mean per-label ROC AUC over labels with at least one positive and one negative.

    Labels that are all-negative or all-positive in the split are skipped
    (their AUC is undefined); equals ``sklearn.metrics.roc_auc_score(y[:, ok],
    scores[:, ok], average="macro")`` on the remaining columns.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.

    Returns:
        The macro AUC; NaN if no label has both classes.

    Example:
        >>> macro_auc([[1, 0], [0, 0], [1, 0]], [[0.9, 0.3], [0.5, 0.2], [0.4, 0.1]])
        0.5
    """
    return _mean_or_nan(_nonnan(per_label_auc(y_true, scores)))


def micro_auc(y_true: Any, scores: Any) -> float:
    """ROC AUC of the flattened ``n * C`` decisions (``roc_auc_score(average="micro")``).

    Every column is pooled, including labels absent from the split (see
    :func:`micro_auc_present` for the present-labels-only variant).

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.

    Returns:
        The micro AUC; NaN if ``y_true`` is all 0 or all 1.

    Example:
        >>> micro_auc([[1, 0], [0, 1]], [[0.9, 0.3], [0.5, 0.6]])
        1.0
    """
    y, s = _validate_pair(y_true, scores)
    return _micro_auc_ap(y, s)[0]


def _micro_auc_present(y: np.ndarray, s: np.ndarray, pooled_auc: float | None = None) -> float:
    """Micro AUC over the columns with at least one positive (``pooled_auc``: the all-columns value, reused)."""
    present = y.any(axis=0)
    if not present.any():
        return math.nan
    if present.all():
        return _micro_auc_ap(y, s)[0] if pooled_auc is None else pooled_auc
    return _micro_auc_ap(y[:, present], s[:, present])[0]


def micro_auc_present(y_true: Any, scores: Any) -> float:
    """ROC AUC of the flattened decisions of the labels *present* in the split.

    Only columns with at least one positive in ``y_true`` are pooled; equals
    ``sklearn.metrics.roc_auc_score(y[:, present], scores[:, present],
    average="micro")``. :func:`micro_auc` pools every column instead,
    absent labels included; the two are equal when every label is present.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.

    Returns:
        The micro AUC over present labels; NaN if no label is present or the
        present columns hold no negative.

    Example:
        >>> y, s = [[1, 0], [0, 0]], [[0.9, 0.1], [0.95, 0.2]]
        >>> micro_auc(y, s), micro_auc_present(y, s)   # label 1 is absent
        (0.6666666666666666, 0.0)
    """
    y, s = _validate_pair(y_true, scores)
    return _micro_auc_present(y, s)


def per_label_average_precision(y_true: Any, scores: Any) -> np.ndarray:
    """Average precision of every label (``[C]`` array), NaN for labels with no positive.

    AP is scikit-learn's step-wise ``sum_k (R_k - R_{k-1}) P_k`` over distinct
    score thresholds (no interpolation).

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.

    Example:
        >>> per_label_average_precision([[0, 0], [1, 0]], [[0.9, 0.1], [0.2, 0.3]]).tolist()
        [0.5, nan]
    """
    y, s = _validate_pair(y_true, scores)
    return _auc_ap_columns(y, s)[1]


def mean_average_precision(y_true: Any, scores: Any) -> float:
    """mAP: mean per-label average precision over labels with at least one positive.

    A label positive on every example has AP 1 and is included; labels with
    no positive are skipped (AP undefined). Equals
    ``sklearn.metrics.average_precision_score(y[:, present], scores[:, present],
    average="macro")``.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.

    Returns:
        The mAP; NaN if no label has a positive.

    Example:
        >>> mean_average_precision([[0, 0], [1, 0]], [[0.9, 0.1], [0.2, 0.3]])
        0.5
    """
    return _mean_or_nan(_nonnan(per_label_average_precision(y_true, scores)))


def micro_average_precision(y_true: Any, scores: Any) -> float:
    """Average precision of the flattened ``n * C`` decisions (``average="micro"``).

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.

    Returns:
        The micro AP; NaN if ``y_true`` has no positive.

    Example:
        >>> micro_average_precision([[1, 0], [0, 1]], [[0.9, 0.3], [0.5, 0.6]])
        1.0
    """
    y, s = _validate_pair(y_true, scores)
    return _micro_auc_ap(y, s)[1]


def precision_at_k(y_true: Any, scores: Any, k: int = 5) -> float:
    """P@k: mean over all examples of ``|top-k ∩ true| / k``.

    The top ``k`` labels are taken by score, ties broken towards the lower
    label index. If ``k > C`` every label is taken and the denominator is
    still ``k``. Examples with no true label contribute 0.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.
        k: cut-off, an integer ``>= 1``.

    Example:
        >>> precision_at_k([[1, 0, 1], [0, 1, 0]], [[0.9, 0.2, 0.4], [0.1, 0.8, 0.3]], k=2)
        0.75
    """
    k = _validate_k(k)
    y, s = _validate_pair(y_true, scores)
    return _p_r_at_k(_topk_hits(y, s, (k,))[k], y.sum(axis=1), k)[0]


def recall_at_k(y_true: Any, scores: Any, k: int = 5) -> float:
    """R@k: mean over examples with at least one true label of ``|top-k ∩ true| / |true|``.

    Args:
        y_true: ``[n, C]`` 0/1 labels.
        scores: ``[n, C]`` scores or logits.
        k: cut-off, an integer ``>= 1``.

    Returns:
        The R@k; NaN if no example has a true label.

    Example:
        >>> recall_at_k([[1, 0, 1], [0, 1, 0]], [[0.9, 0.2, 0.4], [0.1, 0.8, 0.3]], k=1)
        0.75
    """
    k = _validate_k(k)
    y, s = _validate_pair(y_true, scores)
    return _p_r_at_k(_topk_hits(y, s, (k,))[k], y.sum(axis=1), k)[1]


def _nonnan(x: np.ndarray) -> np.ndarray:
    return x[~np.isnan(x)]


# --------------------------------------------------------------------------
# everything at once
# --------------------------------------------------------------------------


def compute_metrics(
    y_true: Any,
    scores: Any,
    threshold: float | np.ndarray = 0.5,
    ks: Iterable[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Compute every metric of this module in one pass over the data.

    Args:
        y_true: ``[n, C]`` 0/1 labels (numpy, scipy.sparse or torch).
        scores: ``[n, C]`` probabilities (or logits, with ``threshold`` on the
            logit scale). NaN is rejected; ``±inf`` is allowed.
        threshold: a label is predicted iff ``score >= threshold``; a scalar,
            or one value per label (``[C]``, e.g. from
            :func:`~mlsupcon.evaluation.thresholds.tune_per_label_thresholds`).
            Tune it on the validation split, never on the split evaluated.
        ks: cut-offs for P@k / R@k (integers ``>= 1``).

    Returns:
        A dict of plain Python floats with keys ``micro_f1``, ``macro_f1``,
        ``macro_f1_all``, ``macro_f1_pr``, ``micro_precision``,
        ``micro_recall``, ``macro_precision``, ``macro_recall``,
        ``micro_auc`` (all columns pooled), ``micro_auc_present`` (present
        labels' columns only), ``macro_auc``, ``map``, ``micro_ap``, ``example_f1``,
        ``hamming_loss``, ``subset_accuracy``, ``p@k`` and ``r@k`` for each
        ``k`` in ``ks``, and ``threshold`` (the scalar threshold used; NaN when
        per-label thresholds were given, whose mean is then reported as
        ``threshold_mean``). Metrics undefined on the whole split are NaN
        (see the module docstring); all others are finite.

    Raises:
        ValueError: naming the offending argument, for a shape mismatch,
            non-0/1 ``y_true``, NaN ``scores``, empty input, a bad
            ``threshold`` or a ``k < 1``.

    Example:
        >>> import numpy as np
        >>> y = np.array([[1, 0, 1], [0, 1, 0]])
        >>> s = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3]])
        >>> m = compute_metrics(y, s, threshold=0.5, ks=(1, 2))
        >>> round(m["micro_f1"], 4), round(m["macro_f1"], 4), m["p@2"], m["example_f1"]
        (0.8, 0.6667, 0.75, 0.8333333333333333)
    """
    ks_t = _validate_ks(ks)
    y, s = _validate_pair(y_true, scores)
    t = _validate_threshold(threshold, y.shape[1])

    c = _counts(y, s, t)
    out: dict[str, float] = {}
    p, r, f = _micro_prf(c)
    out["micro_f1"] = f
    out["micro_precision"] = p
    out["micro_recall"] = r
    out.update(_macro_prf(c))
    out["micro_auc"], out["micro_ap"] = _micro_auc_ap(y, s)
    out["micro_auc_present"] = _micro_auc_present(y, s, out["micro_auc"])
    auc, ap = _auc_ap_columns(y, s)
    out["macro_auc"] = _mean_or_nan(_nonnan(auc))
    out["map"] = _mean_or_nan(_nonnan(ap))
    out.update(_example_based(c))
    hits = _topk_hits(y, s, ks_t)
    for k in ks_t:
        out[f"p@{k}"], out[f"r@{k}"] = _p_r_at_k(hits[k], c.ex_true, k)
    if t.ndim == 0:
        out["threshold"] = float(t)
    else:
        out["threshold"] = math.nan
        out["threshold_mean"] = float(np.mean(t))
    return {key: float(v) for key, v in out.items()}
