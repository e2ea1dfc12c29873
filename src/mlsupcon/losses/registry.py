"""Every loss by name: the registries and :func:`build`.

:data:`CONTRASTIVE_LOSSES` (embeddings ``[B, V, D]`` + labels: the flat losses of
:mod:`mlsupcon.losses.flat_registry` and the hierarchical ones), :data:`CLASSIFIER_LOSSES` (a
classifier's outputs + multi-hot targets), :data:`PROTOTYPE_LOSSES` (embeddings + one learnable
prototype per label) and :data:`LABEL_EMBEDDING_LOSSES` (per-label embeddings); :data:`LOSSES`
is their union, the names :func:`build` accepts.
"""

from __future__ import annotations

from torch import nn

from mlsupcon.losses.asl import AsymmetricLoss
from mlsupcon.losses.clmtc import CLICLLoss, CLJSPCLLoss
from mlsupcon.losses.flat_registry import FLAT_LOSSES
from mlsupcon.losses.hierarchical import HiConELoss, HiMulConELoss, HiMulConLoss
from mlsupcon.losses.kmcl import KMCLLoss
from mlsupcon.losses.label_nce import LabelNCELoss
from mlsupcon.losses.prototypes import MSCLoss, MSCRGLoss, MSCWRGLoss, ProtoOnlyLoss
from mlsupcon.losses.zlpr import ZLPRLoss

__all__ = [
    "FLAT_LOSSES",
    "HIERARCHICAL_LOSSES",
    "CONTRASTIVE_LOSSES",
    "CLASSIFIER_LOSSES",
    "LABEL_EMBEDDING_LOSSES",
    "PROTOTYPE_LOSSES",
    "LOSSES",
    "available",
    "build",
]

#: Hierarchical losses (one flat loss per level of a label hierarchy).
HIERARCHICAL_LOSSES: dict[str, type[nn.Module]] = {
    "himulcon": HiMulConLoss, "hicone": HiConELoss, "himulcone": HiMulConELoss,
}

#: Losses on embeddings (training methods with a contrastive term take one by name).
CONTRASTIVE_LOSSES: dict[str, type[nn.Module]] = {**FLAT_LOSSES, **HIERARCHICAL_LOSSES}
#: Losses on a classifier's outputs (the methods asl and kmcl train with them).
CLASSIFIER_LOSSES: dict[str, type[nn.Module]] = {
    "asl": AsymmetricLoss, "kmcl": KMCLLoss, "zlpr": ZLPRLoss, "cl_jspcl": CLJSPCLLoss, "label_nce": LabelNCELoss,
}
#: Losses on per-label embeddings ``[B, C, D]`` + multi-hot labels (``label_format =
#: "label_embeddings"``): built by name, not trained by ``train --loss``.
LABEL_EMBEDDING_LOSSES: dict[str, type[nn.Module]] = {"cl_icl": CLICLLoss}
#: Losses on embeddings + one learnable prototype per label (``loss(features, labels,
#: prototypes=P)``, classes declare ``uses_prototypes = True``; see :class:`LabelPrototypes`).
PROTOTYPE_LOSSES: dict[str, type[nn.Module]] = {
    "msc": MSCLoss, "proto_only": ProtoOnlyLoss, "mscwrg": MSCWRGLoss, "mscrg": MSCRGLoss,
}

#: Every loss :func:`build` builds by name.
LOSSES: dict[str, type[nn.Module]] = {**CONTRASTIVE_LOSSES, **CLASSIFIER_LOSSES, **PROTOTYPE_LOSSES,
                                  **LABEL_EMBEDDING_LOSSES}


def available() -> list[str]:
    """Names accepted by :func:`build`."""
    return sorted(LOSSES)


def build(name: str, **options) -> nn.Module:
    """Builds a loss by name.

    Args:
        name: one of :func:`available` (``all``, ``any``, ``mulsupcon``, ``simdis``,
            ``jaccard``, ``jaccard_weight``, ``mlcl``, ``supcon``, ``simclr``, ``himulcon``,
            ``hicone``, ``himulcone``, ``asl``, ``kmcl``, ``zlpr``, ``msc``, ``proto_only``,
            ``mscwrg``, ``mscrg``, ``cl_scl``, ``cl_jscl``, ``cl_jspcl``, ``cl_slcl``, ``cl_icl``,
            ``multisupcon_wz``).
        **options: the loss's keyword options; unknown ones raise ValueError.

    Example:
        >>> from mlsupcon.losses import build
        >>> build("jaccard", threshold=0.5).threshold
        0.5
    """
    if not isinstance(name, str) or name.lower() not in LOSSES:
        raise ValueError(f"name: unknown loss {name!r}; expected one of {available()}")
    cls = LOSSES[name.lower()]
    try:
        return cls(**options)
    except TypeError as exc:  # unknown keyword → a ValueError naming it
        import inspect

        params = inspect.signature(cls.__init__).parameters
        accepted = [p for p in params if p not in ("self", "flat_options")]
        if name.lower() in HIERARCHICAL_LOSSES:
            accepted += ["temperature", "normalize", "chunk_size", "(options of the base loss)"]
        raise ValueError(f"options: {exc}; {name} accepts {accepted}") from None


