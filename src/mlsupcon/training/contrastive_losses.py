"""The losses a contrastive method's ``loss`` may name, and their label formats.

Read by the methods (validation, building the criterion) and by
:class:`~mlsupcon.training.batches.LossLabels` (what labels each loss takes). Importing this
module imports no torch; :func:`contrastive_term_losses` does.
"""

from __future__ import annotations

__all__ = ["LOGIT_CONTRASTIVE_LOSSES", "contrastive_term_losses"]

#: Classifier-output losses (``label_format = "logits"``) that are contrastive terms: a method with
#: a classification term (``end-to-end``) adds them, as its ``loss``, on the classifier's logits
#: (CL-MTC's JSPCL), instead of on projected views.
LOGIT_CONTRASTIVE_LOSSES = ("cl_jspcl", "label_nce")


def contrastive_term_losses() -> dict[str, type]:
    """The loss classes a contrastive method's ``loss`` may name: :data:`~mlsupcon.losses.CONTRASTIVE_LOSSES`
    (on projected views), :data:`~mlsupcon.losses.PROTOTYPE_LOSSES` (on projected views and the
    label prototypes the run trains with the projection head) and :data:`LOGIT_CONTRASTIVE_LOSSES`
    (on the classifier's logits, methods with ``contrastive_on_logits``). Imports torch."""
    from mlsupcon.losses import CLASSIFIER_LOSSES, CONTRASTIVE_LOSSES, PROTOTYPE_LOSSES

    return {**CONTRASTIVE_LOSSES, **PROTOTYPE_LOSSES, **{n: CLASSIFIER_LOSSES[n] for n in LOGIT_CONTRASTIVE_LOSSES}}
