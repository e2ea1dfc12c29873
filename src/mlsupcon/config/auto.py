"""Settings chosen from the data when a ``jsonl:``/``csv:``/``vectors:`` dataset comes without a config.

A bundled dataset has its recipe (:mod:`mlsupcon.config.presets`); a user's own file has none,
so :func:`auto_settings` measures the training split and chooses:

=================  =========================================================================
field              choice
=================  =========================================================================
``encoder``        text in scripts with spaces between words, up to :data:`FROZEN_MAX_TEXTS`
                   texts in all splits: ``frozen`` (MiniLM sentence embeddings computed once
                   and cached, a 1024-wide MLP trained on them: the Debtags recipe); other
                   text (no spaces between words, symbols, or more texts): ``sparse`` (TF-IDF
                   features under one trained 512-wide layer); vectors: ``mlp`` (MulSupCon's
                   256-512-256)
``method``         text: ``end-to-end``, BCE + 0.01 × the contrastive loss (the Debtags
                   recipe; for ``frozen`` and ``sparse`` lr 3e-3), early stopping on validation
                   mAP (patience 5); ``frozen`` at most 30 epochs, ``sparse``/``cnn`` about
                   :data:`E2E_TARGET_EXAMPLES` examples, 5 to 20 epochs. (A two-stage linear
                   probe on sparse contrastive features lost to TF-IDF + linear on Debtags
                   written in CJK characters: benchmarks/check_auto_defaults.py.) Vectors:
                   two-stage.
``head``           ``label-names`` (each label a cosine prototype that starts at its name's
                   embedding) on the frozen sentence embeddings themselves (``hidden_dims``
                   ``[]``, ``method`` ``bce``, lr 3e-3, 30 to 100 epochs) when at least
                   :data:`NAMES_MIN_WORDS_SHARE` of the label names hold a word and there are at
                   most :data:`NAMES_MAX_TRAIN` training texts (Debtags with 500 / 2,000 texts:
                   test mAP 32.8 / 39.3 against 13.2 / 27.9 for TF-IDF + linear; issue 22);
                   not with a contrastive method, a head or MLP the user chose
``encoder_options`` frozen: long texts (median > :data:`LONG_TEXT_WORDS` words) read 512, 384 or 256
                   tokens, the longest whose embedding fits :data:`FROZEN_LONG_EMBED_BUDGET_S`
                   (else 128); cnn (when asked for): ``max_length`` = 95th percentile of the token counts
                   (the tokenizer kind :func:`~mlsupcon.models.tokenizer_choice.choose_tokenizer`
                   expects: words, sub-words or characters), the Debtags recipe's sizes; sparse:
                   character 1-3-grams only for scripts without spaces or symbol text,
                   ``max_chars`` for long documents, at most :data:`SPARSE_MAX_FEATURES` columns
``view_options``   the encoder's views (token crop/drop/mask, feature drop, feature masking)
``knn``            a validation-tuned kNN head blended in for two-stage models and vectors;
                   off for one-stage text models (on Debtags it raised mAP but cost rare labels
                   macro-F1)
``blend_linear``   text: the TF-IDF + linear model's scores blended in, weight on validation mAP
``batch_size``     min(256, n_train / 8), rounded down to a power of two
``epochs``         two-stage: about 100,000 training examples seen, 5 to 100 epochs (more for
                   small data; a cap: stage 1 stops early on validation kNN mAP); ``patience``
                   10 under 5,000 examples
stage 2            two-stage text: a linear probe on the frozen encoder (the Debtags recipe's
                   ``classifier_lr`` 0.02), ``probe_batch_size`` min(2048, n_train / 8);
                   vectors: ``finetune_encoder`` with ``classifier_lr`` 0.0005 (MulSupCon);
                   ``classifier_epochs``: about 1,000 probe steps (fine-tuning: as
                   ``epochs``), 30 to 100 epochs
vectors            ``dataset_options.standardize`` (the training split's mean and std)
``threshold``      ``auto``: per-label thresholds shrunk towards the global one where 5-fold
                   cross-validation on the validation split shows they keep micro-F1 and raise
                   macro-F1 (Reuters, EUR-Lex), else one global threshold (Debtags; issue 22)
=================  =========================================================================

:func:`apply_auto_settings` (called by ``mlsupcon.training.runner.run_training`` and
``compare`` when ``cfg.auto`` is true) never changes a field the user set
(``TrainConfig.user_set``: a flag, the YAML file, a preset, or — for a config built in Python —
any value other than the default), prints what it chose as one block on stderr and returns the
config with ``auto`` false.

Example:
    >>> from mlsupcon.data import MultiLabelDataset, Split, encode_labels
    >>> texts = [f"short text number {i} about {'cats' if i % 2 else 'dogs'}" for i in range(400)]
    >>> y = encode_labels([["cat"] if i % 2 else ["dog"] for i in range(400)], ["cat", "dog"])
    >>> ids = [str(i) for i in range(400)]
    >>> ds = MultiLabelDataset("toy", "text", ["cat", "dog"],
    ...                        {s: Split(s, texts, y, ids) for s in ("train", "validation", "test")})
    >>> overrides, reasons = auto_settings(ds)
    >>> overrides["encoder"], overrides["method"], overrides["head"], overrides["batch_size"], overrides["epochs"]
    ('frozen', 'bce', 'label-names', 32, 100)
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from typing import Any, Callable, TextIO

import numpy as np

from mlsupcon.config.methods import MethodLookup, method_rules
from mlsupcon.config.schema import TrainConfig
from mlsupcon.data import MultiLabelDataset, load_dataset
from mlsupcon.models.tokenizer_choice import choose_tokenizer

__all__ = ["AUTO_SPECS", "E2E_TARGET_EXAMPLES", "SPARSE_MAX_FEATURES", "data_statistics", "auto_settings",
           "apply_auto_settings", "user_set_fields"]

#: Dataset kinds (spec prefixes) whose settings are chosen from the data.
AUTO_SPECS = ("jsonl", "csv", "vectors")
#: Columns of the TF-IDF features under the trainable sparse layer that auto settings choose.
SPARSE_MAX_FEATURES = 50_000
#: Training examples an end-to-end sparse/CNN run sees at most (epochs within MIN_EPOCHS..E2E_MAX_EPOCHS):
#: past them validation mAP barely moves, and early stopping would end the run late.
E2E_TARGET_EXAMPLES = 150_000
E2E_MAX_EPOCHS = 20
#: Texts (all splits) up to which text in a spaced script gets the frozen MiniLM encoder: embedding
#: them is slow on a CPU (once: cached afterwards); above, a first run would spend too long
#: embedding, so a CNN or TF-IDF encoder is chosen instead.
FROZEN_MAX_TEXTS = 60_000
#: Median words per text from which the frozen encoder reads more than its default 128 tokens: EUR-Lex
#: summaries (median 2,331 words) gained 4.3 mAP at 512 tokens (docs/results.md, issue 22, session 8);
#: Reuters stories (median 109) gained nothing at 256 (session 11).
LONG_TEXT_WORDS = 300
#: Seconds per text of the frozen MiniLM by ``max_length`` with the int8 ONNX runtime (2 idle CPU cores,
#: full-length EUR-Lex documents, runs/i22s11/embed_speed.py: 22 / 33 / 57 texts/s; PyTorch:
#: :data:`_TORCH_SLOWER` times more), and the embedding time a first run may spend reading long texts
#: further (the longest length that fits is chosen; 10,528 such texts at 384 tokens took ~350 s in a run).
_FROZEN_SECONDS_PER_TEXT = ((512, 0.045), (384, 0.030), (256, 0.0175))
_TORCH_SLOWER = 2.5
FROZEN_LONG_EMBED_BUDGET_S = 600
#: Why ``threshold: auto`` (printed with the choices; every auto run gets it, ``linear`` too).
_THRESHOLD_WHY = ("one threshold per label (shrunk towards the global one) where 5-fold cross-validation on the "
                  "validation split shows it keeps micro-F1 and raises macro-F1, else one global threshold")
#: The Debtags recipe (src/mlsupcon/config/presets.py) that auto settings reuse with ``frozen``.
_FROZEN = {"hidden_dims": [1024], "dropout": 0.2}
_FROZEN_RECIPE = {"lr": 0.003, "epochs": 30, "patience": 5}
#: Label names with words (share of labels, :func:`label_words_share`) from which a frozen text
#: encoder gets the ``label-names`` head, and the training texts up to which it does (docs/results.md,
#: issue 22: Debtags with 500 and 2,000 training texts, EUR-Lex summaries).
NAMES_MIN_WORDS_SHARE = 0.5
NAMES_MAX_TRAIN = 5000
#: Training examples a stage that trains the encoder sees (epochs within MIN_EPOCHS..MAX_EPOCHS):
#: a TF-IDF encoder step is costly on a CPU (two views), so a count of steps, not of examples,
#: would make small data slow. The probe on cached embeddings aims at TARGET_STEPS steps.
TARGET_EXAMPLES = 100_000
TARGET_STEPS = 1000
MIN_EPOCHS, MAX_EPOCHS = 5, 100
#: Examples below which validation is noisy: longer patience, more classifier epochs.
SMALL_DATA = 5000
#: Chosen fields that only some methods read (:data:`~mlsupcon.config.methods.METHOD_OPTIONS`); the others are
#: read by all.
_METHOD_FIELDS = {"view_options", "epochs", "classifier_epochs", "classifier_lr", "probe_batch_size",
                  "finetune_encoder", "patience", "contrastive_weight"}
#: Texts measured (evenly spaced) for the length statistics.
_SAMPLE = 20_000
# Three letters in a row (\w minus digits and underscore): a word in a label name.
_LABEL_WORD = re.compile(r"[^\W\d_]{3,}")
# Words and single punctuation marks: what a word tokenizer's pre-tokenizer makes of a text.
_WORDS = re.compile(r"\w+|[^\w\s]")
# Sub-word pieces per word of a byte-level BPE on code, identifiers, URLs (a rough, safe factor).
_SUBWORD_FACTOR = 1.5
# The Debtags recipe's CNN sizes, good on short and long texts alike.
_CNN = {"embed_dim": 64, "num_filters": 128, "kernel_size": 3, "vocab_size": 20000, "min_frequency": 2, "dropout": 0.1}


def _sample(items: list[Any], k: int = _SAMPLE) -> list[Any]:
    if len(items) <= k:
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def label_words_share(label_names: list[str]) -> float:
    """The share of label names that hold a word (a run of three or more letters, any script):
    names a sentence encoder can read (``works-with::image``, ``Agriculture``), not codes (``l3``,
    ``401.9``).

    Example:
        >>> label_words_share(["works-with::image", "acq", "401.9", "l3"])
        0.5
    """
    if not label_names:
        return 0.0
    return float(np.mean([bool(_LABEL_WORD.search(str(name))) for name in label_names]))


def data_statistics(dataset: MultiLabelDataset) -> dict[str, Any]:
    """What the choices depend on, measured on the training split.

    Returns:
        ``{"modality", "n_train", "num_labels", "labels_per_example", "n_all",
        "label_words_share"}``; text adds
        ``"tokenizer"`` (kind), ``"tokenizer_reason"``, ``"unspaced_script_share"``,
        ``"symbol_share"``, ``"chars_median"``, ``"words_median"`` and ``"tokens_p95"`` (tokens of
        that kind); vectors add ``"num_features"``.
    """
    train = dataset.splits["train"]
    n = len(train)
    stats: dict[str, Any] = {
        "modality": dataset.modality,
        "n_train": n,
        "num_labels": int(dataset.num_labels),
        "labels_per_example": float(train.labels.nnz / n) if n else 0.0,
        "n_all": int(sum(len(part) for part in dataset.splits.values())),
        "label_words_share": label_words_share(dataset.label_names),
    }
    if dataset.modality == "text":
        texts = [t if isinstance(t, str) else "" for t in _sample(list(train.inputs))]
        kind, report = choose_tokenizer(texts)
        words = np.array([len(_WORDS.findall(t)) for t in texts] or [0])
        if kind == "char":  # one token per non-space character
            tokens = np.array([len(t) - sum(c.isspace() for c in t) for t in texts] or [0])
        else:
            tokens = words * (_SUBWORD_FACTOR if kind == "subword" else 1.0)
        stats.update({
            "tokenizer": kind,
            "tokenizer_reason": report["reason"],
            "unspaced_script_share": report["unspaced_script_share"],
            "symbol_share": report["symbol_share"],
            "chars_median": int(np.median([len(t) for t in texts] or [0])),
            "words_median": int(np.median(words)),
            "tokens_p95": int(math.ceil(np.percentile(tokens, 95))),
        })
    elif dataset.modality == "vector":
        stats["num_features"] = int(np.asarray(train.inputs).shape[1])
    return stats


def _pow2_floor(x: int) -> int:
    return 1 << (max(int(x), 1).bit_length() - 1)


def _describe(s: dict[str, Any]) -> str:
    head = f"{s['n_train']:,} training examples, {s['num_labels']:,} labels, {s['labels_per_example']:.1f} per example"
    if s["modality"] == "text":
        length = "short" if s["tokens_p95"] <= 128 else "long" if s["tokens_p95"] > 1000 else "medium-length"
        return (f"{s['n_train']:,} {length} texts (median {s['chars_median']:,} characters, "
                f"{s['words_median']:,} words), {s['num_labels']:,} labels, {s['labels_per_example']:.1f} per "
                f"example; {s['tokenizer_reason']}")
    if s["modality"] == "vector":
        return f"{head}, {s['num_features']:,} features"
    return head


def auto_settings(dataset: MultiLabelDataset, encoder: str | None = None,
                  finetune_encoder: bool | None = None, method: str | None = None,
                  label_names_head: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Settings for ``dataset`` chosen from its training split (rules in the module docstring).

    Args:
        dataset: The loaded dataset (text or vector; other modalities get no settings).
        encoder: The encoder the user chose, if any: the options are then that encoder's, and
            no encoder is chosen.
        finetune_encoder: The user's choice of stage 2, if any (the stage-2 settings follow it).
        method: The method the user chose, if any (else one may be chosen with the encoder).
        label_names_head: Whether the ``label-names`` head may be chosen (not when the user chose a
            head or the encoder's MLP, nor for a table whose rows add contrastive terms to one network).

    Returns:
        ``(overrides, reasons)``: overrides as :func:`~mlsupcon.config.loading.load_config`
        takes them (``field`` or ``field.option``: value); ``reasons``: the first line describes
        the data, each further one gives one or more choices and why (``"encoder=sparse: ..."``).
    """
    overrides, why, description = _choose(dataset, encoder, finetune_encoder, method, label_names_head)
    return overrides, [description, *_reason_lines(overrides, why)] if description else []


def _reason_lines(chosen: dict[str, Any], why: dict[str, str]) -> list[str]:
    """``key=value: why`` lines; consecutive choices with the same reason share a line."""
    groups: list[tuple[list[str], str]] = []
    for key, value in chosen.items():
        item, reason = f"{key}={_show(value)}", why.get(key, "")
        if groups and groups[-1][1] == reason:
            groups[-1][0].append(item)
        else:
            groups.append(([item], reason))
    return [", ".join(items) + (f": {reason}" if reason else "") for items, reason in groups]


class _Choices:
    """The settings chosen so far (in the order chosen: the printed block follows it) and why."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.why: dict[str, str] = {}

    def set(self, key: str, value: Any, why: str) -> None:
        self.values[key] = value
        self.why[key] = why


def _choose(dataset: MultiLabelDataset, encoder: str | None, finetune: bool | None,
            method: str | None = None, label_names_head: bool = True) -> tuple[dict[str, Any], dict[str, str], str]:
    """(overrides, why per key, description of the data): see :func:`auto_settings`."""
    s = data_statistics(dataset)
    n, modality = s["n_train"], s["modality"]
    if modality not in ("text", "vector") or n == 0:
        return {}, {}, _describe(s) if n else ""
    c = _Choices()
    enc = ""
    if modality == "text":
        names = label_names_head and _label_names_recipe(s, method)
        enc = _choose_text_encoder(c, s, encoder, names)
        _choose_text_training(c, s, enc, method, names)
    else:
        finetune = _choose_vector_model(c, encoder, finetune)
    _choose_blends(c, modality, enc, method)
    _choose_schedule(c, n, finetune)
    c.set("threshold", "auto", _THRESHOLD_WHY)
    return c.values, c.why, _describe(s)


def _spaced(s: dict[str, Any]) -> bool:
    """Text with words to split: a script with spaces between words, not mostly symbols."""
    return s["unspaced_script_share"] < 0.3 and s["symbol_share"] < 0.25


def _choose_text_encoder(c: _Choices, s: dict[str, Any], encoder: str | None, names: bool = False) -> str:
    """The text encoder (unless the user chose one), its options and its views; returns its name.
    ``names``: a frozen encoder gets the ``label-names`` head (:func:`_label_names_recipe`)."""
    spaced = _spaced(s)
    chosen = "frozen" if spaced and s["n_all"] <= FROZEN_MAX_TEXTS else "sparse"
    if encoder is None:
        if chosen == "frozen":
            why = (f"{s['n_all']:,} texts with spaces between words (<= {FROZEN_MAX_TEXTS:,}): "
                   "MiniLM sentence embeddings, computed once and cached, under a trained "
                   + ("head" if names else "MLP"))
        elif not spaced:
            why = ("no words to split (a script without spaces, or symbols): "
                   "TF-IDF character n-grams under one trained layer")
        else:
            why = (f"{s['n_all']:,} texts > {FROZEN_MAX_TEXTS:,}: embedding them with MiniLM "
                   "would dominate a first run; TF-IDF n-grams under one trained layer")
        c.set("encoder", chosen, why)
    enc = (encoder or chosen).strip().lower()
    if enc == "frozen":
        _choose_frozen_length(c, s)
    if enc == "frozen" and names:
        c.set("encoder_options.hidden_dims", [], "the sentence embeddings themselves: the label-names head compares "
                                                 "them with the label names' embeddings")
        c.set("encoder_options.dropout", 0.0, "no MLP")
        c.set("head", "label-names", f"{s['label_words_share']:.0%} of the label names are words and "
              f"{s['n_train']:,} training texts (<= {NAMES_MAX_TRAIN:,}) leave most labels few examples: each "
              "label's prototype starts at its name's embedding")
    elif enc == "frozen":
        for k, v in _FROZEN.items():
            c.set(f"encoder_options.{k}", v, "the Debtags recipe's MLP")
        c.set("view_options", {"p_mask": 0.2, "noise_std": 0.01},
              "embedding views: mask 20 % of the features, noise 0.01")
    elif enc == "cnn":
        _choose_cnn_options(c, s)
    elif enc == "sparse":
        _choose_sparse_options(c, s)
    return enc


def _choose_frozen_length(c: _Choices, s: dict[str, Any]) -> None:
    """Long documents (median above :data:`LONG_TEXT_WORDS` words): the frozen encoder reads the longest of
    512 / 384 / 256 tokens whose embedding of every text fits :data:`FROZEN_LONG_EMBED_BUDGET_S`."""
    if s["words_median"] <= LONG_TEXT_WORDS:
        return
    from mlsupcon.models.onnx_backbone import onnx_available

    slower = 1.0 if onnx_available() else _TORCH_SLOWER
    for length, seconds in _FROZEN_SECONDS_PER_TEXT:
        estimate = s["n_all"] * seconds * slower
        if estimate <= FROZEN_LONG_EMBED_BUDGET_S:
            c.set("encoder_options.max_length", length,
                  f"long texts (median {s['words_median']:,} words): the first {length} tokens of each, not 128 "
                  f"(embedding the {s['n_all']:,} texts: ~{estimate / 60:.0f} min on 2 CPU cores, once)")
            return


def _label_names_recipe(s: dict[str, Any], method: str | None) -> bool:
    """Few training texts, label names a sentence encoder can read, and a method that trains only a
    head (a contrastive method needs the MLP below it)."""
    one_head = method is None or method.strip().lower() in ("bce", "asl", "zlpr")
    worded = s.get("label_words_share", 0.0) >= NAMES_MIN_WORDS_SHARE
    return one_head and worded and s["n_train"] <= NAMES_MAX_TRAIN


def _choose_cnn_options(c: _Choices, s: dict[str, Any]) -> None:
    length = int(min(2500, max(16, 16 * math.ceil(s["tokens_p95"] / 16))))
    c.set("encoder_options.tokenizer", "auto", f"{s['tokenizer']} tokens expected ({s['tokenizer_reason']})")
    c.set("encoder_options.max_length", length, f"95th percentile of the texts' {s['tokenizer']} token counts "
                                                f"({s['tokens_p95']:,}), rounded up to 16, within 16..2,500")
    for k, v in _CNN.items():
        c.set(f"encoder_options.{k}", v, "the Debtags recipe's CNN sizes")
    c.set("view_options", {"crop": 0.9, "p_drop": 0.1, "p_mask": 0.1},
          "token views: crop 90 %, delete and mask 10 % of the tokens")


def _choose_sparse_options(c: _Choices, s: dict[str, Any]) -> None:
    feat: dict[str, Any] = {"max_features": SPARSE_MAX_FEATURES}
    note = (f"at most {SPARSE_MAX_FEATURES:,} TF-IDF columns (each step updates the whole "
            "columns x 512 layer: 200,000 made steps 4x slower for no gain)")
    if not _spaced(s):
        feat.update({"word_ngram_range": None, "char_ngram_range": [1, 3], "char_analyzer": "char"})
        note = (f"character 1-3-grams only: {s['unspaced_script_share']:.0%} of the characters in scripts "
                f"without spaces, {s['symbol_share']:.0%} symbols (no words to split); " + note)
    if s["tokens_p95"] > 1000:
        feat["max_chars"] = 20_000
        note = (f"long texts (95th percentile {s['tokens_p95']:,} tokens): the first 20,000 characters "
                "of each; " + note)
    c.set("encoder_options.hidden_dims", [512], "one 512-wide layer over the TF-IDF features")
    c.set("encoder_options.featurizer", feat, note)
    c.set("view_options", {"p_drop": 0.2}, "feature views: drop 20 % of each text's n-grams")


def _choose_text_training(c: _Choices, s: dict[str, Any], enc: str, method: str | None,
                          names: bool = False) -> None:
    """The method (end to end, unless the user chose one) and the one-stage schedule of the
    ``frozen``, ``sparse`` and ``cnn`` encoders."""
    if enc not in ("frozen", "sparse", "cnn"):
        return
    names = names and enc == "frozen"
    if method is None and names:
        c.set("method", "bce", "the label-names head on fixed sentence embeddings: nothing below the head to "
                               "train contrastively")
    elif method is None:
        c.set("method", "end-to-end", "BCE + a small contrastive term on the same batches (the Debtags recipe)"
              if enc == "frozen" else ("BCE + a small contrastive term on the same batches (a linear probe on "
                                       "contrastive features trained from scratch lost to TF-IDF + linear)"))
        c.set("contrastive_weight", 0.01, "the Debtags recipe: a larger weight drowns the BCE term")
    if (method or "end-to-end").strip().lower() == "two-stage":
        return
    if names:
        n = s["n_train"]
        c.set("lr", 0.003, "a head on cached embeddings learns fast (the frozen recipe's rate)")
        c.set("epochs", int(min(MAX_EPOCHS, max(30, math.ceil(TARGET_EXAMPLES / n)))),
              f"about {TARGET_EXAMPLES:,} examples seen at {n:,} per epoch, within 30..{MAX_EPOCHS} (500 "
              "Debtags texts took 50-90 epochs; early stopping ends it sooner)")
        return
    if enc == "frozen":
        for k, v in _FROZEN_RECIPE.items():
            c.set(k, v, "the Debtags recipe: an MLP on cached embeddings learns fast")
        return
    n = s["n_train"]
    e2e_epochs = int(min(E2E_MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(E2E_TARGET_EXAMPLES / n))))
    c.set("epochs", e2e_epochs, f"about {E2E_TARGET_EXAMPLES:,} examples seen at {n:,} per epoch, within "
                                f"{MIN_EPOCHS}..{E2E_MAX_EPOCHS} (a cap: early stopping on validation mAP "
                                "ends it sooner)")
    c.set("patience", 5, "5 epochs without a better validation mAP")
    if enc == "sparse":
        c.set("lr", 0.003, "one sparse layer and a head learn fast (the frozen recipe's rate)")


def _choose_vector_model(c: _Choices, encoder: str | None, finetune: bool | None) -> bool | None:
    """The MLP of feature vectors, its views, standardisation and stage 2; returns ``finetune``."""
    if encoder is None:
        c.set("encoder", "mlp", "feature vectors: an MLP")
    if (encoder or "mlp").strip().lower() == "mlp":
        c.set("encoder_options.hidden_dims", [256, 512, 256], "MulSupCon's MLP (256-512-256, as the yeast recipe)")
        c.set("view_options", {"p_mask": 0.5, "noise_std": 0.0},
              "feature views: mask each feature with p = 0.5, no noise (MulSupCon)")
    c.set("dataset_options.standardize", True, "features standardised with the training split's mean and std")
    if finetune is None:
        finetune = True
        c.set("finetune_encoder", True, "stage 2 fine-tunes the MLP with the classifier (the MulSupCon protocol)")
    return finetune


def _choose_blends(c: _Choices, modality: str, enc: str, method: str | None) -> None:
    """The kNN and TF-IDF blends after training."""
    # A user's first run must not lose to what they would fit in a minute: every model is blended
    # (weights chosen on validation) with a kNN head and, for text, the TF-IDF linear model; a
    # blend weight of 1 keeps the trained model alone when the others do not help.
    one_stage = c.values.get("method", (method or "").strip().lower()) in ("end-to-end", "bce", "asl")
    if enc == "frozen" or (modality == "text" and one_stage):
        c.set("knn", "off", "no kNN blend with a one-stage text model: on Debtags it raised mAP but cost rare "
                            "labels macro-F1")
    else:
        c.set("knn", "blend", "a validation-tuned kNN head on the embeddings, blended in where it raises "
                              "validation mAP")
    if modality == "text":
        c.set("blend_linear", True, "the TF-IDF + linear model's scores blended in (wide & deep), weight chosen on "
                                    "validation mAP")


def _choose_schedule(c: _Choices, n: int, finetune: bool | None) -> None:
    """Batch size, epochs, stage 2 (fine-tuning or a linear probe) and patience, from ``n`` training examples."""
    c.set("batch_size", _pow2_floor(min(256, max(8, n // 8), n)), f"min(256, {n:,} / 8) rounded down to a power of two")
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_EXAMPLES / n))))
    if "epochs" not in c.values:
        c.set("epochs", epochs, f"about {TARGET_EXAMPLES:,} examples seen at {n:,} per epoch, within "
                                f"{MIN_EPOCHS}..{MAX_EPOCHS} (a cap: early stopping ends it sooner)")
    if c.values.get("method") == "end-to-end":
        pass  # one stage: no stage-2 settings
    elif finetune:  # stage 2 trains the encoder too: batches of batch_size, a fine-tuning rate
        c.set("classifier_lr", 0.0005, "fine-tuning the encoder with the classifier: MulSupCon's rate")
        c.set("classifier_epochs", max(30, epochs),
              "as epochs, at least 30 (early stopping on validation mAP ends it sooner)")
    else:  # a linear probe on cached embeddings: cheap steps, a probe's rate
        probe = _pow2_floor(min(2048, max(32, n // 8), n))
        c.set("probe_batch_size", probe,
              f"min(2048, {n:,} / 8) rounded down to a power of two: several probe steps per epoch")
        c.set("classifier_lr", 0.02, "the linear probe's rate of the Debtags recipe")
        probe_steps = max(1, math.ceil(n / probe))
        c.set("classifier_epochs", int(min(MAX_EPOCHS, max(30, math.ceil(TARGET_STEPS / probe_steps)))),
              f"about {TARGET_STEPS:,} probe steps at {probe_steps:,} per epoch, within "
              f"30..{MAX_EPOCHS} (early stopping on validation mAP ends it sooner)")
    if n < SMALL_DATA:
        c.set("patience", 10, f"under {SMALL_DATA:,} training examples validation is noisy: wait 10 epochs")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return "none" if value is None else str(value)


def user_set_fields(cfg: TrainConfig) -> frozenset[str]:
    """Fields (``field``) and options (``field.option``) the user set: ``cfg.user_set``, recorded
    by :func:`~mlsupcon.config.loading.load_config`; for a config built in Python (None), every
    field whose value is not the default."""
    if cfg.user_set is not None:
        return frozenset(cfg.user_set)
    defaults = TrainConfig()
    return frozenset(f for f in TrainConfig.fields() if getattr(cfg, f) != getattr(defaults, f))


def apply_auto_settings(cfg: TrainConfig, dataset: MultiLabelDataset, stream: TextIO | None = None, *,
                        methods: MethodLookup = method_rules,
                        check: Callable[[TrainConfig], object] | None = None,
                        label_names_head: bool = True) -> tuple[TrainConfig, MultiLabelDataset]:
    """``cfg`` with the settings :func:`auto_settings` chooses for ``dataset`` in the fields the user
    did not set, and the dataset (reloaded when a dataset option was chosen).

    Does nothing (returns its arguments) unless ``cfg.auto`` is true and the dataset is a
    ``jsonl:``/``csv:``/``vectors:`` spec; a method that builds its own model from the data
    (``linear``) gets only the decision rule (``threshold: auto``). Prints the choices as one block on
    ``stream`` (stderr).

    Args:
        cfg: A validated config.
        dataset: Its dataset, loaded.
        stream: Where the choices are printed (default: stderr).
        methods: What the settings need of a method by name (``options``, ``builds_own_encoder``):
            :func:`~mlsupcon.config.methods.method_rules` (the built-in methods), or the method
            registry's lookup.
        check: Called on the new config before the choices are printed (e.g. the method's own
            checks); its exception leaves nothing printed.
        label_names_head: False: never the ``label-names`` head (``compare`` with contrastive rows,
            which need a trainable network under the head). Also off when the user chose the head
            or the encoder's ``hidden_dims``.

    Returns:
        ``(config, dataset)``; the config has ``auto`` false (its values are chosen valid; the
        method's checks are ``check``'s).
    """
    kind = cfg.dataset.partition(":")[0].strip().lower() if isinstance(cfg.dataset, str) else ""
    method = methods(cfg.method)
    if not cfg.auto or kind not in AUTO_SPECS:
        return cfg, dataset
    user = user_set_fields(cfg)
    if method.builds_own_encoder:  # e.g. linear: its model is its own; only the decision rule is chosen
        overrides, why = {"threshold": "auto"}, {"threshold": _THRESHOLD_WHY}
        description = _describe(data_statistics(dataset))
    else:
        overrides, why, description = _choose(dataset, cfg.encoder if "encoder" in user else None,
                                              cfg.finetune_encoder if "finetune_encoder" in user else None,
                                              cfg.method if "method" in user else None,
                                              label_names_head and "head" not in user
                                              and "encoder_options.hidden_dims" not in user)
    if "method" in overrides:  # the fields to keep are those of the method chosen
        method = methods(overrides["method"])
    changes: dict[str, Any] = {}
    applied: dict[str, Any] = {}
    kept = [f"encoder={cfg.encoder}"] if "encoder" in user and overrides else []
    for key, value in overrides.items():
        field_name, _, option = key.partition(".")
        if field_name in _METHOD_FIELDS and field_name not in method.options:
            continue  # e.g. the probe's settings for bce, which has no stage 2
        if field_name in user or key in user:
            kept.append(f"{key}={_show(getattr(cfg, field_name).get(option) if option else getattr(cfg, key))}")
            continue
        if option:
            current = changes.get(field_name, dict(getattr(cfg, field_name)))
            changes[field_name] = {**current, option: value}
        else:
            changes[key] = value
        applied[key] = value
    new = dataclasses.replace(cfg, **changes, auto=False)
    if check is not None:
        check(new)
    if new.dataset_options != cfg.dataset_options:
        dataset = load_dataset(new.dataset, **new.dataset_options)
    out = stream if stream is not None else sys.stderr
    block = [f"mlsupcon: no config given; chose from the data ({description}):"]
    block += [f"  {line}" for line in _reason_lines(applied, why)]
    if kept:
        block.append(f"  kept as you set them: {', '.join(kept)}")
    block.append("  (a YAML config, or flags, override any of these; auto: false keeps the defaults)")
    print("\n".join(block), file=out, flush=True)
    return new, dataset
