"""Scale-out costs: a memory queue of past embeddings, and 2 gloo processes vs 1.

1. ``QueueLoss`` with queue sizes 0 (the plain loss) / 4,096 / 65,536 around the chunked engine
   (``chunk_size=64`` by default, so memory is O(chunk · V · (V·B + queue)) plus the queue's
   O(queue · (D + C)) label and embedding copies): time of one training step (forward + backward + enqueue) and its peak
   memory (CPU: peak RSS growth of a fresh subprocess, reset with ``/proc/self/clear_refs`` and
   read from ``VmHWM``, as ``bench_losses.py`` does; the queue itself is allocated before the
   reset, so the number is what the step needs on top of it).
2. One step of a linear encoder + loss on the same global batch: 1 process (1 and 2 threads)
   vs 2 gloo processes of 1 thread each with ``gather_distributed=True``.

Usage:
    python benchmarks/bench_scale.py            # the full tables (a few minutes on 2 cores)
    python benchmarks/bench_scale.py --quick    # smoke run, well under a minute

Medians over ``--repeats`` steps; on a shared machine read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from _memory import reset_peak, status_kib  # benchmarks/_memory.py (scripts run from this folder)

D = 128
V = 2
CHUNK = 64  # anchor samples per engine block (--chunk-size)


# ----------------------------------------------------------------------------- inputs
def zipf_labels(n: int, num_labels: int, per_row: int, seed: int) -> torch.Tensor:
    """Multi-hot rows with Zipf-distributed labels (``per_row`` labels each)."""
    g = torch.Generator().manual_seed(seed)
    p = 1.0 / torch.arange(1, num_labels + 1, dtype=torch.float64)
    idx = torch.multinomial(p.expand(n, -1), per_row, generator=g)
    y = torch.zeros(n, num_labels, dtype=torch.uint8)
    y.scatter_(1, idx, 1)
    return y


def make_criterion(name: str, queue_size: int, batch: int, num_labels: int):
    """The loss (queue_size 0) or a QueueLoss whose queue is already full."""
    from mlsupcon.losses import QueueLoss, build

    loss = build(name, chunk_size=CHUNK)
    if queue_size == 0:
        return loss
    crit = QueueLoss(loss, size=queue_size, dim=D, num_labels=num_labels)
    g = torch.Generator().manual_seed(1)
    rows = torch.nn.functional.normalize(torch.randn(queue_size, D, generator=g), dim=1)
    crit.queue.push(rows, zipf_labels(queue_size, num_labels, 3, seed=2))
    return crit


def step_inputs(batch: int, num_labels: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, V, D, generator=g), zipf_labels(batch, num_labels, 3, seed)


def one_step(crit, feats, labels) -> None:
    f = feats.detach().requires_grad_()
    crit(f, labels).backward()


# ----------------------------------------------------------------------------- queue timing
def time_queue(name: str, queue_size: int, batch: int, num_labels: int, repeats: int) -> float:
    crit = make_criterion(name, queue_size, batch, num_labels)
    feats, labels = step_inputs(batch, num_labels, seed=0)
    one_step(crit, feats, labels)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one_step(crit, feats, labels)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory(name: str, queue_size: int, batch: int, num_labels: int) -> float:
    """Peak RSS growth (MiB) of one step, in a fresh process."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--chunk-size", str(CHUNK),
         "--child", name, str(queue_size), str(batch), str(num_labels)],
        capture_output=True, text=True, timeout=1800,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-2000:])
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])




def child(name: str, queue_size: int, batch: int, num_labels: int) -> None:
    import gc

    torch.set_num_threads(1)
    crit = make_criterion(name, queue_size, batch, num_labels)
    feats, labels = step_inputs(batch, num_labels, seed=0)
    gc.collect()
    base = status_kib("VmRSS")
    reset_peak()
    one_step(crit, feats, labels)
    print(max(0, status_kib("VmHWM") - base) / 1024)


# ----------------------------------------------------------------------------- distributed timing
def _encoder(d_in: int):
    torch.manual_seed(0)
    return torch.nn.Linear(d_in, D)


def _ddp_inputs(global_batch: int, d_in: int, num_labels: int):
    g = torch.Generator().manual_seed(3)
    return torch.randn(global_batch, V, d_in, generator=g), zipf_labels(global_batch, num_labels, 3, seed=3)


def time_single(name: str, global_batch: int, d_in: int, num_labels: int, repeats: int, threads: int) -> float:
    from mlsupcon.losses import build

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        enc, loss_fn = _encoder(d_in), build(name, chunk_size=CHUNK)
        x, y = _ddp_inputs(global_batch, d_in, num_labels)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            loss_fn(enc(x), y).backward()
            times.append(time.perf_counter() - t0)
        return statistics.median(times[1:])
    finally:
        torch.set_num_threads(previous)


def _ddp_worker(rank, world, port, name, global_batch, d_in, num_labels, repeats, outfile, chunk):
    import torch.distributed as dist

    from mlsupcon.losses import build

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    enc = torch.nn.parallel.DistributedDataParallel(_encoder(d_in))
    loss_fn = build(name, chunk_size=chunk, gather_distributed=True)
    x, y = _ddp_inputs(global_batch, d_in, num_labels)
    per = global_batch // world
    xr, yr = x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]
    times = []
    for _ in range(repeats + 1):
        dist.barrier()
        t0 = time.perf_counter()
        loss_fn(enc(xr), yr).backward()  # includes DDP's gradient all-reduce
        dist.barrier()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        with open(outfile, "w") as fh:
            fh.write(str(statistics.median(times[1:])))
    dist.destroy_process_group()


def time_two_processes(name: str, global_batch: int, d_in: int, num_labels: int, repeats: int) -> float:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        outfile = os.path.join(tmp, "t")
        mp.start_processes(_ddp_worker, args=(2, port, name, global_batch, d_in, num_labels, repeats, outfile, CHUNK),
                           nprocs=2, join=True, start_method="spawn")
        with open(outfile) as fh:
            return float(fh.read())


# ----------------------------------------------------------------------------- main
def main() -> None:
    global CHUNK
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", default="simdis,mulsupcon")
    ap.add_argument("--queue-sizes", default="0,4096,65536")
    ap.add_argument("--batch", type=int, default=256, help="samples per step (V = 2 views each)")
    ap.add_argument("--num-labels", type=int, default=200)
    ap.add_argument("--global-batch", type=int, default=1024, help="distributed comparison")
    ap.add_argument("--d-in", type=int, default=512, help="input width of the linear encoder")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="threads for the queue timings")
    ap.add_argument("--chunk-size", type=int, default=CHUNK, help="engine block (anchor samples)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    CHUNK = args.chunk_size
    if args.child:
        name, q, b, c = args.child
        child(name, int(q), int(b), int(c))
        return
    if args.quick:
        args.queue_sizes, args.batch, args.global_batch, args.repeats = "0,1024,4096", 64, 128, 2
        args.strategies, args.d_in = "simdis", 128
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.queue_sizes.split(",")]
    strategies = args.strategies.split(",")
    print(f"# torch={torch.__version__} threads={args.threads} B={args.batch} V={V} D={D} "
          f"C={args.num_labels} chunk_size={CHUNK} repeats={args.repeats} (medians)")
    print()
    print("## Memory queue (QueueLoss), one step: forward + backward + enqueue")
    print()
    print("| loss | queue size | candidates | time (ms) | × no queue | peak mem (MiB) |")
    print("|---|---|---|---|---|---|")
    for name in strategies:
        base = None
        for q in sizes:
            t = time_queue(name, q, args.batch, args.num_labels, args.repeats)
            base = t if base is None else base
            mem = float("nan") if args.no_memory else peak_memory(name, q, args.batch, args.num_labels)
            print(f"| {name} | {q} | {V * args.batch + q} | {t * 1e3:.1f} | {t / base:.2f} | {mem:.0f} |",
                  flush=True)
    print()
    print(f"## Same global batch ({args.global_batch} samples × {V} views), linear encoder "
          f"{args.d_in}→{D}, one step")
    print()
    print("| loss | setup | time (ms) | speed-up vs 1 process × 1 thread |")
    print("|---|---|---|---|")
    for name in strategies:
        t1 = time_single(name, args.global_batch, args.d_in, args.num_labels, args.repeats, threads=1)
        t1b = time_single(name, args.global_batch, args.d_in, args.num_labels, args.repeats, threads=2)
        t2 = time_two_processes(name, args.global_batch, args.d_in, args.num_labels, args.repeats)
        for setup, t in (("1 process × 1 thread", t1), ("1 process × 2 threads", t1b),
                         ("2 gloo processes × 1 thread (DDP, gather_distributed)", t2)):
            print(f"| {name} | {setup} | {t * 1e3:.1f} | {t1 / t:.2f} |", flush=True)


if __name__ == "__main__":
    main()
