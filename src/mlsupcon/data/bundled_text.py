"""Bundled multi-label text sets besides Debtags: ``reuters`` and ``eurlex-sum``.

Both are JSONL.gz files in ``mlsupcon/data/bundled`` read by the generic JSONL reader; how they
were built from their public sources, and their licences:
``mlsupcon/data/bundled/TEXT_SETS_README.md`` and ``scripts/build_text_sets.py``.

Example:
    >>> from mlsupcon.data import load_dataset
    >>> ds = load_dataset("reuters")
    >>> [len(ds.splits[s]) for s in ("train", "validation", "test")]
    [6993, 777, 3019]
"""

from __future__ import annotations

from .base import MultiLabelDataset
from .text import build_text_dataset, bundled_path, read_jsonl_records

__all__ = ["load_reuters", "load_eurlex_sum"]


def _load(name: str, file: str, label_field: str, seed: int, info: dict) -> MultiLabelDataset:
    p = bundled_path(file)
    rec, split_names = read_jsonl_records(p, label_field=label_field)
    return build_text_dataset(name, (rec, split_names), seed=seed, info={"source": str(p), **info})


def load_reuters(*, seed: int = 0) -> MultiLabelDataset:
    """Reuters-21578 "ApteMod": 6,993 / 777 / 3,019 newswire stories of 1987, 90 topics.

    The ModApte split restricted to the 90 topics with a training and a test document; the
    validation split is a fixed 10 % of ModApte's training documents. 127 words per story on
    average, 1.24 topics per story. "Reuters-21578, Distribution 1.0": free distribution for
    research purposes only (its README).
    """
    return _load("reuters", "reuters.jsonl.gz", "labels", seed,
                 {"licence": "Reuters-21578 Distribution 1.0: free distribution for research purposes only"})


def load_eurlex_sum(*, label_field: str = "labels", seed: int = 0) -> MultiLabelDataset:
    """EUR-Lex-Sum (English): 1,129 / 187 / 188 EU legal acts, cut to their first 2,000 words.

    Args:
        label_field: ``"labels"``: the 154 EUR-Lex subject matters (2.18 per act);
            ``"eurovoc"``: the EuroVoc descriptors (2,285 distinct, 6.6 per act).
        seed: Unused (the split is the source's); accepted like every dataset's.

    1,920 words per act on average. CC BY 4.0 (EUR-Lex content © European Union).
    """
    if label_field not in ("labels", "eurovoc"):
        raise ValueError(f"eurlex-sum: label_field must be 'labels' or 'eurovoc', got {label_field!r}")
    return _load("eurlex-sum", "eurlex_sum.jsonl.gz", label_field, seed,
                 {"label_field": label_field, "licence": "CC BY 4.0, EUR-Lex content (c) European Union"})
