"""Training methods by name: ``METHODS[cfg.method]`` trains a run's classifier.

Every method is a :class:`~mlsupcon.training.methods.base.Method` subclass in a file of its own;
this registry is the only place that maps the config's ``method`` to it. Adding a method is one
file plus one line here::

    # training/methods/tfidf_linear.py
    class TfidfLinear(Method):
        name, options = "tfidf-linear", ("head_options",)
        def fit(self, ctx):                     # no Lightning: fit, then wrap as a Classifier
            ...
            return Classifier(encoder, head)

    # here
    METHODS["tfidf-linear"] = TfidfLinear

Importing this package imports neither torch nor Lightning: the config is validated with it
before anything heavy is loaded.

Example:
    >>> get_method("two-stage").uses_contrastive_loss, get_method("bce").uses_contrastive_loss
    (True, False)
    >>> get_method("nope")
    Traceback (most recent call last):
    ...
    ValueError: method: expected one of ('two-stage', 'end-to-end', 'bce', 'asl', 'kmcl', 'linear', 'zlpr'), got 'nope'
"""

from __future__ import annotations

from mlsupcon.training.methods.base import METHODS, ContrastiveMethod, FitContext, Method, get_method
from mlsupcon.training.methods.classifier_only import ASL, BCE, ZLPR
from mlsupcon.training.methods.end_to_end import EndToEnd
from mlsupcon.training.methods.kmcl import KMCL
from mlsupcon.training.methods.linear import Linear
from mlsupcon.training.methods.two_stage import TwoStage

__all__ = ["METHODS", "get_method", "Method", "ContrastiveMethod", "FitContext"]

# The registry lives in methods.base (the methods' checks read it); its order is this one.
METHODS.update({
    "two-stage": TwoStage,
    "end-to-end": EndToEnd,
    "bce": BCE,
    "asl": ASL,
    "kmcl": KMCL,
    "linear": Linear,
    "zlpr": ZLPR,
})
