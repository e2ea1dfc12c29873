"""Speed and memory of the loss engine, as ratios measured in one run.

For N = B·V embeddings (V = 2 views), D = 128:
  * each strategy's forward+backward time divided by a bare ``z @ z.T`` forward+backward,
  * a plain dense implementation written the way the SupCon reference code does it (full N×N
    logits, masks and log-probabilities through autograd), for the speed-up,
  * peak memory of each (CPU: peak RSS growth of a fresh subprocess; CUDA: max_memory_allocated),
  * labels from Debtags (597 labels, real rows) and a synthetic sparse 25,000-code space
    (Zipf-distributed codes, 15 per sample, like MIMIC-IV ICD-10),
  * the largest N (powers of two) whose chunked forward+backward fits in a memory budget.

The losses added with issue 21 (``--losses new``; by default they run next to the strategies, with
Debtags labels only and up to ``--new-max-n``) get their natural inputs, built outside the timed call:
  * ``jaccard_weight``, ``cl_scl``, ``cl_jscl``, ``cl_slcl``, ``multisupcon_wz``, ``mulsupcon_count``
    (``mulsupcon`` with ``empty_rows="count"``): the same features [B, V, D] and labels as the strategies
    (their own defaults otherwise: CL-MTC and WolodjaZ losses do not normalise, τ_b = 0.07, WolodjaZ τ = 0.07);
  * ``msc``, ``proto_only``, ``mscwrg``, ``mscrg``: the same, plus prototypes P [C, D] (C = 597 for
    Debtags, ``LabelPrototypes(C, D)``, a leaf with requires_grad: their gradient is part of the backward);
    the C prototypes are extra candidates (and, for mscwrg/mscrg, extra anchors);
  * ``zlpr``, ``cl_jspcl``, ``label_nce``: logits [B, C] (B = N / V samples, standard normal), the gradient w.r.t. them;
  * ``cl_icl``: per-label embeddings [B, 11, D] (B = N / V samples; the 11 most frequent labels of the
    batch, as CL-MTC's 11 SemEval emotions) and those 11 label columns.
``bare`` stays normalize + z @ z.T over the N = B·V embeddings, so ``× bare`` says what each costs
next to the matmul of the same batch; for zlpr and cl_icl it is no like-for-like floor.

Usage:
    python benchmarks/bench_losses.py                    # the table in docs/benchmarks.md
    python benchmarks/bench_losses.py --quick            # small smoke run
    python benchmarks/bench_losses.py --device cuda
    python benchmarks/bench_losses.py --losses new --labels debtags --sizes 1024,4096   # the new losses only

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
from _memory import peak_mib  # benchmarks/_memory.py (scripts run from this folder)

STRATEGIES = ["all", "any", "mulsupcon", "simdis", "jaccard", "mlcl", "supcon", "simclr"]
#: Losses of issue 21 (docs/spec/LOSSES.md); ``mulsupcon_count`` is mulsupcon(empty_rows="count").
NEW_LOSSES = ["jaccard_weight", "msc", "proto_only", "mscwrg", "mscrg", "zlpr", "cl_scl", "cl_jscl", "cl_jspcl",
              "cl_slcl", "cl_icl", "multisupcon_wz", "mulsupcon_count", "label_nce"]
PROTOTYPE_NAMES = {"msc", "proto_only", "mscwrg", "mscrg"}
LOGIT_NAMES = {"zlpr", "cl_jspcl", "label_nce"}
ICL_LABELS = 11  # cl_icl: label embeddings of the 11 most frequent labels (CL-MTC runs on 11 emotions)
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
    y = torch.sparse_coo_tensor(index, torch.ones(batch * per_row), (batch, num_labels), check_invariants=True)
    return y.coalesce()


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
    """The floor of any contrastive loss: normalize(z), z @ z.T, forward and backward."""
    f = feats.reshape(-1, feats.shape[-1]).detach().requires_grad_()
    z = torch.nn.functional.normalize(f, dim=1)
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


_CLASS_IDS: dict[int, torch.Tensor] = {}


def class_ids(labels: torch.Tensor) -> torch.Tensor:
    """Each row's first label as its class (for supcon), computed once per label tensor so that
    the densifying and argmax are not timed."""
    key = id(labels)
    if key not in _CLASS_IDS:
        _CLASS_IDS.clear()
        _CLASS_IDS[key] = (labels.to_dense() if labels.layout != torch.strided else labels).argmax(1)
    return _CLASS_IDS[key]


_AUX: dict[tuple, tuple] = {}


def new_loss_inputs(name: str, feats: torch.Tensor, labels: torch.Tensor):
    """The natural extra inputs of a new loss (see the module docstring), built once per feature tensor
    so that building them is not timed: (prototypes P [C, D] or None, logits [B, C] or None,
    label embeddings [B, 11, D] or None, the labels the loss takes)."""
    key = (id(feats), id(labels), name)
    if key not in _AUX:
        from mlsupcon.losses import LabelPrototypes

        _AUX.clear()
        b, _, d = feats.shape
        y = labels.to_dense() if labels.layout != torch.strided else labels
        g = torch.Generator().manual_seed(1)
        protos = logits = emb = None
        if name in PROTOTYPE_NAMES:
            torch.manual_seed(1)
            protos = LabelPrototypes(y.shape[1], d).to(feats.device).weight.detach()
        elif name in LOGIT_NAMES:
            logits = torch.randn(b, y.shape[1], generator=g).to(feats.device)
        elif name == "cl_icl":
            top = y.sum(0).argsort(descending=True)[:ICL_LABELS]
            y = y[:, top]
            emb = torch.randn(b, ICL_LABELS, d, generator=g).to(feats.device)
        _AUX[key] = (protos, logits, emb, y)
    return _AUX[key]


def engine_loss(name: str, chunk_size):
    from mlsupcon.losses import build

    if name in NEW_LOSSES:
        options = {} if name in ("zlpr", "label_nce") else {"chunk_size": chunk_size}
        fn = build("mulsupcon", empty_rows="count", **options) if name == "mulsupcon_count" else build(name, **options)

        def run_new(feats, labels):
            protos, logits, emb, y = new_loss_inputs(name, feats, labels)
            if logits is not None:
                fn(logits.detach().requires_grad_(), y).backward()
            elif emb is not None:
                fn(emb.detach().requires_grad_(), y).backward()
            elif protos is not None:
                fn(feats.detach().requires_grad_(), labels, prototypes=protos.detach().requires_grad_()).backward()
            else:
                fn(feats.detach().requires_grad_(), labels).backward()

        return run_new
    fn = build(name, chunk_size=chunk_size)

    def run(feats, labels):
        f = feats.detach().requires_grad_()
        y = class_ids(labels) if name == "supcon" else None if name == "simclr" else labels
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
    if key.startswith("supcon@") or key == "supcon":
        class_ids(y)  # prepared before the measurement, as in the timing
    name = key.partition("@")[0]
    if name in NEW_LOSSES:
        new_loss_inputs(name, feats, y)  # likewise
    print(peak_mib(lambda: fn(feats, y), device))


def engine_mode(n: int) -> str:
    """"dense" or "chunked": what the engine chooses for N = B·V embeddings, V = 2."""
    from mlsupcon.losses.engine import plan_chunks

    return "dense" if plan_chunks(n // 2, 2, n, None)[1] else "chunked"


def chunked_vs_dense(n: int, labels: str, device: str) -> dict[str, float]:
    """Largest relative difference of loss value and gradient, chunked (64 samples) vs dense."""
    from mlsupcon.losses import build

    feats, y = make_inputs(n, labels, device)
    out = {}
    for name in STRATEGIES:
        yy = (y.to_dense() if y.layout != torch.strided else y).argmax(1) if name == "supcon" else y
        res = []
        for chunk in (None, 64):
            f = feats.detach().requires_grad_()
            loss = build(name, chunk_size=chunk)(f, None if name == "simclr" else yy)
            loss.backward()
            res.append((loss.detach(), f.grad))
        dv = float((res[0][0] - res[1][0]).abs() / res[0][0].abs().clamp(min=1e-30))
        dg = float((res[0][1] - res[1][1]).abs().max() / res[0][1].abs().max().clamp(min=1e-30))
        out[name] = max(dv, dg)
    return out


def time_interleaved(keys, feats, labels, repeats: int, device: str) -> dict[str, float]:
    """Median seconds per key; each repeat runs every key once, in turn (noise hits all alike)."""
    funcs = {k: get_func(k) for k in keys}
    times = {k: [] for k in keys}
    if feats.shape[0] * feats.shape[1] <= 8192:  # warm-up (a large call takes seconds: no need)
        for fn in funcs.values():
            fn(feats, labels)
    for _ in range(repeats):
        for k, fn in funcs.items():
            sync(device)
            t0 = time.perf_counter()
            fn(feats, labels)
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="1024,2048,4096,8192,16384,32768")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--large-repeats", type=int, default=1, help="repeats for N > 8,192 (one call takes seconds)")
    ap.add_argument("--labels", default="debtags,sparse25k")
    ap.add_argument("--losses", default="strategies,new",
                    help="comma-separated loss names, or the groups 'strategies' (the flat strategies) and 'new' "
                         f"(issue 21: {', '.join(NEW_LOSSES)})")
    ap.add_argument("--new-max-n", type=int, default=8192,
                    help="the new losses run with Debtags labels only, up to this N")
    ap.add_argument("--memory-max-n", type=int, default=8192, help="peak memory measured up to this N")
    ap.add_argument("--reference-max-n", type=int, default=8192, help="the SupCon-style dense code up to this N")
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
        args.sizes, args.repeats, args.max_n = "512,1024", 2, 4096
    sizes = [int(s) for s in args.sizes.split(",")]
    label_sets = args.labels.split(",")
    losses = []
    for item in args.losses.split(","):
        group = {"strategies": STRATEGIES, "new": NEW_LOSSES}.get(item, [item])
        for name in group:
            if name not in STRATEGIES + NEW_LOSSES:
                ap.error(f"--losses: unknown {name!r}; expected {STRATEGIES + NEW_LOSSES} or strategies, new")
            if name not in losses:
                losses.append(name)
    strategies = [k for k in losses if k in STRATEGIES]
    new = [k for k in losses if k in NEW_LOSSES]
    print(f"# device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"V=2 D=128 tau=0.1 repeats={args.repeats} (N > 8192: {args.large_repeats}), interleaved, medians")
    print(f"# command: python benchmarks/bench_losses.py {' '.join(sys.argv[1:])}")
    if new:
        print("# new losses (Debtags labels only, N <= --new-max-n): P [C, D] for msc/proto_only/mscwrg/mscrg; "
              f"logits [N/2, C] for zlpr/cl_jspcl; [N/2, {ICL_LABELS}, 128] for cl_icl; defaults of each loss")
    print()
    print("| N | labels | engine mode | function | time (ms) | × bare | peak mem (MiB) |")
    print("|---|---|---|---|---|---|---|")
    worst = {}
    for n in sizes:
        for labels in label_sets:
            feats, y = make_inputs(n, labels, args.device)
            keys = ["bare"] + (["supcon_ref_dense"] if labels == "debtags" and n <= args.reference_max_n
                               and strategies else [])
            keys += strategies + (new if labels == "debtags" and n <= args.new_max_n else [])
            times = time_interleaved(keys, feats, y, args.repeats if n <= 8192 else args.large_repeats, args.device)
            mode = engine_mode(n)
            for key in keys:
                ratio = times[key] / times["bare"]
                if key in STRATEGIES:
                    worst[(n, labels)] = max(worst.get((n, labels), (0, "")), (ratio, key))
                measure = not args.no_memory and n <= args.memory_max_n
                mem = peak_memory(key, n, labels, args.device) if measure else float("nan")
                shown = mode if key in STRATEGIES else "-"
                print(f"| {n} | {labels} | {shown} | {key} | {times[key] * 1e3:.1f} | {ratio:.2f} | {mem:.0f} |",
                      flush=True)
    print()
    print("Slowest strategy per N (ratio to bare):")
    for (n, labels), (ratio, key) in sorted(worst.items()):
        print(f"  N={n} {labels} ({engine_mode(n)}): {key} {ratio:.2f}")
    print()
    if not strategies:
        return
    n_check = min(4096, max(sizes))
    diffs = chunked_vs_dense(n_check, "debtags", args.device)
    print(f"Chunked (64 samples per block) vs dense at N={n_check}, float32, largest relative difference "
          "of the loss or its gradient: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    if args.no_memory or args.max_n < 16384:
        return
    print()
    print("Memory search (engine's own chunking), simdis forward+backward, Debtags labels, "
          f"budget {args.budget_gib} GiB:")
    print("| N | time (s) | peak mem (MiB) | fits |")
    print("|---|---|---|---|")
    n, largest = 16384, None
    while n <= args.max_n:
        t0 = time.perf_counter()
        mem = peak_memory("simdis", n, "debtags", args.device)
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
