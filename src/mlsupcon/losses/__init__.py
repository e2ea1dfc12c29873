"""Every multi-label contrastive loss of ``docs/spec/LOSSES.md``, on one chunked engine.

Two registries: :data:`CONTRASTIVE_LOSSES` (embeddings ``[B, V, D]`` + labels) and
:data:`CLASSIFIER_LOSSES` (a classifier's outputs + multi-hot targets); :func:`build` builds a
loss of either by name. Every loss class declares the labels it takes in ``label_format``:
``"multi_hot"`` (``[B, C]``), ``"class_ids"`` (``[B]``, SupCon), ``"none"`` (SimCLR),
``"hierarchy_levels"`` (one label tensor per hierarchy level), ``"logits"`` (a classifier
loss: ASL, KMCL, cl_jspcl) or ``"label_embeddings"`` (``[B, C, D]`` per-label embeddings: cl_icl).

Example:
    >>> import torch
    >>> from mlsupcon.losses import build
    >>> loss_fn = build("simdis", temperature=0.1)
    >>> features = torch.randn(32, 2, 128)            # [B, V, D]
    >>> labels = torch.randint(0, 2, (32, 20))        # [B, C] multi-hot
    >>> loss = loss_fn(features, labels)
    >>> loss.backward() if features.requires_grad else None

This package needs torch only.
"""

from __future__ import annotations

from torch import nn

from mlsupcon.losses.asl import AsymmetricLoss, asymmetric_loss
from mlsupcon.losses.clmtc import CLICLLoss, CLJSCLLoss, CLJSPCLLoss, CLSCLLoss, CLSLCLLoss
from mlsupcon.losses.flat import (
    AllLoss,
    AnyLoss,
    FlatContrastiveLoss,
    JaccardLoss,
    JaccardWeightLoss,
    MLCLLoss,
    MulSupConLoss,
    SimCLRLoss,
    SimDisLoss,
    SupConLoss,
)
from mlsupcon.losses.multisupcon_wz import MultiSupConWZLoss
from mlsupcon.losses.prototypes import (
    BoundPrototypeLoss,
    LabelPrototypes,
    MSCLoss,
    MSCRGLoss,
    MSCWRGLoss,
    ProtoOnlyLoss,
    PrototypeContrastiveLoss,
)
from mlsupcon.losses.queue import MemoryQueue, MomentumEncoder, QueueLoss
from mlsupcon.losses.relations import relation_counts

FLAT_LOSSES: dict[str, type[FlatContrastiveLoss]] = {
    "all": AllLoss,
    "any": AnyLoss,
    "mulsupcon": MulSupConLoss,
    "simdis": SimDisLoss,
    "jaccard": JaccardLoss,
    "jaccard_weight": JaccardWeightLoss,
    "mlcl": MLCLLoss,
    "supcon": SupConLoss,
    "simclr": SimCLRLoss,
    "cl_scl": CLSCLLoss,
    "cl_jscl": CLJSCLLoss,
    "cl_slcl": CLSLCLLoss,
    "multisupcon_wz": MultiSupConWZLoss,
}

from mlsupcon.losses.hierarchical import (  # noqa: E402  (needs FLAT_LOSSES)
    HiConELoss,
    HierarchicalLoss,
    HiMulConELoss,
    HiMulConLoss,
)
from mlsupcon.losses.kmcl import KMCLLoss  # noqa: E402
from mlsupcon.losses.zlpr import ZLPRLoss, zlpr_loss  # noqa: E402

HIERARCHICAL_LOSSES = {"himulcon": HiMulConLoss, "hicone": HiConELoss, "himulcone": HiMulConELoss}

#: Losses on embeddings (training methods with a contrastive term take one by name).
CONTRASTIVE_LOSSES: dict[str, type[nn.Module]] = {**FLAT_LOSSES, **HIERARCHICAL_LOSSES}
#: Losses on a classifier's outputs (the methods asl and kmcl train with them).
CLASSIFIER_LOSSES: dict[str, type[nn.Module]] = {"asl": AsymmetricLoss, "kmcl": KMCLLoss}
CLASSIFIER_LOSSES["zlpr"] = ZLPRLoss
CLASSIFIER_LOSSES["cl_jspcl"] = CLJSPCLLoss
#: Losses on per-label embeddings ``[B, C, D]`` + multi-hot labels (``label_format =
#: "label_embeddings"``): built by name, not trained by ``train --loss``.
LABEL_EMBEDDING_LOSSES: dict[str, type[nn.Module]] = {"cl_icl": CLICLLoss}
#: Losses on embeddings + one learnable prototype per label (``loss(features, labels,
#: prototypes=P)``, classes declare ``uses_prototypes = True``; see :class:`LabelPrototypes`).
PROTOTYPE_LOSSES: dict[str, type[nn.Module]] = {
    "msc": MSCLoss, "proto_only": ProtoOnlyLoss, "mscwrg": MSCWRGLoss, "mscrg": MSCRGLoss,
}

LOSSES: dict[str, type[nn.Module]] = {**CONTRASTIVE_LOSSES, **CLASSIFIER_LOSSES, **PROTOTYPE_LOSSES,
                                  **LABEL_EMBEDDING_LOSSES}

ASLLoss = AsymmetricLoss


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


__all__ = [
    "build",
    "available",
    "relation_counts",
    "asymmetric_loss",
    "AsymmetricLoss",
    "ASLLoss",
    "FlatContrastiveLoss",
    "AllLoss",
    "AnyLoss",
    "SimDisLoss",
    "JaccardLoss",
    "JaccardWeightLoss",
    "MulSupConLoss",
    "MLCLLoss",
    "SupConLoss",
    "SimCLRLoss",
    "HierarchicalLoss",
    "HiMulConLoss",
    "HiConELoss",
    "HiMulConELoss",
    "LOSSES",
    "FLAT_LOSSES",
    "HIERARCHICAL_LOSSES",
    "CONTRASTIVE_LOSSES",
    "CLASSIFIER_LOSSES",
    "KMCLLoss",
    "ZLPRLoss",
    "zlpr_loss",
    "PROTOTYPE_LOSSES",
    "LabelPrototypes",
    "PrototypeContrastiveLoss",
    "MSCLoss",
    "ProtoOnlyLoss",
    "MSCWRGLoss",
    "MSCRGLoss",
    "BoundPrototypeLoss",
    "CLSCLLoss",
    "CLJSCLLoss",
    "CLJSPCLLoss",
    "CLSLCLLoss",
    "CLICLLoss",
    "MultiSupConWZLoss",
    "LABEL_EMBEDDING_LOSSES",
    "MemoryQueue",
    "QueueLoss",
    "MomentumEncoder",
]
