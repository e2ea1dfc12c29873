"""``linear``: the baseline users would otherwise pick — one-vs-rest linear classifiers on simple features.

Defaults per modality (``linear_options`` overrides any of them):

========  ==========================================================  ================================
modality  features                                                    classifier per label
========  ==========================================================  ================================
text      TF-IDF over hashed word 1–2-grams and character n-grams     LinearSVC, C = 0.5 (liblinear,
          (sublinear tf, fitted on the training split, at most        sparse end to end)
          200,000 columns: :class:`~mlsupcon.models.text_features.
          TextFeaturizer`)
vector    the feature vectors, standardised (training mean / std)     logistic regression, C = 1
                                                                      (liblinear)
image     the pixels (:mod:`~mlsupcon.models.pixels` encoder),        logistic regression, C = 0.003
          resized to ``pixels.size`` (default: the run's              (L-BFGS)
          ``encoder_options.image_size``, else 32), flattened,
          one channel when every training image is grey
          (``grayscale: auto``), else R, G, B; standardised
========  ==========================================================  ================================

No Lightning and no epochs: the fit is exact and deterministic. Standardisation is folded into
the weights (:func:`~mlsupcon.models.linear_baseline.fit_vector_linear`), so vectors and pixels
are scored by one affine map of the raw values. C was chosen on the validation split of Debtags
(text), yeast (vectors) and fashion-mosaic (images); images use L-BFGS, which fits all the
pixels' features far faster than liblinear.

The trained model is an ordinary :class:`~mlsupcon.models.Classifier`, so thresholds, metrics,
export, ``predict`` and ``evaluate`` treat it like every other method: the encoder's single
linear layer *is* the fitted model (``X @ coef.T + intercept``, the decision values), and the
``scores`` head passes them through as logits. An image model takes what every image model
takes (paths, PIL images, arrays; ``mlsupcon.load(RUN).predict_proba``). Sigmoid of an SVM
decision value is not a calibrated probability, but it is monotone, so every ranking metric
(mAP, AUC, P@k) is exactly that of the decision values, and the global threshold is tuned on
validation like any other.

Options (``linear_options``): ``estimator`` (``svm`` | ``logreg``), ``solver`` (``logreg``:
``liblinear`` | ``lbfgs``), ``C``, ``class_weight``, ``featurizer`` (text:
:class:`TextFeaturizer` options, e.g. ``max_features``), ``pixels`` (images: ``size``, the side
images are resized to, e.g. ``{size: 28}`` to downsample; ``grayscale``: ``auto`` | true |
false), ``n_jobs`` (labels fitted in parallel processes; text: -1, every core, once the
training features are not tiny), ``max_iter``.
"""

from __future__ import annotations

from typing import Any

from mlsupcon.config.methods import BUILDS_OWN_ENCODER, METHOD_OPTIONS
from mlsupcon.training.methods.base import FitContext, Method

#: Defaults per modality, chosen on the validation split of Debtags (text), yeast (vectors) and
#: fashion-mosaic (images); see the module docstring.
TEXT_DEFAULTS: dict[str, Any] = {"estimator": "svm", "C": 0.5, "class_weight": None, "n_jobs": -1,
                                 "featurizer": {"max_features": 200_000}}
VECTOR_DEFAULTS: dict[str, Any] = {"estimator": "logreg", "C": 1.0, "class_weight": None, "n_jobs": 1}
IMAGE_DEFAULTS: dict[str, Any] = {"estimator": "logreg", "solver": "lbfgs", "C": 0.003, "class_weight": None,
                                  "n_jobs": 1, "pixels": {"size": None, "grayscale": "auto"}}
DEFAULTS = {"text": TEXT_DEFAULTS, "vector": VECTOR_DEFAULTS, "image": IMAGE_DEFAULTS}
#: Nonzero TF-IDF entries from which the labels of a text fit are fitted on every core (``n_jobs: -1``).
_PARALLEL_MIN_NNZ = 200_000
#: Side images are resized to when neither ``linear_options.pixels.size`` nor the run's
#: ``encoder_options.image_size`` says (32×32×3 = 3,072 features).
DEFAULT_PIXEL_SIZE = 32
PIXEL_OPTIONS = ("size", "grayscale")
OPTIONS = ("estimator", "solver", "C", "class_weight", "featurizer", "pixels", "n_jobs", "max_iter")
FIT_OPTIONS = ("estimator", "solver", "C", "class_weight", "n_jobs", "max_iter")  # those of fit_one_vs_rest
_PIXEL_CHUNK = 512  # images decoded and resized per call while reading the training split


class Linear(Method):
    name = "linear"
    options = METHOD_OPTIONS["linear"]
    builds_own_encoder = "linear" in BUILDS_OWN_ENCODER  # its featurizer is its encoder

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
        if "solver" in opts and opts["solver"] not in ("liblinear", "lbfgs"):
            raise ValueError(f"linear_options.solver: expected 'liblinear' or 'lbfgs', got {opts['solver']!r}")
        if "C" in opts and not (isinstance(opts["C"], (int, float)) and not isinstance(opts["C"], bool)
                                and opts["C"] > 0):
            raise ValueError(f"linear_options.C: expected a number > 0, got {opts['C']!r}")
        if "pixels" in opts:
            _check_pixels(opts["pixels"])

    @classmethod
    def oom_hints(cls, cfg) -> list[str]:
        return ["linear_options: {featurizer: {max_features: 50000}} (fewer TF-IDF columns)"]

    def prepare(self, ctx: FitContext) -> None:
        modality = ctx.dataset.modality
        if modality not in DEFAULTS:
            raise ValueError(f"method: 'linear' takes text, feature vectors or images; dataset "
                             f"'{ctx.dataset.name}' is {modality} (use bce or a contrastive method)")
        if "pixels" in ctx.cfg.linear_options and modality != "image":
            raise ValueError(f"linear_options.pixels: only for image data; dataset '{ctx.dataset.name}' is {modality}")

    def fit(self, ctx: FitContext):
        from mlsupcon.models import Classifier
        from mlsupcon.models.heads.scores import ScoresHead

        encoder, num_features = fit_linear_encoder(ctx)
        self._write_log(ctx, num_features, ctx.dataset.splits["train"])
        return Classifier(encoder, ScoresHead(ctx.dataset.num_labels))

    @staticmethod
    def _write_log(ctx: FitContext, num_features: int, train) -> None:
        """``logs/linear/metrics.csv``: one row (the fit has no epochs), like the Lightning stages' logs."""
        from mlsupcon.runs.io import atomic_write_text

        log_dir = ctx.out / "logs" / "linear"
        log_dir.mkdir(parents=True, exist_ok=True)
        row = {"epoch": 0, "num_train": len(train), "num_features": int(num_features),
               "featurize_s": round(ctx.timings.get("linear_featurize_s", 0.0), 3),
               "fit_s": round(ctx.timings.get("linear_fit_s", 0.0), 3)}
        atomic_write_text(log_dir / "metrics.csv", ",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n")


def _check_pixels(pix: Any) -> None:
    if not isinstance(pix, dict):
        raise ValueError(f"linear_options.pixels: expected a mapping (size, grayscale), got {type(pix).__name__}")
    unknown = sorted(set(pix) - set(PIXEL_OPTIONS))
    if unknown:
        raise ValueError(f"linear_options.pixels: unknown option(s) {unknown}; expected some of {list(PIXEL_OPTIONS)}")
    size = pix.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"linear_options.pixels.size: expected an integer >= 1 (the side images are resized to), "
                         f"got {size!r}")
    if "grayscale" in pix and not (isinstance(pix["grayscale"], bool) or pix["grayscale"] == "auto"):
        raise ValueError(f"linear_options.pixels.grayscale: expected auto, true or false, got {pix['grayscale']!r}")


def fit_linear_encoder(ctx: FitContext, seed: int | None = None):
    """The fitted one-vs-rest linear model as an encoder whose output is the decision values
    ``[n, C]`` (text: a ``sparse`` encoder over TF-IDF; vectors: a one-layer ``mlp``; images: a
    ``pixels`` encoder with its linear layer), and the number of input features. Also used by
    other methods to blend a linear model in.

    The fitted text weights are cached on disk (``$MLSUPCON_CACHE/features``, keyed by the
    training texts and labels, the options and ``seed``): the fit is deterministic, and a seed
    sweep or a comparison that blends the same linear model into every run fits it once."""
    import numpy as np
    import torch

    from mlsupcon.models import build_encoder
    from mlsupcon.models.linear_baseline import fit_one_vs_rest, fit_vector_linear
    from mlsupcon.models.text_features import TextFeaturizer

    ds, cfg = ctx.dataset, ctx.cfg
    train = ds.splits["train"]
    text, image = ds.modality == "text", ds.modality == "image"
    opts = {**DEFAULTS[ds.modality], **cfg.linear_options}
    fit_opts = {k: v for k, v in opts.items() if k in FIT_OPTIONS}
    if fit_opts.get("estimator") == "svm":
        fit_opts.pop("solver", None)  # LinearSVC is always liblinear's
    c = ds.num_labels
    with ctx.timed("linear_featurize_s"):
        if text:
            featurizer = TextFeaturizer.from_options(opts["featurizer"])
            x = featurizer.fit_transform(list(train.inputs))  # the training texts are hashed once
            encoder = build_encoder("sparse", featurizer=featurizer, hidden_dims=(c,), final_activation=False,
                                    cache_nnz=0)
        elif image:
            encoder, x = _pixel_encoder(ctx, train.inputs, c)
        else:
            x = np.asarray(train.inputs, dtype=np.float32)
            encoder = build_encoder("mlp", in_dim=int(x.shape[1]), hidden_dims=(c,), final_activation=False)
    seed = cfg.seed if seed is None else seed
    with ctx.timed("linear_fit_s"):
        fit = fit_one_vs_rest if text else fit_vector_linear
        if text and fit_opts.get("n_jobs") == -1 and x.nnz < _PARALLEL_MIN_NNZ:
            fit_opts["n_jobs"] = 1  # starting worker processes costs more than a small fit
        if text:
            identity = {"featurizer": encoder.featurizer.config(), "num_features": encoder.num_features,
                        "fit": {k: v for k, v in fit_opts.items() if k != "n_jobs"}, "seed": seed}
            coef, intercept = _cached_fit(lambda: fit(x, train.labels, seed=seed, **fit_opts), train, identity)
        else:
            coef, intercept = fit(x, train.labels, seed=seed, **fit_opts)
    with torch.no_grad():
        layer = encoder if text else encoder.linear if image else encoder.net[0]
        w = coef.T if text else coef
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        layer.bias.copy_(torch.from_numpy(intercept))
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder.eval(), int(x.shape[1])


def pixel_options(cfg) -> dict[str, Any]:
    """The run's ``pixels`` options: ``size`` (``linear_options.pixels.size``, else the run's
    ``encoder_options.image_size``, else :data:`DEFAULT_PIXEL_SIZE`) and ``grayscale``
    (``"auto"``, True or False)."""
    pix = {**IMAGE_DEFAULTS["pixels"], **(cfg.linear_options.get("pixels") or {})}
    if pix.get("size") is None:
        pix["size"] = (cfg.encoder_options or {}).get("image_size") or DEFAULT_PIXEL_SIZE
    return pix


def _pixel_encoder(ctx: FitContext, images, num_labels: int):
    """The ``pixels`` encoder of the training images and their pixel vectors ``float32 [n, D]``.

    ``grayscale: auto`` is one channel when every training image has R = G = B (greyscale
    data such as fashion-mosaic, stored once and replicated to RGB when read), else three."""
    import numpy as np
    import torch

    from mlsupcon.models import build_encoder
    from mlsupcon.models.resnet import images_to_pixels

    pix = pixel_options(ctx.cfg)
    size = int(pix["size"])
    chunks = []  # [k, 3, S, S] in [0, 1], as the encoder's preprocess gives them
    for start in range(0, len(images), _PIXEL_CHUNK):
        stop = min(start + _PIXEL_CHUNK, len(images))
        chunks.append(images_to_pixels([images[i] for i in range(start, stop)], size))
    grey = pix["grayscale"]
    if grey == "auto":
        grey = all(torch.equal(t[:, 0], t[:, 1]) and torch.equal(t[:, 1], t[:, 2]) for t in chunks)
    encoder = build_encoder("pixels", image_size=size, grayscale=bool(grey), out_dim=num_labels)
    # The same map as the encoder's forward, so training and inference see identical features.
    x = np.concatenate([encoder.pixels(t).numpy() for t in chunks]) if chunks else np.zeros((0, encoder.num_features))
    return encoder, x


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
