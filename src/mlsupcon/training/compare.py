"""``compare``: several losses × seeds on one dataset → results.csv, report.md and figures."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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
    """Every row is a contrastive loss or a method without one; ValueError naming the first other."""
    from mlsupcon.losses import CONTRASTIVE_LOSSES

    known = sorted(set(CONTRASTIVE_LOSSES) | set(method_rows()))
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
    secs = {l: np.mean([r["seconds"] for r in rows if r["loss"] == l]) for l in losses}
    parts = [
        f"# mlsupcon compare: {ds.name}",
        "",
        f"Encoder `{base.encoder}`, method `{base.method}` for contrastive losses (classifier-only rows: "
        f"{', '.join(l for l in losses if l in method_rows()) or 'none'}), seeds {list(seeds)}, "
        f"{base.epochs} contrastive epochs, up to {base.classifier_epochs} classifier epochs, batch {base.batch_size}.",
        f"Test split: {len(ds.splits['test'])} examples, {ds.num_labels} labels. Mean ± sample std over seeds, ×100. "
        "The decision threshold is tuned on the validation split (one global threshold maximising micro-F1).",
        "macro_f1 = mean of per-label F1 over labels present in the test split; map = mean over labels of "
        "average precision; example_f1 = mean over examples of per-example F1.",
        "",
        table,
        "",
        "Mean wall time per run (s): " + ", ".join(f"{l} {secs[l]:.0f}" for l in losses),
        "",
    ]
    for title, rel in figures.items():
        parts += [f"## {title}", "", f"![{title}]({rel})", ""]
    return "\n".join(parts)


def make_figures(out: Path, ds, losses, seeds, base) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figures = {}
    seed = seeds[0]
    colour_of = {loss: plt.cm.tab10(i % 10) for i, loss in enumerate(losses)}  # one colour per row everywhere
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
    _savefig(fig, out / "training_curves.png")
    plt.close(fig)
    figures["Training curves (each contrastive loss on its own axes: the losses differ in scale)"] = \
        "training_curves.png"

    # Embeddings of the test split (t-SNE), coloured by each point's rarest label among the 8
    # most frequent (the most frequent label is on most points and would colour everything).
    emb_runs = [(l, out / l / f"seed{seed}" / "embeddings_test.npz") for l in losses]
    emb_runs = [(l, p) for l, p in emb_runs if p.is_file()]
    if emb_runs:
        from sklearn.manifold import TSNE

        cols = min(3, len(emb_runs))
        rows_n = math.ceil(len(emb_runs) / cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 4 * rows_n), squeeze=False)
        freq = np.asarray(ds.splits["train"].labels.sum(0)).ravel()
        top = np.argsort(-freq)[:8]
        shown: set[int] = set()  # colours (ranks in top; -1: grey) that appear in some panel
        for ax, (loss, path) in zip(axes.flat, emb_runs):
            data = np.load(path)
            x, y = data["embeddings"][:1000], data["labels"][:1000]
            # perplexity must stay below the number of points (tiny test splits)
            xy = TSNE(n_components=2, init="pca", random_state=0,
                      perplexity=float(min(30, max(1, len(x) - 1)))).fit_transform(x)
            colour = np.full(len(y), -1)
            for rank in range(len(top)):  # later (rarer) labels overwrite earlier ones
                colour[y[:, top[rank]] > 0] = rank
            shown.update(int(c) for c in np.unique(colour))
            ax.scatter(xy[colour < 0, 0], xy[colour < 0, 1], s=3, c="lightgrey")
            ax.scatter(xy[colour >= 0, 0], xy[colour >= 0, 1], s=3,
                       c=[plt.cm.tab10(_TSNE_PALETTE[int(c)]) for c in colour[colour >= 0]])
            ax.set_title(loss)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in list(axes.flat)[len(emb_runs):]:
            ax.axis("off")
        # The legend lists only the colours that appear (a small test split may hold few of the 8 labels).
        handles = [plt.Line2D([], [], marker="o", ls="", color=plt.cm.tab10(_TSNE_PALETTE[i]),
                              label=ds.label_names[t][:28]) for i, t in enumerate(top) if i in shown]
        if -1 in shown:
            handles.append(plt.Line2D([], [], marker="o", ls="", color="lightgrey", label="none of them"))
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        _savefig(fig, out / "embeddings_tsne.png")
        plt.close(fig)
        figures["Test embeddings (t-SNE of the encoder output, seed %d; colour: rarest of the 8 most "
                "frequent labels present, grey: none of them)" % seed] = "embeddings_tsne.png"

    # Relations R1..R5 among training pairs: why each strategy finds the positives it does.
    import torch

    from mlsupcon.losses import relation_counts

    labels = ds.splits["train"].labels
    pick = np.random.default_rng(0).permutation(labels.shape[0])[:2048]
    counts = relation_counts(torch.from_numpy(np.asarray(labels[pick].todense(), dtype=np.float32)))
    names = ["R1 disjoint", "R2 identical", "R3 partial", "R4 subset", "R5 superset"]
    fracs = [counts[f"R{i}"] / counts["pairs"] for i in range(1, 6)]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(names, fracs, color=["#bbb", "#2a7", "#e93", "#39c", "#93c"])
    for i, f in enumerate(fracs):
        ax.text(i, f, f"{100 * f:.2f}%", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="share of ordered pairs", title=f"Label relations among {len(pick)} training examples")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    _savefig(fig, out / "relations.png")
    plt.close(fig)
    atomic_write_text(out / "relations.csv", "relation,count,share\n" + "".join(
        f"{n},{counts[f'R{i + 1}']},{fracs[i]:.6f}\n" for i, n in enumerate(names)))
    figures["Label relations R1..R5 (training set sample)"] = "relations.png"
    return figures


#: tab10 colours of the t-SNE labels, without its grey (7), which would read as "none of them".
_TSNE_PALETTE = (0, 1, 2, 3, 4, 5, 6, 8)

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
