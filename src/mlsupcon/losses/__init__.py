"""Every multi-label contrastive loss of ``docs/spec/LOSSES.md``, on one chunked engine.

Two registries: :data:`CONTRASTIVE_LOSSES` (embeddings ``[B, V, D]`` + labels) and
:data:`CLASSIFIER_LOSSES` (a classifier's outputs + multi-hot targets); :func:`build` builds a
loss of either by name (the registries live in :mod:`mlsupcon.losses.registry`). Every loss
class declares the labels it takes in ``label_format``: ``"multi_hot"`` (``[B, C]``),
``"class_ids"`` (``[B]``, SupCon), ``"none"`` (SimCLR),
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
from mlsupcon.losses.hierarchical import HiConELoss, HierarchicalLoss, HiMulConELoss, HiMulConLoss
from mlsupcon.losses.kmcl import KMCLLoss
from mlsupcon.losses.label_nce import LabelNCELoss, label_nce_loss
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
from mlsupcon.losses.registry import (
    CLASSIFIER_LOSSES,
    CONTRASTIVE_LOSSES,
    FLAT_LOSSES,
    HIERARCHICAL_LOSSES,
    LABEL_EMBEDDING_LOSSES,
    LOSSES,
    PROTOTYPE_LOSSES,
    available,
    build,
)
from mlsupcon.losses.relations import relation_counts
from mlsupcon.losses.zlpr import ZLPRLoss, zlpr_loss

ASLLoss = AsymmetricLoss

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
    "LabelNCELoss",
    "label_nce_loss",
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
