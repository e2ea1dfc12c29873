"""Issue 20: the training layer's concepts each have one home; reliability.py is a deprecation shim."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
import warnings

import pytest


def test_reliability_is_a_deprecated_alias_of_the_new_homes():
    sys.modules.pop("mlsupcon.training.reliability", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reliability = importlib.import_module("mlsupcon.training.reliability")
    assert any(issubclass(w.category, DeprecationWarning) and "reliability is deprecated" in str(w.message)
               for w in caught)
    from mlsupcon.training import callbacks, checkpoints, distributed, errors, logs, rng

    assert reliability.ResumableCheckpoint is callbacks.ResumableCheckpoint
    assert reliability.AtomicCheckpointIO is checkpoints.AtomicCheckpointIO
    assert reliability.capture_rng is rng.capture_rng and reliability.seed_rank_stream is rng.seed_rank_stream
    assert reliability.distributed_failure is distributed.distributed_failure
    assert reliability.OutOfMemoryGuidance is errors.OutOfMemoryGuidance
    assert reliability.merge_resumed_log is logs.merge_resumed_log


def test_setting_a_name_of_the_shim_sets_it_in_its_home(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import mlsupcon.training.reliability as reliability
    from mlsupcon.training import checkpoints

    def fake(obj, path):
        raise AssertionError("not called")

    monkeypatch.setattr(reliability, "save_checkpoint_file", fake)
    assert checkpoints.save_checkpoint_file is fake
    monkeypatch.undo()
    assert checkpoints.save_checkpoint_file is not fake


def test_the_method_registry_is_light_and_has_one_home():
    code = ("import sys, json; import mlsupcon.training.methods as m; "
            "print(json.dumps([k for k in ('torch', 'lightning') if k in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
    from mlsupcon.training import methods
    from mlsupcon.training.methods import base

    assert methods.METHODS is base.METHODS and methods.get_method is base.get_method
    assert base.Method.builds_own_encoder is False and methods.get_method("linear").builds_own_encoder is True


def test_queue_and_momentum_rules_have_one_home():
    from mlsupcon.training.scale import check_momentum, check_queue_loss

    check_queue_loss("simdis", "multi_hot")
    with pytest.raises(ValueError, match="queue_size: memory queues work with the flat losses .* not 'himulcon'"):
        check_queue_loss("himulcon", "hierarchy_levels")
    check_momentum(types.SimpleNamespace(momentum=None, queue_size=0))
    with pytest.raises(ValueError, match="^momentum: a momentum .key. encoder fills a memory queue"):
        check_momentum(types.SimpleNamespace(momentum=0.99, queue_size=0))


def test_best_epoch_tracking_is_written_once():
    from mlsupcon.training.modules import ClassifierModule, ContrastiveModule, KMCLModule, _Base

    for cls in (ClassifierModule, ContrastiveModule, KMCLModule):
        for name in ("_keep_if_best", "extra_state", "load_extra_state"):
            assert getattr(cls, name) is getattr(_Base, name), (cls.__name__, name)


def test_the_shims_oom_message_adds_the_methods_hints():
    from mlsupcon.config.schema import TrainConfig
    from mlsupcon.training.errors import oom_message
    from mlsupcon.training.methods import get_method

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from mlsupcon.training.reliability import oom_message as old_oom_message
    cfg = TrainConfig(method="two-stage", loss="simdis")
    exc = RuntimeError("CUDA out of memory")
    assert old_oom_message(cfg, "contrastive", exc) == oom_message(cfg, "contrastive", exc,
                                                                   get_method("two-stage").oom_hints(cfg))
