"""Training: configs, Lightning modules, the run pipeline (train → threshold → metrics) and compare."""

from mlsupcon.training.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config", "run_training", "evaluate_run", "run_compare"]


def __getattr__(name):  # Lightning is imported only when a run starts
    if name in ("run_training", "evaluate_run"):
        from mlsupcon.training import runner

        return getattr(runner, name)
    if name == "run_compare":
        from mlsupcon.training.compare import run_compare

        return run_compare
    raise AttributeError(name)
