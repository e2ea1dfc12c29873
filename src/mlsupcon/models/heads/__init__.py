"""Heads put on top of an encoder: the contrastive projection, and the classifier heads.

Every classifier head derives from :class:`ClassifierHead` (:mod:`.base`): what it reads from
the encoder (``input``), how a run builds it (``create``, ``options``) and how it is described
and rebuilt (``config``, ``from_config``). Each registers itself under its ``kind`` in the one
registry, :data:`HEADS` (:mod:`.registry`), which also holds the one way to build a head for a
run (:func:`build_head`) and to rebuild one from a saved config (:func:`head_from_config`).

One module per head: ``linear``, ``attention`` (label-wise attention over token states:
CAML / LAAT / PLM-ICD), ``kmcl`` (per-class Gaussian kernels), ``scores`` (the encoder's
output is the logits), ``knn`` (votes of the nearest training examples), ``blend`` (two heads
mixed as probabilities), ``slice`` (a head on a column range of the features), ``label-names``
(cosine prototypes that start at the label names' embeddings). The import order below is the
order of :data:`HEADS`.

Example:
    >>> import torch
    >>> from mlsupcon.models import ProjectionHead, LinearClassifier, LabelWiseAttention
    >>> h = torch.randn(4, 16)
    >>> ProjectionHead(16, out_dim=8)(h).shape
    torch.Size([4, 8])
    >>> LinearClassifier(16, 5)(h).shape
    torch.Size([4, 5])
    >>> seq, mask = torch.randn(4, 7, 16), torch.ones(4, 7)
    >>> LabelWiseAttention(16, 5)(seq, mask).shape
    torch.Size([4, 5])
    >>> tuple(HEADS)
    ('linear', 'attention', 'kmcl', 'scores', 'knn', 'blend', 'slice', 'label-names')
"""

# Each head module registers its class when imported: this order is that of HEADS.
# isort: off
from .base import HEAD_INPUTS, ClassifierHead
from .registry import HEADS, build_head, head_class, head_from_config, nested_head_config, register_head
from .projection import ProjectionHead
from .linear import LinearClassifier
from .attention import LabelWiseAttention
from .kmcl import KMCLClassifier, KMCLHead, KMCLHeadOutput
from .scores import ScoresHead
from .knn import KNNHead, knn_search, knn_vote
from .blend import BlendHead
from .slice import SliceHead
from .label_names import LabelNameHead, label_name_text
# isort: on

__all__ = [
    "HEAD_INPUTS",
    "ClassifierHead",
    "HEADS",
    "register_head",
    "head_class",
    "build_head",
    "head_from_config",
    "nested_head_config",
    "ProjectionHead",
    "LinearClassifier",
    "LabelWiseAttention",
    "KMCLHead",
    "KMCLHeadOutput",
    "KMCLClassifier",
    "ScoresHead",
    "KNNHead",
    "LabelNameHead",
    "label_name_text",
    "knn_search",
    "knn_vote",
    "BlendHead",
    "SliceHead",
]
