"""Cost of one training step per method, relative to a plain BCE step with the same encoder.

A step = forward + backward + optimizer step on one batch, with the encoders and shapes of the
shipped configs (yeast: MLP 103→256→512→256, batch 64; Debtags: the CNN of configs/debtags.yaml,
batch 256, 597 labels, 64 tokens). Methods:

* ``bce``: encoder → linear classifier → BCE;
* ``simdis``: stage-1 step of two-stage training: two views → encoder → projection → SimDis;
* ``kmcl``: encoder → KMCL head (isotropic) → ASL + reconstruction + Bhattacharyya contrastive.

Usage:
    python benchmarks/bench_methods.py [--repeats 20]
Medians; read the ratios (measured in the same run), not the milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mlsupcon.losses import build
from mlsupcon.losses.kmcl import KMCLLoss
from mlsupcon.models import LinearClassifier, ProjectionHead, build_encoder
from mlsupcon.models.kmcl import KMCLHead


def yeast_setup(batch: int):
    enc = build_encoder("mlp", in_dim=103, hidden_dims=[256, 512, 256])
    x = {"x": torch.randn(batch, 103)}
    views = lambda b: {"x": b["x"] * (torch.rand_like(b["x"]) > 0.5)}  # noqa: E731
    y = (torch.rand(batch, 14) < 0.3).float()
    return enc, x, views, y


def debtags_setup(batch: int):
    from mlsupcon.data import load_dataset
    from mlsupcon.training.batches import build_view_fn

    ds = load_dataset("debtags")
    texts = list(ds.splits["train"].inputs)
    enc = build_encoder("cnn", train_texts=texts, max_length=64, embed_dim=64, num_filters=128,
                        kernel_size=3, vocab_size=20000, min_frequency=2)
    x = enc.preprocess(texts[:batch])
    view_fn = build_view_fn(enc, {})
    y = torch.from_numpy(ds.splits["train"].labels[:batch].toarray()).float()
    return enc, x, view_fn, y


def make_step(method, enc, x, view_fn, y):
    c = y.shape[1]
    if method == "bce":
        head = LinearClassifier(enc.output_dim, c)
        params = list(enc.parameters()) + list(head.parameters())

        def loss():
            return F.binary_cross_entropy_with_logits(head(enc(x)), y)
    elif method == "simdis":
        proj = ProjectionHead(enc.output_dim)
        loss_fn = build("simdis")
        params = list(enc.parameters()) + list(proj.parameters())

        def loss():
            b = y.shape[0]
            both = {k: torch.cat([view_fn(x)[k], view_fn(x)[k]]) for k in x}
            z = proj(enc(both)).view(2, b, -1).transpose(0, 1)
            return loss_fn(z, y)
    else:
        head = KMCLHead(enc.output_dim, c)
        loss_fn = KMCLLoss()
        params = list(enc.parameters()) + list(head.parameters())

        def loss():
            return loss_fn(*head(enc(x)), y) / y.shape[0]

    opt = torch.optim.AdamW(params, lr=1e-3)

    def step():
        opt.zero_grad()
        loss().backward()
        opt.step()

    return step


def median_ms(step, repeats):
    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, threads={torch.get_num_threads()}, medians of {args.repeats}")
    print("| data | batch | method | ms / step | × bce | × simdis |")
    print("|---|---|---|---|---|---|")
    for name, setup, batch in (("yeast", yeast_setup, 64), ("debtags", debtags_setup, 256)):
        enc, x, view_fn, y = setup(batch)
        times = {m: median_ms(make_step(m, enc, x, view_fn, y), args.repeats) for m in ("bce", "simdis", "kmcl")}
        for m, t in times.items():
            print(f"| {name} | {batch} | {m} | {t:.1f} | {t / times['bce']:.2f} | {t / times['simdis']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
