"""The run configuration: defaults < dataset preset < YAML file < command-line flags, validated once.

:func:`load_config` merges them (presets: :mod:`mlsupcon.training.presets`) and validates the
result (:meth:`TrainConfig.validate`) before any data is read and before torch or Lightning are
imported: a mistake in a config is reported at once. Method-specific checks are the method's (``Method.validate``); the
registries of methods, heads and losses are the only lists of names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
            at 0.1 × the classifier's, ``lrp``); 1 trains both at ``classifier_lr``.
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
        head_options: options of the KMCL head of method ``kmcl`` (``mode``: isotropic/anisotropic,
            ``reduce_dim``, ``isotropic_mean``).
        threshold: ``"tune"`` (one global threshold maximising validation micro-F1) or a number.
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
        preset: the recipe of a bundled dataset (:data:`mlsupcon.training.presets.PRESETS`) that
            :func:`load_config` put under the YAML file and the flags: by default the named
            dataset's own; ``none``: no preset. In ``config.yaml``: the preset that applied, or null.
        auto: choose the fields nobody set from the data for a ``jsonl:``/``csv:``/``vectors:``
            dataset (:mod:`mlsupcon.training.auto`, printed when the run starts); false in any
            YAML config that does not say ``auto: true``, and once applied (``config.yaml`` then
            holds the chosen values).
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

    def validate(self, registries: bool = True) -> "TrainConfig":
        """Checks every field (ValueError naming it), then the method's own checks.

        Cheap checks come first and need neither torch nor Lightning; the head and loss names
        are then checked against their registries (which import torch), unless ``registries`` is
        false: the ``train`` command checks its data before importing torch, then validates again.
        """
        from mlsupcon.training.methods import get_method

        method = get_method(self.method)
        for name in ("epochs", "batch_size", "probe_batch_size", "eval_batch_size", "views", "projection_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not isinstance(self.classifier_epochs, int) or self.classifier_epochs < 0:
            raise ValueError(f"classifier_epochs: expected an integer >= 0, got {self.classifier_epochs!r}")
        for name in ("lr", "classifier_lr"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)!r}")
        lr_ratio = self.encoder_lr_ratio
        if isinstance(lr_ratio, bool) or not isinstance(lr_ratio, (int, float)) or not 0 < lr_ratio <= 1:
            raise ValueError(f"encoder_lr_ratio: expected a number in (0, 1], got {lr_ratio!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule: expected 'cosine' or 'constant', got {self.lr_schedule!r}")

        def number(value) -> bool:  # int or float, not bool, not NaN
            return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value

        if self.warmup_epochs is not None and not (number(self.warmup_epochs) and 0 <= self.warmup_epochs < 1e9):
            raise ValueError(f"warmup_epochs: expected a number >= 0 or null, got {self.warmup_epochs!r}")
        if not (number(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1):
            raise ValueError(f"min_lr_ratio: expected a number in [0, 1], got {self.min_lr_ratio!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"patience: expected an integer >= 0, got {self.patience!r}")
        if self.threshold != "tune":
            try:
                t = float(self.threshold)
            except (TypeError, ValueError):
                raise ValueError(f"threshold: expected 'tune' or a number in (0, 1), got {self.threshold!r}") from None
            if not 0 < t < 1:
                raise ValueError(f"threshold: expected 'tune' or a number in (0, 1), got {self.threshold!r}")
            self.threshold = t
        if not isinstance(self.queue_size, int) or self.queue_size < 0:
            raise ValueError(f"queue_size: expected an integer >= 0, got {self.queue_size!r}")
        if self.momentum is not None and not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum: expected a number in [0, 1) or null, got {self.momentum!r}")
        if not isinstance(self.num_nodes, int) or self.num_nodes < 1:
            raise ValueError(f"num_nodes: expected an integer >= 1, got {self.num_nodes!r}")
        if not (number(self.distributed_timeout) and 0 < self.distributed_timeout < 1e7):
            raise ValueError(f"distributed_timeout: expected a number of seconds > 0, got {self.distributed_timeout!r}")
        if self.views < 1:
            raise ValueError("views: expected >= 1")
        for name in ("checkpoint_every_n_steps", "max_nonfinite_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        if not isinstance(self.resume, bool):
            raise ValueError(f"resume: expected true or false, got {self.resume!r}")
        if not isinstance(self.overwrite, bool):
            raise ValueError(f"overwrite: expected true or false, got {self.overwrite!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume, overwrite: --resume continues the run in the output folder, --overwrite "
                             "deletes it and starts a new one; give one of them")
        if not isinstance(self.auto, bool):
            raise ValueError(f"auto: expected true or false, got {self.auto!r}")
        from mlsupcon.training.presets import PRESETS

        if isinstance(self.preset, str) and self.preset.strip().lower() == "none":
            self.preset = None
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset: unknown preset {self.preset!r}; expected one of {sorted(PRESETS)} or none")
        for name in ("dataset_options", "encoder_options", "loss_options", "classifier_loss_options",
                     "view_options", "head_options", "kmcl_options", "linear_options"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}: expected a mapping of option: value, got {getattr(self, name)!r}")
        if not isinstance(self.stage1_selection, bool):
            raise ValueError(f"stage1_selection: expected true or false, got {self.stage1_selection!r}")
        from mlsupcon.training.methods.finish import validate_finish_options

        validate_finish_options(self)
        if registries:
            method.validate(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                registries: bool = True) -> TrainConfig:
    """Defaults, then the dataset's preset, then the YAML file (``yaml.safe_load``), then
    ``overrides`` (e.g. CLI flags); validated.

    An override ``"a.b": v`` sets option ``b`` inside the mapping field ``a`` (e.g.
    ``loss_options.temperature``), keeping the file's other options there. None values are
    skipped. Unknown keys raise ValueError naming the key and the file. The preset is that of
    the dataset the file or the overrides name (:mod:`mlsupcon.training.presets`; ``preset``
    names another, ``none`` none); ``cfg.preset`` says which applied. A YAML file turns
    ``auto`` off unless it sets it. ``registries``: see :meth:`TrainConfig.validate`.

    Example:
        >>> cfg = load_config(None, {"method": "bce", "epochs": 2, "dataset_options.top_k_labels": 5})
        >>> cfg.method, cfg.epochs, cfg.dataset_options, cfg.preset
        ('bce', 2, {'top_k_labels': 5}, None)
        >>> cfg = load_config(None, {"dataset": "yeast", "epochs": 1})
        >>> cfg.preset, cfg.encoder, cfg.epochs, cfg.batch_size
        ('yeast', 'mlp', 1, 64)
    """
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config: file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            # One line (the CLI prints one): the problem and where, not PyYAML's multi-line excerpt.
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise ValueError(f"config: {path} is not valid YAML{where}: {problem}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"config: {path} must hold a mapping of option: value")
        values.update(loaded)
        values.setdefault("auto", False)  # a config file says what it wants: nothing chosen from the data
    explicit = set(values)  # what the user set (auto settings never change it)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        field_name, _, option = key.partition(".")
        if option:
            nested = values.get(field_name)
            values[field_name] = {**(nested if isinstance(nested, dict) else {}), option: value}
        else:
            values[key] = value
        explicit.add(key)
    known = set(TrainConfig.fields())
    unknown = sorted(set(values) - known)
    if unknown:
        where = f" in {path}" if path is not None else ""
        raise ValueError(f"config: unknown key(s) {unknown}{where}; known keys: {sorted(known)}")
    values, preset = _with_preset(values)
    cfg = TrainConfig(**values).validate(registries)
    cfg._explicit = frozenset(explicit | set(preset))  # for mlsupcon.training.auto; not a field, not saved
    return cfg


def _with_preset(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` (YAML file < flags) over the preset they name, with ``preset`` set to its name
    or None; and the preset's values."""
    from mlsupcon.training.presets import PRESETS, preset_layer, preset_name

    name = values.get("preset", preset_name(values.get("dataset")))
    if isinstance(name, str) and name.strip().lower() == "none":
        name = None
    if name is not None and name not in PRESETS:
        raise ValueError(f"preset: unknown preset {name!r}; expected one of {sorted(PRESETS)} or none")
    preset = PRESETS[name] if name is not None else {}
    merged = preset_layer(preset, values)
    merged["preset"] = name
    return merged, preset


def save_config(config: TrainConfig, path: str | Path) -> None:
    import yaml

    from mlsupcon.training.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
