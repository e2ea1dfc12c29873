"""mlsupcon: multi-label supervised contrastive learning.

Layers, each importing only from those above it in this list:
``losses`` (torch only) → ``data`` → ``models`` → ``evaluation`` → ``training`` → ``cli``.
"""

__version__ = "0.1.0"


def load(path, device="cpu"):
    """A trained run (its folder or ``model/`` folder) as a :class:`~mlsupcon.training.inference.TrainedModel`:
    ``labels``, ``predict``, ``predict_proba``, ``embed``. Imports torch on first use only.

    Example:
        >>> import mlsupcon
        >>> model = mlsupcon.load("runs/yeast-mulsupcon")      # doctest: +SKIP
        >>> model.predict(x_new, top_k=3)                      # doctest: +SKIP
    """
    from mlsupcon.training.inference import load as _load

    return _load(path, device=device)
