"""mlsupcon: multi-label supervised contrastive learning.

Layers, each importing only from those before it in this list:
``losses`` (torch only) → ``data`` → ``models`` → ``evaluation`` → ``config`` → ``runs`` (the run
folder, its artefacts and reports) → ``inference`` (a trained model: load, predict, embed,
evaluate, export) → ``training`` → ``cli``.
"""

from mlsupcon.version import __version__

__all__ = ["__version__", "load"]


def load(path, device="cpu"):
    """A trained run (its folder or ``model/`` folder) as a :class:`~mlsupcon.inference.model.TrainedModel`:
    ``labels``, ``predict``, ``predict_proba``, ``embed``. Imports torch on first use only.

    Example:
        >>> import mlsupcon
        >>> model = mlsupcon.load("runs/yeast-mulsupcon")      # doctest: +SKIP
        >>> model.predict(x_new, top_k=3)                      # doctest: +SKIP
    """
    from mlsupcon.inference.model import load as _load

    return _load(path, device=device)
