"""Time to a model: what a user waits for around the loss engine, against its anchors (issue 23).

Parts (``--parts``, comma-separated; each runs its contenders interleaved, ``--repeats`` times,
and prints medians and ratios measured in this one run):

* ``linear``: ``mlsupcon train --method linear`` (a fresh process, an empty feature cache, so
  nothing is reused) against scikit-learn's pipeline on the same split (``TfidfVectorizer``
  word 1-2-grams + character 2-5-grams, sublinear tf, one ``LinearSVC(C=0.5)`` per label over
  both cores), and, when ``libmultilabel`` is importable, LibMultiLabel's ``linear`` one-vs-rest
  on its TF-IDF. Seconds from reading the data to a fitted model, and test mAP.
* ``load``: ``mlsupcon.load(RUN)`` in a fresh process (imports included) and ``predict`` of 10
  and of ``--predict-texts`` test texts, for each run folder given with ``--runs``; the
  ``--src`` trees load ``--src-runs`` instead when given (runs they trained themselves: a tree
  may not read a newer tree's runs).
* ``embed``: texts per second of the frozen MiniLM encoder (``--embed-texts`` training texts,
  an empty feature cache each time; the ONNX export cache is kept, as a user's is after the
  first run) with each runtime of the current tree (``--runtimes``) and the other trees'
  defaults, and the cosine of each text's embedding to the first ``--src`` tree's (else to the
  current tree's ``torch`` runtime): min, 1st percentile and mean.
* ``first-run``: ``mlsupcon train --dataset jsonl:FILE`` with no config on the first
  ``--first-run-texts`` texts of the dataset written as a JSONL file, caches cold.

``--src DIR`` (repeatable) runs the mlsupcon parts on other source trees with the same Python
(e.g. a worktree of the previous main: ``git worktree add /tmp/before <commit>``), interleaved
with the current tree, so each ratio to "before" comes from one run on one machine.

Usage:
    python benchmarks/bench_pipeline.py --dataset debtags --parts linear --repeats 1
    python benchmarks/bench_pipeline.py --parts load --runs runs/a runs/b --src /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(src: Path, cache: str, threads: int | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(src / "src"), MLSUPCON_CACHE=cache)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, proc.stdout


def _mlsupcon_linear(src: Path, dataset: str, threads: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        wall, _ = _run([sys.executable, "-m", "mlsupcon.cli.main", "train", "--dataset", dataset, "--method",
                        "linear", "--output", str(out), "--no-progress"], _env(src, tmp, threads), src)
        metrics = json.loads((out / "metrics.json").read_text())
        log = (out / "logs" / "linear" / "metrics.csv").read_text().splitlines()
        row = dict(zip(log[0].split(","), log[1].split(",")))
    return {"wall_s": wall, "featurize_s": float(row["featurize_s"]), "fit_s": float(row["fit_s"]),
            "map": metrics["map"]}


SKLEARN_LINEAR = r"""
import json, sys, time
import numpy as np, scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from joblib import Parallel, delayed
from sklearn.svm import LinearSVC
from mlsupcon.data import load_dataset
from mlsupcon.evaluation import compute_metrics
ds = load_dataset(sys.argv[1])
tr, te = ds.splits["train"], ds.splits["test"]
t0 = time.perf_counter()
word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=100_000, min_df=2)
char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, max_features=100_000, min_df=2)
X = sp.hstack([word.fit_transform(tr.inputs), char.fit_transform(tr.inputs)]).tocsr()
t1 = time.perf_counter()
Y = tr.labels.toarray()
keep = (Y.sum(0) > 0) & (Y.sum(0) < len(Y))
# One LinearSVC per label on both cores, as OneVsRestClassifier(n_jobs=-1) fits them: on Debtags its
# decision_function columns did not match the label columns (test mAP 0.019; cause not found).
fits = Parallel(n_jobs=-1)(delayed(lambda j: LinearSVC(C=0.5).fit(X, Y[:, j]))(j) for j in np.flatnonzero(keep))
t2 = time.perf_counter()
Xt = sp.hstack([word.transform(te.inputs), char.transform(te.inputs)]).tocsr()
s = np.full((Xt.shape[0], Y.shape[1]), -10.0)
s[:, keep] = np.stack([f.decision_function(Xt) for f in fits], axis=1)
m = compute_metrics(te.labels, 1 / (1 + np.exp(-s)))
print(json.dumps({"featurize_s": t1 - t0, "fit_s": t2 - t1, "map": m["map"]}))
"""

LIBMULTILABEL_LINEAR = r"""
import json, sys, time
import numpy as np
from libmultilabel import linear
from mlsupcon.data import load_dataset
from mlsupcon.evaluation import compute_metrics
ds = load_dataset(sys.argv[1])
tr, te = ds.splits["train"], ds.splits["test"]
names = lambda split: [[ds.label_names[j] for j in r.indices] for r in split.labels.tocsr()]
t0 = time.perf_counter()
pre = linear.Preprocessor()  # its defaults: word unigram TF-IDF, labels of the training split
data = pre.fit_transform({"data_format": "txt", "train": {"x": list(tr.inputs), "y": names(tr)},
                          "test": {"x": list(te.inputs), "y": names(te)}})
t1 = time.perf_counter()
model = linear.train_1vsrest(data["train"]["y"], data["train"]["x"], options="", verbose=False)
t2 = time.perf_counter()
scores = np.full((len(te.inputs), ds.num_labels), -10.0)
cols = [list(ds.label_names).index(c) for c in pre.binarizer.classes_]
scores[:, cols] = model.predict_values(data["test"]["x"])
m = compute_metrics(te.labels, 1 / (1 + np.exp(-scores)))
print(json.dumps({"featurize_s": t1 - t0, "fit_s": t2 - t1, "map": m["map"]}))
"""


def _script(code: str, src: Path, dataset: str, threads: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        wall, out = _run([sys.executable, "-c", code, dataset], _env(src, tmp, threads), src)
    return {"wall_s": wall, **json.loads(out.strip().splitlines()[-1])}


LOAD_AND_PREDICT = r"""
import json, sys, time
t0 = time.perf_counter()
import mlsupcon
model = mlsupcon.load(sys.argv[1])
t1 = time.perf_counter()
texts = json.loads(open(sys.argv[2], encoding="utf-8").read())
model.predict(texts[:10], progress=False)
t2 = time.perf_counter()
model.predict(texts, progress=False)
t3 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "predict10_s": t2 - t1, "predict_n_s": t3 - t2, "n": len(texts)}))
"""


def _load(src: Path, run: Path, texts: list[str], threads: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "texts.json"  # a file: 400 long texts exceed the argument list's limit
        inputs.write_text(json.dumps(texts), encoding="utf-8")
        _, out = _run([sys.executable, "-c", LOAD_AND_PREDICT, str(run), str(inputs)],
                      _env(src, os.environ.get("MLSUPCON_CACHE", tmp), threads), src)
    return json.loads(out.strip().splitlines()[-1])


EMBED = r"""
import json, sys, time
import numpy as np
from mlsupcon.data import load_dataset
from mlsupcon.models import build_encoder
texts = list(load_dataset(sys.argv[1]).splits["train"].inputs[: int(sys.argv[2])])
opts = {"runtime": sys.argv[4]} if sys.argv[4] != "default" else {}
enc = build_encoder("frozen", hidden_dims=(), progress=False, cache_dir=sys.argv[5], **opts)
enc._load_backbone()  # loading the model is timed by the load part, not here
t0 = time.perf_counter()
enc.prepare(texts)
t1 = time.perf_counter()
np.save(sys.argv[3], enc.preprocess(texts)["x"].numpy())
print(json.dumps({"embed_s": t1 - t0, "texts_per_s": len(texts) / (t1 - t0)}))
"""


def _embed(src: Path, dataset: str, n: int, threads: int | None, runtime: str, vectors: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        _, out = _run([sys.executable, "-c", EMBED, dataset, str(n), str(vectors), runtime, tmp],
                      _env(src, os.environ.get("MLSUPCON_CACHE", tmp), threads), src)
    return json.loads(out.strip().splitlines()[-1])


def _cosine(a: Path, b: Path) -> dict[str, float]:
    import numpy as np

    cos = (np.load(a) * np.load(b)).sum(1)
    return {"cos_min": float(cos.min()), "cos_p1": float(np.percentile(cos, 1)), "cos_mean": float(cos.mean())}


def write_texts(path: Path, dataset: str, n: int) -> Path:
    """The first texts of each split of ``dataset``, ``n`` in all in the splits' proportions, as
    a JSONL file with ``text``, ``labels`` and ``split`` (written once, read by every tree)."""
    from mlsupcon.data import load_dataset

    ds = load_dataset(dataset)
    total = sum(len(ds.splits[k]) for k in ("train", "validation", "test"))
    with path.open("w", encoding="utf-8") as f:
        for split in ("train", "validation", "test"):
            sp = ds.splits[split]
            rows = sp.labels.tocsr()
            for i in range(min(len(sp), round(n * len(sp) / total))):
                labels = [ds.label_names[j] for j in rows[i].indices]
                f.write(json.dumps({"text": sp.inputs[i], "labels": labels, "split": split}) + "\n")
    return path


def _first_run(src: Path, texts: Path, threads: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        wall, _ = _run([sys.executable, "-m", "mlsupcon.cli.main", "train", "--dataset", f"jsonl:{texts}",
                        "--output", str(out), "--no-progress"], _env(src, tmp, threads), src)
        metrics = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "map": metrics["map"], "micro_f1": metrics["micro_f1"], "macro_f1": metrics["macro_f1"]}


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0] if isinstance(rows[0][k], (int, float))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="debtags")
    p.add_argument("--parts", default="linear,load,embed")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every contender")
    p.add_argument("--src", type=Path, action="append", default=[], help="another source tree to time as well")
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="run folders for the load part")
    p.add_argument("--src-runs", type=Path, nargs="*", default=None,
                   help="load: the run folders the --src trees load, in the order of --runs (default: --runs)")
    p.add_argument("--predict-texts", type=int, default=400)
    p.add_argument("--embed-texts", type=int, default=512)
    p.add_argument("--runtimes", default="torch,onnx,onnx-int8", help="embed: the current tree's runtimes to time")
    p.add_argument("--first-run-texts", type=int, default=10_000)
    p.add_argument("--json", type=Path, default=None, help="write the medians here")
    p.add_argument("--anchors-only", action="store_true", help="linear: time the anchors, not mlsupcon")
    args = p.parse_args()
    trees = {"current": ROOT, **{f"src:{s}": s.resolve() for s in args.src}}
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    results: dict[str, dict[str, list[dict[str, float]]]] = {}

    def add(part: str, who: str, row: dict[str, float]) -> None:
        results.setdefault(part, {}).setdefault(who, []).append(row)
        print(f"{part:9s} {who:28s} " + "  ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)

    sys.path.insert(0, str(ROOT / "src"))  # this tree's mlsupcon writes the inputs every tree reads
    texts: list[str] = []
    if "load" in parts:
        from mlsupcon.data import load_dataset

        texts = list(load_dataset(args.dataset).splits["test"].inputs[: args.predict_texts])
    scratch = tempfile.TemporaryDirectory()
    first_run_texts = (write_texts(Path(scratch.name) / "texts.jsonl", args.dataset, args.first_run_texts)
                       if "first-run" in parts else None)
    for _ in range(args.repeats):  # interleaved: every contender once per repeat
        for part in parts:
            if part == "linear":
                for name, tree in ({} if args.anchors_only else trees).items():
                    add(part, f"mlsupcon {name}", _mlsupcon_linear(tree, args.dataset, args.threads))
                add(part, "scikit-learn pipeline", _script(SKLEARN_LINEAR, ROOT, args.dataset, args.threads))
                try:
                    import libmultilabel  # noqa: F401
                except ImportError:
                    pass
                else:
                    add(part, "LibMultiLabel linear", _script(LIBMULTILABEL_LINEAR, ROOT, args.dataset, args.threads))
            elif part == "load":
                src_runs = args.runs if args.src_runs is None else args.src_runs
                if len(src_runs) != len(args.runs):
                    raise SystemExit("--src-runs: give one run folder per --runs folder")
                for run, src_run in zip(args.runs, src_runs):
                    for name, tree in trees.items():
                        chosen = run if name == "current" else src_run
                        add(part, f"{chosen.name} {name}", _load(tree, chosen.resolve(), texts, args.threads))
            elif part == "embed":
                contenders = [(f"current {rt}", ROOT, rt) for rt in args.runtimes.split(",")]
                contenders += [(name, tree, "default") for name, tree in trees.items() if name != "current"]
                vec = {who: Path(scratch.name) / f"{i}.npy" for i, (who, _, _) in enumerate(contenders)}
                ref = vec[contenders[-1][0]] if args.src else vec.get("current torch")
                rows = {who: _embed(tree, args.dataset, args.embed_texts, args.threads, rt, vec[who])
                        for who, tree, rt in contenders}
                for who, row in rows.items():
                    add(part, f"frozen MiniLM {who}", {**row, **(_cosine(vec[who], ref) if ref else {})})
            elif part == "first-run":
                for name, tree in trees.items():
                    add(part, f"defaults {name}", _first_run(tree, first_run_texts, args.threads))
            else:
                raise SystemExit(f"--parts: unknown part {part!r}; expected linear, load, embed, first-run")
    medians = {part: {who: _median(rows) for who, rows in by.items()} for part, by in results.items()}
    print("\nmedians over", args.repeats, "repeat(s):")
    for part, by in medians.items():
        for who, row in by.items():
            print(f"{part:9s} {who:28s} " + "  ".join(f"{k} {v:.4g}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2))


if __name__ == "__main__":
    main()
