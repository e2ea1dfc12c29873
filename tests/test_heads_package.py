"""The heads package (issue 20): one base class, one registry, one way to rebuild a head; the old
module paths still import, with a DeprecationWarning; encoders declare their optional capabilities."""

import importlib
import sys
import warnings

import pytest
import torch

from mlsupcon.models import build_encoder
from mlsupcon.models.heads import (
    HEADS,
    BlendHead,
    ClassifierHead,
    KNNHead,
    LinearClassifier,
    ScoresHead,
    SliceHead,
    build_head,
    head_from_config,
    nested_head_config,
)


def test_every_registered_head_derives_from_the_base_class_under_its_kind():
    assert tuple(HEADS) == ("linear", "attention", "kmcl", "scores", "knn", "blend", "slice", "label-names")
    for kind, cls in HEADS.items():
        assert issubclass(cls, ClassifierHead) and cls.kind == kind


@pytest.mark.parametrize("kind", ["knn", "blend", "slice"])
def test_heads_a_method_fills_in_are_refused_as_a_run_option(kind):
    with pytest.raises(ValueError, match=f"head: '{kind}' is built by its training method"):
        build_head(kind, build_encoder("mlp", in_dim=4), 2)


def test_nested_heads_are_rebuilt_through_the_registry():
    torch.manual_seed(0)
    knn = KNNHead.from_embeddings(torch.randn(10, 4), torch.randint(0, 2, (10, 3)), k=3)
    head = BlendHead(SliceHead(LinearClassifier(2, 3), 0, 2), SliceHead(knn, 2, 6), weight=0.25)
    config = {"kind": head.kind, "class": "BlendHead", **head.config()}
    rebuilt = head_from_config(config)
    rebuilt.load_state_dict(head.state_dict())
    h = torch.randn(5, 6)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(h), head.eval()(h))
    assert nested_head_config(ScoresHead(3)) == {"class": "ScoresHead", "num_labels": 3}
    with pytest.raises(KeyError):  # a model's head is found by its kind
        head_from_config({"class": "ScoresHead", "num_labels": 3})
    with pytest.raises(ValueError, match="unknown head class 'Nope'"):
        head_from_config({"class": "Nope"}, nested=True)


@pytest.mark.parametrize("old, names", [
    ("mlsupcon.models.knn_head", ("KNNHead", "BlendHead", "knn_search", "knn_vote")),
    ("mlsupcon.models.slice_head", ("SliceHead",)),
    ("mlsupcon.models.score_head", ("ScoresHead",)),
    ("mlsupcon.models.kmcl", ("KMCLHead", "KMCLHeadOutput", "KMCLClassifier")),
])
def test_old_module_paths_are_deprecation_shims(old, names):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in seen)
    heads = importlib.import_module("mlsupcon.models.heads")
    assert all(getattr(module, n) is getattr(heads, n) for n in names)


def test_encoders_declare_their_optional_capabilities():
    mlp = build_encoder("mlp", in_dim=4)
    assert mlp.embedding_slice is None and mlp.tokenizer_info is None
    assert mlp.prepare is None and mlp.make_view_fn is None
    cnn = build_encoder("cnn", train_texts=["a b", "c d"], embed_dim=4, num_filters=2, kernel_size=2)
    assert cnn.tokenizer_info["pad_token_id"] == 0 and cnn.sequence_dim == 2
