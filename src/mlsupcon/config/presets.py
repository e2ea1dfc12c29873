"""Recommended recipes of the bundled datasets: ``mlsupcon train --dataset NAME`` without a config uses them.

:data:`PRESETS` is the one place where the recipe of a bundled dataset lives; ``configs/NAME.yaml``
shows the same values (a test keeps them equal). :func:`~mlsupcon.config.loading.load_config`
merges ``defaults < preset < YAML file < flags``: the preset of the dataset named in the YAML
file or the flags (or the one named by ``preset``; ``preset: none`` uses none), then whatever the
user set. A field set by the YAML file or a flag replaces the preset's; in a mapping field
(``encoder_options`` …) it replaces that option only. The preset's ``encoder_options`` and
``view_options`` belong to its encoder and its ``loss_options`` to its loss: they are left out
when another encoder or loss is chosen. The run's ``config.yaml`` records the resolved values
and, in ``preset``, which preset applied.

Example:
    >>> preset_for("yeast")["loss"], preset_for("yeast")["finetune_encoder"]
    ('mulsupcon', True)
    >>> preset_for("jsonl:data.jsonl")
    {}
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

__all__ = ["PRESETS", "preset_for", "preset_name", "preset_layer"]

#: Mapping fields whose options only make sense with the preset's value of another field.
OWNED_BY = {"encoder_options": "encoder", "view_options": "encoder", "loss_options": "loss"}

#: The recipe of each bundled dataset (values: TrainConfig fields). Edit a recipe here, then
#: regenerate configs/NAME.yaml from it (tests/test_presets.py checks that they are equal).
PRESETS: dict[str, dict[str, Any]] = {
    # ---- Debtags: THE place to change the Debtags recipe ----------------------------------
    # Wide & deep on a CPU: frozen MiniLM sentence embeddings (computed once and cached) under a
    # trainable 1024-wide MLP, trained end to end with BCE + a small SimDis term on feature-masked
    # views (the BCE is a mean over hundreds of labels, so a larger weight lets the contrastive term
    # drown it); then the TF-IDF + LinearSVC model's scores blended in (weight chosen on validation
    # mAP). No kNN blend: it costs rare tags macro-F1. Why SimDis, this lr and no kNN blend:
    # docs/results.md (Debtags).
    "debtags": {
        "dataset": "debtags",
        "encoder": "frozen",
        "encoder_options": {"hidden_dims": [1024], "dropout": 0.2},
        "view_options": {"p_mask": 0.2, "noise_std": 0.01},  # feature masking + noise on the embeddings
        "method": "end-to-end",
        "loss": "simdis",
        "loss_options": {"temperature": 0.1},
        "contrastive_weight": 0.01,
        "epochs": 30,  # a cap: early stopping on validation mAP (patience 5)
        "batch_size": 256,
        "lr": 0.003,
        "patience": 5,
        "knn": "off",
        "blend_linear": True,
    },
    # ---- yeast: the MulSupCon authors' set-up (reproduces their numbers; keep as is) -------
    # MLP 103→256→512→256 with dropout 0.2 after each ReLU (their backbone), batch 64, τ = 0.1,
    # views by random feature masking with p = 0.5 (no noise), then BCE fine-tuning of the whole
    # network. Their pretraining runs 150 epochs × 500 iterations; this recipe runs 100 passes
    # over the data. The dropout and the pretraining length: docs/results.md (Yeast).
    "yeast": {
        "dataset": "yeast",
        "encoder": "mlp",
        "encoder_options": {"hidden_dims": [256, 512, 256], "dropout": 0.2},
        "view_options": {"p_mask": 0.5, "noise_std": 0.0},
        "method": "two-stage",
        "loss": "mulsupcon",
        "loss_options": {"temperature": 0.1},
        "epochs": 100,
        "classifier_epochs": 100,
        "finetune_encoder": True,  # stage 2 trains encoder + classifier (their protocol); false = linear probe
        "batch_size": 64,
        "lr": 0.001,
        "classifier_lr": 0.0005,
        "patience": 10,
        # Their protocol, measured to reproduce their numbers: all `epochs` of stage 1 (no kNN
        # selection or early stopping), constant learning rates.
        "stage1_selection": False,
        "lr_schedule": "constant",
    },
    # ---- fashion-mosaic: multi-label images that train on a CPU -------------------------------
    # 2×2 mosaics of Fashion-MNIST items (labels = classes present), a small ResNet on 56×56 images.
    # Stage 1: SimDis on two crops that keep at least 60 % of the image (a 20 % crop, kornia's
    # usual lower bound, can cut whole items out of the mosaic, and their labels with them); stage
    # 2 fine-tunes the ResNet with the classifier (a linear probe on the frozen ResNet fell below the
    # pixel baseline: docs/results.md, Fashion-mosaic).
    "fashion-mosaic": {
        "dataset": "fashion-mosaic",
        "dataset_options": {"train_size": 8000, "validation_size": 1000, "test_size": 1000},
        "encoder": "resnet",
        "encoder_options": {"preset": "small", "image_size": 56},
        "view_options": {"size": 56, "scale": [0.6, 1.0]},
        "method": "two-stage",
        "loss": "simdis",
        "epochs": 10,
        "finetune_encoder": True,
        "classifier_epochs": 10,
        "batch_size": 128,
    },
}


def preset_name(dataset_spec: Any) -> str | None:
    """The name of the preset of a dataset spec (``"yeast"``, ``"Yeast"``), or None (``jsonl:…``).

    Example:
        >>> preset_name("fashion-mosaic"), preset_name("csv:x.csv")
        ('fashion-mosaic', None)
    """
    if not isinstance(dataset_spec, str):
        return None
    name = dataset_spec.strip().lower()
    return name if name in PRESETS else None


def preset_for(dataset_spec: Any) -> dict[str, Any]:
    """A copy of the recipe of the dataset ``dataset_spec`` names ({} for a dataset without one).

    Args:
        dataset_spec: A :func:`mlsupcon.data.load_dataset` spec or a preset name.

    Returns:
        TrainConfig field values (a deep copy: changing it changes no preset).

    Example:
        >>> preset_for("debtags")["encoder"], preset_for("debtags")["encoder_options"]["hidden_dims"]
        ('frozen', [1024])
    """
    name = preset_name(dataset_spec)
    return copy.deepcopy(PRESETS[name]) if name else {}


def _norm(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def preset_layer(preset: Mapping[str, Any], chosen: Mapping[str, Any]) -> dict[str, Any]:
    """``preset`` with ``chosen`` (the YAML file's and the flags' values) on top of it.

    Fields of ``chosen`` replace the preset's, except mapping fields, which are merged option by
    option (``chosen`` wins). The preset's ``encoder_options``/``view_options`` are dropped when
    ``chosen`` names another encoder, its ``loss_options`` when it names another loss.

    Example:
        >>> p = {"encoder": "mlp", "encoder_options": {"hidden_dims": [8]}, "loss_options": {"temperature": 0.1}}
        >>> preset_layer(p, {"encoder": "mlp", "encoder_options": {"dropout": 0.1}, "loss": "any"})
        {'encoder': 'mlp', 'encoder_options': {'hidden_dims': [8], 'dropout': 0.1}, 'loss': 'any'}
    """
    merged = copy.deepcopy(dict(preset))
    for name, owner in OWNED_BY.items():
        if name in merged and owner in chosen and _norm(chosen[owner]) != _norm(preset.get(owner)):
            del merged[name]
    for key, value in chosen.items():
        below = merged.get(key)
        merged[key] = {**below, **value} if isinstance(below, dict) and isinstance(value, dict) else value
    return merged
