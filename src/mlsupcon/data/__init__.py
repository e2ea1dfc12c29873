"""Datasets, label hierarchies and contrastive views.

Example:
    >>> from mlsupcon.data import load_dataset
    >>> ds = load_dataset("debtags")                       # doctest: +SKIP
    >>> ds.modality, ds.num_labels, len(ds.splits["train"]) # doctest: +SKIP
    ('text', 597, 23078)
    >>> ds.hierarchy.coarse_of("use::editing")             # doctest: +SKIP
    'use'

Datasets (:func:`load_dataset` specs): ``debtags``, ``yeast``, ``fashion-mosaic``,
``jsonl:PATH``, ``csv:PATH``, ``mimic-caml:DIR``, ``mimic-repro:DIR``,
``coco:ANNOTATION_JSON[:IMAGE_DIR]``. Views: :mod:`mlsupcon.data.views`.
"""

from .base import SPLIT_NAMES, DataWarning, MultiLabelDataset, Split, encode_labels, seeded_split
from .hierarchy import LabelHierarchy, mapping_hierarchy, prefix_hierarchy
from .icd import detect_icd_version, icd_category, icd_chapter, icd_hierarchy
from .images import ImageArray, ImageFiles, images_to_tensor
from .registry import available_datasets, dataset_options, load_dataset

__all__ = [
    "DataWarning",
    "SPLIT_NAMES",
    "MultiLabelDataset",
    "Split",
    "LabelHierarchy",
    "load_dataset",
    "available_datasets",
    "dataset_options",
    "encode_labels",
    "seeded_split",
    "prefix_hierarchy",
    "mapping_hierarchy",
    "icd_hierarchy",
    "icd_category",
    "icd_chapter",
    "detect_icd_version",
    "ImageArray",
    "ImageFiles",
    "images_to_tensor",
    "TokenViews",
    "FeatureMaskNoise",
    "ImageViews",
    "make_views",
]

_VIEWS = ("FeatureMaskNoise", "ImageViews", "TokenViews", "make_views")


def __getattr__(name):  # the views need torch; reading and checking data does not
    if name in _VIEWS:
        from . import views

        return getattr(views, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
