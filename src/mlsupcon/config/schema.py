"""The run configuration, :class:`TrainConfig`: every setting of a run, one field each.

:func:`~mlsupcon.config.loading.load_config` builds one (defaults < dataset preset < YAML file <
flags) and :mod:`mlsupcon.config.validation` checks its fields; the checks a training method adds
(loss and head names, options only it reads) are the method's (``Method.validate``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Collection

__all__ = ["TrainConfig", "NOT_SETTINGS"]

#: Fields that are no setting of the run: not saved in ``config.yaml``, not settable by a YAML file or a flag.
NOT_SETTINGS = ("user_set",)


@dataclass
class TrainConfig:
    """Everything a run needs; ``config.yaml`` in the output folder is this, resolved.

    Attributes:
        dataset: a :func:`mlsupcon.data.load_dataset` spec (``debtags``, ``yeast``, ``jsonl:PATH`` …).
        dataset_options: options of that loader (``top_k_labels``, ``max_examples_per_split`` …).
        encoder: ``mlp``, ``cnn``, ``transformer`` or ``resnet``.
        encoder_options: options of :func:`mlsupcon.models.build_encoder`.
        method: ``two-stage`` (contrastive pretraining, then a classifier on the frozen encoder),
            ``end-to-end`` (classifier loss + λ·contrastive), ``bce`` / ``asl`` / ``zlpr``
            (classifier only; zlpr decides at logit 0, threshold 0.5), ``kmcl`` (the KMCL head
            and its three losses, end to end), ``linear``.
        loss: contrastive loss name for :func:`mlsupcon.losses.build` (a prototype loss trains
            its label prototypes with the projection head; ``cl_jspcl``: end-to-end, on logits).
        loss_options: its options (``temperature`` …).
        classifier_loss: ``end-to-end``'s classification term: ``bce`` (unset), ``asl`` or
            ``zlpr`` (decision at logit 0: threshold 0.5, not tuned). Other methods: unset.
        classifier_loss_options: options of the ASL loss (methods ``asl``, ``end-to-end``).
        epochs: the cap of contrastive (stage-1) epochs for two-stage (early stopping on the kNN
            mAP of a validation subset, ``val/knn_map``); of training epochs otherwise.
        classifier_epochs: the cap of stage-2 epochs (early stopping on validation mAP).
        lr: learning rate (AdamW) of every stage but two-stage's classifier (``classifier_lr``).
        encoder_lr_ratio: two-stage with ``finetune_encoder``: the pretrained encoder's learning
            rate in stage 2 as a fraction of ``classifier_lr`` (the MulSupCon authors fine-tune it
            at 0.1 × the classifier's, ``lrp``); 1 trains both at ``classifier_lr``. ``bce``, ``asl``,
            ``zlpr`` and ``end-to-end``: the encoder's rate as a fraction of ``lr`` (a pretrained
            encoder under a fresh head).
        lr_schedule: ``cosine`` (linear warm-up, then cosine decay to ``min_lr_ratio`` × lr at a
            stage's epoch cap, per step; :mod:`mlsupcon.training.schedule`) or ``constant``.
        warmup_epochs: epochs of linear warm-up at the start of every stage (fractions allowed;
            null: a tenth of the stage's epochs, at most 1).
        min_lr_ratio: the cosine schedule's final learning rate as a fraction of the initial one.
        patience: epochs without improvement of the monitored validation metric before a stage
            stops early (classifier: validation mAP; contrastive stage 1: ``val/knn_map``).
        finetune_encoder: stage 2 trains the encoder with the classifier (the MulSupCon
            authors' protocol) instead of a probe on the frozen encoder (the SimDis paper's).
        views: views per sample in contrastive training.
        view_options: options of the modality's view maker (:func:`mlsupcon.data.make_views`).
        probe_batch_size: batch size of the linear probe on cached embeddings (two-stage).
        head: a classifier head kind of :data:`mlsupcon.models.HEADS`: ``linear``, ``attention``
            (label-wise attention; text encoders) or ``kmcl``.
        kmcl_options: KMCLLoss options used when ``compare`` runs ``kmcl`` (``train --method kmcl``
            takes them from ``loss_options``).
        stage1_selection: two-stage: score the encoder by kNN mAP on validation after every
            contrastive epoch, keep the best and stop early (``patience``); false trains all
            ``epochs`` and keeps the last (the MulSupCon authors' protocol, the yeast recipe).
        knn: after training, ``blend`` a kNN head (label votes of the nearest training examples,
            k and temperature tuned on validation) with the trained head, weight chosen on
            validation mAP; ``only``: the kNN head alone; ``off`` (training/methods/finish.py).
        knn_options: ``ks`` and ``temperatures`` searched on validation.
        blend_linear: wide & deep (text): blend the TF-IDF linear model's scores in, weight chosen
            on validation mAP.
        linear_options: options of method ``linear`` (``estimator``: svm/logreg, ``C``, ``class_weight``,
            ``featurizer``: TF-IDF options such as ``max_features``).
        head_options: options of the run's head (``head``; the KMCL head for method ``kmcl``:
            ``mode`` isotropic/anisotropic, ``reduce_dim``, ``isotropic_mean``; ``label-names``:
            ``prior_strength``, ``scale``).
        threshold: ``"tune"`` (one global threshold maximising validation micro-F1),
            ``"tune-per-label"`` (one per label, each label's F1-optimal validation threshold shrunk
            towards the global one by its validation positives: rare labels keep nearly the
            global one), ``"auto"`` (``tune-per-label`` where 5-fold cross-validation on the
            validation split shows it keeps micro-F1 and raises macro-F1, else ``tune``; the auto
            settings choose it) or a number.
        contrastive_weight: λ of ``end-to-end``.
        queue_size: rows of the label-aware memory queue of the contrastive loss (0: none).
        momentum: m of a MoCo-style key encoder whose keys fill the queue (None: no key encoder;
            the MulSupCon authors use 0.999). Needs ``queue_size`` > 0; two-stage only.
        num_nodes: machines of a multi-node run (with ``torchrun``; see docs/scaling.md).
        distributed_timeout: seconds a process of a distributed run waits for the others (in a
            collective, or to join) before it stops with a one-line error; a process that dies is
            noticed at once (docs/failures.md, "A process dies").
        resume: continue the interrupted run in ``output`` from its last checkpoints (finished
            stages are not trained again); needs the same configuration (docs/failures.md).
        overwrite: a new run into an ``output`` that holds an earlier run first deletes that
            run's artefacts (never other files); without it (or ``resume``) such a folder is
            refused (docs/failures.md, "Run folders"). Not saved: ``config.yaml`` says false.
        checkpoint_every_n_steps: also checkpoint every that many training steps, not only at the
            end of every epoch (0: epochs only); a killed run loses at most this many steps.
        max_nonfinite_steps: stop after that many consecutive steps with a NaN/inf loss (each
            is skipped and counted); 0: never stop.
        preset: the recipe of a bundled dataset (:data:`mlsupcon.config.presets.PRESETS`) that
            :func:`load_config` put under the YAML file and the flags: by default the named
            dataset's own; ``none``: no preset. In ``config.yaml``: the preset that applied, or null.
        auto: choose the fields nobody set from the data for a ``jsonl:``/``csv:``/``vectors:``
            dataset (:mod:`mlsupcon.config.auto`, printed when the run starts); false in any
            YAML config that does not say ``auto: true``, and once applied (``config.yaml`` then
            holds the chosen values).
        user_set: the fields (``field``) and options (``field.option``) the user set (a flag, the
            YAML file, the preset), which auto settings never change; recorded by
            :func:`~mlsupcon.config.loading.load_config`. None (a config built in Python): every
            field whose value is not the default. Not a setting: neither saved in ``config.yaml``
            nor compared, nor a key a YAML file or a flag can set.
    """

    dataset: str = "debtags"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    encoder: str = "cnn"
    encoder_options: dict[str, Any] = field(default_factory=dict)
    method: str = "two-stage"
    loss: str = "simdis"
    loss_options: dict[str, Any] = field(default_factory=dict)
    classifier_loss: str | None = None
    classifier_loss_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    classifier_epochs: int = 30
    finetune_encoder: bool = False
    batch_size: int = 256
    probe_batch_size: int = 2048
    eval_batch_size: int = 512
    lr: float = 1e-3
    classifier_lr: float = 1e-3
    encoder_lr_ratio: float = 1.0
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_epochs: float | None = None
    min_lr_ratio: float = 0.0
    projection_dim: int = 128
    projection_hidden: int | None = None
    views: int = 2
    view_options: dict[str, Any] = field(default_factory=dict)
    head: str = "linear"
    head_options: dict[str, Any] = field(default_factory=dict)
    kmcl_options: dict[str, Any] = field(default_factory=dict)
    linear_options: dict[str, Any] = field(default_factory=dict)
    knn: str = "off"
    stage1_selection: bool = True
    knn_options: dict[str, Any] = field(default_factory=dict)
    blend_linear: bool = False
    threshold: Any = "tune"
    contrastive_weight: float = 1.0
    queue_size: int = 0
    momentum: float | None = None
    num_nodes: int = 1
    distributed_timeout: float = 600.0
    patience: int = 5
    seed: int = 0
    output: str = "runs/latest"
    ks: list[int] = field(default_factory=lambda: [1, 5, 8, 15])
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = 0
    progress: bool = True
    save_embeddings: bool = True
    resume: bool = False
    overwrite: bool = False
    checkpoint_every_n_steps: int = 100
    max_nonfinite_steps: int = 10
    preset: str | None = None
    auto: bool = True
    user_set: frozenset[str] | None = field(default=None, compare=False, repr=False)

    def validate(self, method_names: Collection[str] | None = None) -> "TrainConfig":
        """Checks every field (ValueError naming the first bad one); returns ``self``.

        Needs neither torch nor Lightning (:func:`mlsupcon.config.validation.validate_config`);
        ``method_names``: the methods ``method`` may name (default: the built-in ones). The
        method's own checks are not made here (``mlsupcon.training.run_config.validate_run_config``).
        """
        from mlsupcon.config.validation import validate_config

        return validate_config(self, method_names)

    def to_dict(self) -> dict[str, Any]:
        """The settings, as ``config.yaml`` holds them (field order)."""
        values = dataclasses.asdict(self)
        for name in NOT_SETTINGS:
            del values[name]
        return values

    @classmethod
    def fields(cls) -> list[str]:
        """The names of the settings (what a YAML file or a flag may set)."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in NOT_SETTINGS]
