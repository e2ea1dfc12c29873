"""``linear``: the baseline users would otherwise pick — one-vs-rest linear classifiers on TF-IDF.

Text: TF-IDF over hashed word 1–2-grams and character n-grams (sublinear tf, fitted on the
training split: :class:`~mlsupcon.models.text_features.TextFeaturizer`) and one LinearSVC per
label (scikit-learn, sparse end to end). Vectors: the same on standardised features (logistic
regression by default). No Lightning and no epochs: the fit is exact and deterministic.

The trained model is an ordinary :class:`~mlsupcon.models.Classifier`, so thresholds, metrics,
export, ``predict`` and ``evaluate`` treat it like every other method: the encoder's single
linear layer *is* the fitted model (``X @ coef.T + intercept``, the decision values), and the
``scores`` head passes them through as logits. Sigmoid of an SVM decision value is not a
calibrated probability, but it is monotone, so every ranking metric (mAP, AUC, P@k) is exactly
that of the decision values, and the global threshold is tuned on validation like any other.

Options (``linear_options``): ``estimator`` (``svm`` | ``logreg``), ``C``, ``class_weight``,
``featurizer`` (:class:`TextFeaturizer` options, e.g. ``max_features``), ``n_jobs``.
"""

from __future__ import annotations

from typing import Any

from mlsupcon.training.methods.base import FitContext, Method

#: Defaults per modality, chosen on the validation split of Debtags (text) and yeast (vectors).
TEXT_DEFAULTS: dict[str, Any] = {"estimator": "svm", "C": 0.5, "class_weight": None, "n_jobs": 1,
                                 "featurizer": {"max_features": 200_000}}
VECTOR_DEFAULTS: dict[str, Any] = {"estimator": "logreg", "C": 1.0, "class_weight": None, "n_jobs": 1}
OPTIONS = ("estimator", "C", "class_weight", "featurizer", "n_jobs", "max_iter")


class Linear(Method):
    name = "linear"
    options = ("linear_options",)
    builds_own_encoder = True

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        opts = cfg.linear_options
        if not isinstance(opts, dict):
            raise ValueError(f"linear_options: expected a mapping of options, got {type(opts).__name__}")
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise ValueError(f"linear_options: unknown option(s) {unknown}; expected some of {list(OPTIONS)}")
        if "estimator" in opts and opts["estimator"] not in ("svm", "logreg"):
            raise ValueError(f"linear_options.estimator: expected 'svm' or 'logreg', got {opts['estimator']!r}")
        if "C" in opts and not (isinstance(opts["C"], (int, float)) and not isinstance(opts["C"], bool)
                                and opts["C"] > 0):
            raise ValueError(f"linear_options.C: expected a number > 0, got {opts['C']!r}")

    @classmethod
    def oom_hints(cls, cfg) -> list[str]:
        return ["linear_options: {featurizer: {max_features: 50000}} (fewer TF-IDF columns)"]

    def prepare(self, ctx: FitContext) -> None:
        if ctx.dataset.modality not in ("text", "vector"):
            raise ValueError(f"method: 'linear' takes text or feature vectors; dataset '{ctx.dataset.name}' is "
                             f"{ctx.dataset.modality} (use bce or a contrastive method)")

    def fit(self, ctx: FitContext):
        from mlsupcon.models import Classifier
        from mlsupcon.models.score_head import ScoresHead

        encoder, num_features = fit_linear_encoder(ctx)
        self._write_log(ctx, num_features, ctx.dataset.splits["train"])
        return Classifier(encoder, ScoresHead(ctx.dataset.num_labels))

    @staticmethod
    def _write_log(ctx: FitContext, num_features: int, train) -> None:
        """``logs/linear/metrics.csv``: one row (the fit has no epochs), like the Lightning stages' logs."""
        from mlsupcon.training.io import atomic_write_text

        log_dir = ctx.out / "logs" / "linear"
        log_dir.mkdir(parents=True, exist_ok=True)
        row = {"epoch": 0, "num_train": len(train), "num_features": int(num_features),
               "featurize_s": round(ctx.timings.get("linear_featurize_s", 0.0), 3),
               "fit_s": round(ctx.timings.get("linear_fit_s", 0.0), 3)}
        atomic_write_text(log_dir / "metrics.csv", ",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n")


def fit_linear_encoder(ctx: FitContext, seed: int | None = None):
    """The fitted one-vs-rest linear model as an encoder whose output is the decision values
    ``[n, C]`` (text: a ``sparse`` encoder over TF-IDF; vectors: a one-layer ``mlp``), and the
    number of input features. Also used by other methods to blend a linear model in.

    The fitted weights are cached on disk (``$MLSUPCON_CACHE/features``, keyed by the training
    texts and labels, the options and ``seed``): the fit is deterministic, and a seed sweep or a
    comparison that blends the same linear model into every run fits it once."""
    import numpy as np
    import torch

    from mlsupcon.models import build_encoder
    from mlsupcon.models.linear_baseline import fit_one_vs_rest, fit_vector_linear

    ds, cfg = ctx.dataset, ctx.cfg
    train = ds.splits["train"]
    text = ds.modality == "text"
    opts = {**(TEXT_DEFAULTS if text else VECTOR_DEFAULTS), **cfg.linear_options}
    fit_opts = {k: v for k, v in opts.items() if k in ("estimator", "C", "class_weight", "n_jobs", "max_iter")}
    c = ds.num_labels
    with ctx.timed("linear_featurize_s"):
        if text:
            encoder = build_encoder("sparse", train_texts=list(train.inputs), featurizer=dict(opts["featurizer"]),
                                    hidden_dims=(c,), final_activation=False, cache_nnz=0)
            x = encoder.featurizer.transform(list(train.inputs))
        else:
            x = np.asarray(train.inputs, dtype=np.float32)
            encoder = build_encoder("mlp", in_dim=int(x.shape[1]), hidden_dims=(c,), final_activation=False)
    seed = cfg.seed if seed is None else seed
    with ctx.timed("linear_fit_s"):
        fit = fit_one_vs_rest if text else fit_vector_linear
        if text:
            identity = {"featurizer": encoder.featurizer.config(), "num_features": encoder.num_features,
                        "fit": fit_opts, "seed": seed}
            coef, intercept = _cached_fit(lambda: fit(x, train.labels, seed=seed, **fit_opts), train, identity)
        else:
            coef, intercept = fit(x, train.labels, seed=seed, **fit_opts)
    with torch.no_grad():
        layer = encoder if text else encoder.net[0]
        w = coef.T if text else coef
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        layer.bias.copy_(torch.from_numpy(intercept))
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder.eval(), int(x.shape[1])


def _cached_fit(fit, train, identity):
    """``fit()`` -> (coef, intercept), through the on-disk cache of fitted linear models."""
    import hashlib

    import numpy as np

    from mlsupcon.models.feature_cache import cache_key, default_cache_dir, read_table, write_table

    labels = train.labels.tocsr()
    digest = hashlib.sha256(labels.indptr.tobytes() + labels.indices.tobytes()).hexdigest()
    key = cache_key({"kind": "linear-ovr", "labels": digest, **identity}, [str(t) for t in train.inputs])
    path = default_cache_dir() / f"linear-{key[:32]}.npz"
    num_labels = labels.shape[1]
    num_features = identity["num_features"]
    if isinstance(num_features, int):
        table = read_table(path, key, num_labels, num_features + 1)
        if table is not None:
            return table[:, :-1], table[:, -1].copy()
    coef, intercept = fit()
    try:
        write_table(path, key, np.concatenate([coef, intercept[:, None]], axis=1))
    except OSError:  # a read-only cache folder only costs the next run a refit
        pass
    return coef, intercept
