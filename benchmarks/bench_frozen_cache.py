"""Cost of the ``frozen`` encoder's features on Debtags: embedding once, and a cache hit.

Embeds a seeded sample of the Debtags train split with the bundled MiniLM (batch 64,
max_length 128, the encoder's defaults) and extrapolates to the whole split, then times the
cache-hit path of a fresh encoder (identity + sha256 over every text + reading and checking
the table) on the full data set, with a table of the right key written beforehand (so the
full set is never embedded).

    OMP_NUM_THREADS=2 python benchmarks/bench_frozen_cache.py --sample 2000 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from mlsupcon.data import load_dataset
from mlsupcon.models import build_encoder
from mlsupcon.models.feature_cache import cache_key, write_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("debtags")
    train = list(ds.splits["train"].inputs)
    every = sorted({t for s in ds.splits.values() for t in s.inputs})
    rng = np.random.default_rng(0)
    sample = [train[i] for i in rng.choice(len(train), size=min(args.sample, len(train)), replace=False)]
    cache = tempfile.mkdtemp(prefix="frozen-bench-")
    opts = {"cache_dir": cache, "progress": False, "batch_size": args.batch_size}

    enc = build_encoder("frozen", **opts)
    t0 = time.perf_counter()
    enc._load_backbone()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = enc.prepare({"train": sample})
    t_embed = time.perf_counter() - t0
    per_text = t_embed / len(sample)
    print(f"threads={args.threads} batch_size={args.batch_size} model load {t_load:.1f} s")
    print(f"embed {len(sample)} train texts (+ write cache): {t_embed:.1f} s = {1e3 * per_text:.2f} ms/text "
          f"[{report['cache']}]")
    print(f"extrapolated: train split ({len(train)} texts) {per_text * len(train):.0f} s, "
          f"all splits ({len(every)} distinct texts) {per_text * len(every):.0f} s")

    again = build_encoder("frozen", **opts)
    t0 = time.perf_counter()
    hit = again.prepare({"train": sample})
    print(f"cache hit, {len(sample)} texts: {hit['seconds']:.3f} s [{hit['cache']}], "
          f"transformer batches {again.backbone_batches}, loaded {again.backbone_loaded}")

    # Cache hit on the full data set: a table with the right key (random values) stands in.
    key = cache_key(again.identity(), every)
    write_table(f"{cache}/{key}.npz", key, rng.normal(size=(len(every), again.embedding_dim)).astype(np.float32))
    full = build_encoder("frozen", **opts)
    hit = full.prepare({k: s.inputs for k, s in ds.splits.items()})
    t0 = time.perf_counter()
    full.preprocess(train[:64])
    t_lookup = time.perf_counter() - t0
    print(f"cache hit, all {len(every)} texts: {hit['seconds']:.2f} s [{hit['cache']}]; "
          f"preprocess of a 64-text batch {1e3 * t_lookup:.2f} ms")


if __name__ == "__main__":
    main()
