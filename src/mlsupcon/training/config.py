"""The run configuration: defaults < YAML file < command-line flags, validated once.

:func:`load_config` merges the three and validates the result (:meth:`TrainConfig.validate`)
before any data is read and before torch or Lightning are imported: a mistake in a config is
reported at once. Method-specific checks are the method's (``Method.validate``); the
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
            ``end-to-end`` (classifier loss + λ·contrastive), ``bce`` / ``asl`` (classifier only),
            ``kmcl`` (the KMCL head and its three losses, end to end).
        loss: contrastive loss name for :func:`mlsupcon.losses.build`.
        loss_options: its options (``temperature`` …).
        epochs: contrastive (stage-1) epochs for two-stage; training epochs otherwise.
        classifier_epochs: stage-2 epochs (early stopping on validation mAP).
        finetune_encoder: stage 2 trains the encoder with the classifier (the MulSupCon
            authors' protocol) instead of a probe on the frozen encoder (the SimDis paper's).
        views: views per sample in contrastive training.
        view_options: options of the modality's view maker (:func:`mlsupcon.data.make_views`).
        probe_batch_size: batch size of the linear probe on cached embeddings (two-stage).
        head: a classifier head kind of :data:`mlsupcon.models.HEADS`: ``linear``, ``attention``
            (label-wise attention; text encoders) or ``kmcl``.
        kmcl_options: KMCLLoss options used when ``compare`` runs ``kmcl`` (``train --method kmcl``
            takes them from ``loss_options``).
        head_options: options of the KMCL head of method ``kmcl`` (``mode``: isotropic/anisotropic,
            ``reduce_dim``, ``isotropic_mean``).
        threshold: ``"tune"`` (one global threshold maximising validation micro-F1) or a number.
        contrastive_weight: λ of ``end-to-end``.
        queue_size: rows of the label-aware memory queue of the contrastive loss (0: none).
        momentum: m of a MoCo-style key encoder whose keys fill the queue (None: no key encoder;
            the MulSupCon authors use 0.999). Needs ``queue_size`` > 0; two-stage only.
        num_nodes: machines of a multi-node run (with ``torchrun``; see docs/scaling.md).
        resume: continue the interrupted run in ``output`` from its last checkpoints (finished
            stages are not trained again); needs the same configuration (docs/failures.md).
        checkpoint_every_n_steps: also checkpoint every that many training steps, not only at the
            end of every epoch (0: epochs only); a killed run loses at most this many steps.
        max_nonfinite_steps: stop after that many consecutive steps with a NaN/inf loss (each
            is skipped and counted); 0: never stop.
    """

    dataset: str = "debtags"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    encoder: str = "cnn"
    encoder_options: dict[str, Any] = field(default_factory=dict)
    method: str = "two-stage"
    loss: str = "simdis"
    loss_options: dict[str, Any] = field(default_factory=dict)
    classifier_loss_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    classifier_epochs: int = 30
    finetune_encoder: bool = False
    batch_size: int = 256
    probe_batch_size: int = 2048
    eval_batch_size: int = 512
    lr: float = 1e-3
    classifier_lr: float = 1e-3
    weight_decay: float = 1e-4
    projection_dim: int = 128
    projection_hidden: int | None = None
    views: int = 2
    view_options: dict[str, Any] = field(default_factory=dict)
    head: str = "linear"
    head_options: dict[str, Any] = field(default_factory=dict)
    kmcl_options: dict[str, Any] = field(default_factory=dict)
    threshold: Any = "tune"
    contrastive_weight: float = 1.0
    queue_size: int = 0
    momentum: float | None = None
    num_nodes: int = 1
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
    checkpoint_every_n_steps: int = 100
    max_nonfinite_steps: int = 10

    def validate(self) -> "TrainConfig":
        """Checks every field (ValueError naming it), then the method's own checks.

        Cheap checks come first and need neither torch nor Lightning; the head and loss names
        are then checked against their registries (which import torch).
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
        if self.views < 1:
            raise ValueError("views: expected >= 1")
        for name in ("checkpoint_every_n_steps", "max_nonfinite_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        if not isinstance(self.resume, bool):
            raise ValueError(f"resume: expected true or false, got {self.resume!r}")
        for name in ("dataset_options", "encoder_options", "loss_options", "classifier_loss_options",
                     "view_options", "head_options", "kmcl_options"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}: expected a mapping of option: value, got {getattr(self, name)!r}")
        method.validate(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file (``yaml.safe_load``), then ``overrides`` (e.g. CLI flags); validated.

    An override ``"a.b": v`` sets option ``b`` inside the mapping field ``a`` (e.g.
    ``loss_options.temperature``), keeping the file's other options there. None values are
    skipped. Unknown keys raise ValueError naming the key and the file.

    Example:
        >>> cfg = load_config(None, {"method": "bce", "epochs": 2, "dataset_options.top_k_labels": 5})
        >>> cfg.method, cfg.epochs, cfg.dataset_options
        ('bce', 2, {'top_k_labels': 5})
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
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        field_name, _, option = key.partition(".")
        if option:
            nested = values.get(field_name)
            values[field_name] = {**(nested if isinstance(nested, dict) else {}), option: value}
        else:
            values[key] = value
    known = set(TrainConfig.fields())
    unknown = sorted(set(values) - known)
    if unknown:
        where = f" in {path}" if path is not None else ""
        raise ValueError(f"config: unknown key(s) {unknown}{where}; known keys: {sorted(known)}")
    return TrainConfig(**values).validate()


def save_config(config: TrainConfig, path: str | Path) -> None:
    import yaml

    from mlsupcon.training.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
