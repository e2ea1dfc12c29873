"""Loading a run configuration: defaults < dataset preset < YAML file < command-line flags, validated once.

:func:`load_config` merges them (presets: :mod:`mlsupcon.config.presets`), records which fields the
user set (``TrainConfig.user_set``, for :mod:`mlsupcon.config.auto`) and validates the fields
(:mod:`mlsupcon.config.validation`), before any data is read and before torch or Lightning are
imported. The checks a training method adds are the training layer's
(``mlsupcon.training.run_config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection

from mlsupcon.config.presets import PRESETS, preset_layer, preset_name
from mlsupcon.config.schema import TrainConfig
from mlsupcon.config.validation import validate_config

__all__ = ["load_config", "read_config_file", "yaml_error_line"]


def yaml_error_line(exc: BaseException, limit: int | None = None) -> str:
    """An error's message on one line, at most ``limit`` characters: PyYAML's span several (the
    problem, then an excerpt of the file), and the CLI prints one line.

    Example:
        >>> import yaml
        >>> try:
        ...     yaml.safe_load("a: [1,")
        ... except yaml.YAMLError as exc:
        ...     print(yaml_error_line(exc, 40))
        while parsing a flow node expected the n
    """
    return " ".join(str(exc).split())[:limit]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of option: value a YAML config file holds; ValueError in one line otherwise."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config: file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        # The problem and where, not PyYAML's multi-line excerpt.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or yaml_error_line(exc)
        raise ValueError(f"config: {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"config: {path} must hold a mapping of option: value")
    return loaded


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                method_names: Collection[str] | None = None) -> TrainConfig:
    """Defaults, then the dataset's preset, then the YAML file (``yaml.safe_load``), then
    ``overrides`` (e.g. CLI flags); the fields validated.

    An override ``"a.b": v`` sets option ``b`` inside the mapping field ``a`` (e.g.
    ``loss_options.temperature``), keeping the file's other options there. None values are
    skipped. Unknown keys raise ValueError naming the key and the file. The preset is that of
    the dataset the file or the overrides name (:mod:`mlsupcon.config.presets`; ``preset``
    names another, ``none`` none); ``cfg.preset`` says which applied. A YAML file turns
    ``auto`` off unless it sets it. ``cfg.user_set`` holds what the file, the overrides and the
    preset set. ``method_names``: see :func:`~mlsupcon.config.validation.validate_config`.

    Example:
        >>> cfg = load_config(None, {"method": "bce", "epochs": 2, "dataset_options.top_k_labels": 5})
        >>> cfg.method, cfg.epochs, cfg.dataset_options, cfg.preset
        ('bce', 2, {'top_k_labels': 5}, None)
        >>> cfg = load_config(None, {"dataset": "yeast", "epochs": 1})
        >>> cfg.preset, cfg.encoder, cfg.epochs, cfg.batch_size
        ('yeast', 'mlp', 1, 64)
        >>> sorted(load_config(None, {"epochs": 2, "loss_options.temperature": 0.2}).user_set)
        ['epochs', 'loss_options.temperature']
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        values.update(read_config_file(path))
        values.setdefault("auto", False)  # a config file says what it wants: nothing chosen from the data
    user_set = set(values)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        field_name, _, option = key.partition(".")
        if option:
            nested = values.get(field_name)
            values[field_name] = {**(nested if isinstance(nested, dict) else {}), option: value}
        else:
            values[key] = value
        user_set.add(key)
    known = set(TrainConfig.fields())
    unknown = sorted(set(values) - known)
    if unknown:
        where = f" in {path}" if path is not None else ""
        raise ValueError(f"config: unknown key(s) {unknown}{where}; known keys: {sorted(known)}")
    values, preset = _with_preset(values)
    return validate_config(TrainConfig(**values, user_set=frozenset(user_set | set(preset))), method_names)


def _with_preset(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` (YAML file < flags) over the preset they name, with ``preset`` set to its name
    or None; and the preset's values."""
    name = values.get("preset", preset_name(values.get("dataset")))
    if isinstance(name, str) and name.strip().lower() == "none":
        name = None
    if name is not None and name not in PRESETS:
        raise ValueError(f"preset: unknown preset {name!r}; expected one of {sorted(PRESETS)} or none")
    preset = PRESETS[name] if name is not None else {}
    merged = preset_layer(preset, values)
    merged["preset"] = name
    return merged, preset
