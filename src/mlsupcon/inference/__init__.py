"""Using a trained model: load it, predict, embed, evaluate, export. Nothing here imports
:mod:`mlsupcon.training`.

* :mod:`~mlsupcon.inference.model`: :class:`TrainedModel` and :func:`load` (``mlsupcon.load``).
* :mod:`~mlsupcon.inference.storage`: a classifier on disk (``model/``), saved and loaded without pickle.
* :mod:`~mlsupcon.inference.scoring`: the one scoring loop (inference and training's evaluation).
* :mod:`~mlsupcon.inference.evaluate`: ``mlsupcon evaluate``.
* :mod:`~mlsupcon.inference.export`: ``mlsupcon export`` (Hugging Face folder, self-contained copy).
"""

from mlsupcon.inference.evaluate import evaluate_model
from mlsupcon.inference.export import export_hf, export_portable
from mlsupcon.inference.model import TrainedModel, labels_from_scores, load, model_folder
from mlsupcon.inference.storage import load_classifier, save_classifier

__all__ = ["TrainedModel", "load", "labels_from_scores", "model_folder", "evaluate_model", "export_hf",
           "export_portable", "save_classifier", "load_classifier"]
