"""What every trainable method may add after training, chosen on the validation split only.

* ``knn: blend`` — a kNN head (similarity-weighted label votes of the nearest training examples
  in the encoder's feature space; :class:`~mlsupcon.models.KNNHead`), its k and temperature
  tuned on validation mAP, blended with the trained head with the weight that maximises
  validation mAP (w = 1 keeps the trained head alone). ``knn: only`` uses the kNN head alone.
  Contrastive embeddings are made for neighbours; rare labels gain most.
* ``blend_linear: true`` (text) — wide & deep: the one-vs-rest TF-IDF linear model (method
  ``linear``) joins the model as a second encoder branch (:class:`~mlsupcon.models.fusion.FusionEncoder`),
  and the final scores are ``w · p_model + (1 − w) · p_linear`` with w chosen on validation mAP
  among the weights that keep the linear model's validation micro- and macro-F1
  (:data:`BLEND_GUARD`; w = 0, the linear model alone, always does). The guard keeps a deep
  model that ranks well within each label but is not calibrated across labels from winning the
  mAP vote at the cost of the blend's F1.
  ``embed`` still returns the trained (contrastive) branch's embeddings.

Both steps are plain computations on the trained model: no gradient step, nothing chosen on test.
"""

from __future__ import annotations

from typing import Any

from mlsupcon.config.methods import KNN_MODES  # noqa: F401 - the values of knn, kept importable here
from mlsupcon.config.validation import check_model_selection
from mlsupcon.training.methods.base import FitContext

#: Validation metrics the TF-IDF blend must not lose against the linear model alone.
BLEND_GUARD = ("micro_f1", "macro_f1")

#: The config's check of ``knn``, ``knn_options`` and ``blend_linear`` (its home is the config's
#: validation), under its old name.
validate_finish_options = check_model_selection


def finish(ctx: FitContext, model):
    """``model`` with the kNN blend and the linear blend the config asks for."""
    cfg = ctx.cfg
    if cfg.knn != "off":
        model = add_knn(ctx, model)
    if cfg.blend_linear:
        model = add_linear_blend(ctx, model)
    return model


def add_knn(ctx: FitContext, model):
    """Adds a validation-tuned kNN head blended with the trained one (see the module docstring)."""
    import numpy as np
    import torch

    from mlsupcon.evaluation.blend import choose_blend_weight
    from mlsupcon.evaluation.knn import tune_knn
    from mlsupcon.inference.scoring import embed_loader
    from mlsupcon.models import BlendHead, Classifier, KNNHead

    cfg = ctx.cfg
    if getattr(model.head, "input", "pooled") != "pooled":
        ctx.note(f"knn: skipped, the '{model.head_kind}' head does not read pooled features")
        return model
    model.to("cpu").eval()
    opts: dict[str, Any] = {"ks": (5, 10, 20, 50), "temperatures": (0.02, 0.05, 0.1), **cfg.knn_options}
    with ctx.timed("knn_s"):
        h_train, y_train = embed_loader(model.encoder, ctx.eval_loader("train", model.preprocess))
        h_val, y_val = embed_loader(model.encoder, ctx.eval_loader("validation", model.preprocess))
        best, _ = tune_knn(h_train, y_train, h_val, y_val, ks=tuple(opts["ks"]),
                           temperatures=tuple(opts["temperatures"]), metric="map")
        knn = KNNHead.from_embeddings(h_train, y_train, **best)
        with torch.no_grad():
            p_knn = torch.sigmoid(knn(h_val)).numpy()
            p_head = torch.sigmoid(model.head(h_val)).numpy()
        y = y_val.numpy() if hasattr(y_val, "numpy") else np.asarray(y_val)
        if cfg.knn == "only":
            head, weight = knn, 0.0
        else:
            weight, _ = choose_blend_weight(y, p_head, p_knn, metric="map")
            head = BlendHead(model.head, knn, float(weight))
    ctx.extra["knn"] = {**{k: (float(v) if isinstance(v, float) else int(v)) for k, v in best.items()},
                        "blend_weight_of_head": float(weight), "mode": cfg.knn}
    ctx.note(f"knn: k={best['k']}, temperature={best['temperature']}, weight of the trained head "
             f"{weight:.1f} (chosen on validation mAP)")
    return Classifier(model.encoder, head, model.projection, model.prototypes)


def add_linear_blend(ctx: FitContext, model):
    """Wide & deep: blends the TF-IDF linear model in (see the module docstring)."""
    from mlsupcon.evaluation.blend import choose_blend_weight
    from mlsupcon.inference.scoring import predict_scores
    from mlsupcon.models import BlendHead, Classifier, ScoresHead, SliceHead
    from mlsupcon.models.fusion import FusionEncoder
    from mlsupcon.training.methods.linear import fit_linear_encoder

    if ctx.dataset.modality != "text":
        ctx.note("blend_linear: skipped (the TF-IDF blend is for text data)")
        return model
    model.to("cpu").eval()
    with ctx.timed("linear_blend_s"):
        linear, _ = fit_linear_encoder(ctx, seed=0)  # the same wide model under every seed
        c = ctx.dataset.num_labels
        p_model, y_val = predict_scores(model, ctx.eval_loader("validation", model.preprocess))
        lin_model = Classifier(linear, ScoresHead(c))
        p_lin, _ = predict_scores(lin_model, ctx.eval_loader("validation", lin_model.preprocess))
        # The blend must not lose the linear model's validation F1 scores (BLEND_GUARD).
        weight, table = choose_blend_weight(y_val, p_model, p_lin, metric="map", guard=BLEND_GUARD)
        d = model.encoder.output_dim
        fused = FusionEncoder.from_encoders([model.encoder, linear], embedding_branch=0)
        head = BlendHead(SliceHead(model.head, 0, d), SliceHead(ScoresHead(c), d, d + c), float(weight))
    excluded = [r["weight"] for r in table if not r["allowed"]]
    ctx.extra["blend_linear"] = {"weight_of_model": float(weight), "excluded_by_guard": excluded}
    ctx.note(f"blend_linear: weight of the trained model {weight:.1f}, of the TF-IDF linear model "
             f"{1 - weight:.1f} (chosen on validation mAP"
             + (f"; weights {', '.join(f'{w:.1f}' for w in excluded)} lost the linear model's validation "
                f"{' or '.join(BLEND_GUARD)})" if excluded else ")")
             + ("; scoring (predict, evaluate) skips the trained model's encoder, whose weight is 0"
                if weight == 0.0 else ""))
    return Classifier(fused, head, model.projection, model.prototypes)
