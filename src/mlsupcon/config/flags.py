"""The command-line flags of ``mlsupcon train`` and ``compare``, each with the config field it sets.

:data:`FLAGS` is the one table: the CLI builds its argparse options from it, and
:func:`flag_overrides` turns the flags given into :func:`~mlsupcon.config.loading.load_config`
overrides (``field`` or ``field.option``: value).

Example:
    >>> import argparse
    >>> flag_overrides(argparse.Namespace(epochs=3, temperature=0.2, no_progress=False), "train")
    {'epochs': 3, 'loss_options.temperature': 0.2, 'progress': False}
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from mlsupcon.config.methods import METHOD_NAMES

__all__ = ["Flag", "FLAGS", "flag_dest", "flag_overrides"]


def _int_or_name(value: str) -> int | str:
    """``--devices``: a count (``2``) or a Lightning spelling (``auto``, ``0,1``)."""
    return int(value) if value.isdigit() else value


def _non_empty(value: str) -> str:
    """``--label-separator``: a string to split on cannot be empty."""
    if not value:
        raise argparse.ArgumentTypeError("expected a non-empty string")
    return value


@dataclass(frozen=True)
class Flag:
    """One command-line flag and the config field it sets (``a.b``: option ``b`` of mapping ``a``).

    ``kind``: a type for argparse (``int``, ``float``, ``str`` …), or ``"switch"`` for a flag
    without a value that sets the field to ``value``.
    """

    flag: str
    kind: Any
    field: str
    help: str | None = None
    value: Any = None
    commands: tuple[str, ...] = ("train", "compare")


def _choices(names) -> str:
    return " | ".join(names)


#: Every flag that sets a config field: argparse and the overrides both come from this table.
FLAGS: tuple[Flag, ...] = (
    Flag("--dataset", str, "dataset", "debtags | reuters | eurlex-sum | yeast | fashion-mosaic | jsonl:PATH | "
                                      "csv:PATH | mimic-caml:DIR | mimic-repro:DIR | coco:ANNOTATIONS[:IMAGES] | "
                                      "vectors:PATH (see `mlsupcon datasets`)"),
    Flag("--preset", str, "preset", "recipe of a bundled dataset under the config and flags (default: the "
                                    "--dataset's own: debtags | yeast | fashion-mosaic; none: no preset)"),
    Flag("--no-auto", "switch", "auto", "jsonl:/csv:/vectors: data without a config: keep the defaults instead "
         "of choosing settings from the data", value=False),
    Flag("--encoder", str, "encoder", "mlp | cnn | transformer | resnet | sparse | frozen | fusion"),
    Flag("--model-path", str, "encoder_options.model_path", "local Hugging Face model folder (transformer / resnet)"),
    Flag("--method", str, "method", _choices(METHOD_NAMES)),
    Flag("--loss", str, "loss", "contrastive loss (see `mlsupcon losses`; a prototype loss msc | proto_only | "
         "mscwrg | mscrg trains its label prototypes with the projection head)", commands=("train",)),
    Flag("--classifier-loss", str, "classifier_loss", "end-to-end: the classification term, bce (default) | asl | "
         "zlpr (decision at logit 0: threshold 0.5, not tuned)"),
    Flag("--seed", int, "seed", commands=("train",)),
    Flag("--epochs", int, "epochs", "cap of contrastive epochs (two-stage; early stopping on validation "
                                    "kNN mAP) or of training epochs"),
    Flag("--classifier-epochs", int, "classifier_epochs", "cap of stage-2 epochs (early stopping on validation mAP)"),
    Flag("--patience", int, "patience", "epochs without validation improvement before a stage stops early"),
    Flag("--batch-size", int, "batch_size"),
    Flag("--lr", float, "lr"),
    Flag("--encoder-lr-ratio", float, "encoder_lr_ratio", "the encoder's learning rate as a fraction of the "
         "head's (two-stage fine-tuning: 0.1 in the MulSupCon authors' code)"),
    Flag("--lr-schedule", str, "lr_schedule", "cosine (warm-up, then cosine decay per step) | constant"),
    Flag("--warmup-epochs", float, "warmup_epochs", "epochs of linear learning-rate warm-up per stage "
                                                    "(default: a tenth of the stage, at most 1)"),
    Flag("--temperature", float, "loss_options.temperature", "τ of the contrastive loss"),
    Flag("--head", str, "head", "linear | attention (label-wise attention, text encoders) | kmcl"),
    Flag("--max-examples", int, "dataset_options.max_examples_per_split",
         "deterministic subsample per split (quick runs)"),
    Flag("--max-train-examples", int, "dataset_options.max_train_examples",
         "deterministic subsample of the training split only (learning curves, few labelled texts)"),
    Flag("--top-k-labels", int, "dataset_options.top_k_labels",
         "keep the k most frequent training labels (MIMIC-50 style)"),
    # Your own training data: options of the loaders (mlsupcon.data.text), so load_dataset reports a
    # dataset that does not take one.
    Flag("--text-field", str, "dataset_options.text_field", "jsonl:/csv: field or column of the text (default text)"),
    Flag("--labels-field", str, "dataset_options.label_field",
         "jsonl:/csv: field or column of the labels (default labels)"),
    Flag("--split-field", str, "dataset_options.split_field",
         "jsonl:/csv: field or column of the split (default split; absent: a seeded 80/10/10 split)"),
    Flag("--id-field", str, "dataset_options.id_field", "jsonl:/csv: field or column of the example id (default id)"),
    Flag("--label-separator", _non_empty, "dataset_options.label_separator",
         "csv: what joins the labels of one cell (default ;); vectors: of a label string (default | or ;)"),
    Flag("--devices", _int_or_name, "devices", "number of devices (Lightning)"),
    Flag("--strategy", str, "strategy", "Lightning strategy, e.g. ddp"),
    Flag("--num-nodes", int, "num_nodes", "machines of a multi-node run (torchrun; docs/scaling.md)"),
    Flag("--distributed-timeout", float, "distributed_timeout",
         "seconds a process of a distributed run waits for the others before it stops (default 600)"),
    Flag("--queue-size", int, "queue_size", "rows of the label-aware memory queue (0: none)"),
    Flag("--momentum", float, "momentum", "momentum of a MoCo-style key encoder filling the queue"),
    Flag("--knn", str, "knn", "after training: blend a validation-tuned kNN head with the trained one "
         "(blend), use it alone (only) or not (off)"),
    Flag("--blend-linear", "switch", "blend_linear", "text: blend the TF-IDF linear model's scores in "
         "(wide & deep; weight chosen on validation)", value=True),
    Flag("--no-blend-linear", "switch", "blend_linear", "do not blend the TF-IDF linear model in", value=False),
    Flag("--accelerator", str, "accelerator", "cpu | gpu | auto"),
    Flag("--no-progress", "switch", "progress", "no progress reports but one summary line per epoch on stderr "
         "(without a terminal there are no bars either: one line per epoch or per quarter of a long step)",
         value=False),
    Flag("--resume", "switch", "resume", "continue an interrupted run from its last checkpoints (same "
         "configuration; with --output DIR alone, DIR/config.yaml is the configuration)", value=True),
    Flag("--overwrite", "switch", "overwrite", "the output folder holds an earlier run: delete its artefacts "
         "and start a new one (without this or --resume such a folder is refused)", value=True),
    Flag("--checkpoint-every-n-steps", int, "checkpoint_every_n_steps",
         "checkpoint every N training steps as well as every epoch (0: epochs only)"),
    Flag("--max-nonfinite-steps", int, "max_nonfinite_steps",
         "stop after N consecutive steps with a NaN/inf loss (0: never)"),
    Flag("--output", str, "output", "output folder", commands=("train",)),
)


def flag_dest(flag: Flag) -> str:
    """The argparse destination of ``flag`` (``--max-examples`` -> ``max_examples``)."""
    return flag.flag.lstrip("-").replace("-", "_")


def flag_overrides(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Config overrides (``field`` or ``field.option``: value) of the ``command``'s flags that were given."""
    o: dict[str, Any] = {}
    for f in FLAGS:
        value = getattr(args, flag_dest(f), None) if command in f.commands else None
        if value is not None:
            o[f.field] = value
    return o
