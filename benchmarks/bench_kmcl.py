"""Forward+backward time per step of KMCLLoss against BCE-with-logits on the same logits.

Configurations: isotropic and anisotropic KMCL, B = 64 and 256, K = 597 (Debtags, 3.74 labels per
sample) and K = 14 (yeast, 4.24 labels per sample), M = 128. Each step times the full KMCL objective
(ASL + reconstruction + contrastive) forward and backward with respect to the head outputs
(x, pi, mu, sigma2), and BCE-with-logits (sum) forward and backward with respect to pi. Reported:
medians over repeats, in milliseconds, and their ratio.

On a CPU the anisotropic contrastive term costs O(B²·K·M) per step (5·10⁹ pair-dimension entries at
B = 256, K = 597): configurations above ``--max-entries`` are skipped unless ``--all`` is given.

    python benchmarks/bench_kmcl.py                 # < 2 minutes on one CPU thread
    python benchmarks/bench_kmcl.py --device cuda --all
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mlsupcon.losses.kmcl import KMCLLoss

CONFIGS = [  # (mode, B, K, mean labels per sample, name)
    ("isotropic", 64, 14, 4.24, "yeast"),
    ("isotropic", 256, 14, 4.24, "yeast"),
    ("isotropic", 64, 597, 3.74, "debtags"),
    ("isotropic", 256, 597, 3.74, "debtags"),
    ("anisotropic", 64, 14, 4.24, "yeast"),
    ("anisotropic", 256, 14, 4.24, "yeast"),
    ("anisotropic", 64, 597, 3.74, "debtags"),
    ("anisotropic", 256, 597, 3.74, "debtags"),
]


def make_labels(b: int, k: int, mean_labels: float, gen: torch.Generator) -> torch.Tensor:
    """Long-tailed multi-hot labels (class frequency ∝ 1/rank), about ``mean_labels`` per row."""
    freq = 1.0 / torch.arange(1, k + 1, dtype=torch.float64)
    p = (freq * mean_labels / freq.sum()).clamp(max=0.95)
    y = torch.rand(b, k, generator=gen, dtype=torch.float64) < p
    empty = ~y.any(dim=1)  # every sample carries at least one label, as in both data sets
    y[empty, torch.randint(0, k, (int(empty.sum()),), generator=gen)] = True
    return y.to(torch.float32)


def make_inputs(mode: str, b: int, k: int, m: int, mean_labels: float, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    per_dim = (m,) if mode == "anisotropic" else ()
    x = torch.randn(b, m, generator=gen)
    pi = torch.randn(b, k, generator=gen)
    mu = 0.5 * torch.randn(b, k, *per_dim, generator=gen)
    sigma2 = 1.0 + torch.rand(b, k, *per_dim, generator=gen)
    y = make_labels(b, k, mean_labels, gen)
    leaves = [t.to(device).requires_grad_() for t in (x, pi, mu, sigma2)]
    return leaves, y.to(device)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench(fn, device, repeats: int, budget_s: float) -> float:
    """Median seconds per call: one warm-up call, then up to ``repeats`` calls (at least 3) within
    about ``budget_s`` seconds."""
    first = timed(fn, device)
    n = max(3, min(repeats, int(budget_s / max(first, 1e-9))))
    return statistics.median(timed(fn, device) for _ in range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: stable figures on shared machines; "
                             "0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=20, help="most timed repeats per configuration")
    parser.add_argument("--budget", type=float, default=8.0,
                        help="seconds of timed repeats per configuration")
    parser.add_argument("--dim", type=int, default=128, help="M, the kernel feature dimension")
    parser.add_argument("--max-entries", type=float, default=1.5e9,
                        help="skip configurations whose contrastive term has more B²·K·(M) entries")
    parser.add_argument("--all", action="store_true", help="run every configuration")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    m = args.dim
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, M = {m}; "
          "medians of forward+backward per step")
    print(f"{'mode':<12} {'data':<8} {'B':>4} {'K':>4} {'KMCL ms':>10} {'BCE ms':>8} {'KMCL/BCE':>9}")
    loss_fn = KMCLLoss()
    started = time.perf_counter()
    for mode, b, k, mean_labels, name in CONFIGS:
        entries = b * b * k * (m if mode == "anisotropic" else 1)
        if entries > args.max_entries and not args.all:
            print(f"{mode:<12} {name:<8} {b:>4} {k:>4} {'skipped':>10}   "
                  f"(B²·K·M = {entries:.1e} entries > --max-entries; use --all)")
            continue
        (x, pi, mu, sigma2), y = make_inputs(mode, b, k, m, mean_labels, device)

        def kmcl_step(x=x, pi=pi, mu=mu, sigma2=sigma2, y=y):  # this iteration's inputs
            loss_fn(x, pi, mu, sigma2, y).backward()

        def bce_step(pi=pi, y=y):
            F.binary_cross_entropy_with_logits(pi, y, reduction="sum").backward()

        t_kmcl = bench(kmcl_step, device, args.repeats, args.budget)
        t_bce = bench(bce_step, device, max(args.repeats, 50), 1.0)
        print(f"{mode:<12} {name:<8} {b:>4} {k:>4} {t_kmcl * 1e3:>10.2f} {t_bce * 1e3:>8.3f} "
              f"{t_kmcl / t_bce:>9.0f}x", flush=True)
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
