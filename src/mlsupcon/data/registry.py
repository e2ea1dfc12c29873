"""``load_dataset(spec, **options)``: one entry point for every dataset.

================================  ========  ===================================================
spec                              modality  source
================================  ========  ===================================================
``debtags``                       text      bundled Debian package descriptions, 597 tags
``reuters``                       text      bundled Reuters-21578 ApteMod newswire, 90 topics
``eurlex-sum``                    text      bundled EUR-Lex-Sum legal acts (long), 154 subjects
``yeast``                         vector    river's yeast.csv.gz + bundled standard split
``fashion-mosaic``                image     2×2 Fashion-MNIST mosaics (apt: dataset-fashion-mnist)
``jsonl:PATH``                    text      generic JSONL(.gz): text, labels (list), split?, id?
``csv:PATH``                      text      generic CSV/TSV: text, labels ("a;b"), split?, id?
``mimic-caml:DIR``                text      caml-mimic train/dev/test_{full,50}.csv
``mimic-repro:DIR``               text      Edin et al. 2023 feather data + split files
``coco:ANN_JSON[:IMAGE_DIR]``     image     COCO instances_*.json + images
``vectors:PATH``                  vector    .npz: x [n, F], y [n, C] or labels, split?, ids?
================================  ========  ===================================================

Options every dataset accepts:

* ``seed`` (int, default 0): seeds every random split / generation / subsample.
* ``top_k_labels`` (int): keep the k labels most frequent in train (MIMIC-50 style);
  no example is dropped, examples left without labels are counted in
  ``ds.info["top_k_labels"]``.
* ``max_examples_per_split`` (int): deterministic seeded subsample of each split
  (after ``top_k_labels``; the label vocabulary is the full data's), for quick runs.
* ``max_train_examples`` (int): a deterministic seeded subsample of the training split only
  (validation and test untouched), for learning curves and few-label settings; nested: the
  500 kept of a split are among the 2,000 kept with the same seed.

Dataset-specific options are the keyword arguments of the loader functions
(:func:`~mlsupcon.data.text.load_jsonl`, :func:`~mlsupcon.data.mimic.load_mimic_repro`…);
:func:`dataset_options` lists them. Anything else raises ``ValueError`` naming the
option and the valid ones.

Example:
    >>> ds = load_dataset("debtags", top_k_labels=50, max_examples_per_split=500)  # doctest: +SKIP
    >>> ds.num_labels                                                             # doctest: +SKIP
    50
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .base import MultiLabelDataset, subsample, subsample_train, top_k_restrict

__all__ = ["load_dataset", "available_datasets", "dataset_options", "dataset_option_defaults"]


def _loaders() -> dict[str, tuple[Callable[..., MultiLabelDataset], str, str]]:
    # Imported lazily so that `import mlsupcon.data` stays cheap.
    from .bundled_text import load_eurlex_sum, load_reuters
    from .coco import load_coco
    from .fashion import load_fashion_mosaic
    from .mimic import load_mimic_caml, load_mimic_repro
    from .precomputed import load_vectors
    from .text import load_csv, load_debtags, load_jsonl
    from .vector import load_yeast

    return {
        # name: (loader, path requirement: "none" | "required" | "optional", description)
        "debtags": (load_debtags, "none", "bundled Debtags package descriptions (text, 597 labels)"),
        "reuters": (load_reuters, "none", "bundled Reuters-21578 ApteMod news stories (text, 90 labels)"),
        "eurlex-sum": (load_eurlex_sum, "none", "bundled EUR-Lex-Sum legal acts, long (text, 154 labels)"),
        "yeast": (load_yeast, "none", "yeast gene expression (vector, 14 labels), standard split"),
        "fashion-mosaic": (load_fashion_mosaic, "none", "2x2 Fashion-MNIST mosaics (image, 10 labels)"),
        "jsonl": (load_jsonl, "required", "jsonl:PATH generic JSONL text file"),
        "csv": (load_csv, "required", "csv:PATH generic CSV/TSV text file"),
        "mimic-caml": (load_mimic_caml, "required", "mimic-caml:DIR caml-mimic CSVs"),
        "mimic-repro": (load_mimic_repro, "required", "mimic-repro:DIR Edin et al. feather files"),
        "coco": (load_coco, "optional", "coco:ANNOTATION_JSON[:IMAGE_DIR] COCO-format images"),
        "vectors": (load_vectors, "required", "vectors:PATH precomputed feature vectors (.npz: x, y or labels)"),
    }


_COMMON = ("seed", "top_k_labels", "max_examples_per_split", "max_train_examples")


def available_datasets() -> dict[str, str]:
    """``{name: one-line description}`` of every dataset spec prefix."""
    return {k: v[2] for k, v in _loaders().items()}


def dataset_options(name: str) -> list[str]:
    """Valid option names for a dataset (common ones included), sorted."""
    loaders = _loaders()
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(loaders)}")
    sig = inspect.signature(loaders[name][0])
    own = [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return sorted(set(own) | set(_COMMON))


def dataset_option_defaults(name: str) -> dict[str, Any]:
    """The default value of each option of a dataset's loader that has one (e.g. ``image_size``),
    so that a model reads new inputs as its training data was read.

    Raises:
        ValueError: ``name`` is not a dataset (the message lists the valid ones).

    Example:
        >>> defaults = dataset_option_defaults("fashion-mosaic")
        >>> defaults["test_size"], defaults["image_size"] is None   # None: the mosaics' own 56x56
        (1000, True)
    """
    loaders = _loaders()
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(loaders)}")
    return {p.name: p.default for p in inspect.signature(loaders[name][0]).parameters.values()
            if p.default is not inspect.Parameter.empty}


def load_dataset(spec: str, **options: Any) -> MultiLabelDataset:
    """Load a dataset by spec string (see the module table).

    Args:
        spec: ``"debtags"``, ``"yeast"``, ``"fashion-mosaic"``, ``"jsonl:PATH"``,
            ``"csv:PATH"``, ``"mimic-caml:DIR"``, ``"mimic-repro:DIR"`` or
            ``"coco:ANNOTATION_JSON[:IMAGE_DIR]"``.
        **options: Common options (``seed``, ``top_k_labels``,
            ``max_examples_per_split``, ``max_train_examples``) and the dataset's own (e.g. ``label_field``,
            ``text_field``, ``split_field``, ``image_size``).

    Returns:
        The :class:`~mlsupcon.data.base.MultiLabelDataset`; ``info["spec"]`` and
        ``info["options"]`` record how it was loaded.

    Raises:
        ValueError: Unknown dataset name or option (the message lists valid choices),
            a missing/superfluous path, or invalid data.
        FileNotFoundError: Input files not found.

    Example:
        >>> ds = load_dataset("yeast")                                         # doctest: +SKIP
        >>> [len(ds.splits[s]) for s in ("train", "validation", "test")]       # doctest: +SKIP
        [1200, 300, 917]
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset spec must be a non-empty string, got {spec!r}")
    name, sep, path = spec.partition(":")
    name = name.strip().lower()
    loaders = _loaders()
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r} in spec {spec!r}; valid choices: {', '.join(loaders)}")
    loader, path_rule, _ = loaders[name]
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(repr(u) for u in unknown)} for dataset {name!r}; "
            f"valid options: {', '.join(valid)}"
        )
    if path_rule == "none" and sep:
        raise ValueError(f"dataset {name!r} takes no path, got spec {spec!r}")
    if path_rule == "required" and not path:
        raise ValueError(f"dataset {name!r} needs a path: {name}:PATH")

    top_k = options.pop("top_k_labels", None)
    max_n = options.pop("max_examples_per_split", None)
    max_train = options.pop("max_train_examples", None)
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if path_rule == "none":
        ds = loader(**options)
    else:
        ds = loader(path or None, **options)
    ds.info = dict(ds.info)
    ds.info["spec"] = spec
    ds.info["options"] = {
        **{k: v for k, v in options.items()},
        "top_k_labels": top_k,
        "max_examples_per_split": max_n,
        **({"max_train_examples": max_train} if max_train is not None else {}),
    }
    if top_k is not None:
        ds = top_k_restrict(ds, top_k)
    if max_n is not None:
        ds = subsample(ds, max_n, seed)
    if max_train is not None:
        ds = subsample_train(ds, max_train, seed)
    return ds
