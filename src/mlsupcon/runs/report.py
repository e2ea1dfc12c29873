"""compare's table: ``results.csv`` rows (one per run) → mean ± sample std per row, the best mean in
bold only beyond the seed spread; ``mlsupcon report`` merges several compare folders.

A compare row is what ``--losses`` named: a contrastive loss (trained with a method that has
one) or a method without a contrastive loss (``bce``, ``asl``, ``kmcl`` …). ``results.csv``
names each: ``row`` (what the table shows), ``method`` (the method trained) and
``contrastive_loss`` (the contrastive loss trained, empty for a method row). Its ``loss`` column
repeats ``row``: the files written before ``row`` existed have only that column, and readers of
those versions (``mlsupcon report``) group by it.

Example:
    >>> rows = [{"row": "bce", "seed": 0, "map": 0.5}, {"row": "bce", "seed": 1, "map": 0.7}]
    >>> print(results_table(rows, row_names(rows), ["map"], note=False))
    | method | seeds | map |
    |---|---|---|
    | bce | 2 | 60.00 ± 14.14 |
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mlsupcon.runs.io import atomic_write_text

__all__ = ["TABLE_METRICS", "BEST_RULE", "RESULTS_FILE", "mean_std", "best_row", "results_table", "read_results",
           "row_name", "row_names", "results_csv", "write_results"]

TABLE_METRICS = ["micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5", "example_f1"]
#: A compare folder's table of runs (one line per row and seed).
RESULTS_FILE = "results.csv"
#: The first columns of ``results.csv``; the numbers of each run's ``metrics.json`` follow, sorted.
RESULTS_KEYS = ("row", "seed", "method", "contrastive_loss", "loss")


def row_name(result: Mapping[str, Any]) -> str:
    """The compare row of one ``results.csv`` line: ``row``, or ``loss`` in files written before ``row``."""
    return result["row"] if "row" in result else result["loss"]


def row_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows of a table, in the order they first appear."""
    return list(dict.fromkeys(row_name(r) for r in rows))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; NaN for none), None and NaN values ignored."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


#: How :func:`results_table` marks a best mean; printed under every table.
BEST_RULE = ("Bold: the best mean of a column, ahead of the next best by more than the larger of their two seed "
             "standard deviations; no bold where either of the two has fewer than two seeds, or where the lead is "
             "within that spread.")


def best_row(cells: dict[str, Sequence[float]]) -> str | None:
    """The row whose mean is the best of a column by more than the seed spread, else None.

    ``cells`` maps each row to its per-seed values of one metric (NaN values ignored). The best
    mean is marked only when it beats the next best mean by more than ``max(std_best,
    std_next)`` (sample standard deviations over seeds) and both rows have at least two seeds:
    one seed has no spread, so it cannot tell a lead from noise (:data:`BEST_RULE`).

    Example:
        >>> best_row({"bce": [0.60, 0.62, 0.61], "simdis": [0.50, 0.52, 0.51]})
        'bce'
        >>> best_row({"bce": [0.60, 0.70], "simdis": [0.58, 0.66]}) is None   # within the spread
        True
        >>> best_row({"bce": [0.9], "simdis": [0.1]}) is None                 # one seed: no marking
        True
    """
    stats = []
    for row, values in cells.items():
        vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if vals:
            mu, sd = mean_std(vals)
            stats.append((mu, sd, len(vals), row))
    if len(stats) < 2:
        return None
    stats.sort(key=lambda t: -t[0])
    (mu1, sd1, n1, row), (mu2, sd2, n2, _) = stats[0], stats[1]
    if n1 < 2 or n2 < 2:
        return None
    return row if mu1 - mu2 > max(sd1, sd2) else None


def results_table(rows: list[dict[str, Any]], row_order: Sequence[str], metrics=TABLE_METRICS,
                  note: bool = True) -> str:
    """Markdown table: one line per compare row, mean ± sample std over seeds (the value alone for
    one seed); a best mean in bold only where it leads by more than the seed spread
    (:func:`best_row`), with :data:`BEST_RULE` under the table (``note``)."""
    values = {(l, m): [r.get(m) for r in rows if row_name(r) == l] for l in row_order for m in metrics}
    stats = {key: mean_std(vals) for key, vals in values.items()}
    best = {m: best_row({l: values[(l, m)] for l in row_order}) for m in metrics}
    n_seeds = {l: sum(1 for r in rows if row_name(r) == l) for l in row_order}
    lines = ["| method | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for l in row_order:
        cells = []
        for m in metrics:
            mu, sd = stats[(l, m)]
            # One seed has no spread to report: show the value alone rather than "± 0.00".
            cell = f"{100 * mu:.2f}" if n_seeds[l] == 1 else f"{100 * mu:.2f} ± {100 * sd:.2f}"
            cells.append(f"**{cell}**" if best[m] == l else cell)
        lines.append(f"| {l} | {n_seeds[l]} | " + " | ".join(cells) + " |")
    if note:
        lines += ["", BEST_RULE]
    return "\n".join(lines)

def read_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Rows of one or more compare folders' results.csv (numbers parsed), in file order; ``row`` is
    filled from ``loss`` in files written before it existed."""
    rows = []
    for p in paths:
        p = Path(p)
        f = p / RESULTS_FILE if p.is_dir() else p
        if not f.is_file():
            raise ValueError(f"results: {f} not found (expected a compare output folder or its results.csv)")
        with open(f) as fh:
            for r in csv.DictReader(fh):
                row: dict[str, Any] = {}
                for k, v in r.items():
                    try:
                        row[k] = int(v) if k == "seed" else float(v)
                    except (TypeError, ValueError):
                        row[k] = v
                if "row" not in row and "loss" in row:
                    row = {"row": row["loss"], **row}
                rows.append(row)
    return rows


def results_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The text of ``results.csv``: :data:`RESULTS_KEYS`, then every other key of the rows, sorted."""
    keys = list(RESULTS_KEYS) + sorted({k for r in rows for k in r} - set(RESULTS_KEYS))
    lines = [",".join(keys)]
    for r in rows:
        lines.append(",".join(str(r.get(k, "")) for k in keys))
    return "\n".join(lines) + "\n"


def write_results(out: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Writes ``out/results.csv`` (:func:`results_csv`) atomically; returns its path."""
    path = Path(out) / RESULTS_FILE
    atomic_write_text(path, results_csv(rows))
    return path
