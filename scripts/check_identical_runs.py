"""Fingerprints of small training runs, to prove that two source trees train bit-identical models.

Trains a fixed set of small configurations through the CLI (every method, every modality),
single-threaded with fixed seeds, then loads each model through the public API
(``mlsupcon.load``), embeds and scores the test split of its dataset, and records:

* ``metrics``: the run's ``metrics.json`` without its timings;
* ``config``, ``model_json``: the run's ``config.yaml`` and ``model/model.json`` (the run folder's
  path replaced by ``<RUN>``; ``model.json``'s hash of the whole weights file is left out, since
  the tensors are compared one by one);
* ``weights``: tensor name → dtype, shape and sha256 of the tensor's bytes (order-independent);
* ``logs``: sha256 of each stage's training curves (``logs/*/metrics.csv``, timing columns left out);
* ``saved_embeddings``: sha256 of each array in the run's ``embeddings_test.npz``;
* ``api``: sha256 of ``embed`` (both spaces), ``predict_proba`` and ``predict`` on the test split;
* ``stdout``: the CLI's standard output (the run folder's path replaced by ``<RUN>``).

Usage::

    .venv/bin/python scripts/check_identical_runs.py --src /tmp/before --out before.json
    .venv/bin/python scripts/check_identical_runs.py --src . --out after.json
    .venv/bin/python scripts/check_identical_runs.py --compare before.json after.json

``--src DIR`` runs the tree ``DIR`` (``PYTHONPATH=DIR/src``) with the given Python (default: this
one), so that another checkout is fingerprinted with the same virtual environment; each run
checks that ``mlsupcon`` was imported from ``DIR/src``. ``--compare`` prints one line per
configuration (``equal`` or ``DIFFERENT`` with the first differing key; ``--all``: every one) and
exits with 1 on any difference.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

# At most this many test examples are embedded and scored through the public API.
API_EXAMPLES = 300

TINY_CNN = {"embed_dim": 16, "num_filters": 16, "kernel_size": 3, "max_length": 64}
TINY_TRANSFORMER = {
    "config": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
               "intermediate_size": 64, "max_position_embeddings": 64},
    "max_length": 64, "segment_length": 64,
}
TINY_MOSAICS = {"train_size": 256, "validation_size": 128, "test_size": 128, "image_size": 32}
TEXT = ["--dataset", "reuters", "--preset", "none", "--max-examples", "400"]
YEAST = ["--dataset", "yeast", "--epochs", "3", "--classifier-epochs", "3"]
MOSAICS = ["--dataset", "fashion-mosaic"]

# name, what it covers, CLI flags, YAML options (flags override them).
CONFIGS: list[tuple[str, str, list[str], dict[str, Any]]] = [
    ("text-sparse-bce", "text: sparse TF-IDF encoder + MLP, bce",
     [*TEXT, "--encoder", "sparse", "--method", "bce", "--epochs", "2"],
     {"encoder_options": {"hidden_dims": [32]}}),
    ("text-cnn-two-stage-knn", "text: CNN from scratch, two-stage simdis, kNN blend",
     [*TEXT, "--encoder", "cnn", "--method", "two-stage", "--loss", "simdis", "--epochs", "2",
      "--classifier-epochs", "2", "--knn", "blend"],
     {"encoder_options": TINY_CNN}),
    ("text-transformer-e2e-blend", "text: transformer from scratch, end-to-end bce+mulsupcon, TF-IDF blend",
     [*TEXT, "--encoder", "transformer", "--method", "end-to-end", "--loss", "mulsupcon", "--epochs", "1",
      "--blend-linear"],
     {"encoder_options": TINY_TRANSFORMER}),
    ("text-linear", "text: linear (TF-IDF + LinearSVC)",
     [*TEXT, "--method", "linear"], {}),
    ("yeast-two-stage", "vectors: yeast preset, two-stage mulsupcon, fine-tuned stage 2",
     [*YEAST], {}),
    ("yeast-end-to-end-asl", "vectors: end-to-end, asl classifier term + simdis, cosine schedule",
     [*YEAST, "--method", "end-to-end", "--loss", "simdis", "--classifier-loss", "asl", "--lr-schedule", "cosine"],
     {}),
    ("yeast-bce", "vectors: bce (classifier only)",
     [*YEAST, "--method", "bce"], {}),
    ("yeast-asl", "vectors: asl (classifier only)",
     [*YEAST, "--method", "asl"], {}),
    ("yeast-zlpr", "vectors: zlpr (classifier only, decision at logit 0)",
     [*YEAST, "--method", "zlpr"], {}),
    ("yeast-kmcl", "vectors: kmcl head and losses",
     [*YEAST, "--method", "kmcl"], {}),
    ("yeast-queue-msc", "vectors: two-stage with a memory queue + momentum encoder, prototype loss msc",
     [*YEAST, "--loss", "msc", "--queue-size", "256", "--momentum", "0.99"], {}),
    ("image-resnet-two-stage", "images: fashion mosaics, small ResNet, two-stage simdis, fine-tuned",
     [*MOSAICS, "--epochs", "1", "--classifier-epochs", "1", "--batch-size", "64"],
     {"dataset_options": TINY_MOSAICS, "encoder_options": {"preset": "small", "image_size": 32},
      "view_options": {"size": 32, "scale": [0.6, 1.0]}}),
    ("image-linear", "images: linear (pixels + logistic regression)",
     [*MOSAICS, "--method", "linear"],
     {"dataset_options": TINY_MOSAICS, "encoder_options": {"preset": "small", "image_size": 32}}),
]

TIMING_WORDS = ("time", "seconds")


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_timing(key: str) -> bool:
    """Whether a metrics key or log column is a duration (never reproducible)."""
    k = key.lower()
    return k == "timings" or k.endswith("_s") or any(w in k for w in TIMING_WORDS)


def without_timings(value: Any) -> Any:
    """``value`` with every timing key removed, recursively."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not is_timing(str(k))}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def with_placeholder(value: Any, run: str) -> Any:
    """``value`` with the run folder's path replaced by ``<RUN>`` in every string."""
    if isinstance(value, dict):
        return {k: with_placeholder(v, run) for k, v in value.items()}
    if isinstance(value, list):
        return [with_placeholder(v, run) for v in value]
    if isinstance(value, str):
        return value.replace(run, "<RUN>")
    return value


# ---------------------------------------------------------------------- fingerprint (child process)
def array_print(array: Any) -> str:
    """dtype, shape and sha256 of an array's bytes (C order)."""
    import numpy as np

    a = np.ascontiguousarray(array)
    return f"{a.dtype}{list(a.shape)}:{sha256(a.tobytes())}"


def weights_print(path: Path) -> dict[str, str]:
    """Tensor name → dtype, shape and sha256 of its bytes, read with safetensors."""
    import torch
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt") as f:
        for name in sorted(f.keys()):
            t = f.get_tensor(name).contiguous()
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
            out[name] = f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}:{sha256(raw)}"
    return out


def logs_print(run: Path) -> dict[str, str]:
    """Stage → sha256 of its ``metrics.csv`` without timing columns."""
    out = {}
    for path in sorted(run.glob("logs/*/metrics.csv")):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        keep = [j for j, name in enumerate(rows[0] if rows else []) if not is_timing(name)]
        text = "\n".join(",".join(row[j] if j < len(row) else "" for j in keep) for row in rows)
        out[path.parent.name] = sha256(text.encode())
    return out


def test_inputs(config: dict[str, Any]) -> Any:
    """The first :data:`API_EXAMPLES` test inputs of the run's dataset (loaded as the run did)."""
    from mlsupcon.data import load_dataset

    options = dict(config.get("dataset_options") or {})
    if config.get("max_examples"):
        options["max_examples_per_split"] = config["max_examples"]
    inputs = load_dataset(config["dataset"], **options).splits["test"].inputs
    n = min(len(inputs), API_EXAMPLES)
    if isinstance(inputs, list) or hasattr(inputs, "dtype"):
        return inputs[:n]
    return [inputs[i] for i in range(n)]  # e.g. an ImageArray: items are images [H, W, 3]


def api_print(run: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Fingerprints of the loaded model's embeddings, scores and predictions on the test split."""
    import mlsupcon

    model = mlsupcon.load(run)
    inputs = test_inputs(config)
    scores = model.predict_proba(inputs, progress=False)
    predicted = model.predict(inputs, progress=False)
    return {
        "num_inputs": len(inputs),
        "embed_projection": array_print(model.embed(inputs, progress=False)),
        "embed_encoder": array_print(model.embed(inputs, space="encoder", progress=False)),
        "predict_proba": array_print(scores),
        "predict": sha256(json.dumps(predicted).encode()),
    }


def fingerprint(run: Path, src: Path | None) -> dict[str, Any]:
    """Every fingerprint of one finished run folder (see the module docstring)."""
    import numpy as np
    import torch
    import yaml

    import mlsupcon

    torch.set_num_threads(1)
    where = Path(mlsupcon.__file__).resolve()
    if src is not None and not where.is_relative_to((src / "src").resolve()):
        raise SystemExit(f"mlsupcon imported from {where}, not from {src}/src")
    key = str(run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    model_json = json.loads((run / "model" / "model.json").read_text())
    weights_file_sha = model_json.pop("weights_sha256", None)
    saved = {}
    if (run / "embeddings_test.npz").is_file():
        with np.load(run / "embeddings_test.npz", allow_pickle=False) as z:
            saved = {name: array_print(z[name]) for name in sorted(z.files)}
    return {
        "mlsupcon_file": str(where),
        "metrics": with_placeholder(without_timings(metrics), key),
        "config": with_placeholder(config, key),
        "model_json": with_placeholder(model_json, key),
        "weights": weights_print(run / "model" / "weights.safetensors"),
        "logs": logs_print(run),
        "saved_embeddings": saved,
        "api": api_print(run, config),
        "info": {"weights_file_sha256": weights_file_sha},
    }


# ---------------------------------------------------------------------- runs (parent process)
def child_env(src: Path | None) -> dict[str, str]:
    """Environment of every child: one thread, fixed hash seed, CPU only, ``src/`` of the tree first."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = "1"
    env.update(PYTHONHASHSEED="0", CUDA_VISIBLE_DEVICES="", TOKENIZERS_PARALLELISM="false",
               CUBLAS_WORKSPACE_CONFIG=":4096:8")
    if src is not None:
        env["PYTHONPATH"] = str((src / "src").resolve())
    else:
        env.pop("PYTHONPATH", None)
    return env


def cli_command(python: str, src: Path | None) -> list[str]:
    """How to start the CLI: ``python -m mlsupcon.cli.main``, or the ``mlsupcon`` console script
    next to ``python`` where the tree has no ``mlsupcon/cli/main.py``."""
    root = (src / "src") if src is not None else None
    if root is None or (root / "mlsupcon" / "cli" / "main.py").is_file():
        return [python, "-m", "mlsupcon.cli.main"]
    return [str(Path(python).parent / "mlsupcon")]


def train(cli: list[str], name: str, flags: list[str], options: dict[str, Any], work: Path,
          env: dict[str, str]) -> tuple[Path, str]:
    """Trains one configuration through the CLI; returns its run folder and standard output."""
    import yaml

    run = work / name
    config = []
    if options:
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(options, sort_keys=True))
        config = ["--config", str(path)]
    command = [*cli, "train", *config, *flags, "--no-progress", "--output", str(run)]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: training failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return run, done.stdout


def fingerprint_in_child(python: str, script: Path, run: Path, src: Path | None,
                         env: dict[str, str]) -> dict[str, Any]:
    """Runs :func:`fingerprint` of ``script`` (a copy of this file) in a child process of ``python``
    (so that ``--src`` applies)."""
    command = [python, str(script), "--fingerprint", str(run)]
    if src is not None:
        command += ["--src", str(src)]
    done = subprocess.run(command, cwd=run.parent, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{run.name}: fingerprint failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of the finished children so far: a run's cost on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_all(python: str, src: Path | None, only: list[str] | None, keep: bool) -> dict[str, Any]:
    """Trains and fingerprints every configuration (or those named in ``only``), in turn."""
    env = child_env(src)
    work = Path(tempfile.mkdtemp(prefix="identical-runs-"))
    script = work / "fingerprint_child.py"  # a copy: edits to this file during a pass do not reach it
    shutil.copyfile(__file__, script)
    cli = cli_command(python, src)
    results: dict[str, Any] = {}
    try:
        for name, what, flags, options in CONFIGS:
            if only and name not in only:
                continue
            start, cpu = time.perf_counter(), children_cpu_seconds()
            run, stdout = train(cli, name, flags, options, work, env)
            entry = fingerprint_in_child(python, script, run, src, env)
            entry["stdout"] = stdout.replace(str(run), "<RUN>")
            entry["what"] = what
            seconds = time.perf_counter() - start
            cpu = children_cpu_seconds() - cpu
            entry["info"].update(seconds=round(seconds, 1), cpu_seconds=round(cpu, 1))
            results[name] = entry
            print(f"{name:28s} {seconds:6.1f} s wall {cpu:6.1f} s CPU  {entry['mlsupcon_file']}", file=sys.stderr,
                  flush=True)
    finally:
        if keep:
            print(f"run folders kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return results


# ---------------------------------------------------------------------- comparison
def differences(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """Every key path where ``a`` and ``b`` differ, in order."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                yield f"{path}/{k} (only in {'B' if k not in a else 'A'})"
            else:
                yield from differences(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b or type(a) is not type(b):
        yield f"{path or '/'}: {str(a)[:80]!r} != {str(b)[:80]!r}"


IGNORED = ("info", "mlsupcon_file", "what")


def compare(path_a: str, path_b: str, every: bool = False) -> int:
    """Prints per configuration ``equal`` or ``DIFFERENT`` (the first differing key, or with ``every``
    all of them); 1 on any difference."""
    a = json.loads(Path(path_a).read_text())
    b = json.loads(Path(path_b).read_text())
    status = 0
    for name in list(a) + [n for n in b if n not in a]:
        if name not in a or name not in b:
            print(f"{name:28s} DIFFERENT  only in {'B' if name not in a else 'A'}")
            status = 1
            continue
        left = {k: v for k, v in a[name].items() if k not in IGNORED}
        right = {k: v for k, v in b[name].items() if k not in IGNORED}
        found = list(differences(left, right))
        if found:
            print(f"{name:28s} DIFFERENT  {found[0]}")
            for more in found[1:] if every else []:
                print(f"{'':28s}            {more}")
            status = 1
        else:
            print(f"{name:28s} equal")
    print("all equal" if status == 0 else "DIFFERENCES found")
    return status


def main(argv: list[str] | None = None) -> int:
    """Command line: train and fingerprint (``--out``), compare (``--compare``) or, inside a child,
    fingerprint one run folder (``--fingerprint``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, help="source tree to run (PYTHONPATH=SRC/src); default: the installed one")
    parser.add_argument("--python", default=sys.executable, help="Python of the virtual environment to run")
    parser.add_argument("--out", help="JSON file of the fingerprints")
    parser.add_argument("--only", nargs="+", help="run only these configurations")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (their path is printed)")
    parser.add_argument("--list", action="store_true", help="list the configurations")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two fingerprint files")
    parser.add_argument("--all", action="store_true", help="--compare: list every differing key, not only the first")
    parser.add_argument("--fingerprint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fingerprint:
        out = io.StringIO()
        json.dump(fingerprint(args.fingerprint.resolve(), args.src), out, sort_keys=True)
        print(out.getvalue())
        return 0
    if args.compare:
        return compare(*args.compare, every=args.all)
    if args.list:
        for name, what, _, _ in CONFIGS:
            print(f"{name:28s} {what}")
        return 0
    if not args.out:
        parser.error("give --out FILE (or --compare A B, or --list)")
    start = time.perf_counter()
    results = run_all(args.python, args.src, args.only, args.keep)
    Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"{len(results)} configurations in {time.perf_counter() - start:.0f} s; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
