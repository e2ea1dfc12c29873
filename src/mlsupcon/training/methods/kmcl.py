"""``kmcl``: encoder → KMCL head (π, μ, σ²) trained end to end with the KMCL loss.

The loss (ASL + reconstruction + Bhattacharyya-kernel contrastive term) takes its options from
``loss_options``, the head (:class:`~mlsupcon.models.KMCLClassifier`) from ``head_options``
(``mode`` isotropic by default, ``reduce_dim``, ``isotropic_mean``). Predictions are
p = sigmoid(π), so thresholds, metrics and export are those of any classifier.
"""

from __future__ import annotations

from mlsupcon.config.methods import METHOD_OPTIONS
from mlsupcon.training.methods.base import FitContext, Method, make_head


class KMCL(Method):
    name = "kmcl"
    classifier_loss = "kmcl"
    options = METHOD_OPTIONS["kmcl"]

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        from mlsupcon.models.heads.registry import check_head_options

        check_head_options("kmcl", cfg.head_options)

    @classmethod
    def compare_overrides(cls, base) -> dict:
        # KMCL keeps its own loss defaults (τ = 0.17) unless kmcl_options are given.
        return {**super().compare_overrides(base), "loss_options": dict(base.kmcl_options)}

    def fit(self, ctx: FitContext):
        from mlsupcon.losses import build
        from mlsupcon.models import Classifier
        from mlsupcon.training.modules import KMCLModule

        cfg = ctx.cfg
        with self.oom_guidance(cfg, "end_to_end"), ctx.timed("train_s"):
            head = make_head(ctx, "kmcl", {"mode": "isotropic", **cfg.head_options})
            module = KMCLModule(ctx.encoder, head, build("kmcl", **cfg.loss_options), cfg.lr, cfg.weight_decay)
            ctx.fit_stage("end_to_end", module, ctx.loaders["train"], ctx.loaders["validation"], cfg.epochs,
                          early_stop=True)
            module.restore_best()
        return Classifier(ctx.encoder, head)
