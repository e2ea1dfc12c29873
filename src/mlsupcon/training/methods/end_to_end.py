"""``end-to-end``: one stage, classifier loss (BCE) + λ · contrastive loss on the same batches.

λ is ``contrastive_weight``; early stopping on validation mAP, best epoch kept.
"""

from __future__ import annotations

from mlsupcon.training.methods.base import ContrastiveMethod, FitContext, make_head
from mlsupcon.training.methods.finish import finish


class EndToEnd(ContrastiveMethod):
    name = "end-to-end"
    options = ContrastiveMethod.options + ("epochs", "contrastive_weight", "head", "patience")

    def fit(self, ctx: FitContext):
        from mlsupcon.models import Classifier
        from mlsupcon.training.modules import ClassifierModule

        cfg = ctx.cfg
        with ctx.timed("train_s"):
            head = make_head(ctx)
            module = ClassifierModule(ctx.encoder, head, cfg.lr, cfg.weight_decay, classifier_loss="bce",
                                      contrastive=self.contrastive)
            ctx.fit_stage("end_to_end", module, ctx.loaders["train"], ctx.loaders["validation"], cfg.epochs,
                          early_stop=True)
            module.restore_best()
        return finish(ctx, Classifier(ctx.encoder, head, self.contrastive["projection"]))
