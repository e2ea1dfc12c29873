"""``compare``: several losses × seeds on one dataset → results.csv, report.md and figures."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from mlsupcon.training.config import TrainConfig
from mlsupcon.training.io import atomic_write, atomic_write_text
from mlsupcon.training.methods import METHODS
from mlsupcon.training.output_folder import ARTEFACT, OTHER, check_output_folder, classify_entry, remove_artefacts

TABLE_METRICS = ["micro_f1", "macro_f1", "micro_auc", "macro_auc", "map", "p@1", "p@5", "example_f1"]
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


def mean_std(values: Sequence[float]) -> tuple[float, float]:
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


def results_table(rows: list[dict[str, Any]], losses: Sequence[str], metrics=TABLE_METRICS,
                  note: bool = True) -> str:
    """Markdown table: one row per loss, mean ± sample std over seeds (the value alone for one
    seed); a best mean in bold only where it leads by more than the seed spread (:func:`best_row`),
    with :data:`BEST_RULE` under the table (``note``)."""
    values = {(l, m): [r.get(m) for r in rows if r["loss"] == l] for l in losses for m in metrics}
    stats = {key: mean_std(vals) for key, vals in values.items()}
    best = {m: best_row({l: values[(l, m)] for l in losses}) for m in metrics}
    n_seeds = {l: sum(1 for r in rows if r["loss"] == l) for l in losses}
    lines = ["| method | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for l in losses:
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
    """Rows of one or more compare folders' results.csv (numbers parsed), in file order."""
    rows = []
    for p in paths:
        p = Path(p)
        f = p / "results.csv" if p.is_dir() else p
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
                rows.append(row)
    return rows


#: What ``compare`` writes at the top of its output folder, besides a folder per row holding
#: one run folder per seed (``<row>/seed<k>/``).
COMPARE_ARTEFACTS = ("results.csv", "report.md", "training_curves.png", "embeddings_tsne.png", "relations.png",
                     "relations.csv")


def classify_compare_entry(path: Path) -> str:
    """:func:`~mlsupcon.training.run_folder.classify_entry` of a compare folder: its files, and a
    row folder whose entries are all ``seed<k>`` run folders holding only run artefacts."""
    kind = classify_entry(path, COMPARE_ARTEFACTS)
    if kind != OTHER or not path.is_dir() or path.is_symlink():
        return kind

    def run_folder(d: Path) -> bool:
        return (bool(re.fullmatch(r"seed-?\d+", d.name)) and d.is_dir() and not d.is_symlink()
                and all(classify_entry(x) != OTHER for x in d.iterdir()))

    return ARTEFACT if all(run_folder(d) for d in path.iterdir()) else OTHER


def check_compare_output(base: TrainConfig, out: Path) -> None:
    """The run folder rules for a whole compare folder: a new compare needs a new or empty folder,
    ``--resume`` (continue its runs) or ``--overwrite`` (delete its runs, tables and figures)."""
    resumable = out.is_dir() and any(classify_compare_entry(p) == ARTEFACT for p in out.iterdir())
    missing = "the folder does not exist" if not out.exists() else "it holds no compare output"
    check_output_folder(out, base.resume, base.overwrite, resumable=resumable, nothing_to_resume=missing,
                        classify=classify_compare_entry, what="a compare", command="mlsupcon compare")


def _savefig(fig, path: Path) -> None:
    """A figure written atomically (a killed compare leaves the old figure or none)."""
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))


def run_compare(base: TrainConfig, losses: Sequence[str], seeds: Sequence[int], output: str | Path,
                plots: bool = True) -> dict[str, Any]:
    from mlsupcon.data import load_dataset
    from mlsupcon.training.runner import run_training

    check_rows(losses)
    out = Path(output)
    check_compare_output(base, out)  # before the data is read
    ds = load_dataset(base.dataset, **base.dataset_options)
    if base.auto:  # chosen once from the data (and printed) for every run of the table
        from mlsupcon.training.auto import apply_auto_settings

        base, ds = apply_auto_settings(base, ds)
    for loss in losses:  # every row's configuration, before any run (e.g. cl_jspcl needs end-to-end)
        try:
            run_config_for(base, loss, seeds[0] if seeds else 0, out / loss).validate()
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
                                      resume=base.resume and (Path(cfg.output) / "config.yaml").is_file())
            print(f"[compare] {loss} seed {seed} → {cfg.output}", flush=True)
            m = run_training(cfg, dataset=ds)
            rows.append({"loss": loss, "seed": seed, "method": cfg.method,
                         **{k: v for k, v in m.items() if isinstance(v, (int, float))},
                         "seconds": m["timings"]["total_s"]})
    keys = ["loss", "seed", "method"] + sorted({k for r in rows for k in r} - {"loss", "seed", "method"})
    lines = [",".join(keys)]
    for r in rows:
        lines.append(",".join(str(r.get(k, "")) for k in keys))
    atomic_write_text(out / "results.csv", "\n".join(lines) + "\n")
    table = results_table(rows, losses)
    figures = make_figures(out, ds, losses, seeds, base) if plots else {}
    report = render_report(base, ds, losses, seeds, table, figures, rows)
    atomic_write_text(out / "report.md", report)
    return {"rows": rows, "table": table, "report": str(out / "report.md")}


def render_report(base, ds, losses, seeds, table, figures, rows) -> str:
    """report.md: settings, the results table, then each figure of :func:`make_figures` with its caption."""
    secs = {l: np.mean([r["seconds"] for r in rows if r["loss"] == l]) for l in losses}
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


def make_figures(out: Path, ds, losses, seeds, base) -> dict[str, tuple[str, str]]:
    """Draw and save compare's figures; ``{heading: (file name in out, caption)}`` for report.md.

    Each figure is drawn by a function that returns it (:func:`training_curves_figure`,
    :func:`tsne_figure`, :func:`relations_figure`) from numbers computed by pure functions.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, tuple[str, str]] = {}
    seed = seeds[0]
    colour_of = {loss: plt.cm.tab10(i % 10) for i, loss in enumerate(losses)}  # one colour per row everywhere
    fig = training_curves_figure(out, losses, seed, colour_of)
    _savefig(fig, out / "training_curves.png")
    plt.close(fig)
    figures["Training curves"] = ("training_curves.png", (
        f"Seed {seed} of each row, from the runs' CSV logs (epochs counted from 1). Validation mAP and "
        "the encoder's validation kNN mAP share axes across rows; each contrastive loss has its own axes "
        "(the losses differ in scale)."))

    runs = []
    for loss in losses:
        path = out / loss / f"seed{seed}" / "embeddings_test.npz"
        if path.is_file():
            with np.load(path) as data:
                runs.append((loss, data["embeddings"], data["labels"]))
    if runs:
        fig, info = tsne_figure(ds, runs)
        _savefig(fig, out / "embeddings_tsne.png")
        plt.close(fig)
        figures["Test embeddings (t-SNE, one panel per row)"] = ("embeddings_tsne.png", tsne_caption(info, seed))

    fig, counts = relations_figure(ds.splits["train"].labels)
    _savefig(fig, out / "relations.png")
    plt.close(fig)
    shares = [counts[f"R{i}"] / counts["pairs"] for i in range(1, 6)]
    atomic_write_text(out / "relations.csv", "relation,count,share\n" + "".join(
        f"{n},{counts[f'R{i + 1}']},{shares[i]:.6f}\n" for i, n in enumerate(RELATION_NAMES)))
    figures["Label relations R1..R5 among training pairs"] = ("relations.png", (
        f"Share of ordered pairs (a, b), a ≠ b, of {_relations_scope(counts)} in each relation of b's label set "
        "T to a's S: R1 disjoint (no shared label, also when a set is empty), R2 identical, R3 partial overlap, "
        "R4 T ⊂ S, R5 S ⊂ T; " + ", ".join(f"{n} {100 * s:.2f} %" for n, s in zip(RELATION_NAMES, shares))
        + " (counts in relations.csv). Why each strategy finds the positives it does: ALL keeps only R2, "
        "ANY R2–R5."))
    return figures


def training_curves_figure(out: Path, losses: Sequence[str], seed: int, colour_of: dict):
    """The Figure of ``training_curves.png``: the panels of :func:`training_curve_panels`, one colour per row."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = training_curve_panels(out, losses, seed)
    cols = min(3, max(1, len(panels)))
    rows_n = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.4 * cols, 3.4 * rows_n), squeeze=False)
    for ax, (title, ylabel, lines) in zip(axes.flat, panels):
        for label, loss, points, style in lines:
            xs, ys = zip(*points)
            ax.plot(xs, ys, style, marker="o", markersize=3, label=label, color=colour_of[loss])
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if not panels:
        axes.flat[0].text(0.5, 0.5, "no training logs", ha="center", va="center", transform=axes.flat[0].transAxes)
    fig.suptitle(f"Training curves (seed {seed}; epochs counted from 1)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ t-SNE panels

#: How many labels the t-SNE colours: the most frequent of the test split.
TSNE_LABELS = 8
#: Test examples per t-SNE panel (the first of those each run stored in embeddings_test.npz).
TSNE_POINTS = 1000
#: Neighbours of :func:`knn_label_purity` printed under each panel.
PURITY_K = 10


def label_counts(labels) -> np.ndarray:
    """Examples carrying each label, int64 ``[C]`` (uint8 labels summed without wrapping or overflow)."""
    if sp.issparse(labels):
        return np.asarray((sp.csr_matrix(labels) != 0).sum(axis=0), dtype=np.int64).ravel()
    return (np.asarray(labels) != 0).sum(axis=0, dtype=np.int64)


def top_labels(labels, k: int = TSNE_LABELS) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most frequent labels that occur at all (ties: lower index) and their counts, both int64.

    Example:
        >>> idx, n = top_labels(np.array([[1, 0, 1], [0, 0, 1]], dtype=np.uint8), 8)
        >>> idx.tolist(), n.tolist()
        ([2, 0], [2, 1])
    """
    counts = label_counts(labels)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0][:k]
    return order, counts[order]


def colour_ranks(labels: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Per example, the rank in ``top`` of the rarest of those labels it carries; -1 for none.

    The rarest, because the most frequent label is on many examples and would colour nearly all.

    Example:
        >>> colour_ranks(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]]), np.array([0, 1])).tolist()
        [1, 0, -1]
    """
    has = np.asarray(labels)[:, np.asarray(top, dtype=np.int64)] != 0
    if has.shape[1] == 0:
        return np.full(len(has), -1)
    last = has.shape[1] - 1 - np.argmax(has[:, ::-1], axis=1)
    return np.where(has.any(axis=1), last, -1)


def _shares_a_label(labels: np.ndarray) -> np.ndarray:
    y = (np.asarray(labels) != 0).astype(np.float32)
    return (y @ y.T) > 0


def knn_label_purity(embeddings: np.ndarray, labels: np.ndarray, k: int = PURITY_K) -> float:
    """Mean, over the examples with at least one label, of the fraction of their ``k`` nearest
    other examples (cosine similarity of the full embeddings; ties: lower index) that share at
    least one label with them. ``k`` is capped at n − 1; NaN when no example has a label.

    Example:
        >>> emb = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0]])
        >>> knn_label_purity(emb, np.array([[1, 0], [1, 1], [0, 1]]), k=1)  # 0↔1 share label 0, 2→1 label 1
        1.0
    """
    x = np.asarray(embeddings, dtype=np.float64)
    shares = _shares_a_label(labels)
    anchors = np.flatnonzero(np.asarray(labels).astype(bool).any(axis=1))
    n = len(x)
    k = min(int(k), n - 1)
    if anchors.size == 0 or k < 1:
        return float("nan")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x[anchors] @ x.T
    sims[np.arange(anchors.size), anchors] = -np.inf  # not its own neighbour
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.take_along_axis(shares[anchors], nearest, axis=1).mean(axis=1)))


def label_overlap_chance(labels: np.ndarray) -> float:
    """:func:`knn_label_purity` of random neighbours: mean, over the examples with a label, of the
    fraction of the other examples that share a label with them (NaN when none has a label)."""
    shares = _shares_a_label(labels)
    anchors = np.flatnonzero(shares.diagonal())
    n = len(shares)
    if anchors.size == 0 or n < 2:
        return float("nan")
    return float(np.mean((shares[anchors].sum(axis=1) - 1) / (n - 1)))


def tsne_figure(ds, runs: Sequence[tuple[str, np.ndarray, np.ndarray]], points: int = TSNE_POINTS,
                k: int = PURITY_K):
    """One t-SNE panel per row of ``runs`` (``(row, embeddings, labels)`` of its stored test
    examples), on the first ``points`` examples; under each panel the kNN label purity of the
    full embeddings (:func:`knn_label_purity`) and its random-neighbour level.

    Colour: the rarest (:func:`colour_ranks`) of the :data:`TSNE_LABELS` most frequent labels of
    the test split; the legend lists them all with their test counts, and grey ("none of them").

    Returns:
        ``(Figure, info)``: info has ``top`` ([(name, count)]), ``test_examples``, ``shown``,
        ``coloured`` (shown examples carrying a top label, of the first row), ``purity``
        ({row: value}), ``chance``, ``same_examples`` (every row shows the same labels) and ``k``.
    """
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    top, counts = top_labels(ds.splits["test"].labels)
    palette = [plt.cm.tab10(_TSNE_PALETTE[i]) for i in range(len(top))]
    cols = min(3, len(runs))
    rows_n = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 4.3 * rows_n), squeeze=False)
    purity, chance, first = {}, {}, None
    for ax, (row, emb, lab) in zip(axes.flat, runs):
        x, y = np.asarray(emb)[:points], np.asarray(lab)[:points]
        first = y if first is None else first
        purity[row], chance[row] = knn_label_purity(x, y, k), label_overlap_chance(y)
        rank = colour_ranks(y, top)
        if len(x) > 1:  # perplexity must stay below the number of points (tiny test splits)
            xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=_perplexity(len(x))).fit_transform(x)
        else:
            xy = np.zeros((len(x), 2))
        ax.scatter(xy[rank < 0, 0], xy[rank < 0, 1], s=3, c="lightgrey")
        ax.scatter(xy[rank >= 0, 0], xy[rank >= 0, 1], s=3, c=[palette[r] for r in rank[rank >= 0]])
        ax.set_title(row)
        ax.set_xlabel(f"{k}-NN label purity {purity[row]:.3f} (random neighbours {chance[row]:.3f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    names = [ds.label_names[int(t)] for t in top]
    handles = [plt.Line2D([], [], marker="o", ls="", color=palette[i], label=f"{names[i][:28]} ({counts[i]})")
               for i in range(len(top))]
    if any((colour_ranks(np.asarray(lab)[:points], top) < 0).any() for _, _, lab in runs):
        handles.append(plt.Line2D([], [], marker="o", ls="", color="lightgrey", label="none of them"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.05 + 0.03 * math.ceil(len(handles) / 3), 1, 1))
    info = {"top": [(n, int(c)) for n, c in zip(names, counts)], "test_examples": len(ds.splits["test"]),
            "shown": len(first), "coloured": int((colour_ranks(first, top) >= 0).sum()), "purity": purity,
            "chance": chance, "k": k,
            "same_examples": all(len(r[2][:points]) == len(first) and np.array_equal(r[2][:points], first)
                                 for r in runs)}
    return fig, info


def tsne_caption(info: dict, seed: int) -> str:
    """report.md's caption of :func:`tsne_figure`: what is shown, what is coloured, the purities."""
    k, shown = info["k"], info["shown"]
    warning = "" if info["same_examples"] else "Warning: the runs stored different test examples. "
    chance = " / ".join(sorted({f"{c:.3f}" for c in info["chance"].values()}))
    top = ", ".join(f"{n} ({c})" for n, c in info["top"])
    return (
        f"{warning}Encoder output of the same {shown:,} test examples in every panel (seed {seed} of each row), "
        f"projected by t-SNE (PCA start, perplexity {_perplexity(shown):g}, random_state 0) separately in each "
        f"panel. Colour: of the {len(info['top'])} most frequent labels of the test split "
        f"({info['test_examples']:,} examples; label (examples carrying it)) — {top} — the least frequent one an "
        f"example carries; grey: none of them ({shown - info['coloured']:,} of the {shown:,} shown). Under each "
        f"panel, the {k}-NN label purity: the mean, over the shown examples with at least one label, of the "
        f"fraction of their {k} nearest other shown examples (cosine similarity of the full encoder output, not "
        f"of the 2-D projection) that share at least one label with them; random neighbours would score {chance}. "
        "Purity: " + ", ".join(f"{row} {p:.3f}" for row, p in info["purity"].items()) + "."
    )


def _perplexity(n: int) -> float:
    """t-SNE perplexity: 30, below the number of points of a tiny test split."""
    return float(min(30, max(1, n - 1)))


#: tab10 colours of the t-SNE labels, without its grey (7), which would read as "none of them".
_TSNE_PALETTE = (0, 1, 2, 3, 4, 5, 6, 8)


# --------------------------------------------------------------------------------- label relations

RELATION_NAMES = ("R1 disjoint", "R2 identical", "R3 partial", "R4 subset", "R5 superset")
#: Up to this many distinct training label sets the relations are counted over every training pair.
RELATIONS_EXACT_MAX_SETS = 10_000
#: Training examples sampled (seed 0) for the relations when there are more distinct label sets.
RELATIONS_SAMPLE = 2048


def relation_shares(labels, max_sets: int | None = None, sample: int = RELATIONS_SAMPLE, seed: int = 0
                    ) -> dict[str, Any]:
    """:func:`~mlsupcon.losses.relation_counts` of every ordered pair of rows of ``labels``.

    Exact for any number of examples while they hold at most ``max_sets`` distinct label sets
    (default :data:`RELATIONS_EXACT_MAX_SETS`): pairs are counted between distinct sets, weighted
    by their multiplicities. Otherwise over a random sample of ``sample`` examples.

    Returns:
        ``{"R1" … "R5", "pairs"}`` (ints) and ``examples`` (rows of ``labels``), ``sampled``
        (examples sampled, or None when exact).

    Example:
        >>> r = relation_shares(np.array([[1, 1], [1, 0], [1, 0], [0, 0]], dtype=np.uint8))
        >>> [r[k] for k in ("R1", "R2", "R4", "R5", "pairs")]
        [6, 2, 2, 2, 12]
    """
    y = sp.csr_matrix(labels, dtype=np.int64)
    y.eliminate_zeros()
    y.data[:] = 1
    y.sort_indices()
    n = y.shape[0]
    max_sets = RELATIONS_EXACT_MAX_SETS if max_sets is None else max_sets
    multiplicity: dict[bytes, int] = {}
    first_row: dict[bytes, int] = {}
    for i in range(n):
        key = y.indices[y.indptr[i]:y.indptr[i + 1]].tobytes()
        multiplicity[key] = multiplicity.get(key, 0) + 1
        first_row.setdefault(key, i)
        if len(multiplicity) > max_sets:
            break
    if len(multiplicity) > max_sets:
        import torch

        from mlsupcon.losses import relation_counts

        pick = np.random.default_rng(seed).permutation(n)[:sample]
        counts = relation_counts(torch.from_numpy(y[pick].toarray().astype(np.float32)))
        return {**counts, "examples": n, "sampled": len(pick)}
    sets = y[[first_row[key] for key in multiplicity]].astype(np.float64)
    m = np.fromiter(multiplicity.values(), dtype=np.int64, count=len(multiplicity))
    size = np.asarray(sets.sum(axis=1), dtype=np.int64).ravel()
    counts = dict.fromkeys(("R1", "R2", "R3", "R4", "R5"), 0)
    block = max(1, 2**21 // max(len(m), 1))
    for s0 in range(0, len(m), block):
        s1 = min(len(m), s0 + block)
        inter = np.rint((sets[s0:s1] @ sets.T).toarray()).astype(np.int64)
        weight = m[s0:s1, None] * m[None, :]
        own = np.arange(s1 - s0), np.arange(s0, s1)
        weight[own] = m[s0:s1] * (m[s0:s1] - 1)  # pairs of distinct examples with the same set
        na, nb = size[s0:s1, None], size[None, :]
        shared = inter > 0
        counts["R1"] += int(weight[~shared].sum())
        counts["R2"] += int(weight[shared & (inter == na) & (inter == nb)].sum())
        counts["R3"] += int(weight[shared & (inter < na) & (inter < nb)].sum())
        counts["R4"] += int(weight[shared & (inter == nb) & (nb < na)].sum())
        counts["R5"] += int(weight[shared & (inter == na) & (na < nb)].sum())
    return {**counts, "pairs": n * (n - 1), "examples": n, "sampled": None}


def _relations_scope(counts: dict[str, Any]) -> str:
    if counts["sampled"] is None:
        return f"all {counts['examples']:,} training examples"
    return f"a random sample of {counts['sampled']:,} of the {counts['examples']:,} training examples"


def relations_figure(labels):
    """Bar chart of :func:`relation_shares` of the training labels; ``(Figure, counts)``."""
    import matplotlib.pyplot as plt

    counts = relation_shares(labels)
    shares = [counts[f"R{i}"] / counts["pairs"] if counts["pairs"] else float("nan") for i in range(1, 6)]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(RELATION_NAMES, shares, color=["#bbb", "#2a7", "#e93", "#39c", "#93c"])
    for i, f in enumerate(shares):
        ax.text(i, f, f"{100 * f:.2f}%", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="share of ordered pairs", title=f"Label relations among {_relations_scope(counts)}\n"
                                                  f"({counts['pairs']:,} ordered pairs)")
    ax.title.set_fontsize(9)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig, counts


#: (stage log, column, panel key) of the curves of :func:`training_curve_panels`.
_CURVES = (
    ("classifier", "val/map", "map"), ("end_to_end", "val/map", "map"),
    ("contrastive", "val/knn_map", "knn"),
    ("classifier", "train/classifier_loss", "cls"), ("end_to_end", "train/classifier_loss", "cls"),
    ("contrastive", "train/contrastive_loss", "con"), ("contrastive", "val/contrastive_loss", "con"),
    ("end_to_end", "train/contrastive_loss", "con"), ("end_to_end", "train/kmcl_loss", "kmcl"),
)


def training_curve_panels(out: Path, losses: Sequence[str], seed: int):
    """The panels of ``training_curves.png``, from each run's Lightning CSV logs (epochs from 1).

    Quantities on a common scale share a panel (validation mAP; validation kNN mAP of the
    encoder; the classifier's loss, one panel for BCE, one for ASL); a contrastive or KMCL loss
    gets a panel per row and stage (train and validation lines), since each loss has its own
    scale (the SupCon-style losses grow with the batch size and the number of positives).

    Returns:
        ``[(title, ylabel, [(label, row, [(epoch, value), ...], line style), ...]), ...]``, only
        panels with data.
    """
    shared = {"map": ("validation mAP of the classifier", "mAP"),
              "knn": ("validation kNN mAP of the encoder (stage 1)", "kNN mAP")}
    panels: dict[str, tuple[str, str, list]] = {}
    for loss in losses:
        logs = out / loss / f"seed{seed}" / "logs"
        # BCE is a mean over labels, ASL a sum: a panel per classifier loss.
        classifier_loss = (METHODS[loss].classifier_loss if loss in METHODS else None) or "bce"
        for stage, key, kind in _CURVES:
            points = _read_curve(logs / stage / "metrics.csv", key)
            if not points:
                continue
            split = "validation" if key.startswith("val/") else "train"
            if kind in shared:
                (title, ylabel), label, panel_key, style = shared[kind], loss, kind, "-"
            elif kind == "cls":
                title, ylabel = f"classifier loss (train, {classifier_loss.upper()})", "loss"
                label, panel_key, style = loss, f"cls:{classifier_loss}", "-"
            else:
                name = "KMCL loss" if kind == "kmcl" else "contrastive loss"
                where = "stage 1" if stage == "contrastive" else stage.replace("_", "-")
                title, ylabel = f"{loss}: {name} ({where})", name
                label, panel_key, style = split, f"{kind}:{loss}:{stage}", "-" if split == "train" else "--"
            panels.setdefault(panel_key, (title, ylabel, []))[2].append((label, loss, points, style))
    first = [k for k in panels if k in shared] + [k for k in panels if k.startswith("cls:")]
    return [panels[k] for k in first] + [v for k, v in panels.items() if k not in first]


def _read_curve(path: Path, key: str) -> list[tuple[int, float]]:
    """(epoch counted from 1, value) of one column of a Lightning CSV log."""
    if not path.is_file():
        return []
    with open(path) as fh:
        reader = csv.DictReader(fh)
        return [(int(r["epoch"]) + 1, float(r[key])) for r in reader if r.get(key) not in (None, "")]
