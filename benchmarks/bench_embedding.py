"""How fast the frozen MiniLM embeds texts, per variant, and how close each variant's embeddings are.

Variants (each one embeds the same texts, repeats interleaved, medians; read the ratios):
  * ``fp32``: mlsupcon's frozen encoder with ``runtime="torch"`` (PyTorch, texts batched by length, fp32);
  * ``int8-dynamic``: torch's dynamic int8 quantisation of every ``nn.Linear`` of the transformer
    (``torch.ao.quantization.quantize_dynamic``), weights int8, activations quantised per batch.

Quality is the cosine between a variant's embedding and fp32's for the same text (issue 23 asks
for >= 0.99); speed is texts per second and the ratio to fp32. The ONNX Runtime variants that the
frozen encoder now uses by default (``runtime: onnx`` / ``onnx-int8``) are timed by
``bench_pipeline.py --parts embed``.

Usage:
    python benchmarks/bench_embedding.py --dataset reuters --texts 512 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch


def _texts(dataset: str, n: int) -> list[str]:
    from mlsupcon.data import load_dataset

    ds = load_dataset(dataset)
    return list(ds.splits["train"].inputs[:n])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="reuters")
    p.add_argument("--texts", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from mlsupcon.models import build_encoder

    enc = build_encoder("frozen", hidden_dims=(), progress=False, runtime="torch")
    texts = _texts(args.dataset, args.texts)
    fp32 = enc._load_backbone()
    int8 = copy.deepcopy(fp32)
    int8.backbone = torch.ao.quantization.quantize_dynamic(int8.backbone, {torch.nn.Linear}, dtype=torch.qint8)
    variants = {"fp32": fp32, "int8-dynamic": int8}
    times: dict[str, list[float]] = {k: [] for k in variants}
    vectors: dict[str, np.ndarray] = {}
    enc.embed(texts[:8])  # warm-up
    names = list(variants)
    for rep in range(args.repeats):
        for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotate the starting variant
            enc.__dict__["_frozen"] = variants[name]
            t0 = time.perf_counter()
            vectors[name] = enc.embed(texts)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["fp32"])
    print(f"{len(texts)} texts of {args.dataset}, torch threads {torch.get_num_threads()}, {args.repeats} repeats")
    print("| variant | texts/s (median) | speed vs fp32 | cosine to fp32: min / mean |")
    print("|---|---|---|---|")
    ref = vectors["fp32"]
    for name in names:
        v = vectors[name]
        cos = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
        med = statistics.median(times[name])
        print(f"| {name} | {len(texts) / med:.1f} | {base / med:.2f}x | {cos.min():.4f} / {cos.mean():.4f} |")


if __name__ == "__main__":
    main()
