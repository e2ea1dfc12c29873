"""TF-IDF + one-vs-rest linear classifier on Debtags (the classic baseline), with our featurizer.

Fits :class:`~mlsupcon.models.text_features.TextFeaturizer` on the training texts,
:func:`~mlsupcon.models.linear_baseline.fit_one_vs_rest` per label, scores = sigmoid of the
decision values, one global threshold tuned on validation micro-F1, metrics on validation and
test. ``--sweep`` tries several settings and reports validation figures only (pick defaults on
validation, never on test); without it one setting is run and its test figures reported.

Usage:
    python benchmarks/linear_baseline_debtags.py [--estimator svm|logreg] [--C 1.0]
        [--word 1 2] [--char 2 5 | --no-char] [--raw-tf] [--min-df 2] [--max-features N] [--n-jobs 1]
    python benchmarks/linear_baseline_debtags.py --sweep [--sweep-labels 120]
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
    print(f"  featurizer {opts}: K={f.num_features}, fit {t1 - t0:.1f}s, transform (3 splits) {t2 - t1:.1f}s",
          flush=True)
    return f, X


def evaluate(ds, X, coef, intercept, splits=("validation", "test"), labels=None):
    def y(s):
        lab = ds.splits[s].labels
        return lab if labels is None else lab[:, labels]

    def scores(s):
        z = np.asarray(X[s] @ coef.T, dtype=np.float32) + intercept
        return z, 1.0 / (1.0 + np.exp(-z))

    zv, sv = scores("validation")
    t = tune_global_threshold(y("validation"), sv)
    out = {}
    for s in splits:
        z, p = scores(s) if s != "validation" else (zv, sv)
        out[s] = compute_metrics(y(s), p, threshold=t, ks=(1, 5))
        out[s + "_decision"] = z
    out["threshold"] = t
    return out


def run(ds, X, estimator, C, n_jobs, splits=("validation", "test"), labels=None):
    Y = ds.splits["train"].labels
    t0 = time.perf_counter()
    coef, b = fit_one_vs_rest(X["train"], Y if labels is None else Y[:, labels], estimator=estimator, C=C,
                              n_jobs=n_jobs)
    fit_s = time.perf_counter() - t0
    res = evaluate(ds, X, coef, b, splits, labels)
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
    ap.add_argument("--word", type=int, nargs=2, default=(1, 2))
    ap.add_argument("--char", type=int, nargs=2, default=(2, 5))
    ap.add_argument("--no-char", action="store_true")
    ap.add_argument("--raw-tf", action="store_true", help="raw counts instead of sublinear tf")
    ap.add_argument("--min-df", type=int, default=2)
    ap.add_argument("--max-features", type=int, default=None)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--sweep", action="store_true", help="validation-only sweep over C, char range, min_df")
    ap.add_argument("--sweep-labels", type=int, default=120, help="labels fitted in the sweep (random, fixed); 0 = all")
    args = ap.parse_args()
    ds = load_dataset("debtags")
    if not args.sweep:
        char = None if args.no_char else tuple(args.char)
        _, X = featurize(ds, word_ngram_range=tuple(args.word), char_ngram_range=char, min_df=args.min_df,
                         max_features=args.max_features, sublinear_tf=not args.raw_tf)
        res = run(ds, X, args.estimator, args.C, args.n_jobs)
        check_sigmoid_ranking(ds, res)
        return
    # Validation only, on a fixed random subset of labels (a full LinearSVC fit with char
    # n-grams takes ~10 CPU-minutes): the settings are compared with each other, not with test.
    labels = None
    if args.sweep_labels:
        labels = np.sort(np.random.default_rng(0).choice(ds.num_labels, args.sweep_labels, replace=False))
    print(f"sweep on validation, {'all' if labels is None else len(labels)} labels")
    base = {"char_ngram_range": (2, 5), "min_df": 2}
    settings = [  # (featurizer options, [(estimator, C), ...])
        (base, [("svm", 0.1), ("svm", 0.3), ("svm", 1.0), ("svm", 3.0), ("logreg", 10.0), ("logreg", 30.0)]),
        ({"char_ngram_range": None, "min_df": 2}, [("svm", 0.3), ("svm", 1.0)]),
        ({"char_ngram_range": (1, 4), "min_df": 2}, [("svm", 1.0)]),
        ({"char_ngram_range": (3, 6), "min_df": 2}, [("svm", 1.0)]),
        ({"char_ngram_range": (2, 5), "min_df": 1}, [("svm", 1.0)]),
        ({"char_ngram_range": (2, 5), "min_df": 5}, [("svm", 1.0)]),
        ({"char_ngram_range": (2, 5), "min_df": 2, "max_features": 100_000}, [("svm", 1.0)]),
    ]
    for feats, fits in settings:
        _, X = featurize(ds, **feats)
        for estimator, C in fits:
            run(ds, X, estimator, C, args.n_jobs, splits=("validation",), labels=labels)


if __name__ == "__main__":
    main()
