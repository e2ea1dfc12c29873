"""A first run on data the recipes were not tuned on: CLI defaults against TF-IDF + linear.

Builds text sets a user might bring, in other scripts and sizes, from the bundled Debtags
descriptions (the only real multi-label text shipped), writes each as a JSONL file, and runs on
each, on the same split:

* ``mlsupcon train --dataset jsonl:FILE`` (``vectors:FILE``) with no config and no flags (settings chosen from the
  data, as a new user gets them), and
* ``mlsupcon train --dataset jsonl:FILE --method linear`` (TF-IDF + one-vs-rest LinearSVC).

Variants (``--variants``, comma-separated):

``en-tiny``     800 English descriptions, no split field (random 80/10/10 split)
``en-3k``       3,000 English descriptions, the bundled split
``cjk-8k``      8,000 descriptions, every word written as two CJK characters (a fixed hash of the
                word), no spaces: a script without word boundaries
``emoji-12k``   12,000 descriptions, every word written as one emoji (a fixed hash), no spaces
``cjk-full``    all 28,903 descriptions as in ``cjk-8k``
``yeast-vec``   the bundled yeast split written as a ``vectors:`` file (``.npz``: x, y, split)

The word-to-character codes keep what a text says (the same word is always the same characters)
but remove every space and every Latin letter, so word tokenisers and English sentence encoders
cannot help: what a user with Chinese, Japanese or emoji-heavy text faces.

Usage:
    python benchmarks/check_auto_defaults.py --work /tmp/autocheck [--variants en-tiny,cjk-8k]

Prints one markdown row per (variant, method) with micro-F1, macro-F1, mAP, P@1 (×100, test split,
threshold tuned on validation) and the wall time, and writes ``WORK/results.md``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

VARIANTS = ("en-tiny", "en-3k", "cjk-8k", "emoji-12k", "cjk-full", "yeast-vec")
# CJK unified ideographs (common block) and assigned pictographic emoji.
_CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
_EMOJI = [chr(c) for c in (*range(0x1F300, 0x1F5FF), *range(0x1F600, 0x1F650), *range(0x1F680, 0x1F6C6))]


def _code(word: str, alphabet: list[str], width: int) -> str:
    h = int.from_bytes(hashlib.blake2b(word.lower().encode(), digest_size=8).digest(), "little")
    out = []
    for _ in range(width):
        h, r = divmod(h, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


def _rewrite(text: str, alphabet: list[str], width: int) -> str:
    """Every word as ``width`` characters of ``alphabet``, punctuation kept, no spaces."""
    return "".join(_code(m.group(), alphabet, width) if m.group()[0].isalnum() or m.group()[0] == "_"
                   else m.group() for m in re.finditer(r"\w+|[^\w\s]", text))


def debtags_records() -> list[dict]:
    path = resources.files("mlsupcon.data") / "bundled" / "debtags.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def build_vectors(work: Path) -> str:
    import numpy as np
    import scipy.sparse as sp

    from mlsupcon.data import load_dataset

    ds = load_dataset("yeast")
    parts = [ds.splits[s] for s in ("train", "validation", "test")]
    y = [p.labels.toarray() if sp.issparse(p.labels) else np.asarray(p.labels) for p in parts]
    path = work / "yeast-vec.npz"
    np.savez(path, x=np.concatenate([np.asarray(p.inputs) for p in parts]), y=np.concatenate(y).astype(np.uint8),
             split=np.array([p.name for p in parts for _ in range(len(p))]))
    return f"vectors:{path}"


def build(variant: str, records: list[dict], work: Path) -> str:
    if variant == "yeast-vec":
        return build_vectors(work)
    rng = random.Random(0)
    recs = list(records)
    rng.shuffle(recs)
    if variant == "en-tiny":
        rows = [{"text": r["text"], "labels": r["labels"]} for r in recs[:800]]
    elif variant == "en-3k":
        rows = [{"text": r["text"], "labels": r["labels"], "split": r["split"]} for r in recs[:3000]]
    elif variant in ("cjk-8k", "cjk-full"):
        keep = recs[:8000] if variant == "cjk-8k" else recs
        rows = [{"text": _rewrite(r["text"], _CJK, 2), "labels": r["labels"], "split": r["split"]} for r in keep]
    elif variant == "emoji-12k":
        rows = [{"text": _rewrite(r["text"], _EMOJI, 1), "labels": r["labels"], "split": r["split"]}
                for r in recs[:12000]]
    else:
        raise SystemExit(f"--variants: unknown variant {variant!r}; expected some of {', '.join(VARIANTS)}")
    path = work / f"{variant}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({"id": f"{variant}-{i}", **row}, ensure_ascii=False) + "\n")
    return f"jsonl:{path}"


def run(spec: str, out: Path, extra: list[str], log: Path) -> tuple[dict | None, float]:
    cmd = [sys.executable, "-m", "mlsupcon.cli.main", "train", "--dataset", spec, "--seed", "0",
           "--output", str(out), "--overwrite", "--no-progress", *extra]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    metrics = out / "metrics.json"
    return (json.loads(metrics.read_text()) if rc == 0 and metrics.exists() else None), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/autocheck"))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    records = debtags_records()
    lines = ["| data | method | micro_f1 | macro_f1 | map | p@1 | wall |", "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        spec = build(variant, records, args.work)
        for name, extra in (("linear", ["--method", "linear"]), ("defaults", [])):
            out = args.work / "runs" / f"{variant}-{name}"
            m, wall = run(spec, out, extra, args.work / f"{variant}-{name}.log")
            if m is None:
                row = f"| {variant} | {name} | failed (see {variant}-{name}.log) | | | | {wall:.0f} s |"
            else:
                row = (f"| {variant} | {name} | {100 * m['micro_f1']:.2f} | {100 * m['macro_f1']:.2f} | "
                       f"{100 * m['map']:.2f} | {100 * m['p@1']:.2f} | {wall:.0f} s |")
            lines.append(row)
            print(row, flush=True)
            (args.work / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
