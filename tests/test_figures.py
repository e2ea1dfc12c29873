"""compare's figures draw the data: t-SNE legend and colours, kNN label purity, relation bars, training curves.

Each figure is read back from the matplotlib objects ``make_figures`` saves (legend texts, scatter
offsets and face colours, bar heights, line data), and checked against the data computed here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mlsupcon.data.base import MultiLabelDataset, Split
from mlsupcon.losses import relation_counts
from mlsupcon.runs import figures as run_figures
from mlsupcon.training.compare import make_figures

matplotlib.use("Agg")

C = 12
NAMES = [f"tag{j:02d}" for j in range(C)]
ROWS = ["bce", "simdis"]
N_TRAIN, N_TEST = 2100, 150  # more training examples than the 2,048 the relations chart used to sample


def _labels(rng: np.random.Generator, n: int, p: np.ndarray) -> np.ndarray:
    return (rng.random((n, len(p))) < p).astype(np.uint8)


def _dataset() -> MultiLabelDataset:
    """Train and test label frequencies in different orders; tags 9..11 never occur in train
    (an unsigned ``-count`` sorts such labels first); tag11 never occurs in test either."""
    rng = np.random.default_rng(1)
    p_train = np.array([0.5, 0.05, 0.4, 0.1, 0.3, 0.2, 0.15, 0.25, 0.35, 0, 0, 0])
    p_test = np.array([0.55, 0.3, 0.12, 0.45, 0.06, 0.2, 0.09, 0.03, 0.25, 0.15, 0.04, 0])
    splits = {}
    for name, n, p in (("train", N_TRAIN, p_train), ("validation", 20, p_train), ("test", N_TEST, p_test)):
        splits[name] = Split(name, rng.normal(size=(n, 4)).astype(np.float32), sp.csr_matrix(_labels(rng, n, p)),
                             [f"{name}{i}" for i in range(n)])
    return MultiLabelDataset("synthetic", "vector", list(NAMES), splits)


def _write_log(path: Path, columns: dict[str, list[float]]) -> None:
    """A Lightning CSV log: validation and training values of an epoch on separate rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(columns)
    lines = ["epoch,step," + ",".join(names)]
    for e in range(len(next(iter(columns.values())))):
        lines.append(f"{e},{e}," + ",".join(f"{columns[k][e]}" if k.startswith("val/") else "" for k in names))
        lines.append(f"{e},{e}," + ",".join("" if k.startswith("val/") else f"{columns[k][e]}" for k in names))
    path.write_text("\n".join(lines) + "\n")


def _write_compare_folder(out: Path, ds: MultiLabelDataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seed-0 runs of ``ROWS`` as run_compare leaves them: logs and embeddings_test.npz (the test
    examples in the runner's order). simdis embeds examples by their labels, bce at random."""
    test_y = ds.splits["test"].labels.toarray()
    keep = np.random.default_rng(0).permutation(len(test_y))  # as the runner does
    rng = np.random.default_rng(2)
    runs = {}
    for row in ROWS:
        run = out / row / "seed0"
        if row == "bce":
            _write_log(run / "logs" / "end_to_end" / "metrics.csv",
                       {"train/classifier_loss": [0.71, 0.52, 0.43], "val/map": [0.31, 0.42, 0.47]})
            emb = rng.normal(size=(N_TEST, 16))
        else:
            _write_log(run / "logs" / "contrastive" / "metrics.csv",
                       {"train/contrastive_loss": [5.2, 4.9], "val/contrastive_loss": [5.4, 5.3],
                        "val/knn_map": [0.33, 0.36]})
            _write_log(run / "logs" / "classifier" / "metrics.csv",
                       {"train/classifier_loss": [0.6, 0.5, 0.45, 0.44], "val/map": [0.35, 0.4, 0.42, 0.43]})
            emb = np.concatenate([test_y, np.zeros((N_TEST, 4))], 1) + 0.05 * rng.normal(size=(N_TEST, 16))
        emb, y = emb[keep].astype(np.float32), test_y[keep].astype(np.uint8)
        np.savez(run / "embeddings_test.npz", embeddings=emb, labels=y)
        runs[row] = (emb, y)
    return runs


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """make_figures on a small compare folder, with every saved Figure kept by file name."""
    out = tmp_path_factory.mktemp("cmp")
    ds = _dataset()
    runs = _write_compare_folder(out, ds)
    saved = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_figures, "_savefig", lambda fig, path: saved.__setitem__(Path(path).name, fig))
        figures = make_figures(out, ds, ROWS, [0], None)
    return {"out": out, "ds": ds, "runs": runs, "saved": saved, "figures": figures}


def _top8_of_test(ds: MultiLabelDataset) -> list[tuple[int, int]]:
    """(label, count) of the 8 most frequent labels of the test split (ties: lower index), by plain counting."""
    y = ds.splits["test"].labels.toarray()
    counts = [int(sum(int(v) for v in y[:, j])) for j in range(y.shape[1])]
    return sorted(((j, c) for j, c in enumerate(counts) if c > 0), key=lambda t: (-t[1], t[0]))[:8]


def _rgba(c) -> tuple[float, ...]:
    return tuple(round(float(v), 4) for v in matplotlib.colors.to_rgba(c))


def _point_colours(ax) -> list[tuple[float, ...]]:
    """The face colour of every point of an axes' scatter plots."""
    colours = []
    for coll in ax.collections:
        n = len(coll.get_offsets())
        fc = coll.get_facecolors()
        colours += [_rgba(fc[i if len(fc) > 1 else 0]) for i in range(n)]
    return colours


# ------------------------------------------------------------------------------------------ t-SNE


def test_tsne_legend_lists_the_8_most_frequent_test_labels_with_counts(drawn):
    fig = drawn["saved"]["embeddings_tsne.png"]
    top = _top8_of_test(drawn["ds"])
    assert [j for j, _ in top] == [0, 3, 1, 8, 5, 9, 6, 2]  # the fixture's test frequencies, not train's
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[:8] == [f"{NAMES[j]} ({c})" for j, c in top]
    assert texts[8:] == ["none of them"]


def test_tsne_colours_each_point_by_its_rarest_top_label(drawn):
    fig = drawn["saved"]["embeddings_tsne.png"]
    top = [j for j, _ in _top8_of_test(drawn["ds"])]
    legend = {t.get_text(): _rgba(h.get_color()) for t, h in zip(fig.legends[0].get_texts(),
                                                                  fig.legends[0].legend_handles)}
    colour_of_rank = [legend[f"{NAMES[j]} ({c})"] for j, c in _top8_of_test(drawn["ds"])]
    grey = legend["none of them"]
    panels = [ax for ax in fig.axes if ax.collections]
    assert [ax.get_title() for ax in panels] == ROWS  # one panel per method, same examples
    for ax, row in zip(panels, ROWS):
        _, y = drawn["runs"][row]
        expected = []
        for labels in y:
            ranks = [r for r, j in enumerate(top) if labels[j]]
            expected.append(colour_of_rank[max(ranks)] if ranks else grey)
        drawn_colours = _point_colours(ax)
        assert len(drawn_colours) == len(y)
        assert sorted(drawn_colours) == sorted(expected)
        coloured_share = np.mean([c != grey for c in drawn_colours])
        carrying_share = np.mean([any(labels[j] for j in top) for labels in y])
        assert coloured_share == carrying_share


def test_tsne_panels_print_the_knn_label_purity_of_the_full_embeddings(drawn):
    from mlsupcon.training.compare import knn_label_purity, label_overlap_chance

    fig = drawn["saved"]["embeddings_tsne.png"]
    panels = [ax for ax in fig.axes if ax.collections]
    purity = {}
    for ax, row in zip(panels, ROWS):
        emb, y = drawn["runs"][row]
        purity[row] = knn_label_purity(emb, y, k=10)
        assert ax.get_xlabel() == (f"10-NN label purity {purity[row]:.3f} "
                                   f"(random neighbours {label_overlap_chance(y):.3f})")
    assert purity["simdis"] > purity["bce"] + 0.2  # label-shaped embeddings have label-pure neighbourhoods
    heading = next(h for h, (rel, _) in drawn["figures"].items() if rel == "embeddings_tsne.png")
    caption = drawn["figures"][heading][1]
    assert f"simdis {purity['simdis']:.3f}" in caption and f"bce {purity['bce']:.3f}" in caption


def test_knn_label_purity_by_hand():
    from mlsupcon.training.compare import knn_label_purity, label_overlap_chance

    # Cosine neighbours: 0 and 1 point the same way (different lengths), 2 and 3 the other way.
    emb = np.array([[1.0, 0.0], [5.0, 0.1], [0.0, 1.0], [0.1, 3.0], [1.0, 1.0]])
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [0, 0]], dtype=np.uint8)
    # k = 1: 0→1 shares, 1→0 shares, 2→3 shares, 3→2 shares; 4 has no label and is no anchor.
    assert knn_label_purity(emb, y, k=1) == 1.0
    # k = 2: 0→{1, 4}: 1/2; 1→{0, 4}: 1/2; 2→{3, 4}: 1/2; 3→{2, 4}: 1/2.
    assert knn_label_purity(emb, y, k=2) == 0.5
    # k beyond n − 1: every other example is a neighbour, i.e. the random-neighbour level.
    chance = np.mean([1 / 4, 3 / 4, 2 / 4, 2 / 4])
    assert knn_label_purity(emb, y, k=50) == pytest.approx(chance)
    assert label_overlap_chance(y) == pytest.approx(chance)
    assert np.isnan(knn_label_purity(emb, np.zeros_like(y), k=1))  # no labelled example: undefined


def test_top_labels_count_uint8_labels_without_wrapping():
    from mlsupcon.training.compare import top_labels

    y = np.zeros((300, 4), dtype=np.uint8)
    y[:300, 1] = 1  # 300 > 255: a uint8 sum would overflow
    y[:7, 2] = 1
    idx, counts = top_labels(sp.csr_matrix(y), 8)
    assert idx.tolist() == [1, 2] and counts.tolist() == [300, 7]  # absent labels 0 and 3 are not listed


# -------------------------------------------------------------------------------------- relations


def test_relation_bars_are_the_shares_of_every_training_pair(drawn):
    fig = drawn["saved"]["relations.png"]
    (ax,) = fig.axes
    full = relation_counts(torch.from_numpy(drawn["ds"].splits["train"].labels.toarray()).float())
    shares = [full[f"R{i}"] / full["pairs"] for i in range(1, 6)]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx(shares, rel=1e-12, abs=0)
    assert [t.get_text() for t in ax.texts] == [f"{100 * s:.2f}%" for s in shares]
    assert f"all {N_TRAIN:,} training examples" in ax.get_title()
    rows = list(csv.DictReader(open(drawn["out"] / "relations.csv")))
    assert [int(r["count"]) for r in rows] == [full[f"R{i}"] for i in range(1, 6)]


def test_relation_shares_exact_and_sampled():
    from mlsupcon.training.compare import relation_shares

    rng = np.random.default_rng(3)
    y = (rng.random((300, 5)) < [0.5, 0.3, 0.3, 0.1, 0.02]).astype(np.uint8)
    y[:40] = 0  # examples without labels: their pairs are disjoint (R1)
    y[40:90] = [1, 1, 0, 0, 0]  # many identical sets
    full = relation_counts(torch.from_numpy(y).float())
    exact = relation_shares(sp.csr_matrix(y))
    assert exact["sampled"] is None and exact["examples"] == 300
    assert {k: exact[k] for k in full} == full
    sampled = relation_shares(sp.csr_matrix(y), max_sets=3, sample=100)
    assert sampled["sampled"] == 100 and sampled["pairs"] == 100 * 99
    assert sum(sampled[f"R{i}"] for i in range(1, 6)) == sampled["pairs"]


# ---------------------------------------------------------------------------------- training curves


def _logged(path: Path, key: str) -> list[tuple[int, float]]:
    with open(path) as fh:
        return [(int(r["epoch"]) + 1, float(r[key])) for r in csv.DictReader(fh) if r[key] != ""]


def test_training_curves_plot_the_logged_values(drawn):
    fig, out = drawn["saved"]["training_curves.png"], drawn["out"]
    lines = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            points = list(zip(line.get_xdata().tolist(), line.get_ydata().tolist()))
            lines[(ax.get_title(), line.get_label())] = (points, _rgba(line.get_color()))
    logs = {row: out / row / "seed0" / "logs" for row in ROWS}
    expected = {
        ("validation mAP of the classifier", "bce"): _logged(logs["bce"] / "end_to_end" / "metrics.csv", "val/map"),
        ("validation mAP of the classifier", "simdis"): _logged(logs["simdis"] / "classifier" / "metrics.csv",
                                                                "val/map"),
        ("validation kNN mAP of the encoder (stage 1)", "simdis"):
            _logged(logs["simdis"] / "contrastive" / "metrics.csv", "val/knn_map"),
        ("classifier loss (train, BCE)", "bce"): _logged(logs["bce"] / "end_to_end" / "metrics.csv",
                                                         "train/classifier_loss"),
        ("classifier loss (train, BCE)", "simdis"): _logged(logs["simdis"] / "classifier" / "metrics.csv",
                                                            "train/classifier_loss"),
        ("simdis: contrastive loss (stage 1)", "train"): _logged(logs["simdis"] / "contrastive" / "metrics.csv",
                                                                 "train/contrastive_loss"),
        ("simdis: contrastive loss (stage 1)", "validation"):
            _logged(logs["simdis"] / "contrastive" / "metrics.csv", "val/contrastive_loss"),
    }
    assert {key: points for key, (points, _) in lines.items()} == expected
    assert expected[("validation mAP of the classifier", "bce")] == [(1, 0.31), (2, 0.42), (3, 0.47)]
    # one colour per row on every panel
    colour = {"bce": lines[("validation mAP of the classifier", "bce")][1],
              "simdis": lines[("validation mAP of the classifier", "simdis")][1]}
    assert colour["bce"] != colour["simdis"]
    for (title, label), (_, c) in lines.items():
        assert c == colour["simdis" if label in ("train", "validation") else label], (title, label)


# ------------------------------------------------------------------------------------------ report


def test_report_says_which_labels_are_coloured(drawn):
    from mlsupcon.training.compare import render_report
    from mlsupcon.training.config import TrainConfig

    rows = [{"loss": row, "seed": 0, "seconds": 1.0} for row in ROWS]
    report = render_report(TrainConfig(), drawn["ds"], ROWS, [0], "TABLE", drawn["figures"], rows)
    assert "the 8 most frequent labels of the test split" in report
    assert ", ".join(f"{NAMES[j]} ({c})" for j, c in _top8_of_test(drawn["ds"])) in report
    assert f"all {N_TRAIN:,} training examples" in report
    for heading, (rel, caption) in drawn["figures"].items():
        assert f"![{heading}]({rel})" in report and caption in report
