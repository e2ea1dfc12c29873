"""One-vs-rest linear classifiers (LinearSVC / logistic regression) and a torch head that scores with them.

The classic strong baseline for multi-label text: TF-IDF features
(:class:`~mlsupcon.models.text_features.TextFeaturizer`) and one independent linear model per
label. :func:`fit_one_vs_rest` fits them with scikit-learn (liblinear, sparse end to end; or
L-BFGS for many dense features), and
returns plain arrays; :func:`fit_vector_linear` does the same for dense feature vectors with
standardisation folded into the weights; :class:`LinearScores` applies them in torch (dense
``[n, K]`` inputs or the padded sparse batches of :class:`~mlsupcon.models.sparse.SparseTextEncoder`).

Scores: ``LinearScores`` returns the decision values (logits); ``torch.sigmoid`` of them is
what the evaluation uses as scores. For an SVM these are not calibrated probabilities, but the
sigmoid is one strictly increasing map applied to every entry, so every ranking metric (AUC,
AP, mAP, P@k) is unchanged, and a global threshold tuned on validation sigmoid scores selects
the same predictions as one tuned on decision values (``t`` on scores is ``logit(t)`` on
decision values). The only caveat is float32 saturation of the sigmoid beyond ``|z| > ~17``,
which creates ties; SVM decision values on TF-IDF stay within a few units.

Labels with no positive (or no negative) training example get no classifier: their weights are
zero and their intercept the smoothed prior log-odds ``log((pos + 0.5) / (neg + 0.5))`` (about
``-log(2n)``), a constant score below every learned one.

Example:
    >>> import numpy as np, torch
    >>> from mlsupcon.models.linear_baseline import fit_one_vs_rest, LinearScores
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 5))
    >>> Y = np.stack([X[:, 0] > 0, X[:, 1] > 0, np.zeros(60, bool)], 1).astype(np.uint8)
    >>> coef, intercept = fit_one_vs_rest(X, Y, estimator="logreg")
    >>> coef.shape, intercept.shape, float(coef[2].any())   # label 2 has no positive
    ((3, 5), (3,), 0.0)
    >>> head = LinearScores(coef, intercept)
    >>> logits = head(torch.as_tensor(X, dtype=torch.float32))
    >>> bool(((logits[:, :2] > 0).numpy() == Y[:, :2].astype(bool)).mean() > 0.9)
    True
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import check_choice, check_positive_int

__all__ = ["LinearScores", "constant_logit", "fit_one_vs_rest", "fit_vector_linear"]

ESTIMATORS = ("svm", "logreg")
#: Logistic-regression solvers: liblinear (sparse TF-IDF, few dense features) or L-BFGS (many
#: dense features, e.g. pixels: BLAS products instead of liblinear's per-entry loops).
SOLVERS = ("liblinear", "lbfgs")


def constant_logit(n_pos: int, n_neg: int) -> float:
    """Smoothed prior log-odds ``log((pos + 0.5) / (neg + 0.5))`` used for labels without a classifier.

    Example:
        >>> round(constant_logit(0, 99), 3)
        -5.293
    """
    return float(np.log((n_pos + 0.5) / (n_neg + 0.5)))


def _labels_matrix(Y: Any, n: int) -> np.ndarray:
    import scipy.sparse as sp

    y = Y.toarray() if sp.issparse(Y) else np.asarray(Y)
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"Y must be [n_examples={n}, num_labels] 0/1, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("Y must hold only 0/1 values")
    return y.astype(bool)


def _make_estimator(estimator: str, C: float, class_weight: Any, max_iter: int, tol: float | None, seed: int,
                    solver: str = "liblinear"):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if estimator == "svm":
        # dual=True: faster than the primal when features outnumber examples (TF-IDF).
        return LinearSVC(C=C, class_weight=class_weight, dual=True, max_iter=max_iter, random_state=seed,
                         **({} if tol is None else {"tol": tol}))
    return LogisticRegression(C=C, class_weight=class_weight, solver=solver, max_iter=max_iter,
                              random_state=seed, **({} if tol is None else {"tol": tol}))


def _fit_label(est: Any, X: Any, y: np.ndarray) -> tuple[np.ndarray, float]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # liblinear often stops at max_iter on near-separable labels with a usable model.
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return np.asarray(est.coef_, dtype=np.float32).ravel(), float(np.ravel(est.intercept_)[0])


def fit_one_vs_rest(
    X: Any,
    Y: Any,
    estimator: str = "svm",
    C: float = 1.0,
    class_weight: str | Mapping[int, float] | None = None,
    n_jobs: int = 1,
    max_iter: int = 1000,
    tol: float | None = None,
    seed: int = 0,
    solver: str = "liblinear",
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one binary linear classifier per label.

    Args:
        X: Features ``[n, K]``: a scipy sparse matrix (kept sparse; converted once to the
            float64 CSR liblinear wants, not once per label) or a dense array.
        Y: Labels ``[n, num_labels]`` 0/1 (dense or scipy sparse).
        estimator: ``"svm"`` (LinearSVC, squared hinge, L2; default) or ``"logreg"``
            (LogisticRegression, ``solver``).
        C: Inverse regularisation strength (default 1.0).
        class_weight: Passed to scikit-learn per label, e.g. ``"balanced"`` (default None).
        n_jobs: Labels fitted in parallel (joblib processes; default 1).
        max_iter: solver iteration cap (default 1000).
        tol: Stopping tolerance (default: scikit-learn's).
        seed: liblinear's random state (dual coordinate order).
        solver: ``"logreg"``'s solver: ``"liblinear"`` (default; the intercept is regularised
            like a weight) or ``"lbfgs"`` (dense features; intercept not regularised).

    Returns:
        ``(coef float32 [num_labels, K], intercept float32 [num_labels])``; the decision value
        of label ``j`` is ``X @ coef[j] + intercept[j]``. Labels without a positive or without a
        negative get zero weights and the constant :func:`constant_logit`.

    Raises:
        ValueError: Bad ``estimator``/``C``/shapes.

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> X = sp.csr_matrix(np.eye(4, dtype=np.float32))
        >>> coef, b = fit_one_vs_rest(X, np.eye(4, dtype=np.uint8)[:, :2], C=10.0)
        >>> bool((X @ coef.T + b).argmax(1)[0] == 0)
        True
    """
    import scipy.sparse as sp
    from joblib import Parallel, delayed

    check_choice(estimator, "estimator", ESTIMATORS)
    check_choice(solver, "solver", SOLVERS)
    if solver != "liblinear" and estimator != "logreg":
        raise ValueError(f"solver {solver!r} is for estimator 'logreg' (LinearSVC is liblinear's), got {estimator!r}")
    try:
        C = float(C)
    except (TypeError, ValueError):
        raise ValueError(f"C must be a positive float, got {C!r}") from None
    if not C > 0 or not np.isfinite(C):
        raise ValueError(f"C must be a positive float, got {C!r}")
    n_jobs = int(n_jobs)
    max_iter = check_positive_int(max_iter, "max_iter")
    if sp.issparse(X):
        Xf = sp.csr_matrix(X, dtype=np.float64)
        Xf.sort_indices()
    else:
        Xf = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
        if Xf.ndim != 2:
            raise ValueError(f"X must be 2-D [n, K], got shape {Xf.shape}")
    n, k = Xf.shape
    y = _labels_matrix(Y, n)
    num_labels = y.shape[1]
    pos = y.sum(axis=0)
    trainable = np.flatnonzero((pos > 0) & (pos < n))
    coef = np.zeros((num_labels, k), dtype=np.float32)
    intercept = np.array([constant_logit(int(p), int(n - p)) for p in pos], dtype=np.float32)
    fits = Parallel(n_jobs=n_jobs)(
        delayed(_fit_label)(_make_estimator(estimator, C, class_weight, max_iter, tol, seed, solver), Xf,
                            y[:, j].astype(np.int32))
        for j in trainable
    )
    for j, (w, b) in zip(trainable, fits):
        coef[j] = w
        intercept[j] = b
    return coef, intercept


def fit_vector_linear(
    X: Any,
    Y: Any,
    estimator: str = "logreg",
    C: float = 1.0,
    standardize: bool = True,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fit_one_vs_rest` on dense feature vectors, with standardisation folded into the weights.

    The features are standardised (``StandardScaler``: zero mean, unit variance; constant
    features are left unscaled) before fitting; the returned weights act on the *raw*
    features, ``coef' = coef / scale`` and ``intercept' = intercept - coef' @ mean``, so
    prediction is one affine map (:class:`LinearScores` on raw vectors).

    Args:
        X: Dense ``[n, D]`` features (e.g. yeast's 103, or frozen embeddings).
        Y: ``[n, num_labels]`` 0/1.
        estimator: ``"logreg"`` (default) or ``"svm"``.
        C: Inverse regularisation strength.
        standardize: Standardise first (default True); False fits the raw features.
        **kwargs: Further :func:`fit_one_vs_rest` options (``class_weight``, ``n_jobs``, ...).

    Returns:
        ``(coef float32 [num_labels, D], intercept float32 [num_labels])`` on raw features.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(loc=100.0, scale=50.0, size=(80, 3))
        >>> Y = (X[:, :1] > 100).astype(np.uint8)
        >>> coef, b = fit_vector_linear(X, Y, C=10.0)
        >>> float(((X @ coef.T + b > 0) == Y).mean()) > 0.95
        True
    """
    from sklearn.preprocessing import StandardScaler

    Xd = np.asarray(X, dtype=np.float64)
    if Xd.ndim != 2:
        raise ValueError(f"X must be dense 2-D [n, D], got shape {Xd.shape}")
    if not standardize:
        return fit_one_vs_rest(Xd, Y, estimator=estimator, C=C, **kwargs)
    scaler = StandardScaler().fit(Xd)
    coef, intercept = fit_one_vs_rest(scaler.transform(Xd), Y, estimator=estimator, C=C, **kwargs)
    w = coef.astype(np.float64) / scaler.scale_
    b = intercept.astype(np.float64) - w @ scaler.mean_
    return w.astype(np.float32), b.astype(np.float32)


class LinearScores(nn.Module):
    """Per-label linear scores ``x @ coef.T + intercept`` from fitted weights (returns logits).

    ``weight`` is stored as ``[K, num_labels]`` (``coef`` transposed) so a padded sparse batch
    is one ``F.embedding_bag`` over its rows; both ``weight`` and ``bias`` are parameters, so
    the head can be fine-tuned and ``state_dict`` (safetensors) stores them.

    Args:
        coef: ``[num_labels, K]`` (numpy or tensor), e.g. from :func:`fit_one_vs_rest`.
        intercept: ``[num_labels]``.

    Example:
        >>> import torch
        >>> head = LinearScores(torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([0.5]))
        >>> head(torch.tensor([[1.0, 0.0, 1.0]])).tolist()
        [[3.5]]
        >>> head({"ids": torch.tensor([[0, 2]]), "weights": torch.tensor([[1.0, 1.0]])}).tolist()
        [[3.5]]
        >>> torch.sigmoid(head(torch.zeros(1, 3))).shape  # scores for the evaluation
        torch.Size([1, 1])
    """

    def __init__(self, coef: Any, intercept: Any) -> None:
        super().__init__()
        w = torch.as_tensor(np.asarray(coef, dtype=np.float32) if not isinstance(coef, torch.Tensor) else coef)
        b = torch.as_tensor(intercept if isinstance(intercept, torch.Tensor)
                            else np.asarray(intercept, dtype=np.float32))
        if w.dim() != 2 or b.dim() != 1 or b.shape[0] != w.shape[0]:
            raise ValueError(f"coef must be [num_labels, K] and intercept [num_labels], got {tuple(w.shape)} "
                             f"and {tuple(b.shape)}")
        self.weight = nn.Parameter(w.detach().float().t().contiguous())
        self.bias = nn.Parameter(b.detach().float().clone())

    @property
    def num_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def num_labels(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, x: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Dense ``[n, K]`` tensor, or ``{"ids": int64 [n, L], "weights": float [n, L]}`` -> logits
        ``[n, num_labels]``."""
        if isinstance(x, Mapping):
            ids = x["ids"].to(self.weight.device)
            wts = x["weights"].to(device=self.weight.device, dtype=self.weight.dtype)
            if ids.shape[1] == 0:  # no feature in the whole batch
                return self.bias.expand(ids.shape[0], -1).clone()
            return F.embedding_bag(ids, self.weight, per_sample_weights=wts, mode="sum") + self.bias
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"LinearScores expects inputs [n, {self.num_features}], got {tuple(x.shape)}")
        return x.to(self.weight.dtype) @ self.weight + self.bias

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_labels={self.num_labels}"
