"""``compare``: several losses × seeds on one dataset → results.csv, report.md and figures."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlsupcon.training.config import TrainConfig
from mlsupcon.training.io import atomic_write_text
from mlsupcon.training.methods import METHODS

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


def results_table(rows: list[dict[str, Any]], losses: Sequence[str], metrics=TABLE_METRICS) -> str:
    """Markdown table: one row per loss, mean ± sample std over seeds (the value alone for one
    seed), best mean in bold."""
    stats = {(l, m): mean_std([r[m] for r in rows if r["loss"] == l]) for l in losses for m in metrics}
    best = {m: max((stats[(l, m)][0] for l in losses if not math.isnan(stats[(l, m)][0])), default=None)
            for m in metrics}
    n_seeds = {l: sum(1 for r in rows if r["loss"] == l) for l in losses}
    lines = ["| method | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for l in losses:
        cells = []
        for m in metrics:
            mu, sd = stats[(l, m)]
            # One seed has no spread to report: show the value alone rather than "± 0.00".
            cell = f"{100 * mu:.2f}" if n_seeds[l] == 1 else f"{100 * mu:.2f} ± {100 * sd:.2f}"
            cells.append(f"**{cell}**" if best[m] is not None and mu == best[m] else cell)
        lines.append(f"| {l} | {n_seeds[l]} | " + " | ".join(cells) + " |")
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


def run_compare(base: TrainConfig, losses: Sequence[str], seeds: Sequence[int], output: str | Path,
                plots: bool = True) -> dict[str, Any]:
    from mlsupcon.data import load_dataset
    from mlsupcon.training.runner import run_training

    check_rows(losses)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(base.dataset, **base.dataset_options)
    if base.auto:  # chosen once from the data (and printed) for every run of the table
        from mlsupcon.training.auto import apply_auto_settings

        base, ds = apply_auto_settings(base, ds)
    rows = []
    for loss in losses:
        for seed in seeds:
            cfg = run_config_for(base, loss, seed, out / loss / f"seed{seed}")
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

    figures = {}
    seed = seeds[0]
    # Training curves (from each run's Lightning CSV logs).
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colour_of = {loss: plt.cm.tab10(i % 10) for i, loss in enumerate(losses)}  # same colour in both panels
    for loss in losses:
        run = out / loss / f"seed{seed}" / "logs"
        for stage, key, ax in (("contrastive", "train/contrastive_loss", axes[0]),
                               ("classifier", "val/map", axes[1]), ("end_to_end", "val/map", axes[1])):
            series = _read_curve(run / stage / "metrics.csv", key)
            if series:
                ax.plot(*zip(*series), marker=".", label=loss, color=colour_of[loss])
    axes[0].set(title="stage 1: contrastive loss (train)", xlabel="epoch")
    axes[1].set(title="validation mAP of the classifier", xlabel="epoch")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no run of this kind", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=110)
    plt.close(fig)
    figures["Training curves"] = "training_curves.png"

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
        for ax, (loss, path) in zip(axes.flat, emb_runs):
            data = np.load(path)
            x, y = data["embeddings"][:1000], data["labels"][:1000]
            # perplexity must stay below the number of points (tiny test splits)
            xy = TSNE(n_components=2, init="pca", random_state=0,
                      perplexity=float(min(30, max(1, len(x) - 1)))).fit_transform(x)
            colour = np.full(len(y), -1)
            for rank in range(len(top)):  # later (rarer) labels overwrite earlier ones
                colour[y[:, top[rank]] > 0] = rank
            ax.scatter(xy[colour < 0, 0], xy[colour < 0, 1], s=3, c="lightgrey")
            ax.scatter(xy[colour >= 0, 0], xy[colour >= 0, 1], s=3, c=colour[colour >= 0], cmap="tab10",
                       vmin=0, vmax=9)
            ax.set_title(loss)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in list(axes.flat)[len(emb_runs):]:
            ax.axis("off")
        handles = [plt.Line2D([], [], marker="o", ls="", color=plt.cm.tab10(i / 9), label=ds.label_names[t][:28])
                   for i, t in enumerate(top)]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        fig.savefig(out / "embeddings_tsne.png", dpi=110)
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
    fig.savefig(out / "relations.png", dpi=110)
    plt.close(fig)
    atomic_write_text(out / "relations.csv", "relation,count,share\n" + "".join(
        f"{n},{counts[f'R{i + 1}']},{fracs[i]:.6f}\n" for i, n in enumerate(names)))
    figures["Label relations R1..R5 (training set sample)"] = "relations.png"
    return figures


def _read_curve(path: Path, key: str) -> list[tuple[int, float]]:
    if not path.is_file():
        return []
    with open(path) as fh:
        reader = csv.DictReader(fh)
        return [(int(r["epoch"]), float(r[key])) for r in reader if r.get(key) not in (None, "")]
