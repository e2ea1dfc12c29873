"""Training: configs, methods, Lightning modules, the run pipeline (train → threshold → metrics),
model export and compare.

Layout: :mod:`~mlsupcon.training.run_config` (a run's config checked: fields, then the method's
checks; the config itself is :mod:`mlsupcon.config`), :mod:`~mlsupcon.training.methods`
(one file per method, the ``METHODS`` registry), :mod:`~mlsupcon.training.modules` (Lightning
modules), :mod:`~mlsupcon.training.stages` (one checkpointed, resumable stage),
:mod:`~mlsupcon.training.runner` (``run_training``, ``evaluate_run``),
:mod:`~mlsupcon.training.compare`. ``save_classifier`` and ``load_classifier`` are
:mod:`mlsupcon.inference.storage`'s; the run folder is :mod:`mlsupcon.runs`.
"""

from mlsupcon.config.schema import TrainConfig
from mlsupcon.training.run_config import load_config

__all__ = ["TrainConfig", "load_config", "run_training", "evaluate_run", "run_compare", "save_classifier",
           "load_classifier"]


def __getattr__(name):  # torch and Lightning are imported only when they are needed
    if name in ("run_training", "evaluate_run"):
        from mlsupcon.training import runner

        return getattr(runner, name)
    if name in ("save_classifier", "load_classifier"):
        from mlsupcon.inference import storage

        return getattr(storage, name)
    if name == "run_compare":
        from mlsupcon.training.compare import run_compare

        return run_compare
    raise AttributeError(name)
