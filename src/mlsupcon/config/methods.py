"""What the config knows of the training methods, without importing them.

The method classes (:mod:`mlsupcon.training.methods`) train; the config layer sits below them and
must not import them. This table gives it what it needs of the built-in methods: their names (the
``--method`` choices), the fields each reads besides the common ones, which build their own
encoder, and the options of the step every method may add after training (``knn``). The method
classes read the same table, so that it cannot drift from them.

Example:
    >>> METHOD_NAMES[:3], "momentum" in METHOD_OPTIONS["two-stage"], "linear" in BUILDS_OWN_ENCODER
    (('two-stage', 'end-to-end', 'bce'), True, True)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

__all__ = ["METHOD_NAMES", "CONTRASTIVE_OPTIONS", "METHOD_OPTIONS", "BUILDS_OWN_ENCODER", "EXCLUSIVE_OPTIONS",
           "KNN_MODES", "KNN_OPTION_KEYS", "MethodRules", "method_rules"]

#: The fields a method with a contrastive term reads (loss, views, projection, memory queue).
CONTRASTIVE_OPTIONS = ("loss", "loss_options", "projection_dim", "projection_hidden", "views", "view_options",
                       "queue_size")

#: :class:`~mlsupcon.config.schema.TrainConfig` fields each built-in method reads besides the common
#: ones (data, encoder, batch sizes, lr, trainer and run-folder settings), in registry order.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "two-stage": CONTRASTIVE_OPTIONS + ("momentum", "epochs", "classifier_epochs", "classifier_lr",
                                        "encoder_lr_ratio", "finetune_encoder", "probe_batch_size", "head",
                                        "head_options", "patience", "stage1_selection"),
    "end-to-end": CONTRASTIVE_OPTIONS + ("epochs", "contrastive_weight", "head", "head_options", "patience",
                                         "classifier_loss",
                                         "classifier_loss_options", "encoder_lr_ratio"),
    "bce": ("epochs", "head", "head_options", "patience", "encoder_lr_ratio"),
    "asl": ("epochs", "head", "head_options", "patience", "classifier_loss_options", "encoder_lr_ratio"),
    "kmcl": ("epochs", "loss_options", "head_options", "patience"),
    "linear": ("linear_options",),
    "zlpr": ("epochs", "head", "head_options", "patience", "encoder_lr_ratio"),
}

#: The built-in methods by name (the config's ``method``).
METHOD_NAMES: tuple[str, ...] = tuple(METHOD_OPTIONS)

#: Methods that make their encoder themselves (``linear``: its featurizer is its encoder).
BUILDS_OWN_ENCODER = frozenset({"linear"})

#: Options only some methods use, which a run of another method must leave unset.
EXCLUSIVE_OPTIONS = ("momentum", "classifier_loss")

#: ``knn``: what every trainable method adds after training (training/methods/finish.py).
KNN_MODES = ("off", "blend", "only")
#: The keys ``knn_options`` may hold.
KNN_OPTION_KEYS = ("ks", "temperatures", "max_train")


class MethodRules(NamedTuple):
    """What the config layer reads of a method: the fields it reads and whether it builds its encoder.

    A method class of :mod:`mlsupcon.training.methods` has the same two attributes, so a caller
    may pass the method registry's lookup wherever a ``name -> MethodRules`` lookup is taken.
    """

    options: tuple[str, ...]
    builds_own_encoder: bool


def method_rules(name: Any) -> MethodRules:
    """The rules of the built-in method ``name``; a method not in the table reads no method-only
    field and builds no encoder (a method registered at run time passes its class instead)."""
    return MethodRules(METHOD_OPTIONS.get(name, ()) if isinstance(name, str) else (),
                       name in BUILDS_OWN_ENCODER if isinstance(name, str) else False)


#: A lookup of method rules by name: :func:`method_rules`, or the method registry's ``get_method``.
MethodLookup = Callable[[str], Any]
