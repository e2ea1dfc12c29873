"""compare's figures, drawn from what the runs of a compare folder wrote: training curves (the
runs' CSV logs), t-SNE panels of the stored test embeddings with their kNN label purity, and the
label relations R1..R5 among training pairs. Each figure is returned by a function, from numbers
computed by pure functions; :func:`make_figures` saves them and gives report.md their captions.
matplotlib and scikit-learn are imported only to draw.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from mlsupcon.runs.folder import EMBEDDINGS_FILE, LOGS_DIR
from mlsupcon.runs.io import atomic_write, atomic_write_text

__all__ = ["make_figures", "training_curves_figure", "training_curve_panels", "tsne_figure", "tsne_caption",
           "relations_figure", "relation_shares", "knn_label_purity", "label_overlap_chance", "label_counts",
           "top_labels", "colour_ranks", "RELATION_NAMES", "TSNE_LABELS", "TSNE_POINTS", "PURITY_K"]


def _savefig(fig, path: Path) -> None:
    """A figure written atomically (a killed compare leaves the old figure or none)."""
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))


def make_figures(out: Path, ds, losses: Sequence[str], seeds: Sequence[int],
                 classifier_losses: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Draw and save compare's figures; ``{heading: (file name in out, caption)}`` for report.md.

    Args:
        out: the compare folder (``<row>/seed<k>/`` run folders).
        ds: the dataset of the runs.
        losses: the compare rows, in table order.
        seeds: the seeds; the figures show the runs of the first.
        classifier_losses: the classifier loss of each row (default ``bce``), which
            :func:`training_curve_panels` plots in a panel of its own.

    Each figure is drawn by a function that returns it (:func:`training_curves_figure`,
    :func:`tsne_figure`, :func:`relations_figure`) from numbers computed by pure functions.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, tuple[str, str]] = {}
    seed = seeds[0]
    colour_of = {loss: plt.cm.tab10(i % 10) for i, loss in enumerate(losses)}  # one colour per row everywhere
    fig = training_curves_figure(out, losses, seed, colour_of, classifier_losses)
    _savefig(fig, out / "training_curves.png")
    plt.close(fig)
    figures["Training curves"] = ("training_curves.png", (
        f"Seed {seed} of each row, from the runs' CSV logs (epochs counted from 1). Validation mAP and "
        "the encoder's validation kNN mAP share axes across rows; each contrastive loss has its own axes "
        "(the losses differ in scale)."))

    runs = []
    for loss in losses:
        path = out / loss / f"seed{seed}" / EMBEDDINGS_FILE
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


def training_curves_figure(out: Path, losses: Sequence[str], seed: int, colour_of: dict,
                           classifier_losses: Mapping[str, str] | None = None):
    """The Figure of ``training_curves.png``: the panels of :func:`training_curve_panels`, one colour per row."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = training_curve_panels(out, losses, seed, classifier_losses)
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


def training_curve_panels(out: Path, losses: Sequence[str], seed: int,
                          classifier_losses: Mapping[str, str] | None = None):
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
        logs = out / loss / f"seed{seed}" / LOGS_DIR
        # BCE is a mean over labels, ASL a sum: a panel per classifier loss.
        classifier_loss = (classifier_losses or {}).get(loss) or "bce"
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

