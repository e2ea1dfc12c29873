"""TF-IDF + one-vs-rest linear classifier on Debtags (the classic baseline), with our featurizer.

Fits :class:`~mlsupcon.models.text_features.TextFeaturizer` on the training texts,
:func:`~mlsupcon.models.linear_baseline.fit_one_vs_rest` per label, scores = sigmoid of the
decision values, one global threshold tuned on validation micro-F1, metrics on validation and
test. ``--sweep`` tries several settings and reports validation figures only (pick defaults on
validation, never on test); without it one setting is run and its test figures reported.

Usage:
    python benchmarks/linear_baseline_debtags.py [--estimator svm|logreg] [--C 1.0]
        [--char 2 5 | --no-char] [--min-df 2] [--max-features N] [--n-jobs 1]
    python benchmarks/linear_baseline_debtags.py --sweep
It also checks that sigmoid scores give the same ranking metrics as raw decision values.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mlsupcon.data import load_dataset
from mlsupcon.evaluation import compute_metrics, tune_global_threshold
from mlsupcon.models.linear_baseline import fit_one_vs_rest
from mlsupcon.models.text_features import TextFeaturizer

KEYS = ("map", "macro_f1", "micro_f1")


def featurize(ds, **opts):
    t0 = time.perf_counter()
    f = TextFeaturizer(**opts).fit(ds.splits["train"].inputs)
    t1 = time.perf_counter()
    X = {s: f.transform(ds.splits[s].inputs) for s in ("train", "validation", "test")}
    t2 = time.perf_counter()
    print(f"  featurizer {opts}: K={f.num_features}, fit {t1 - t0:.1f}s, transform (3 splits) {t2 - t1:.1f}s", flush=True)
    return f, X


def evaluate(ds, X, coef, intercept, splits=("validation", "test")):
    def scores(s):
        z = np.asarray(X[s] @ coef.T, dtype=np.float32) + intercept
        return z, 1.0 / (1.0 + np.exp(-z))

    zv, sv = scores("validation")
    t = tune_global_threshold(ds.splits["validation"].labels, sv)
    out = {}
    for s in splits:
        z, p = scores(s) if s != "validation" else (zv, sv)
        out[s] = compute_metrics(ds.splits[s].labels, p, threshold=t, ks=(1, 5))
        out[s + "_decision"] = z
    out["threshold"] = t
    return out


def run(ds, X, estimator, C, n_jobs, splits=("validation", "test")):
    t0 = time.perf_counter()
    coef, b = fit_one_vs_rest(X["train"], ds.splits["train"].labels, estimator=estimator, C=C, n_jobs=n_jobs)
    fit_s = time.perf_counter() - t0
    res = evaluate(ds, X, coef, b, splits)
    for s in splits:
        m = res[s]
        print(f"  {estimator} C={C}: fit {fit_s:.0f}s | {s}: " + ", ".join(f"{k} {m[k]:.4f}" for k in KEYS)
              + f" (t={res['threshold']:.3f})", flush=True)
    return res


def check_sigmoid_ranking(ds, res, split="test"):
    """Ranking metrics of decision values and of their sigmoid must agree."""
    z = res[split + "_decision"]
    raw = compute_metrics(ds.splits[split].labels, z, threshold=0.0, ks=(1, 5))
    sig = res[split]
    keys = ("map", "micro_ap", "macro_auc", "micro_auc", "p@1", "p@5")
    diff = max(abs(raw[k] - sig[k]) for k in keys)
    print(f"  sigmoid vs decision values, max |diff| over {keys}: {diff:.2e}; |z| max {np.abs(z).max():.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimator", default="svm", choices=("svm", "logreg"))
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--char", type=int, nargs=2, default=(2, 5))
    ap.add_argument("--no-char", action="store_true")
    ap.add_argument("--min-df", type=int, default=2)
    ap.add_argument("--max-features", type=int, default=None)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--sweep", action="store_true", help="validation-only sweep over C, char range, min_df")
    args = ap.parse_args()
    ds = load_dataset("debtags")
    if not args.sweep:
        _, X = featurize(ds, char_ngram_range=None if args.no_char else tuple(args.char), min_df=args.min_df,
                         max_features=args.max_features)
        res = run(ds, X, args.estimator, args.C, args.n_jobs)
        check_sigmoid_ranking(ds, res)
        return
    val = ("validation",)
    for feats in ({"char_ngram_range": (2, 5), "min_df": 2}, {"char_ngram_range": None, "min_df": 2},
                  {"char_ngram_range": (1, 4), "min_df": 2}, {"char_ngram_range": (3, 6), "min_df": 2},
                  {"char_ngram_range": (2, 5), "min_df": 1}, {"char_ngram_range": (2, 5), "min_df": 5}):
        _, X = featurize(ds, **feats)
        Cs = (0.1, 0.3, 1.0, 3.0) if feats == {"char_ngram_range": (2, 5), "min_df": 2} else (1.0,)
        for C in Cs:
            run(ds, X, "svm", C, args.n_jobs, splits=val)
        if feats == {"char_ngram_range": (2, 5), "min_df": 2}:
            for C in (1.0, 10.0, 30.0):
                run(ds, X, "logreg", C, args.n_jobs, splits=val)


if __name__ == "__main__":
    main()
