"""Losses declare their label format; the training glue (labels, queue, views, batches) reads it."""

from __future__ import annotations

import types

import pytest
import torch

from mlsupcon.losses import (
    CLASSIFIER_LOSSES,
    CONTRASTIVE_LOSSES,
    FLAT_LOSSES,
    LABEL_EMBEDDING_LOSSES,
    LOSSES,
    PROTOTYPE_LOSSES,
    QueueLoss,
    available,
    build,
)
from mlsupcon.training.batches import LossLabels, build_view_fn, concat_batches

EXPECTED = {
    "all": "multi_hot", "any": "multi_hot", "mulsupcon": "multi_hot", "simdis": "multi_hot", "jaccard": "multi_hot",
    "mlcl": "multi_hot", "supcon": "class_ids", "simclr": "none", "himulcon": "hierarchy_levels",
    "hicone": "hierarchy_levels", "himulcone": "hierarchy_levels", "asl": "logits", "kmcl": "logits",
    "jaccard_weight": "multi_hot", "zlpr": "logits",
    "msc": "multi_hot", "proto_only": "multi_hot", "mscwrg": "multi_hot", "mscrg": "multi_hot",
    "cl_scl": "multi_hot", "cl_jscl": "multi_hot", "cl_slcl": "multi_hot", "multisupcon_wz": "multi_hot",
    "cl_jspcl": "logits", "cl_icl": "label_embeddings", "label_nce": "logits",
}


def test_every_loss_declares_its_label_format():
    assert set(CONTRASTIVE_LOSSES) | set(CLASSIFIER_LOSSES) | set(PROTOTYPE_LOSSES) | set(LABEL_EMBEDDING_LOSSES) \
        == set(LOSSES) == set(EXPECTED)
    assert not set(CONTRASTIVE_LOSSES) & set(CLASSIFIER_LOSSES)
    assert not (set(CONTRASTIVE_LOSSES) | set(CLASSIFIER_LOSSES)) & set(PROTOTYPE_LOSSES)
    assert all(cls.uses_prototypes for cls in PROTOTYPE_LOSSES.values())  # declared, not probed
    for name in available():
        loss = build(name)  # build keeps working for every name, in both registries
        assert loss.label_format == type(loss).label_format == EXPECTED[name], name
    assert all(cls.label_format == "logits" for cls in CLASSIFIER_LOSSES.values())


def _dataset(hierarchy=None):
    return types.SimpleNamespace(name="tiny", hierarchy=hierarchy)


def test_loss_labels_follow_the_label_format():
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert LossLabels("simclr", _dataset())(y) is None
    assert LossLabels("supcon", _dataset())(y).tolist() == [0, 2]
    assert LossLabels("SimDis", _dataset())(y) is y  # names are case-insensitive, as in build
    with pytest.raises(ValueError, match="'supcon' needs exactly one label"):
        LossLabels("supcon", _dataset())(torch.ones(2, 3))
    with pytest.raises(ValueError, match="'hicone' needs a label hierarchy and dataset 'tiny' has none"):
        LossLabels("hicone", _dataset())

    class TwoLevels:
        def levels(self, y):
            return [y[:, :1], y]

    levels = LossLabels("himulcon", _dataset(TwoLevels()))(y)
    assert [t.shape for t in levels] == [(2, 1), (2, 3)]


@pytest.mark.parametrize("name", sorted(FLAT_LOSSES))
def test_queue_takes_the_label_format_of_its_loss(name):
    loss = build(name)
    num_labels = 4 if loss.label_format == "multi_hot" else None
    crit = QueueLoss(loss, size=8, dim=3, num_labels=num_labels)
    assert crit.queue.label_format == loss.label_format
    labels = {"multi_hot": torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0]]), "class_ids": torch.tensor([0, 1]),
              "none": None}[loss.label_format]
    value = crit(torch.randn(2, 2, 3), labels)
    assert torch.isfinite(value) and len(crit.queue) == 4


def test_queue_refuses_hierarchical_losses():
    from mlsupcon.training.scale import wrap_criterion

    cfg = types.SimpleNamespace(queue_size=8, projection_dim=3)
    with pytest.raises(ValueError, match="queue_size: memory queues work with the flat losses"):
        wrap_criterion(cfg, build("himulcon"), "himulcon", 4)
    assert wrap_criterion(cfg, build("supcon"), "supcon", 4).queue.num_labels is None
    assert wrap_criterion(cfg, build("simdis"), "simdis", 4).queue.num_labels == 4


# ------------------------------------------------------------------------ encoders with their own batches

def test_an_encoder_can_bring_its_own_views():
    seen = {}

    class SparseLike:
        modality = "text"

        def make_view_fn(self, **options):
            seen.update(options)
            return lambda batch: {**batch, "weights": batch["weights"] * 0}

    view = build_view_fn(SparseLike(), {"drop": 0.3})
    assert seen == {"drop": 0.3}
    out = view({"ids": torch.tensor([[1, 2]]), "weights": torch.tensor([[0.5, 0.5]])})
    assert out["weights"].tolist() == [[0.0, 0.0]] and out["ids"].tolist() == [[1, 2]]


def test_concat_batches_pads_any_2d_key():
    a = {"ids": torch.tensor([[1, 2], [3, 0]]), "weights": torch.tensor([[0.5, 0.5], [1.0, 0.0]]),
         "x": torch.ones(2, 3)}
    b = {"ids": torch.tensor([[4, 5, 6], [7, 0, 0]]), "weights": torch.full((2, 3), 0.25), "x": torch.zeros(2, 3)}
    out = concat_batches([a, b])
    assert out["ids"].tolist() == [[1, 2, 0], [3, 0, 0], [4, 5, 6], [7, 0, 0]]
    assert out["weights"].shape == (4, 3) and out["weights"][:2, 2].tolist() == [0.0, 0.0]
    assert out["weights"].dtype == torch.float32 and out["ids"].dtype == torch.int64
    assert torch.equal(out["x"], torch.cat([a["x"], b["x"]]))
