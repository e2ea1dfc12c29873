"""The :class:`Method` interface, the :class:`FitContext` a method trains in, and shared helpers.

A method turns a run's data and encoder into a trained :class:`~mlsupcon.models.Classifier`;
everything around it (run folder, lock, config.yaml, resume bookkeeping, threshold, metrics,
export) is :func:`mlsupcon.training.run_training`'s. A run calls, in this order:

1. ``cls.validate(cfg)`` — while the config is validated, before the data is read or torch /
   Lightning are imported (this module and the method files import neither at module level);
2. ``method.prepare(ctx)`` — after the data and the encoder exist, before anything is written
   to the run folder: build what can still fail on a user mistake (losses, label formats);
3. ``method.fit(ctx) -> Classifier`` — train. A Lightning method fits its modules stage by
   stage with :meth:`FitContext.fit_stage` (checkpoints, ``--resume``, non-finite and OOM
   policies); a method without Lightning just computes its classifier and returns it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mlsupcon.config.methods import CONTRASTIVE_OPTIONS, EXCLUSIVE_OPTIONS
from mlsupcon.training.contrastive_losses import LOGIT_CONTRASTIVE_LOSSES, contrastive_term_losses

if TYPE_CHECKING:  # the real imports are made where they are used: validation stays light
    import torch

    from mlsupcon.config.schema import TrainConfig
    from mlsupcon.data import MultiLabelDataset
    from mlsupcon.models import Classifier, Encoder
    from mlsupcon.training.stages import RunState

__all__ = ["METHODS", "get_method", "Method", "ContrastiveMethod", "FitContext", "make_head", "label_prior_logits",
           "contrastive_term_losses", "LOGIT_CONTRASTIVE_LOSSES", "FIXED_DECISIONS"]

#: Method classes by name (the config's ``method``). Filled, in its order, by the package
#: (:mod:`mlsupcon.training.methods`), which imports every method file; kept here so that the
#: methods' checks read it without importing their own package.
METHODS: dict[str, type[Method]] = {}

#: Classification losses with a decision rule of their own: (threshold on the sigmoid scores, the
#: ``threshold_source`` of metrics.json). A run trained with one keeps that threshold instead of
#: tuning one on validation.
FIXED_DECISIONS: dict[str, tuple[float, str]] = {"zlpr": (0.5, "zlpr decision: logit 0")}


def get_method(name: Any) -> type[Method]:
    """The method class registered as ``name``; ValueError naming the known ones otherwise."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method: expected one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name]


@dataclass
class FitContext:
    """What a method trains with.

    Attributes:
        cfg: the run's validated :class:`~mlsupcon.training.TrainConfig`.
        dataset: the :class:`~mlsupcon.data.MultiLabelDataset` (``splits``, ``num_labels`` …).
        encoder: the run's freshly built encoder.
        loaders: ``"train"`` (shuffled by ``(seed, epoch)``, last partial batch dropped, batch
            ``batch_size``), ``"validation"`` and ``"test"`` (in order, ``eval_batch_size``):
            batches ``(inputs, labels [b, C], indices)`` preprocessed by the encoder.
        out: the run folder.
        run: non-finite step counts and notes of the stages (set by the runner).
        timings: seconds per phase; a method adds its own (``train_s``, ``contrastive_s`` …).
    """

    cfg: TrainConfig
    dataset: MultiLabelDataset
    encoder: Encoder
    loaders: dict[str, Any]
    out: Path
    run: RunState | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: what a method chose besides its weights (e.g. the kNN's k, blend weights): metrics.json.
    extra: dict[str, Any] = field(default_factory=dict)

    def fit_stage(self, stage: str, module, train_loader, val_loader, max_epochs: int, early_stop: bool,
                  epochs_option: str = "epochs") -> None:
        """Fits a Lightning module as the checkpointed, resumable stage ``stage``
        (:func:`mlsupcon.training.stages.fit_stage`); ``epochs_option`` is the config field
        that set ``max_epochs`` (named when the stage ends at that cap while still improving).
        Out of memory, the error names what to change, the run's method's advice included."""
        from mlsupcon.training.stages import fit_stage

        fit_stage(self.cfg, self.out, stage, module, train_loader, val_loader, max_epochs, early_stop, self.run,
                  epochs_option=epochs_option, oom_hints=get_method(self.cfg.method).oom_hints(self.cfg))

    def eval_loader(self, split: str, preprocess=None, max_examples: int | None = None):
        """An ordered loader over ``split`` (``eval_batch_size``), preprocessed by the encoder.

        ``max_examples``: only that many examples of the split, a random subset (seeded by the
        run's ``seed``, in the split's order), the same in every call."""
        from mlsupcon.training.batches import make_loader

        split_data = self.dataset.splits[split]
        if max_examples is not None and len(split_data) > max_examples:
            import numpy as np

            rng = np.random.default_rng([int(self.cfg.seed), len(split_data)])
            split_data = split_data.subset(np.sort(rng.choice(len(split_data), size=max_examples, replace=False)))
        return make_loader(split_data, preprocess or self.encoder.preprocess,
                           self.cfg.eval_batch_size, shuffle=False, num_workers=self.cfg.num_workers)

    def knn_monitor(self, reference_examples: int = 5000, query_examples: int = 2000, k: int = 20,
                    temperature: float = 0.05):
        """A :class:`~mlsupcon.training.callbacks.KNNMonitor` of the encoder: up to
        ``reference_examples`` training examples vote for up to ``query_examples`` validation
        examples (fixed, seeded subsets)."""
        from mlsupcon.training.callbacks import KNNMonitor

        return KNNMonitor(self.eval_loader("train", max_examples=reference_examples),
                          self.eval_loader("validation", max_examples=query_examples), k=k, temperature=temperature)

    def note(self, message: str) -> None:
        """A one-line note for the user (stderr)."""
        self.run.note(message)

    def timed(self, key: str):
        """``with ctx.timed("train_s"): ...`` records the block's wall time in :attr:`timings`."""
        return _Timer(self.timings, key)


class _Timer:
    def __init__(self, timings: dict[str, float], key: str) -> None:
        self.timings, self.key = timings, key

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.timings[self.key] = time.perf_counter() - self.t0


class Method:
    """Base class of the training methods (:data:`METHODS`, filled by :mod:`mlsupcon.training.methods`).

    Attributes:
        name: registry name, the config's ``method``.
        options: :class:`~mlsupcon.training.TrainConfig` fields the method reads besides the
            common ones (data, encoder, batch sizes, lr, trainer and run-folder settings); a
            built-in method's are its row of :data:`mlsupcon.config.methods.METHOD_OPTIONS`,
            which the config reads without importing the methods.
        uses_contrastive_loss: trains with the contrastive loss named by ``loss`` (so
            ``loss``, ``loss_options``, ``views`` … apply; metrics.json reports ``loss``).
        classifier_loss: the classifier loss it trains with, by its name in
            :mod:`mlsupcon.losses` (None: plain BCE, or none); :meth:`classification_loss`
            gives a run's (end-to-end takes it from the config).
        builds_own_encoder: the method makes its encoder itself (``linear``: its featurizer is its
            encoder), so the run's ``encoder`` settings (and their automatic choice) do not apply
            (:data:`mlsupcon.config.methods.BUILDS_OWN_ENCODER` for the built-in methods).
    """

    name: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()
    uses_contrastive_loss: ClassVar[bool] = False
    classifier_loss: ClassVar[str | None] = None
    builds_own_encoder: ClassVar[bool] = False

    @classmethod
    def classification_loss(cls, cfg: TrainConfig) -> str | None:
        """The classification loss a run of this method trains with (``bce``, ``asl``, ``zlpr`` …;
        None: none, e.g. ``linear``)."""
        return cls.classifier_loss

    @classmethod
    def decision_threshold(cls, cfg: TrainConfig) -> tuple[float, str] | None:
        """``(threshold, source)`` when the run's classification loss fixes its decision rule
        (:data:`FIXED_DECISIONS`: zlpr decides at logit 0, threshold 0.5 on the scores); None:
        the config's ``threshold`` (tuned on validation, or a number)."""
        return FIXED_DECISIONS.get(cls.classification_loss(cfg) or "")

    @classmethod
    def validate(cls, cfg: TrainConfig) -> None:
        """Method-specific checks of ``cfg``: ValueError naming the field. No data, no torch
        needed (only the registries of heads and losses, which import torch)."""
        for name in EXCLUSIVE_OPTIONS:
            if getattr(cfg, name) is not None and name not in cls.options:
                users = [m.name for m in METHODS.values() if name in m.options]
                raise ValueError(f"{name}: only the {', '.join(users)} method uses it (this run's method is "
                                 f"{cls.name!r}); leave it unset")
        if "head" in cls.options:
            from mlsupcon.models.heads.registry import check_head_options

            check_head_options(cfg.head, cfg.head_options)
        elif cfg.head_options and "head_options" not in cls.options:
            raise ValueError(f"head_options: the {cls.name!r} method has no head option to configure; leave it unset")
        fixed = cls.decision_threshold(cfg)
        # "tune" and "auto" leave the choice to the run: the loss's own rule then
        if fixed is not None and cfg.threshold not in ("tune", "auto") and (
                isinstance(cfg.threshold, str) or float(cfg.threshold) != fixed[0]):
            raise ValueError(f"threshold: this run decides by its classification loss ({fixed[1]}, threshold "
                             f"{fixed[0]} on the scores); leave threshold at tune or auto or set {fixed[0]}, "
                             f"got {cfg.threshold!r}")

    @classmethod
    def oom_hints(cls, cfg: TrainConfig) -> list[str]:
        """Method-specific advice of the out-of-memory message (what to make smaller)."""
        return [f"a smaller eval_batch_size (now {cfg.eval_batch_size})"]

    @classmethod
    def oom_guidance(cls, cfg: TrainConfig, stage: str):
        """``with method.oom_guidance(cfg, stage): ...`` turns running out of memory into a
        one-line :class:`~mlsupcon.training.errors.OutOfMemoryGuidance` with this method's advice."""
        from mlsupcon.training.errors import oom_guidance

        return oom_guidance(cfg, stage, cls.oom_hints(cfg))

    @classmethod
    def compare_overrides(cls, base: TrainConfig) -> dict[str, Any]:
        """Fields ``mlsupcon compare`` changes when this method is a row of its table: the
        contrastive loss's options (e.g. its temperature) and the options only other methods
        use (:data:`EXCLUSIVE_OPTIONS`, e.g. end-to-end's ``classifier_loss``) do not apply."""
        return {"loss_options": {}, **{name: None for name in EXCLUSIVE_OPTIONS if name not in cls.options}}

    def result_loss(self, cfg: TrainConfig) -> str:
        """The ``loss`` of metrics.json: the contrastive loss, or the method itself."""
        return cfg.loss if self.uses_contrastive_loss else cfg.method

    def prepare(self, ctx: FitContext) -> None:
        """Builds what can fail on a user mistake, before the run folder is written."""
        if "head" in self.options:
            from mlsupcon.models.classifier import head_class

            check = getattr(head_class(ctx.cfg.head), "check_encoder", None)
            if check is not None:
                check(ctx.encoder)

    def fit(self, ctx: FitContext) -> Classifier:
        """Trains and returns the classifier (on any device; the runner moves it to the CPU)."""
        raise NotImplementedError


class ContrastiveMethod(Method):
    """A method with a contrastive term: the loss ``loss`` on ``views`` views of every example,
    through a projection head, optionally with a memory queue.

    ``loss`` may name a prototype loss (``PROTOTYPE_LOSSES``: ``msc``, ``proto_only``, ``mscwrg``,
    ``mscrg``): the run then owns a :class:`~mlsupcon.losses.LabelPrototypes` ``[C,
    projection_dim]``, trained with the projection head (same learning rate and weight decay),
    checkpointed with the module and saved with the model. A method with
    ``contrastive_on_logits`` also takes the logit losses of :data:`LOGIT_CONTRASTIVE_LOSSES`
    (``cl_jspcl``) as its contrastive term, on its classifier's logits.
    """

    uses_contrastive_loss = True
    #: the method has a classifier trained with the contrastive term, whose logits a logit
    #: contrastive loss (:data:`LOGIT_CONTRASTIVE_LOSSES`) can take
    contrastive_on_logits: ClassVar[bool] = False
    options = CONTRASTIVE_OPTIONS

    @classmethod
    def validate(cls, cfg: TrainConfig) -> None:
        super().validate(cfg)
        from mlsupcon.losses import CLASSIFIER_LOSSES, LABEL_EMBEDDING_LOSSES
        from mlsupcon.training.scale import check_queue_loss

        table = contrastive_term_losses()
        on_views = sorted(n for n in table if n not in LOGIT_CONTRASTIVE_LOSSES)
        name = cfg.loss.lower() if isinstance(cfg.loss, str) else cfg.loss
        if name in LOGIT_CONTRASTIVE_LOSSES and not cls.contrastive_on_logits:
            users = [m.name for m in METHODS.values() if getattr(m, "contrastive_on_logits", False)]
            raise ValueError(f"loss: '{name}' is a contrastive loss on a classifier's logits; use --method "
                             f"{' or '.join(users)} (it is added to the classification loss there), or call "
                             f"mlsupcon.losses.build('{name}')(logits, labels) from the Python API")
        if name in LABEL_EMBEDDING_LOSSES:
            raise ValueError(f"loss: '{name}' takes per-label embeddings [B, C, D], which no training method "
                             f"produces; call mlsupcon.losses.build('{name}')(label_embeddings, labels) from the "
                             "Python API (docs/spec/LOSSES.md)")
        if name not in table:
            if name in CLASSIFIER_LOSSES:
                owner = next((m.name for m in METHODS.values() if m.classifier_loss == name), None)
                use = f"use --method {owner}" if owner else f"use a contrastive loss {on_views}"
                raise ValueError(f"loss: {cfg.loss!r} is a classifier loss; {use}")
            raise ValueError(f"loss: unknown contrastive loss {cfg.loss!r}; expected one of {on_views}")
        if isinstance(cfg.batch_size, int) and cfg.batch_size < 2 and not cfg.queue_size:
            # B=1: the anchor's only partners are its own views, so the loss is ~0 and nothing is learnt
            raise ValueError(f"batch_size: a contrastive loss ('{cfg.loss}') compares the examples of a batch with "
                             f"each other; batch_size={cfg.batch_size} leaves nothing to compare: expected >= 2 "
                             "(or a memory queue, queue_size > 0)")
        if cfg.queue_size:
            check_queue_loss(cfg.loss, table[name].label_format)

    @classmethod
    def oom_hints(cls, cfg: TrainConfig) -> list[str]:
        return ["loss_options: {chunk_size: 256} (the contrastive loss in blocks of anchors, "
                "O(chunk_size x batch) memory)", *super().oom_hints(cfg)]

    def result_loss(self, cfg: TrainConfig) -> str:
        return cfg.loss

    def prepare(self, ctx: FitContext) -> None:
        super().prepare(ctx)
        self.contrastive = contrastive_parts(ctx)


def contrastive_parts(ctx: FitContext) -> dict[str, Any]:
    """Projection head, criterion (loss, in a memory queue if ``queue_size``), label converter
    and view maker of a contrastive method, as :class:`~mlsupcon.training.modules.ClassifierModule`
    takes them (``contrastive=``).

    A prototype loss gets its :class:`~mlsupcon.losses.LabelPrototypes` (``"prototypes"``, C rows
    of ``projection_dim``) bound to it (:class:`~mlsupcon.losses.BoundPrototypeLoss`, which
    calls it with ``prototypes=``), so the criterion is called like any other, in a queue too.
    A logit loss (``"on_logits"``: :data:`LOGIT_CONTRASTIVE_LOSSES`) has no projection head."""
    from mlsupcon.losses import PROTOTYPE_LOSSES, BoundPrototypeLoss, LabelPrototypes
    from mlsupcon.losses import build as build_loss
    from mlsupcon.models import ProjectionHead
    from mlsupcon.training.batches import LossLabels, build_view_fn
    from mlsupcon.training.scale import wrap_criterion

    cfg, ds, encoder = ctx.cfg, ctx.dataset, ctx.encoder
    name = cfg.loss.lower()
    loss_labels = LossLabels(cfg.loss, ds)
    loss_fn = build_loss(cfg.loss, **cfg.loss_options)
    on_logits = name in LOGIT_CONTRASTIVE_LOSSES
    prototypes = LabelPrototypes(ds.num_labels, cfg.projection_dim) if name in PROTOTYPE_LOSSES else None
    if prototypes is not None:
        loss_fn = BoundPrototypeLoss(loss_fn, prototypes)
    return {
        "projection": None if on_logits else ProjectionHead(encoder.output_dim, cfg.projection_hidden,
                                                            cfg.projection_dim),
        "prototypes": prototypes,
        "loss_fn": loss_fn if on_logits else wrap_criterion(cfg, loss_fn, cfg.loss, ds.num_labels),
        "loss_labels": loss_labels,
        "on_logits": on_logits,
        "view_fn": build_view_fn(encoder, cfg.view_options),
        "views": cfg.views,
        "weight": cfg.contrastive_weight,
    }


def label_prior_logits(ds: MultiLabelDataset) -> torch.Tensor:
    """Every label's training log-odds log(p / (1 - p)), p clipped to [1e-4, 1 - 1e-4] (float64)."""
    import numpy as np
    import torch

    train = ds.splits["train"]
    p = np.asarray(train.labels.sum(0)).ravel() / max(1, len(train))
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return torch.from_numpy(np.log(p / (1 - p)))


def make_head(ctx: FitContext, kind: str | None = None, options: dict[str, Any] | None = None,
              encoder=None):
    """A new classifier head (``kind``: default the config's ``head``) for the run's labels,
    each label's logit starting at its training prior."""
    from mlsupcon.models import build_head

    if kind is None and options is None:  # the run's own head: its head_options
        options = ctx.cfg.head_options
    head = build_head(kind or ctx.cfg.head, encoder or ctx.encoder, ctx.dataset.num_labels, **(options or {}))
    # With hundreds of rare labels, a zero bias spends the first epochs only learning that most
    # labels are absent.
    init = getattr(head, "init_prior", None)
    if init is not None:
        init(label_prior_logits(ctx.dataset))
    names = getattr(head, "init_label_names", None)
    if names is not None:  # prototypes that start at the label names' embeddings (text encoders)
        names(ctx.dataset.label_names, encoder or ctx.encoder)
    return head
