"""Training-step cost of the sparse TF-IDF encoder: dense gradients + AdamW vs sparse gradients.

One step = forward (embedding_bag over a padded batch of tf-idf rows -> ReLU -> linear head) +
BCE + backward + optimizer step, batch 256, ~860 nonzeros per row (Debtags' average with the
default featurizer), ids drawn log-uniformly over K (a Zipf-like 1/rank law, so a batch touches
far fewer than K rows, as real text does). Variants:

* ``dense+AdamW``: ``sparse_grad=False``, ``torch.optim.AdamW`` on everything (what the
  training layer uses; every step updates all K x H weights and both moment buffers);
* ``dense+AdamW(fused)``: the same with ``fused=True`` where torch supports it;
* ``sparse+SparseAdam``: ``sparse_grad=True``, ``SparseAdam`` on the sparse layer (lazy: only
  rows in the batch are updated, no weight decay) and AdamW on the rest.

Usage:
    python benchmarks/bench_sparse_encoder.py [--steps 5] [--device cpu|cuda]
Medians over ``--steps`` steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from mlsupcon.models.sparse import SparseTextEncoder


def fake_batch(k: int, n: int, nnz: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    ids = np.minimum((k ** rng.random((n, nnz))).astype(np.int64) - 1, k - 1)  # P(id) ~ 1/(id+1)
    w = rng.random((n, nnz)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    return {"ids": torch.from_numpy(ids), "weights": torch.from_numpy(w)}


def make(k: int, h: int, sparse_grad: bool, device: str) -> SparseTextEncoder:
    # Built through the rebuild path (num_features + featurizer config): no texts needed to time a step.
    return SparseTextEncoder(num_features=k, hidden_dims=[h], sparse_grad=sparse_grad).to(device)


def time_variant(variant: str, k: int, h: int, batch, y, steps: int, device: str) -> float:
    enc = make(k, h, variant.startswith("sparse"), device)
    head = torch.nn.Linear(h, y.shape[1]).to(device)
    rest = list(head.parameters()) + [enc.bias]
    if variant == "sparse+SparseAdam":
        opts = [torch.optim.SparseAdam([enc.weight], lr=1e-3), torch.optim.AdamW(rest, lr=1e-3, weight_decay=1e-4)]
    else:
        kw = {"fused": True} if variant.endswith("(fused)") else {}
        opts = [torch.optim.AdamW([enc.weight, *rest], lr=1e-3, weight_decay=1e-4, **kw)]
    times = []
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(head(enc(batch)), y)
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    del enc, head, opts
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--nnz", type=int, default=860)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} nnz/row={args.nnz}")
    print(f"{'K':>7} {'H':>5} {'unique ids':>10} | " + " | ".join(
        f"{v:>18}" for v in ("dense+AdamW", "dense+AdamW(fused)", "sparse+SparseAdam")) + "  (ms/step)")
    for k in (100_000, 300_000):
        batch = {n: t.to(args.device) for n, t in fake_batch(k, args.batch, args.nnz, rng).items()}
        y = (torch.rand(args.batch, 597, device=args.device) < 0.006).float()
        for h in (256, 1024):
            row = []
            for variant in ("dense+AdamW", "dense+AdamW(fused)", "sparse+SparseAdam"):
                try:
                    row.append(f"{time_variant(variant, k, h, batch, y, args.steps, args.device):18.1f}")
                except (RuntimeError, TypeError) as e:  # fused AdamW unsupported on this device/build
                    row.append(f"{'n/a':>18}")
                    print(f"  {variant}: {str(e).splitlines()[0][:100]}")
            print(f"{k:>7} {h:>5} {batch['ids'].unique().numel():>10} | " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
