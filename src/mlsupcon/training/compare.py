"""``compare``: several losses × seeds on one dataset → results.csv, report.md and figures.

This module trains (:func:`run_compare`) and knows the methods (which rows are methods, which
classifier loss each trains); what reads a compare folder lives in :mod:`mlsupcon.runs`: the
folder rules (:mod:`~mlsupcon.runs.folder`), the table (:mod:`~mlsupcon.runs.report`) and the
figures (:mod:`~mlsupcon.runs.figures`), whose names are also importable from here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlsupcon.config import TrainConfig
from mlsupcon.runs import figures as _figures
from mlsupcon.runs.figures import (  # noqa: F401 - re-exported
    PURITY_K,
    RELATION_NAMES,
    RELATIONS_EXACT_MAX_SETS,
    RELATIONS_SAMPLE,
    TSNE_LABELS,
    TSNE_POINTS,
    colour_ranks,
    knn_label_purity,
    label_counts,
    label_overlap_chance,
    relation_shares,
    relations_figure,
    top_labels,
    tsne_caption,
    tsne_figure,
)
from mlsupcon.runs.folder import (  # noqa: F401 - re-exported
    COMPARE_ARTEFACTS,
    CONFIG_FILE,
    check_compare_output,
    classify_compare_entry,
    remove_artefacts,
)
from mlsupcon.runs.io import atomic_write_text
from mlsupcon.runs.report import (  # noqa: F401 - re-exported
    BEST_RULE,
    TABLE_METRICS,
    best_row,
    mean_std,
    read_results,
    results_table,
    row_name,
    write_results,
)
from mlsupcon.training.methods import METHODS

#: The method of contrastive-loss rows when the base config's method has no contrastive loss.
DEFAULT_CONTRASTIVE_METHOD = "two-stage"


def method_rows() -> list[str]:
    """Row names that are methods of their own (no contrastive loss): bce, asl, kmcl …"""
    return [name for name, m in METHODS.items() if not m.uses_contrastive_loss]


def check_rows(rows: Sequence[str]) -> None:
    """Every row is a contrastive loss (prototype and logit losses included) or a method without
    one; ValueError naming the first other."""
    from mlsupcon.training.methods.base import contrastive_term_losses

    known = sorted(set(contrastive_term_losses()) | set(method_rows()))
    for row in rows:
        if row not in known:
            raise ValueError(f"losses: unknown name {row!r}; expected one of {known}")


def run_config_for(base: TrainConfig, loss: str, seed: int, output: Path) -> TrainConfig:
    """The config of one cell: method names (bce, asl, kmcl …) become the method, contrastive
    losses use ``base.method`` (or two-stage, if that method has no contrastive loss)."""
    if loss in method_rows():
        return dataclasses.replace(base, method=loss, seed=seed, output=str(output),
                                   **METHODS[loss].compare_overrides(base))
    method = base.method if METHODS[base.method].uses_contrastive_loss else DEFAULT_CONTRASTIVE_METHOD
    return dataclasses.replace(base, method=method, loss=loss, seed=seed, output=str(output))


def classifier_losses(rows: Sequence[str]) -> dict[str, str]:
    """The classifier loss of each method row that trains another than BCE (``asl``, ``kmcl`` …),
    for the training-curve panels (a row missing here trains BCE)."""
    return {row: METHODS[row].classifier_loss for row in rows if row in METHODS and METHODS[row].classifier_loss}


def make_figures(out: Path, ds, losses, seeds, base=None) -> dict[str, tuple[str, str]]:
    """:func:`mlsupcon.runs.figures.make_figures` with each row's classifier loss (``base`` is not used)."""
    return _figures.make_figures(out, ds, losses, seeds, classifier_losses(losses))


def training_curve_panels(out: Path, losses: Sequence[str], seed: int):
    """:func:`mlsupcon.runs.figures.training_curve_panels` with each row's classifier loss."""
    return _figures.training_curve_panels(out, losses, seed, classifier_losses(losses))


def training_curves_figure(out: Path, losses: Sequence[str], seed: int, colour_of: dict):
    """:func:`mlsupcon.runs.figures.training_curves_figure` with each row's classifier loss."""
    return _figures.training_curves_figure(out, losses, seed, colour_of, classifier_losses(losses))


def result_names(row: str, seed: int, cfg: TrainConfig) -> dict[str, Any]:
    """What a ``results.csv`` line says of its run (:mod:`mlsupcon.runs.report`): the compare ``row``,
    the ``seed``, the ``method`` trained and its ``contrastive_loss`` (empty for a method row:
    it trains none); ``loss`` repeats ``row`` for the readers of files written before ``row``."""
    contrastive = cfg.loss if METHODS[cfg.method].uses_contrastive_loss else ""
    return {"row": row, "seed": seed, "method": cfg.method, "contrastive_loss": contrastive, "loss": row}


def run_compare(base: TrainConfig, losses: Sequence[str], seeds: Sequence[int], output: str | Path,
                plots: bool = True) -> dict[str, Any]:
    from mlsupcon.data import load_dataset
    from mlsupcon.training.run_config import validate_run_config
    from mlsupcon.training.runner import run_training

    check_rows(losses)
    out = Path(output)
    check_compare_output(base, out)  # before the data is read
    ds = load_dataset(base.dataset, **base.dataset_options)
    if base.auto:  # chosen once from the data (and printed) for every run of the table
        from mlsupcon.config.auto import apply_auto_settings
        from mlsupcon.training.methods import get_method
        from mlsupcon.training.run_config import check_method_options

        # Contrastive rows add their term to one network: not the label-names head on fixed embeddings.
        contrastive_rows = any(loss not in method_rows() for loss in losses)
        base, ds = apply_auto_settings(base, ds, methods=get_method, check=check_method_options,
                                       label_names_head=not contrastive_rows)
    for loss in losses:  # every row's configuration, before any run (e.g. cl_jspcl needs end-to-end)
        try:
            validate_run_config(run_config_for(base, loss, seeds[0] if seeds else 0, out / loss))
        except ValueError as exc:
            raise ValueError(f"losses: row {loss!r}: {exc}") from None
    if base.overwrite:  # the data is valid: now the earlier compare goes, before anything new is written
        check_compare_output(base, out)
        remove_artefacts(out, classify_compare_entry)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for loss in losses:
        for seed in seeds:
            cfg = run_config_for(base, loss, seed, out / loss / f"seed{seed}")
            # --resume continues the runs that had started; the others start (the folder is clean).
            cfg = dataclasses.replace(cfg, overwrite=False,
                                      resume=base.resume and (Path(cfg.output) / CONFIG_FILE).is_file())
            print(f"[compare] {loss} seed {seed} → {cfg.output}", flush=True)
            m = run_training(cfg, dataset=ds)
            rows.append({**result_names(loss, seed, cfg),
                         **{k: v for k, v in m.items() if isinstance(v, (int, float))},
                         "seconds": m["timings"]["total_s"]})
    write_results(out, rows)
    table = results_table(rows, losses)
    figures = make_figures(out, ds, losses, seeds, base) if plots else {}
    report = render_report(base, ds, losses, seeds, table, figures, rows)
    atomic_write_text(out / "report.md", report)
    return {"rows": rows, "table": table, "report": str(out / "report.md")}


def render_report(base, ds, losses, seeds, table, figures, rows) -> str:
    """report.md: settings, the results table, then each figure of :func:`make_figures` with its caption."""
    secs = {l: np.mean([r["seconds"] for r in rows if row_name(r) == l]) for l in losses}
    parts = [
        f"# mlsupcon compare: {ds.name}",
        "",
        f"Encoder `{base.encoder}`, method `{base.method}` for contrastive losses (classifier-only rows: "
        f"{', '.join(l for l in losses if l in method_rows()) or 'none'}), seeds {list(seeds)}, "
        f"{base.epochs} contrastive epochs, up to {base.classifier_epochs} classifier epochs, batch {base.batch_size}.",
        f"Test split: {len(ds.splits['test'])} examples, {ds.num_labels} labels. Mean ± sample std over seeds, ×100. "
        "The decision threshold is tuned on the validation split (one global threshold maximising micro-F1)"
        + _fixed_decisions(base, losses) + ".",
        "macro_f1 = mean of per-label F1 over labels present in the test split; map = mean over labels of "
        "average precision; example_f1 = mean over examples of per-example F1.",
        "",
        table,
        "",
        "Mean wall time per run (s): " + ", ".join(f"{l} {secs[l]:.0f}" for l in losses),
        "",
    ]
    for title, (rel, caption) in figures.items():
        parts += [f"## {title}", "", f"![{title}]({rel})", "", caption, ""]
    return "\n".join(parts)


def _fixed_decisions(base, losses) -> str:
    """``; zlpr: 0.5 (zlpr decision: logit 0)`` for the rows whose classification loss fixes the threshold."""
    fixed = []
    for loss in losses:
        cfg = run_config_for(base, loss, 0, Path("."))
        decision = METHODS[cfg.method].decision_threshold(cfg)
        if decision is not None:
            fixed.append(f"{loss}: {decision[0]} ({decision[1]})")
    return "; not for " + ", ".join(fixed) if fixed else ""

