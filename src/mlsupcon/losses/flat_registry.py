"""The flat contrastive losses by name (:data:`FLAT_LOSSES`).

Its own module, below :mod:`mlsupcon.losses.hierarchical` (which applies a flat loss at every
level of a hierarchy) and :mod:`mlsupcon.losses.registry` (every loss by name).
"""

from __future__ import annotations

from mlsupcon.losses.clmtc import CLJSCLLoss, CLSCLLoss, CLSLCLLoss
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

__all__ = ["FLAT_LOSSES"]

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
