"""mlsupcon's flat losses as a sentence-transformers loss, for ``SentenceTransformerTrainer``.

The dataset has one text column (one view per sample: ``[B, 1, D]``) or two (two views of each
sample, e.g. two augmentations or a title and a body: ``[B, 2, D]``; every text column counts as
a view) and a label column named ``labels`` or ``label``, which the trainer's data collator turns
into a tensor with ``torch.tensor(list_of_rows)``. So each row's labels must be a **fixed-length
multi-hot list** (``[0, 1, 1, 0]``), and the batch arrives as an int64 ``[B, C]`` tensor; lists of
label names of varying length cannot be collated (``expected sequence of length ...``): turn
them into multi-hot rows first with :func:`to_multi_hot`. ``supcon`` takes one class id per row
instead, ``simclr`` no label column.

Example:
    >>> from mlsupcon.integrations.sentence_transformers import to_multi_hot
    >>> to_multi_hot([["sports"], ["economy", "politics"], []], ["economy", "politics", "sports"])
    [[0, 0, 1], [1, 1, 0], [0, 0, 0]]

Training (``model`` any ``SentenceTransformer``; here the bundled all-MiniLM-L6-v2)::

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from mlsupcon.integrations.sentence_transformers import MultiLabelContrastiveLoss, to_multi_hot

    names = ["economy", "politics", "sports"]
    train = Dataset.from_dict({
        "text": ["The stock is up 20%", "They voted against the tax bill", "They won 2-1"],
        "labels": to_multi_hot([["economy"], ["economy", "politics"], ["sports"]], names),
    })
    model = SentenceTransformer(minilm_path())          # mlsupcon.models.transformer.minilm_path
    loss = MultiLabelContrastiveLoss(model, loss="simdis", temperature=0.1)
    SentenceTransformerTrainer(model=model, train_dataset=train, loss=loss).train()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

try:
    import sentence_transformers  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError(
        "mlsupcon.integrations.sentence_transformers needs sentence-transformers: "
        "pip install 'mlsupcon[integrations]'"
    ) from None

try:  # sentence-transformers >= 6: columns that preprocess alike share one forward pass
    from sentence_transformers.base.losses.merged_forward import embed_columns as _embed_columns
except ImportError:  # pragma: no cover - older releases
    _embed_columns = None

from mlsupcon.losses import FLAT_LOSSES, build

__all__ = ["MultiLabelContrastiveLoss", "to_multi_hot"]

_ZHANG_WU = """
@inproceedings{zhang2024multilabel,
    title={Multi-Label Supervised Contrastive Learning},
    author={Zhang, Pingyue and Wu, Mengyue},
    booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
    year={2024}
}
"""
_CITATIONS = {
    "all": _ZHANG_WU,
    "any": _ZHANG_WU,
    "mulsupcon": _ZHANG_WU,
    "simdis": """
@misc{huang2024similaritydissimilarity,
    title={Similarity-Dissimilarity Loss for Multi-label Supervised Contrastive Learning},
    author={Huang and others},
    year={2024}
}
""",
    "supcon": """
@inproceedings{khosla2020supervised,
    title={Supervised Contrastive Learning},
    author={Khosla, Prannay and Teterwak, Piotr and Wang, Chen and Sarna, Aaron and Tian, Yonglong and
            Isola, Phillip and Maschinot, Aaron and Liu, Ce and Krishnan, Dilip},
    booktitle={Advances in Neural Information Processing Systems},
    year={2020},
    eprint={2004.11362},
    archivePrefix={arXiv}
}
""",
    "simclr": """
@inproceedings{chen2020simple,
    title={A Simple Framework for Contrastive Learning of Visual Representations},
    author={Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
    booktitle={International Conference on Machine Learning},
    year={2020},
    eprint={2002.05709},
    archivePrefix={arXiv}
}
""",
}


def to_multi_hot(label_lists: Iterable[Iterable], label_names: Sequence) -> list[list[int]]:
    """Rows of label names (or ids) → fixed-length multi-hot rows, the column the trainer collates.

    Args:
        label_lists: one iterable of labels per example (a single label may be given as a plain
            string); an empty one is a row of zeros.
        label_names: the label space, in column order.

    Returns:
        One ``[0/1] * len(label_names)`` list per example (a ``datasets`` column).

    Raises:
        ValueError: a label that is not in ``label_names``, or repeated names in ``label_names``.

    Example:
        >>> to_multi_hot([[2, 0], [1]], [0, 1, 2])
        [[1, 0, 1], [0, 1, 0]]
    """
    names = list(label_names)
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise ValueError("label_names: contains repeated names")
    rows = []
    for n, labels in enumerate(label_lists):
        if isinstance(labels, str):
            labels = [labels]
        row = [0] * len(names)
        for label in labels:
            if label not in index:
                raise ValueError(f"label_lists: row {n} has label {label!r}, which is not in label_names")
            row[index[label]] = 1
        rows.append(row)
    return rows


class MultiLabelContrastiveLoss(nn.Module):
    """An mlsupcon flat loss for ``SentenceTransformerTrainer`` (multi-label supervised contrastive).

    Inputs:

    +------------------------------------------+-------------------------------------------+
    | Inputs                                   | Labels                                    |
    +==========================================+===========================================+
    | one text column (one view per sample)    | multi-hot rows ``[C]`` (``supcon``: a     |
    +------------------------------------------+ class id; ``simclr``: none)               |
    | several text columns (views of a sample) |                                           |
    +------------------------------------------+-------------------------------------------+

    Every text column is embedded by the model (``sentence_embedding``) and the columns are
    stacked as views ``[B, V, D]``; the loss is ``mlsupcon.losses.build(loss, **loss_options)``
    on those embeddings and the batch's labels. Larger batches give more positives per anchor:
    these losses want batches much larger than the number of labels when they can have them.

    Args:
        model: the ``SentenceTransformer`` being trained.
        loss: a name of :data:`mlsupcon.losses.FLAT_LOSSES` (``"simdis"``, ``"mulsupcon"``,
            ``"all"``, ``"any"``, ``"jaccard"``, ``"mlcl"``, ``"supcon"``, ``"simclr"``, ...).
        **loss_options: that loss's options (``temperature``, ``chunk_size``,
            ``gather_distributed`` for multi-GPU training where each rank's batch is contrasted with
            every rank's ...).

    Example:
        >>> from mlsupcon.integrations.sentence_transformers import MultiLabelContrastiveLoss
        >>> loss = MultiLabelContrastiveLoss(model=None, loss="mulsupcon", temperature=0.2)
        >>> loss.get_config_dict()
        {'loss': 'mulsupcon', 'temperature': 0.2}
        >>> "Multi-Label Supervised Contrastive Learning" in loss.citation
        True
    """

    def __init__(self, model, loss: str = "simdis", **loss_options) -> None:
        super().__init__()
        if not isinstance(loss, str) or loss.lower() not in FLAT_LOSSES:
            raise ValueError(
                f"loss: expected the name of a flat contrastive loss, one of {sorted(FLAT_LOSSES)}; got {loss!r}"
            )
        self.model = model
        self.loss_name = loss.lower()
        self.loss_options = dict(loss_options)
        self.loss_fn = build(self.loss_name, **loss_options)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        features = list(sentence_features)
        if not features:
            raise ValueError("sentence_features: no text column in the batch")
        if _embed_columns is not None:
            # Every column is a view of the same kind of text: one merged forward when possible.
            embeddings = _embed_columns(self.model, features, separate_first=False)
        else:  # pragma: no cover - sentence-transformers < 6
            embeddings = [self.model(f)["sentence_embedding"] for f in features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """The loss of the column embeddings (each ``[B, D]``, stacked as views ``[B, V, D]``)."""
        views = torch.stack(list(embeddings), dim=1)
        if self.loss_fn.label_format == "none":
            labels = None
        elif labels is None:
            raise ValueError(
                f"labels: the {self.loss_name} loss needs a 'labels' (or 'label') column of multi-hot rows"
            )
        return self.loss_fn(views, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"loss": self.loss_name, **self.loss_options}

    @property
    def citation(self) -> str:
        if self.loss_name in _CITATIONS:
            return _CITATIONS[self.loss_name]
        doc = type(self.loss_fn).__doc__ or ""
        source = " ".join(doc.split("Source:", 1)[1].split("\n\n", 1)[0].split()) if "Source:" in doc else ""
        return f"\n@misc{{{self.loss_name},\n    note={{{source or type(self.loss_fn).__name__}}}\n}}\n"
