"""Commands that use a trained run: ``predict``, ``embed``, ``export``, and ``evaluate``'s data options.

``mlsupcon predict RUN --input FILE --output OUT.jsonl`` writes one JSON object per input, in
order: ``{"id": ..., "labels": [...], "scores": {label: score, ...}}``
(``--top-scores`` best labels). ``mlsupcon embed RUN --input FILE --output OUT.npz`` writes the
arrays ``embeddings`` (float32 ``[n, D]``) and ``ids``. Ids are the inputs' own, or, for inputs
without ids, their 0-based record numbers (``"0"``, ``"1"``, ...), in both commands. Input files:
:mod:`mlsupcon.data.inputs`. Outputs are written to a temporary file and renamed, so a killed
command never leaves half a file under the output name.

Nothing heavy is imported before a command runs (``mlsupcon --help`` stays fast).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (mlsupcon train --output) or its model/ folder")
    p.add_argument("--input", required=True, help="JSONL/CSV/TSV/TXT texts, .npy/.npz vectors, or a folder / list "
                                                  "file of images")
    p.add_argument("--output", required=True, help="output file")
    p.add_argument("--text-field", help="text field / column of JSONL and CSV inputs (default text)")
    p.add_argument("--id-field", help="id field / column, in every record (default: id where the input has it; "
                                      "without ids, inputs are numbered from 0)")
    p.add_argument("--batch-size", type=int, default=64, help="inputs per forward pass (default 64)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress report (without a terminal: one line "
                                                               "per quarter of the inputs instead of a bar)")


def add_commands(sub: argparse._SubParsersAction, evaluate: argparse.ArgumentParser | None = None) -> None:
    """Adds ``predict``, ``embed`` and ``export`` to the ``mlsupcon`` subcommands, and the data
    options (``--config``, ``--dataset-option``, ``--batch-size``) to the ``evaluate`` parser."""
    p = sub.add_parser("predict", help="labels and scores of new inputs with a trained run (JSONL out)")
    _add_common(p)
    p.add_argument("--threshold", type=float,
                   help="predict labels scoring >= this (default: the run's tuned threshold)")
    p.add_argument("--top-k", type=int, help="at most the k best labels of each input (alone: exactly k)")
    p.add_argument("--top-scores", type=int, default=5,
                   help="scores of the N best labels in each line (default 5; 0: none)")
    p.set_defaults(func=cmd_predict)

    e = sub.add_parser("embed", help="embeddings of new inputs with a trained run (.npz out)")
    _add_common(e)
    e.add_argument("--space", default="projection", choices=("projection", "encoder"),
                   help="projection: the contrastive space (default); encoder: the pooled encoder output")
    e.set_defaults(func=cmd_embed)

    x = sub.add_parser("export", help="export a run's model: a Hugging Face folder or a self-contained copy")
    x.add_argument("run", help="run folder or its model/ folder")
    x.add_argument("--format", default="hf", choices=("hf", "mlsupcon"),
                   help="hf: save_pretrained layout of a transformer encoder (AutoModel / AutoTokenizer); "
                        "mlsupcon: a model/ folder carrying every file it needs (a frozen encoder's transformer too)")
    x.add_argument("--output", required=True, help="output folder (new or empty)")
    x.add_argument("--force", action="store_true", help="replace an earlier export in the output folder (never a "
                                                        "run or other files)")
    x.set_defaults(func=cmd_export)

    if evaluate is not None:
        evaluate.add_argument("--config", help="YAML with dataset and dataset_options (a training config works)")
        evaluate.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                              help="a dataset option (e.g. text_field=body; KEY=null drops a run option); repeatable")
        evaluate.add_argument("--batch-size", type=int, default=512, help="inputs per forward pass (default 512)")
        evaluate.add_argument("--no-progress", action="store_true", help="no progress report (e.g. of a frozen "
                                                                          "encoder embedding the split)")
        evaluate.set_defaults(func=cmd_evaluate)


# ---------------------------------------------------------------------- commands


def _load(args, command: str, suffixes: tuple[str, ...]):
    """Checks the arguments and paths (fast, before the model loads: docs/failures.md), then loads it."""
    from mlsupcon.cli.checks import check_device, check_output_file

    if args.batch_size < 1:
        raise ValueError(f"batch-size: expected an integer >= 1, got {args.batch_size}")
    if not os.path.exists(os.path.expanduser(args.run)):
        raise ValueError(f"model: {args.run} not found (expected a run folder or its model/ folder)")
    if not os.path.exists(os.path.expanduser(args.input)):
        raise ValueError(f"input: {args.input} not found")
    device = check_device(args.device)
    check_output_file(args.output, args.input, suffixes, command)  # last: it may warn
    from mlsupcon.inference.model import load

    return load(args.run, device=device)


def _read(args, model):
    from mlsupcon.data.inputs import read_inputs

    return read_inputs(args.input, model.modality, text_field=args.text_field or None, id_field=args.id_field or None)


def cmd_predict(args) -> int:
    if args.top_scores < 0:
        raise ValueError(f"top-scores: expected an integer >= 0, got {args.top_scores}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:  # before loading (torch: seconds)
        raise ValueError(f"threshold: expected a number in [0, 1], got {args.threshold!r}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"top_k: expected an integer >= 1, got {args.top_k!r}")
    model = _load(args, "predict", (".jsonl", ".json", ".ndjson"))
    from mlsupcon.inference.model import labels_from_scores
    from mlsupcon.runs.io import atomic_write_text

    inputs, ids = _read(args, model)
    threshold = args.threshold
    if threshold is None and args.top_k is None:
        threshold = model.thresholds
    scores = model.predict_proba(inputs, batch_size=args.batch_size, progress=not args.no_progress)
    predicted = labels_from_scores(scores, model.labels, threshold, args.top_k)
    best = labels_from_scores(scores, list(range(model.num_labels)), top_k=args.top_scores) if args.top_scores else None
    column = {lab: j for j, lab in enumerate(model.labels)}
    lines = []
    for i, labels in enumerate(predicted):
        row: dict[str, Any] = {"id": ids[i]} if ids[i] is not None else {}
        row["labels"] = labels
        if best is not None:  # the N best labels and every predicted one, best first
            shown = sorted(set(best[i]) | {column[lab] for lab in labels}, key=lambda j: (-scores[i, j], j))
            row["scores"] = {model.labels[j]: float(scores[i, j]) for j in shown}
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(args.output, "".join(line + "\n" for line in lines))
    print(f"wrote {len(lines)} predictions ({model.num_labels} labels, "
          f"{_rule_text(threshold)}"
          f"{f', top {args.top_k}' if args.top_k else ''}) to {args.output}")
    return 0


def _rule_text(threshold: Any) -> str:
    import numpy as np

    if threshold is None:
        return "no threshold"
    t = np.asarray(threshold, dtype=float)
    if t.ndim == 0 or np.all(t == t.flat[0]):
        return "threshold %.3f" % float(t.flat[0])
    return "per-label thresholds %.3f-%.3f" % (t.min(), t.max())


def cmd_embed(args) -> int:
    model = _load(args, "embed", (".npz",))
    import numpy as np

    from mlsupcon.runs.io import atomic_write

    inputs, ids = _read(args, model)
    emb = model.embed(inputs, space=args.space, batch_size=args.batch_size, progress=not args.no_progress)
    names = np.array([str(i) if ident is None else ident for i, ident in enumerate(ids)], dtype=str)
    atomic_write(args.output, lambda fh: np.savez(fh, embeddings=emb.astype(np.float32), ids=names))
    print(f"wrote {emb.shape[0]} embeddings of size {emb.shape[1]} ({args.space} space) to {args.output}")
    return 0


def cmd_export(args) -> int:
    from mlsupcon.inference.export import export_hf, export_portable

    out = (export_hf if args.format == "hf" else export_portable)(args.run, args.output, overwrite=args.force)
    print(f"wrote {out} ({args.format})")
    return 0


def _dataset_settings(args) -> tuple[str | None, dict[str, Any]]:
    """``--config`` (dataset, dataset_options) then ``--dataset`` / ``--dataset-option`` over it."""
    import yaml

    dataset, options = None, {}
    if args.config:
        from pathlib import Path

        path = Path(args.config).expanduser()
        if not path.is_file():
            raise ValueError(f"config: {path} not found")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config: {path} is not valid YAML ({' '.join(str(e).split())[:200]})") from None
        if not isinstance(values, dict):
            raise ValueError(f"config: {path} must be a mapping with dataset / dataset_options keys")
        dataset = values.get("dataset")
        options = values.get("dataset_options") or {}
        if not isinstance(options, dict):
            raise ValueError(f"config: dataset_options in {path} must be a mapping, got {type(options).__name__}")
    for item in args.dataset_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"dataset-option: expected KEY=VALUE, got {item!r}")
        options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return args.dataset or dataset, options


def cmd_evaluate(args) -> int:
    from mlsupcon.inference.evaluate import evaluate_model

    dataset, options = _dataset_settings(args)
    if args.batch_size < 1:
        raise ValueError(f"batch-size: expected an integer >= 1, got {args.batch_size}")
    m = evaluate_model(args.path, split=args.split, dataset=dataset, dataset_options=options,
                       batch_size=args.batch_size)
    print(f"scored split '{m['split']}' of {m['dataset']}: {m['num_examples']} examples, {m['num_labels']} labels")
    _print_table(m)
    if args.json:
        print(json.dumps(m, indent=2))
    return 0


_TABLE_KEYS = ("micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5")


def _print_table(m: dict[str, Any], keys=_TABLE_KEYS) -> None:
    from rich.console import Console
    from rich.table import Table

    rule = "per-label thresholds" if m.get("per_label_thresholds") else "threshold"
    t = Table(title=f"{m['split']} metrics ({rule} {m['threshold']:.3f})".replace("thresholds ", "thresholds, global "))
    for k in keys:
        t.add_column(k)
    t.add_row(*[f"{m[k]:.4f}" if isinstance(m.get(k), float) else str(m.get(k)) for k in keys])
    Console().print(t)
