"""Speed and memory of the loss engine, as ratios measured in one run.

For N = B·V embeddings (V = 2 views), D = 128:
  * each strategy's forward+backward time divided by a bare ``z @ z.T`` forward+backward,
  * a plain dense implementation written the way the SupCon reference code does it (full N×N
    logits, masks and log-probabilities through autograd), for the speed-up,
  * peak memory of each (CPU: peak RSS growth of a fresh subprocess; CUDA: max_memory_allocated),
  * labels from Debtags (597 labels, real rows) and a synthetic sparse 25,000-code space
    (Zipf-distributed codes, 15 per sample, like MIMIC-IV ICD-10),
  * the largest N (powers of two) whose chunked forward+backward fits in a memory budget.

Usage:
    python benchmarks/bench_losses.py                    # the table in docs/benchmarks.md
    python benchmarks/bench_losses.py --quick            # small smoke run
    python benchmarks/bench_losses.py --device cuda

Medians over ``--repeats`` runs; the machine is noisy, so read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from importlib import resources

import torch

from _memory import reset_peak, status_kib  # benchmarks/_memory.py (scripts run from this folder)

STRATEGIES = ["all", "any", "mulsupcon", "simdis", "jaccard", "mlcl", "supcon", "simclr"]
HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- inputs
def debtags_labels(batch: int, seed: int) -> torch.Tensor:
    path = resources.files("mlsupcon.data") / "bundled" / "debtags.jsonl.gz"
    with gzip.open(str(path), "rt") as fh:
        rows = [json.loads(line)["labels"] for line in fh]
    vocab = {t: i for i, t in enumerate(sorted({t for r in rows for t in r}))}
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(rows), (batch,), generator=g)
    y = torch.zeros(batch, len(vocab))
    for i, j in enumerate(pick.tolist()):
        y[i, [vocab[t] for t in rows[j]]] = 1
    return y


def synthetic_sparse_labels(batch: int, num_labels: int, per_row: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = 1.0 / torch.arange(1, num_labels + 1, dtype=torch.float64)
    idx = torch.multinomial(p.expand(batch, -1), per_row, generator=g)
    rows = torch.arange(batch).repeat_interleave(per_row)
    index = torch.stack([rows, idx.flatten()])
    return torch.sparse_coo_tensor(index, torch.ones(batch * per_row), (batch, num_labels), check_invariants=True).coalesce()


def make_inputs(n: int, labels: str, device: str, seed: int = 0):
    views, dim = 2, 128
    batch = n // views
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, views, dim, generator=g).to(device)
    if labels == "debtags":
        y = debtags_labels(batch, seed)
    else:
        y = synthetic_sparse_labels(batch, 25_000, 15, seed)
    return feats, y.to(device)


# ----------------------------------------------------------------------------- functions under test
def bare_matmul(feats, _labels):
    z = feats.reshape(-1, feats.shape[-1]).detach().requires_grad_()
    s = z @ z.T
    s.backward(torch.ones_like(s))  # a materialised N×N upstream gradient, as a loss would give


def supcon_reference_dense(feats, labels):
    """Multi-label SimDis written the SupCon-reference way: everything N×N through autograd."""
    f = feats.detach().requires_grad_()
    b, v, _ = f.shape
    z = torch.nn.functional.normalize(torch.cat(torch.unbind(f, dim=1)), dim=1)
    y = labels.to_dense().float() if labels.layout != torch.strided else labels.float()
    y = y.repeat(v, 1)
    inter = y @ y.T
    na, nb = y.sum(1, keepdim=True), y.sum(1, keepdim=True).T
    mask = (inter / na.clamp(min=1)) / (1 + nb - inter) * (inter > 0)
    same = torch.arange(b, device=f.device).repeat(v)
    mask = torch.where(same[:, None] == same[None, :], torch.ones_like(mask), mask)
    logits = z @ z.T / 0.1
    logits = logits - logits.max(1, keepdim=True)[0].detach()
    logits_mask = 1 - torch.eye(b * v, device=f.device)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    count = (mask > 0).sum(1)
    valid = count > 0
    loss = -((mask * log_prob).sum(1)[valid] / count[valid]).mean()
    loss.backward()


def engine_loss(name: str, chunk_size):
    from mlsupcon.losses import build

    def run(feats, labels):
        f = feats.detach().requires_grad_()
        fn = build(name, chunk_size=chunk_size)
        if name == "supcon":
            y = labels.to_dense() if labels.layout != torch.strided else labels
            y = y.argmax(1)  # one class per sample: its first label
        elif name == "simclr":
            y = None
        else:
            y = labels
        fn(f, y).backward()

    return run


FUNCS = {"bare": bare_matmul, "supcon_ref_dense": supcon_reference_dense}


def get_func(key: str):
    if key in FUNCS:
        return FUNCS[key]
    name, _, chunk = key.partition("@")
    return engine_loss(name, int(chunk) if chunk else None)


# ----------------------------------------------------------------------------- measurement
def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn, feats, labels, repeats: int, device: str) -> float:
    fn(feats, labels)  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(feats, labels)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory(key: str, n: int, labels: str, device: str) -> float:
    """Peak memory (MiB) of one forward+backward, measured in a fresh process."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", key, str(n), labels, device],
        capture_output=True, text=True, timeout=3600,
    )
    if out.returncode != 0:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def child(key: str, n: int, labels: str, device: str) -> None:
    feats, y = make_inputs(n, labels, device)
    fn = get_func(key)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(feats, y)
        torch.cuda.synchronize()
        print((torch.cuda.max_memory_allocated() - base) / 2**20)
    else:
        # Reset the kernel's peak-RSS mark (VmHWM) after the inputs exist, then read it back:
        # the growth over the resident set before the call is what the call needed.
        import gc

        gc.collect()
        base = status_kib("VmRSS")
        reset_peak()
        fn(feats, y)
        print(max(0, status_kib("VmHWM") - base) / 1024)




# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="1024,4096")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-n", type=int, default=65536, help="largest N tried in the memory search")
    ap.add_argument("--budget-gib", type=float, default=4.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        key, n, labels, device = args.child
        child(key, int(n), labels, device)
        return
    if args.quick:
        args.sizes, args.repeats, args.max_n = "512", 2, 4096
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"V=2 D=128 repeats={args.repeats} (medians)")
    print()
    print("| N | labels | function | time (ms) | × bare matmul | peak mem (MiB) |")
    print("|---|---|---|---|---|---|")
    times = {}
    for n in sizes:
        for labels in ("debtags", "sparse25k"):
            feats, y = make_inputs(n, labels, args.device)
            keys = ["bare"] + ([] if labels == "sparse25k" else ["supcon_ref_dense"]) + STRATEGIES
            if labels == "sparse25k":
                keys = ["bare", "simdis", "mulsupcon", "any"]
            for key in keys:
                t = time_fn(get_func(key), feats, y, args.repeats, args.device)
                times[(n, labels, key)] = t
                ratio = t / times[(n, labels, "bare")]
                mem = float("nan") if args.no_memory else peak_memory(key, n, labels, args.device)
                print(f"| {n} | {labels} | {key} | {t * 1e3:.1f} | {ratio:.2f} | {mem:.0f} |", flush=True)
    print()
    print("C = 25,000 (sparse) vs C = 597 (Debtags), same N, simdis forward+backward:")
    for n in sizes:
        a, b = times[(n, "sparse25k", "simdis")], times[(n, "debtags", "simdis")]
        print(f"  N={n}: {a * 1e3:.1f} ms vs {b * 1e3:.1f} ms → ratio {a / b:.2f}")
    if args.no_memory:
        return
    print()
    print(f"Chunked (chunk_size=256) simdis forward+backward, Debtags labels, budget {args.budget_gib} GiB:")
    print("| N | time (s) | peak mem (MiB) | fits |")
    print("|---|---|---|---|")
    n, largest = 8192, None
    while n <= args.max_n:
        t0 = time.perf_counter()
        mem = peak_memory("simdis@256", n, "debtags", args.device)
        dt = time.perf_counter() - t0
        fits = mem <= args.budget_gib * 1024
        print(f"| {n} | {dt:.1f} | {mem:.0f} | {'yes' if fits else 'no'} |", flush=True)
        if not fits:
            break
        largest = n
        n *= 2
    print(f"largest N tried that fits: {largest} (search stopped at --max-n={args.max_n})")


if __name__ == "__main__":
    main()
