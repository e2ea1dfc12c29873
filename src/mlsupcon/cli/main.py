"""The ``mlsupcon`` command: train, evaluate, compare, report, losses, datasets; predict, embed, export.

A user mistake (bad file, unknown option, wrong labels) prints one clear message and exits
with status 2; it never shows a traceback from deep inside a library.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any

from mlsupcon.config.flags import FLAGS, flag_dest, flag_overrides

# Models and datasets are local: never reach for a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _add_run_flags(p: argparse.ArgumentParser, command: str) -> None:
    """``--config`` and the ``command``'s flags of the flag table (:data:`~mlsupcon.config.flags.FLAGS`)."""
    p.add_argument("--config", help="YAML file of options (CLI flags override it)")
    for f in FLAGS:
        if command not in f.commands:
            continue
        if f.kind == "switch":
            p.add_argument(f.flag, dest=flag_dest(f), action="store_const", const=f.value, default=None, help=f.help)
        else:
            p.add_argument(f.flag, dest=flag_dest(f), type=f.kind, help=f.help)


_overrides = flag_overrides  # config overrides of the flags given: ``_overrides(args, command)``


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

    from mlsupcon.config.schema import TrainConfig

    saved = Path(args.output or TrainConfig().output) / "config.yaml"
    return str(saved) if saved.is_file() else None


def cmd_train(args) -> int:
    import contextlib
    from pathlib import Path

    from mlsupcon.cli.checks import check_accelerator
    from mlsupcon.config.loading import load_config
    from mlsupcon.training.methods import METHODS  # the registry only (no torch); a registered method counts

    # Checked once, each check as soon as it can be made: the fields (defaults < preset < YAML <
    # flags) and the output folder before the data is read, the data before torch and Lightning
    # (seconds to import) are, the method's checks (loss and head registries: torch) before Lightning.
    cfg = load_config(_resume_config_path(args), _overrides(args, "train"), method_names=METHODS)
    from mlsupcon.progress import set_enabled
    from mlsupcon.runs.folder import check_run_output, claim_run_folder, is_primary_process

    set_enabled(cfg.progress)  # --no-progress: the encoders' embedding reports too
    out = Path(cfg.output)
    check_run_output(cfg, out)  # a refused folder or nothing to resume: before the data is read
    check_accelerator(cfg.accelerator)
    from mlsupcon.training.input_checks import load_training_data
    from mlsupcon.training.run_config import check_method_options

    primary = is_primary_process()  # the extra processes of a distributed launch follow rank 0 into its folder
    # The folder's lock first: a second run into the same folder is refused before its data is read.
    with claim_run_folder(out) if primary else contextlib.nullcontext():
        try:
            dataset = load_training_data(cfg)
            check_method_options(cfg)
            from mlsupcon.training.runner import run_training

            m = run_training(cfg, dataset, validated=True)
        except KeyboardInterrupt:  # outside a training stage (a stage reports its own)
            raise _interrupted(f"mlsupcon train --output {cfg.output} --resume", cfg.output) from None
        except Exception as exc:
            from mlsupcon.runs.io import disk_full_error, is_disk_full

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
    from mlsupcon.runs.folder import has_checkpoint, remove_artefacts

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
    from mlsupcon.training.run_config import load_config  # the fields, then the method's checks

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
    from mlsupcon.runs.report import TABLE_METRICS, read_results, results_table

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
        from mlsupcon.runs.io import disk_full_error, is_disk_full
        from mlsupcon.training.errors import TrainingInterrupted

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
