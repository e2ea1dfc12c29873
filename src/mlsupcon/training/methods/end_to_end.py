"""``end-to-end``: one stage, classifier loss + λ · contrastive loss on the same batches.

The classifier loss is ``classifier_loss`` (``bce`` by default, ``asl`` with
``classifier_loss_options``, or ``zlpr``, which decides at logit 0: the run's threshold is then
0.5, not tuned). The contrastive term is ``loss`` on projected views (a prototype loss trains
its label prototypes with the projection head), or, for ``cl_jspcl``, on the classifier's logits
(CL-MTC: BCE + λ · JSPCL). λ is ``contrastive_weight``; early stopping on validation mAP, best
epoch kept.
"""

from __future__ import annotations

from mlsupcon.config.methods import METHOD_OPTIONS
from mlsupcon.training.methods.base import ContrastiveMethod, FitContext, make_head
from mlsupcon.training.methods.finish import finish

#: The classifier losses of ``classifier_loss`` (training/modules.ClassifierModule).
CLASSIFIER_LOSS_CHOICES = ("bce", "asl", "zlpr")


class EndToEnd(ContrastiveMethod):
    name = "end-to-end"
    contrastive_on_logits = True
    options = METHOD_OPTIONS["end-to-end"]

    @classmethod
    def classification_loss(cls, cfg) -> str:
        return cfg.classifier_loss or "bce"

    @classmethod
    def validate(cls, cfg) -> None:
        if cfg.classifier_loss is not None and cfg.classifier_loss not in CLASSIFIER_LOSS_CHOICES:
            raise ValueError(f"classifier_loss: expected one of {CLASSIFIER_LOSS_CHOICES} (or unset: bce), "
                             f"got {cfg.classifier_loss!r}")
        super().validate(cfg)

    def fit(self, ctx: FitContext):
        from mlsupcon.models import Classifier
        from mlsupcon.training.modules import ClassifierModule

        cfg = ctx.cfg
        with ctx.timed("train_s"):
            head = make_head(ctx)
            module = ClassifierModule(ctx.encoder, head, cfg.lr, cfg.weight_decay,
                                      classifier_loss=self.classification_loss(cfg),
                                      classifier_loss_options=cfg.classifier_loss_options,
                                      contrastive=self.contrastive, encoder_lr_ratio=cfg.encoder_lr_ratio)
            ctx.fit_stage("end_to_end", module, ctx.loaders["train"], ctx.loaders["validation"], cfg.epochs,
                          early_stop=True)
            module.restore_best()
        return finish(ctx, Classifier(ctx.encoder, head, self.contrastive["projection"],
                                      self.contrastive["prototypes"]))
