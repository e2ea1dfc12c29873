"""The ``mlsupcon`` command: train, evaluate, compare, report, losses, datasets; predict, embed, export.

A user mistake (bad file, unknown option, wrong labels) prints one clear message and exits
with status 2; it never shows a traceback from deep inside a library.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

from mlsupcon.training.methods import METHODS  # the registry only: neither torch nor Lightning

# Models and datasets are local: never reach for a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
    Flag("--method", str, "method", _choices(METHODS)),
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
    Flag("--encoder-lr-ratio", float, "encoder_lr_ratio", "two-stage fine-tuning: the encoder's rate as a "
         "fraction of the classifier's (0.1 in the MulSupCon authors' code)"),
    Flag("--lr-schedule", str, "lr_schedule", "cosine (warm-up, then cosine decay per step) | constant"),
    Flag("--warmup-epochs", float, "warmup_epochs", "epochs of linear learning-rate warm-up per stage "
                                                    "(default: a tenth of the stage, at most 1)"),
    Flag("--temperature", float, "loss_options.temperature", "τ of the contrastive loss"),
    Flag("--head", str, "head", "linear | attention (label-wise attention, text encoders) | kmcl"),
    Flag("--max-examples", int, "dataset_options.max_examples_per_split",
         "deterministic subsample per split (quick runs)"),
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


def _dest(flag: Flag) -> str:
    return flag.flag.lstrip("-").replace("-", "_")


def _add_run_flags(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--config", help="YAML file of options (CLI flags override it)")
    for f in FLAGS:
        if command not in f.commands:
            continue
        if f.kind == "switch":
            p.add_argument(f.flag, dest=_dest(f), action="store_const", const=f.value, default=None, help=f.help)
        else:
            p.add_argument(f.flag, dest=_dest(f), type=f.kind, help=f.help)


def _overrides(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Config overrides (``field`` or ``field.option``: value) of the ``command``'s flags that were given."""
    o: dict[str, Any] = {}
    for f in FLAGS:
        value = getattr(args, _dest(f), None) if command in f.commands else None
        if value is not None:
            o[f.field] = value
    return o


def _print_metrics(m: dict[str, Any],
                   keys=("micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5")) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"test metrics (threshold {m.get('threshold', float('nan')):.3f})")
    for k in keys:
        t.add_column(k)
    t.add_row(*[f"{m[k]:.4f}" if isinstance(m.get(k), float) else str(m.get(k)) for k in keys])
    Console().print(t)


def _resume_config_path(args) -> str | None:
    """``train --resume --output DIR`` without ``--config``: DIR/config.yaml, if there is one."""
    if args.config is not None or not getattr(args, "resume", None):
        return args.config
    from pathlib import Path

    from mlsupcon.training.config import TrainConfig

    saved = Path(args.output or TrainConfig().output) / "config.yaml"
    return str(saved) if saved.is_file() else None


def _is_primary_launch() -> bool:
    """Not an extra process of a distributed launch (those follow rank 0 into its folder)."""
    return all(int(os.environ.get(v, "0") or 0) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def cmd_train(args) -> int:
    import contextlib
    from pathlib import Path

    from mlsupcon.cli.checks import check_accelerator
    from mlsupcon.training.config import load_config

    # Merged (defaults < preset < YAML < flags) and validated before the data is read, and the data read
    # and checked (mlsupcon.training.input_checks) before torch and Lightning (seconds to import) are:
    # a mistake in either is reported at once. The head and loss names need their registries (torch).
    cfg = load_config(_resume_config_path(args), _overrides(args, "train"), registries=False)
    from mlsupcon.progress import set_enabled
    from mlsupcon.training.output_folder import check_run_output, claim_run_folder

    set_enabled(cfg.progress)  # --no-progress: the encoders' embedding reports too
    out = Path(cfg.output)
    check_run_output(cfg, out)  # a refused folder or nothing to resume: before the data is read
    check_accelerator(cfg.accelerator)
    from mlsupcon.training.input_checks import load_training_data

    primary = _is_primary_launch()
    # The folder's lock first: a second run into the same folder is refused before its data is read.
    with claim_run_folder(out) if primary else contextlib.nullcontext():
        try:
            dataset = load_training_data(cfg)
            cfg.validate()
            from mlsupcon.training.runner import run_training

            m = run_training(cfg, dataset)
        except KeyboardInterrupt:  # outside a training stage (a stage reports its own)
            raise _interrupted(f"mlsupcon train --output {cfg.output} --resume", cfg.output) from None
        except Exception as exc:
            from mlsupcon.training.errors import disk_full_error, is_disk_full

            if not primary or not is_disk_full(exc):
                raise
            raise ValueError(_disk_full_train_message(disk_full_error(exc), out, cfg.resume)) from None
    if not m:  # an extra process of a distributed launch: rank 0 reports
        return 0
    _print_metrics(m)
    print(f"wrote {cfg.output}/metrics.json")
    return 0


def _disk_full_train_message(exc: OSError | None, out, resume: bool) -> str:
    """The one line of a run stopped by a full disk; a run with nothing to resume from is removed
    (its ``config.yaml``, logs …), so that the folder never holds half a run."""
    from mlsupcon.training.output_folder import has_checkpoint, remove_artefacts

    where = os.path.dirname(os.path.abspath(exc.filename)) if exc is not None and exc.filename else str(out)
    if has_checkpoint(out):
        kept = (f"the run's checkpoints in {out} are kept: free space, then continue with "
                f"`mlsupcon train --output {out} --resume`")
    elif resume:
        kept = f"free space, then continue with `mlsupcon train --output {out} --resume`"
    else:
        remove_artefacts(out)
        kept = f"nothing of this run was kept in {out}: free space and run it again"
    return f"no space left on device ({where}); {kept}"


def cmd_compare(args) -> int:
    from mlsupcon.training.config import load_config

    cfg = load_config(args.config, _overrides(args, "compare"))
    from mlsupcon.progress import set_enabled

    set_enabled(cfg.progress)
    losses = [s.strip() for s in args.losses.split(",") if s.strip()]
    if not losses:
        raise ValueError(f"losses: expected a comma-separated list of names, got {args.losses!r}")
    if args.seeds < 1:
        raise ValueError(f"seeds: expected an integer >= 1, got {args.seeds}")
    from mlsupcon.training.compare import check_rows, run_compare  # Lightning is imported by the runs

    check_rows(losses)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))

    from mlsupcon.training.errors import TrainingInterrupted

    try:
        res = run_compare(cfg, losses, seeds, args.output, plots=not args.no_plots)
    except (KeyboardInterrupt, TrainingInterrupted) as exc:
        # The hint of an interrupted run names its own folder; the table continues as a whole.
        status = getattr(exc, "exit_status", 130)
        how = "SIGTERM" if status == 143 else "Ctrl-C"
        raise TrainingInterrupted(f"compare interrupted ({how}); continue with the same `mlsupcon compare` "
                                  "command and --resume (finished runs are kept)", status) from None
    print()
    print(res["table"])
    print(f"\nwrote {args.output}/results.csv and {res['report']}")
    return 0


def _interrupted(command: str, output: str):
    """The TrainingInterrupted of a Ctrl-C outside a stage: the resume hint when a run was started."""
    from pathlib import Path

    from mlsupcon.training.errors import TrainingInterrupted

    if (Path(output) / "config.yaml").is_file():
        return TrainingInterrupted(f"interrupted (Ctrl-C); continue with `{command}`", exit_status=130)
    return TrainingInterrupted(f"interrupted (Ctrl-C) before the run started in {output}", exit_status=130)


def cmd_report(args) -> int:
    from mlsupcon.training.compare import TABLE_METRICS, read_results, results_table

    rows = read_results(args.paths)
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else TABLE_METRICS
    missing = [m for m in metrics if m not in rows[0]] if rows else []
    if missing:
        raise ValueError(f"metrics: {missing} not in results.csv (columns: {sorted(rows[0])})")
    print(results_table(rows, losses, metrics))
    return 0


def cmd_losses(_args) -> int:
    from mlsupcon.losses import LOSSES

    for name, cls in sorted(LOSSES.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:10s} {doc}")
    return 0


def cmd_datasets(_args) -> int:
    from mlsupcon.data import available_datasets

    for name, desc in available_datasets().items():
        print(f"{name:16s} {desc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlsupcon", description="Multi-label supervised contrastive learning.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="train and evaluate one configuration")
    _add_run_flags(t, "train")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained run folder (or its model/ folder)")
    e.add_argument("path")
    e.add_argument("--split", default="test", help="the split to score: train, validation, test (default), or all: "
                   "every example (a file without a split column is split 80/10/10 by seed)")
    e.add_argument("--dataset", help="evaluate on another dataset spec (its labels among the model's)")
    e.add_argument("--json", action="store_true", help="also print every metric as JSON")

    c = sub.add_parser("compare", help="several losses × seeds → results.csv, report.md, figures")
    _add_run_flags(c, "compare")
    c.add_argument("--losses", default="bce,all,any,mulsupcon,simdis")
    c.add_argument("--seeds", type=int, default=3, help="number of seeds")
    c.add_argument("--seed-start", type=int, default=0)
    c.add_argument("--output", default="runs/compare")
    c.add_argument("--no-plots", action="store_true")
    c.set_defaults(func=cmd_compare)

    r = sub.add_parser("report", help="one mean ± std table from one or more compare folders")
    r.add_argument("paths", nargs="+", help="compare output folders (or their results.csv)")
    r.add_argument("--metrics", help="comma-separated metric columns (default: the compare table's)")
    r.set_defaults(func=cmd_report)

    sub.add_parser("losses", help="list the losses").set_defaults(func=cmd_losses)
    sub.add_parser("datasets", help="list the dataset specs").set_defaults(func=cmd_datasets)
    from mlsupcon.cli.predict import add_commands  # predict, embed, export; evaluate's data options

    add_commands(sub, evaluate=e)
    return p


def main(argv: list[str] | None = None) -> int:
    """The ``mlsupcon`` command; returns its exit status."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # here, so that a closed pipe is seen below and not at interpreter exit
    except BrokenPipeError:
        return _stdout_closed()
    except SystemExit as exc:  # rich stops with SystemExit(1) on a closed pipe: the same quiet status
        if isinstance(exc.__context__, BrokenPipeError):
            return _stdout_closed()
        raise


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """mlsupcon's own warnings (e.g. ``DataWarning``: tiny splits, numbers as labels) as one line
    ``mlsupcon: warning: ...``; any other in Python's form."""
    if getattr(category, "__module__", "").startswith("mlsupcon."):
        return f"mlsupcon: warning: {message}\n"
    return _PYTHON_FORMAT_WARNING(message, category, filename, lineno, line)


_PYTHON_FORMAT_WARNING = warnings.formatwarning


def _main(argv: list[str] | None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from mlsupcon import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mlsupcon.cli.allocator import tune_malloc

    tune_malloc()
    from mlsupcon.progress import set_enabled

    set_enabled(not getattr(args, "no_progress", False))  # train / compare: their config's progress
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # A user mistake: one message, no traceback. MLSUPCON_DEBUG=1 shows the traceback.
        if os.environ.get("MLSUPCON_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mlsupcon: error: {msg}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - only a full disk and a SIGTERM / Ctrl-C stop are handled here
        from mlsupcon.training.errors import TrainingInterrupted, disk_full_error, is_disk_full

        if is_disk_full(exc) and not os.environ.get("MLSUPCON_DEBUG"):
            full = disk_full_error(exc)
            where = (os.path.dirname(os.path.abspath(full.filename)) if full is not None and full.filename
                     else "the output's file system")
            print(f"mlsupcon: error: no space left on device ({where}); free space and run the command again "
                  "(nothing half-written was left under the output name)", file=sys.stderr)
            return 2
        if not isinstance(exc, TrainingInterrupted):
            raise
        print(f"mlsupcon: {exc}", file=sys.stderr)
        return exc.exit_status  # 128 + the signal, as if it had ended the process
    except KeyboardInterrupt:
        print("mlsupcon: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    finally:
        set_enabled(True)  # the switch is the command's, not the process's (main() may run again in-process)


def _stdout_closed() -> int:
    """stdout's reader went away (``mlsupcon evaluate RUN --json | head``): stop quietly, as a
    command killed by SIGPIPE would, rather than with a BrokenPipeError traceback."""
    try:
        # Python flushes stdout again at exit: point it at /dev/null so that flush has nowhere to fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (captured)
        pass
    return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
