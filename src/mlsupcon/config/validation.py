"""The checks of a :class:`~mlsupcon.config.schema.TrainConfig`'s fields, one function per group.

:func:`validate_config` runs them in a fixed order (the first bad field is the one reported, a
ValueError naming it) and needs neither torch nor Lightning: a mistake in a config is reported
before any data is read. Two checks normalise a value in place: a numeric ``threshold`` becomes a
float, ``preset: none`` becomes None. What a training method adds (loss and head names, options
only it reads) is the method's (``Method.validate``, run by the training layer).

Example:
    >>> from mlsupcon.config.schema import TrainConfig
    >>> validate_config(TrainConfig(threshold="0.4")).threshold
    0.4
    >>> validate_config(TrainConfig(epochs=0))
    Traceback (most recent call last):
    ...
    ValueError: epochs: expected an integer >= 1, got 0
"""

from __future__ import annotations

from typing import Any, Callable, Collection

from mlsupcon.config.methods import KNN_MODES, KNN_OPTION_KEYS, METHOD_NAMES
from mlsupcon.config.presets import PRESETS

__all__ = ["FIELD_CHECKS", "validate_config", "check_method_name", "check_sizes", "check_learning_rates",
           "check_stopping_and_threshold", "check_memory_queue", "check_distributed", "check_run_controls",
           "check_preset", "check_option_mappings", "check_model_selection"]

#: The fields that hold a mapping of option: value.
MAPPING_FIELDS = ("dataset_options", "encoder_options", "loss_options", "classifier_loss_options", "view_options",
                  "head_options", "kmcl_options", "linear_options")


def _number(value: Any) -> bool:
    """An int or a float, not a bool, not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _flag(cfg: Any, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")


def check_method_name(cfg: Any, names: Collection[str] = METHOD_NAMES) -> None:
    """``method`` names one of ``names`` (the method registry's, when the caller has it)."""
    if not isinstance(cfg.method, str) or cfg.method not in names:
        raise ValueError(f"method: expected one of {tuple(names)}, got {cfg.method!r}")


def check_sizes(cfg: Any) -> None:
    """Epoch caps, batch sizes, views and the projection's width."""
    for name in ("epochs", "batch_size", "probe_batch_size", "eval_batch_size", "views", "projection_dim"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if not isinstance(cfg.classifier_epochs, int) or cfg.classifier_epochs < 0:
        raise ValueError(f"classifier_epochs: expected an integer >= 0, got {cfg.classifier_epochs!r}")


def check_learning_rates(cfg: Any) -> None:
    """Learning rates and their schedule."""
    for name in ("lr", "classifier_lr"):
        if not (isinstance(getattr(cfg, name), (int, float)) and getattr(cfg, name) > 0):
            raise ValueError(f"{name}: expected a number > 0, got {getattr(cfg, name)!r}")
    ratio = cfg.encoder_lr_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(f"encoder_lr_ratio: expected a number in (0, 1], got {ratio!r}")
    if cfg.lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule: expected 'cosine' or 'constant', got {cfg.lr_schedule!r}")
    if cfg.warmup_epochs is not None and not (_number(cfg.warmup_epochs) and 0 <= cfg.warmup_epochs < 1e9):
        raise ValueError(f"warmup_epochs: expected a number >= 0 or null, got {cfg.warmup_epochs!r}")
    if not (_number(cfg.min_lr_ratio) and 0 <= cfg.min_lr_ratio <= 1):
        raise ValueError(f"min_lr_ratio: expected a number in [0, 1], got {cfg.min_lr_ratio!r}")


#: Decision rules tuned on the validation split: one global threshold (best micro-F1), one per
#: label shrunk towards it (:func:`mlsupcon.evaluation.tune_shrunk_thresholds`), or the one of the two
#: that cross-validation on the validation split prefers (:func:`mlsupcon.evaluation.choose_threshold_rule`).
THRESHOLD_RULES = ("tune", "tune-per-label", "auto")

def check_stopping_and_threshold(cfg: Any) -> None:
    """Early stopping's patience and the decision threshold (a number is stored as a float)."""
    if isinstance(cfg.patience, bool) or not isinstance(cfg.patience, int) or cfg.patience < 0:
        raise ValueError(f"patience: expected an integer >= 0, got {cfg.patience!r}")
    if cfg.threshold in THRESHOLD_RULES:
        return
    expected = f"threshold: expected 'tune', 'tune-per-label', 'auto' or a number in (0, 1), got {cfg.threshold!r}"
    try:
        threshold = float(cfg.threshold)
    except (TypeError, ValueError):
        raise ValueError(expected) from None
    if not 0 < threshold < 1:
        raise ValueError(expected)
    cfg.threshold = threshold


def check_memory_queue(cfg: Any) -> None:
    """The contrastive loss's memory queue and its momentum encoder."""
    if not isinstance(cfg.queue_size, int) or cfg.queue_size < 0:
        raise ValueError(f"queue_size: expected an integer >= 0, got {cfg.queue_size!r}")
    if cfg.momentum is not None and not (isinstance(cfg.momentum, (int, float)) and 0 <= cfg.momentum < 1):
        raise ValueError(f"momentum: expected a number in [0, 1) or null, got {cfg.momentum!r}")


def check_distributed(cfg: Any) -> None:
    """Machines of a multi-node run and how long a process waits for the others."""
    if not isinstance(cfg.num_nodes, int) or cfg.num_nodes < 1:
        raise ValueError(f"num_nodes: expected an integer >= 1, got {cfg.num_nodes!r}")
    if not (_number(cfg.distributed_timeout) and 0 < cfg.distributed_timeout < 1e7):
        raise ValueError(f"distributed_timeout: expected a number of seconds > 0, got {cfg.distributed_timeout!r}")


def check_run_controls(cfg: Any) -> None:
    """Checkpointing, the non-finite loss policy, the run folder switches and ``auto``."""
    for name in ("checkpoint_every_n_steps", "max_nonfinite_steps"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    _flag(cfg, "resume")
    _flag(cfg, "overwrite")
    if cfg.resume and cfg.overwrite:
        raise ValueError("resume, overwrite: --resume continues the run in the output folder, --overwrite "
                         "deletes it and starts a new one; give one of them")
    _flag(cfg, "auto")


def check_preset(cfg: Any) -> None:
    """``preset`` names a recipe of :data:`~mlsupcon.config.presets.PRESETS` or none (``none`` is stored as None)."""
    if isinstance(cfg.preset, str) and cfg.preset.strip().lower() == "none":
        cfg.preset = None
    if cfg.preset is not None and cfg.preset not in PRESETS:
        raise ValueError(f"preset: unknown preset {cfg.preset!r}; expected one of {sorted(PRESETS)} or none")


def check_option_mappings(cfg: Any) -> None:
    """The ``*_options`` fields are mappings (their keys are checked by whoever reads them)."""
    for name in MAPPING_FIELDS:
        if not isinstance(getattr(cfg, name), dict):
            raise ValueError(f"{name}: expected a mapping of option: value, got {getattr(cfg, name)!r}")


def check_model_selection(cfg: Any) -> None:
    """What is chosen on validation: stage 1's best epoch, the kNN and linear blends after training."""
    _flag(cfg, "stage1_selection")
    if cfg.knn not in KNN_MODES:
        raise ValueError(f"knn: expected one of {KNN_MODES}, got {cfg.knn!r}")
    _flag(cfg, "blend_linear")
    if not isinstance(cfg.knn_options, dict) or set(cfg.knn_options) - set(KNN_OPTION_KEYS):
        raise ValueError(f"knn_options: expected a mapping with keys among {list(KNN_OPTION_KEYS)}, "
                         f"got {cfg.knn_options!r}")


#: The field checks, in the order :func:`validate_config` runs them.
FIELD_CHECKS: tuple[Callable[[Any], None], ...] = (
    check_sizes, check_learning_rates, check_stopping_and_threshold, check_memory_queue, check_distributed,
    check_run_controls, check_preset, check_option_mappings, check_model_selection,
)


def validate_config(cfg: Any, method_names: Collection[str] | None = None) -> Any:
    """Checks every field of the :class:`~mlsupcon.config.schema.TrainConfig` ``cfg``; returns it.

    Args:
        cfg: The config (two fields may be normalised in place: ``threshold``, ``preset``).
        method_names: The methods ``method`` may name (default: the built-in ones,
            :data:`~mlsupcon.config.methods.METHOD_NAMES`; the training layer passes its registry's).

    Raises:
        ValueError: naming the first bad field (the method first, then the groups of :data:`FIELD_CHECKS`).
    """
    check_method_name(cfg, METHOD_NAMES if method_names is None else method_names)
    for check in FIELD_CHECKS:
        check(cfg)
    return cfg
