"""``two-stage``: contrastive pretraining of the encoder, then a classifier on top of it.

Stage ``contrastive`` trains encoder + projection head (and, for a prototype loss such as
``msc``, the label prototypes) with the contrastive loss (optionally with a memory queue filled
by a momentum key encoder), scores the encoder after every epoch by
kNN mAP on a validation subset (``val/knn_map``, :class:`~mlsupcon.training.callbacks.KNNMonitor`),
stops early on it (``patience``; ``epochs`` is a cap) and hands its best epoch's encoder to
stage 2. Stage ``classifier`` then trains a head
(early stopping on validation mAP, best epoch kept): by default on the frozen encoder — a
pooled-feature head (linear) on embeddings computed once, the SimDis paper's linear probe; a
sequence head (attention) through the frozen encoder — or, with ``finetune_encoder``, together
with the encoder (the MulSupCon authors' protocol).
"""

from __future__ import annotations

from mlsupcon.config.methods import METHOD_OPTIONS
from mlsupcon.training.methods.base import ContrastiveMethod, FitContext, make_head
from mlsupcon.training.methods.finish import finish


class TwoStage(ContrastiveMethod):
    name = "two-stage"
    options = METHOD_OPTIONS["two-stage"]

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        from mlsupcon.training.scale import check_momentum

        check_momentum(cfg)

    @classmethod
    def oom_hints(cls, cfg) -> list[str]:
        hints = super().oom_hints(cfg)
        if not cfg.finetune_encoder:  # the probe's batches are probe_batch_size cached embeddings
            hints[-1] = (f"a smaller probe_batch_size (now {cfg.probe_batch_size}) or eval_batch_size "
                         f"(now {cfg.eval_batch_size})")
        return hints

    def fit(self, ctx: FitContext):
        from mlsupcon.inference.scoring import embed_loader
        from mlsupcon.models import Classifier
        from mlsupcon.training.batches import tensor_loader
        from mlsupcon.training.modules import ClassifierModule, ContrastiveModule, FeatureInput
        from mlsupcon.training.scale import make_momentum

        cfg, encoder, loaders, parts = ctx.cfg, ctx.encoder, ctx.loaders, self.contrastive
        with ctx.timed("contrastive_s"):
            stage1 = ContrastiveModule(encoder, parts["projection"], parts["loss_fn"], parts["loss_labels"],
                                       parts["view_fn"], cfg.views, cfg.lr, cfg.weight_decay,
                                       momentum_encoder=make_momentum(cfg, encoder, parts["projection"]),
                                       knn_monitor=ctx.knn_monitor() if cfg.stage1_selection else None,
                                       prototypes=parts["prototypes"])
            ctx.fit_stage("contrastive", stage1, loaders["train"], loaders["validation"], cfg.epochs,
                          early_stop=cfg.stage1_selection)
            if cfg.stage1_selection:
                stage1.restore_best()  # the encoder of the best val/knn_map epoch goes on to stage 2
        encoder.to("cpu")
        with ctx.timed("classifier_s"):
            head = make_head(ctx)
            with self.oom_guidance(cfg, "classifier"):
                if cfg.finetune_encoder:
                    stage2 = ClassifierModule(encoder, head, cfg.classifier_lr, cfg.weight_decay,
                                              encoder_lr_ratio=cfg.encoder_lr_ratio)
                    train_l, val_l = loaders["train"], loaders["validation"]
                elif getattr(head, "input", "pooled") == "pooled":
                    for p in encoder.parameters():
                        p.requires_grad_(False)
                    # The encoder is frozen: embed every split once and train the probe on the
                    # cached embeddings (the protocol of the SimDis paper).
                    feats = {s: embed_loader(encoder, ctx.eval_loader(s)) for s in ("train", "validation")}
                    stage2 = ClassifierModule(FeatureInput(), head, cfg.classifier_lr, cfg.weight_decay)
                    train_l = tensor_loader(*feats["train"], cfg.probe_batch_size, shuffle=True, seed=cfg.seed)
                    val_l = tensor_loader(*feats["validation"], cfg.eval_batch_size, shuffle=False)
                else:
                    stage2 = ClassifierModule(encoder, head, cfg.classifier_lr, cfg.weight_decay,
                                              freeze_encoder=True)
                    train_l, val_l = loaders["train"], loaders["validation"]
            ctx.fit_stage("classifier", stage2, train_l, val_l, max(1, cfg.classifier_epochs), early_stop=True,
                          epochs_option="classifier_epochs")
            stage2.restore_best()
        return finish(ctx, Classifier(encoder, head, parts["projection"], parts["prototypes"]))
