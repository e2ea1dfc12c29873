"""The ``mlsupcon`` command: train, evaluate, compare, losses, datasets.

A user mistake (bad file, unknown option, wrong labels) prints one clear message and exits
with status 2; it never shows a traceback from deep inside a library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

# Models and datasets are local: never reach for a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _add_run_flags(p: argparse.ArgumentParser, with_output: bool = True) -> None:
    p.add_argument("--config", help="YAML file of options (CLI flags override it)")
    p.add_argument("--dataset", help="debtags | yeast | fashion-mosaic | jsonl:PATH | csv:PATH | "
                                     "mimic-caml:DIR | mimic-repro:DIR | coco:ANNOTATIONS[:IMAGES]")
    p.add_argument("--encoder", help="mlp | cnn | transformer | resnet")
    p.add_argument("--model-path", help="local Hugging Face model folder (transformer / resnet)")
    p.add_argument("--method", help="two-stage | end-to-end | bce | asl | kmcl")
    p.add_argument("--epochs", type=int, help="contrastive epochs (two-stage) or training epochs")
    p.add_argument("--classifier-epochs", type=int, help="stage-2 epochs (early stopping on validation mAP)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--temperature", type=float, help="τ of the contrastive loss")
    p.add_argument("--head", help="linear | attention (label-wise attention, text encoders)")
    p.add_argument("--max-examples", type=int, help="deterministic subsample per split (quick runs)")
    p.add_argument("--top-k-labels", type=int, help="keep the k most frequent training labels (MIMIC-50 style)")
    p.add_argument("--devices", help="number of devices (Lightning)")
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    p.add_argument("--num-nodes", type=int, help="machines of a multi-node run (torchrun; docs/scaling.md)")
    p.add_argument("--queue-size", type=int, help="rows of the label-aware memory queue (0: none)")
    p.add_argument("--momentum", type=float, help="momentum of a MoCo-style key encoder filling the queue")
    p.add_argument("--accelerator", help="cpu | gpu | auto")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoints (same configuration; "
                        "with --output DIR alone, DIR/config.yaml is the configuration)")
    p.add_argument("--checkpoint-every-n-steps", type=int,
                   help="checkpoint every N training steps as well as every epoch (0: epochs only)")
    p.add_argument("--max-nonfinite-steps", type=int,
                   help="stop after N consecutive steps with a NaN/inf loss (0: never)")
    if with_output:
        p.add_argument("--output", help="output folder")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    for key in ("dataset", "encoder", "method", "epochs", "classifier_epochs", "batch_size", "lr", "head",
                "num_nodes", "queue_size", "momentum",
                "strategy", "accelerator", "output", "seed", "loss", "checkpoint_every_n_steps",
                "max_nonfinite_steps"):
        if getattr(args, key, None) is not None:
            o[key] = getattr(args, key)
    if getattr(args, "devices", None) is not None:
        o["devices"] = int(args.devices) if str(args.devices).isdigit() else args.devices
    if getattr(args, "no_progress", False):
        o["progress"] = False
    if getattr(args, "resume", False):
        o["resume"] = True
    return o


def _merge_nested(cfg, args) -> None:
    if getattr(args, "model_path", None):
        cfg.encoder_options = {**cfg.encoder_options, "model_path": args.model_path}
    if getattr(args, "temperature", None) is not None:
        cfg.loss_options = {**cfg.loss_options, "temperature": args.temperature}
    if getattr(args, "max_examples", None) is not None:
        cfg.dataset_options = {**cfg.dataset_options, "max_examples_per_split": args.max_examples}
    if getattr(args, "top_k_labels", None) is not None:
        cfg.dataset_options = {**cfg.dataset_options, "top_k_labels": args.top_k_labels}


def _print_metrics(m: dict[str, Any], keys=("micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5")) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"test metrics (threshold {m.get('threshold', float('nan')):.3f})")
    for k in keys:
        t.add_column(k)
    t.add_row(*[f"{m[k]:.4f}" if isinstance(m.get(k), float) else str(m.get(k)) for k in keys])
    Console().print(t)


def _resume_config_path(args) -> str | None:
    """``train --resume --output DIR`` without ``--config``: DIR/config.yaml, if there is one."""
    if args.config is not None or not getattr(args, "resume", False):
        return args.config
    from pathlib import Path

    from mlsupcon.training.config import TrainConfig

    saved = Path(args.output or TrainConfig().output) / "config.yaml"
    return str(saved) if saved.is_file() else None


def cmd_train(args) -> int:
    from mlsupcon.training.config import load_config

    cfg = load_config(_resume_config_path(args), _overrides(args))
    _merge_nested(cfg, args)
    cfg.validate()
    # Imported after the config is checked: torch + Lightning take seconds to import, and a
    # mistake in the config should be reported at once.
    from mlsupcon.training.runner import run_training

    m = run_training(cfg)
    if not m:  # an extra process of a distributed launch: rank 0 reports
        return 0
    _print_metrics(m)
    print(f"wrote {cfg.output}/metrics.json")
    return 0


def cmd_evaluate(args) -> int:
    from mlsupcon.training.runner import evaluate_run

    m = evaluate_run(args.path, split=args.split, dataset=args.dataset)
    _print_metrics(m)
    if args.json:
        print(json.dumps(m, indent=2))
    return 0


def cmd_compare(args) -> int:
    from mlsupcon.training.config import load_config

    overrides = _overrides(args)
    overrides.pop("output", None)
    cfg = load_config(args.config, overrides)
    _merge_nested(cfg, args)
    losses = [s.strip() for s in args.losses.split(",") if s.strip()]
    if not losses:
        raise ValueError(f"losses: expected a comma-separated list of names, got {args.losses!r}")
    if args.seeds < 1:
        raise ValueError(f"seeds: expected an integer >= 1, got {args.seeds}")
    from mlsupcon.losses import available

    for loss in losses:
        if loss not in available() and loss not in ("bce",):
            raise ValueError(f"losses: unknown name {loss!r}; expected bce or one of {available()}")
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    from mlsupcon.training.compare import run_compare  # after the checks: torch + Lightning import slowly

    res = run_compare(cfg, losses, seeds, args.output, plots=not args.no_plots)
    print()
    print(res["table"])
    print(f"\nwrote {args.output}/results.csv and {res['report']}")
    return 0


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
    _add_run_flags(t)
    t.add_argument("--loss", help="contrastive loss (see `mlsupcon losses`)")
    t.add_argument("--seed", type=int)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained run folder (or its model/ folder)")
    e.add_argument("path")
    e.add_argument("--split", default="test")
    e.add_argument("--dataset", help="evaluate on another dataset spec with the same labels")
    e.add_argument("--json", action="store_true", help="also print every metric as JSON")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("compare", help="several losses × seeds → results.csv, report.md, figures")
    _add_run_flags(c, with_output=False)
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
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from mlsupcon import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # A user mistake: one message, no traceback. MLSUPCON_DEBUG=1 shows the traceback.
        if os.environ.get("MLSUPCON_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mlsupcon: error: {msg}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - only the SIGTERM stop is handled here
        from mlsupcon.training.errors import TrainingInterrupted

        if not isinstance(exc, TrainingInterrupted):
            raise
        print(f"mlsupcon: {exc}", file=sys.stderr)
        return 143  # 128 + SIGTERM, as if the signal had ended the process
    except KeyboardInterrupt:
        print("mlsupcon: interrupted (rerun with --resume to continue from the last checkpoint)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
