"""``bce``, ``asl`` and ``zlpr``: encoder + classifier head trained with a classifier loss only.

``asl`` is the asymmetric loss (Ridnik et al. 2021) with ``classifier_loss_options``; ``zlpr``
the zero-bounded log-sum-exp & pairwise rank loss (Su et al. 2022), whose decision rule is
logit > 0: its runs keep the threshold 0.5 on the scores (sigmoid(0)) instead of tuning one on
validation (``decision_threshold``). All stop early on validation mAP and keep the best epoch.
"""

from __future__ import annotations

from mlsupcon.config.methods import METHOD_OPTIONS
from mlsupcon.training.methods.base import FitContext, Method, make_head
from mlsupcon.training.methods.finish import finish


class ClassifierOnly(Method):
    """Shared by :class:`BCE`, :class:`ASL` and :class:`ZLPR`, which differ only in ``classifier_loss``
    (and ASL reads ``classifier_loss_options``)."""

    def fit(self, ctx: FitContext):
        from mlsupcon.models import Classifier
        from mlsupcon.training.modules import ClassifierModule

        cfg = ctx.cfg
        with ctx.timed("train_s"):
            head = make_head(ctx)
            module = ClassifierModule(ctx.encoder, head, cfg.lr, cfg.weight_decay,
                                      classifier_loss=self.classifier_loss or "bce",
                                      classifier_loss_options=cfg.classifier_loss_options,
                                      encoder_lr_ratio=cfg.encoder_lr_ratio)
            ctx.fit_stage("end_to_end", module, ctx.loaders["train"], ctx.loaders["validation"], cfg.epochs,
                          early_stop=True)
            module.restore_best()
        return finish(ctx, Classifier(ctx.encoder, head))


class BCE(ClassifierOnly):
    name = "bce"
    options = METHOD_OPTIONS["bce"]


class ASL(ClassifierOnly):
    name = "asl"
    classifier_loss = "asl"
    options = METHOD_OPTIONS["asl"]


class ZLPR(ClassifierOnly):
    name = "zlpr"
    classifier_loss = "zlpr"
    options = METHOD_OPTIONS["zlpr"]
