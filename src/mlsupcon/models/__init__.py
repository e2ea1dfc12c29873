"""Encoders, tokenisers and heads.

``build_encoder(name, **opts)`` gives an :class:`Encoder` (an ``nn.Module``) with
``preprocess`` (raw inputs -> dict of CPU tensors), ``forward`` (-> pooled features
``[n, output_dim]``), ``encode_sequence`` (text: token states + mask) and ``config()``
(``build_encoder(**enc.config())`` rebuilds it; weights go through ``state_dict``).

Heavy dependencies (``transformers``, ``tokenizers``) are imported only when an encoder that
needs them is built. Heads (projection and classifier heads, their registry) live in
:mod:`mlsupcon.models.heads`.

Example:
    >>> import numpy as np, torch
    >>> from mlsupcon.models import build_encoder, ProjectionHead, LinearClassifier
    >>> enc = build_encoder("mlp", in_dim=103)
    >>> h = enc(enc.preprocess(np.random.rand(4, 103)))
    >>> ProjectionHead(enc.output_dim)(h).shape, LinearClassifier(enc.output_dim, 14)(h).shape
    (torch.Size([4, 128]), torch.Size([4, 14]))
"""

from .base import Encoder, pad_sequences, pad_text_batches
from .factory import ENCODERS, build_encoder, encoder_options

# Each encoder module registers its class when imported: this order is that of ENCODERS.
# isort: off
from .mlp import MLPEncoder
from .cnn import CNNEncoder
from .transformer import TransformerEncoder, minilm_path
from .resnet import IMAGENET_MEAN, IMAGENET_STD, RESNET_PRESETS, ResNetEncoder
from .sparse import SparseTextEncoder
from .frozen import FrozenEncoder
from .fusion import FusionEncoder
from .pixels import PixelEncoder
from .partial import PartialEncoder
# isort: on

from .classifier import Classifier, head_logits
from .heads import (
    HEADS,
    BlendHead,
    ClassifierHead,
    KMCLClassifier,
    KMCLHead,
    KMCLHeadOutput,
    KNNHead,
    LabelWiseAttention,
    LinearClassifier,
    ProjectionHead,
    ScoresHead,
    SliceHead,
    build_head,
)
from .linear_baseline import LinearScores, fit_one_vs_rest, fit_vector_linear
from .text_features import TextFeaturizer
from .tokenization import TextTokenizer

__all__ = [
    "Encoder",
    "build_encoder",
    "encoder_options",
    "ENCODERS",
    "MLPEncoder",
    "CNNEncoder",
    "TransformerEncoder",
    "ResNetEncoder",
    "PixelEncoder",
    "SparseTextEncoder",
    "FrozenEncoder",
    "PartialEncoder",
    "FusionEncoder",
    "TextFeaturizer",
    "LinearScores",
    "fit_one_vs_rest",
    "fit_vector_linear",
    "ProjectionHead",
    "LinearClassifier",
    "LabelWiseAttention",
    "KMCLHead",
    "KMCLHeadOutput",
    "KMCLClassifier",
    "ClassifierHead",
    "Classifier",
    "HEADS",
    "build_head",
    "head_logits",
    "KNNHead",
    "ScoresHead",
    "SliceHead",
    "BlendHead",
    "TextTokenizer",
    "minilm_path",
    "pad_sequences",
    "pad_text_batches",
    "RESNET_PRESETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
