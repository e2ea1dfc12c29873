"""The config package (issue 20): it imports nothing of training, its method table matches the
method registry, what the user set is explicit data that is never saved, and each field group
is checked in a fixed order."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlsupcon.config import auto
from mlsupcon.config.loading import load_config
from mlsupcon.config.methods import BUILDS_OWN_ENCODER, EXCLUSIVE_OPTIONS, KNN_MODES, METHOD_NAMES, METHOD_OPTIONS
from mlsupcon.config.schema import TrainConfig
from mlsupcon.config.validation import FIELD_CHECKS, validate_config


def test_config_imports_neither_training_nor_torch():
    code = ("import sys, json; import mlsupcon.config, mlsupcon.config.flags, mlsupcon.config.validation; "
            "from mlsupcon.config import load_config; load_config(None, {'dataset': 'yeast'}); "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('mlsupcon.training') or m == 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_method_table_matches_the_registry():
    from mlsupcon.training.methods import METHODS
    from mlsupcon.training.methods.finish import KNN_MODES as FINISH_KNN_MODES

    assert tuple(METHODS)[:len(METHOD_NAMES)] == METHOD_NAMES
    for name in METHOD_NAMES:
        cls = METHODS[name]
        assert set(cls.options) == set(METHOD_OPTIONS[name]), name
        assert cls.builds_own_encoder == (name in BUILDS_OWN_ENCODER), name
    assert set(EXCLUSIVE_OPTIONS) <= set(TrainConfig.fields())
    assert KNN_MODES == FINISH_KNN_MODES


def test_user_set_is_explicit_and_never_saved():
    cfg = load_config(None, {"dataset": "yeast", "epochs": 3, "loss_options.temperature": 0.2})
    assert {"epochs", "loss_options.temperature", "dataset", "encoder"} <= cfg.user_set  # flags and the preset
    assert "user_set" not in cfg.to_dict() and "user_set" not in TrainConfig.fields()
    assert cfg == load_config(None, {"dataset": "yeast", "epochs": 3, "loss_options.temperature": 0.2, "seed": 0})
    assert TrainConfig().user_set is None  # built in Python: every non-default field counts as set
    assert auto.user_set_fields(TrainConfig(epochs=4)) == {"epochs"}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['user_set'\]"):
        load_config(None, {"user_set": ["epochs"]})


def test_field_groups_report_the_first_bad_field_in_order():
    # method first, then the groups in FIELD_CHECKS' order: the earlier group's field is named
    with pytest.raises(ValueError, match="^method:"):
        validate_config(TrainConfig(method="nope", epochs=0))
    with pytest.raises(ValueError, match="^epochs:"):
        validate_config(TrainConfig(epochs=0, lr=-1, knn="maybe"))
    with pytest.raises(ValueError, match="^lr:"):
        validate_config(TrainConfig(lr=-1, knn="maybe"))
    with pytest.raises(ValueError, match="^knn:"):
        validate_config(TrainConfig(knn="maybe"))
    assert validate_config(TrainConfig(method="custom"), method_names=("custom",)).method == "custom"
    assert len(FIELD_CHECKS) == 9 and all(f.__name__.startswith("check_") for f in FIELD_CHECKS)
    cfg = validate_config(TrainConfig(threshold="0.25", preset="None"))
    assert (cfg.threshold, cfg.preset) == (0.25, None)


def test_method_checks_are_the_training_layers():
    from mlsupcon.training.run_config import load_config as load_run_config
    from mlsupcon.training.run_config import validate_run_config

    over = {"method": "linear", "linear_options": {"estimator": "tree"}}
    assert load_config(None, over).method == "linear"  # fields only
    for check in (lambda: load_run_config(None, over), lambda: validate_run_config(TrainConfig(**over))):
        with pytest.raises(ValueError, match="linear_options.estimator"):
            check()
