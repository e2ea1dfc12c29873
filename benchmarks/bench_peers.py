"""mlsupcon's loss engine against peer implementations, timed in one run.

For N = B·V embeddings (V = 2 views), D = 128, τ = 0.1, forward + backward of each loss:
  * ``bare``: ``normalize(z)`` then ``z @ z.T`` forward + backward with a materialised N×N upstream
    gradient, the floor any contrastive loss pays;
  * single-label: pytorch-metric-learning's ``SupConLoss`` vs mlsupcon ``supcon``;
  * multi-label: implementations written the way the reference code writes them (SupContrast's
    loss body; the official MulSupCon code's one row per (anchor, label)), with full N×N (or
    rows × N) logits and masks through autograd, vs mlsupcon ``any``, ``mulsupcon``, ``simdis``.

Repeats are interleaved (every function once per repeat, round-robin, the starting function
rotated), and each figure is a median; read the ratios, not the milliseconds. ``max |Δ value|`` is
the largest difference over the repeats between a peer's loss value and mlsupcon's for the same
float32 inputs, with the relative difference in parentheses. Peak memory is measured in a fresh
subprocess per function (as in bench_losses.py). A peer whose dense temporaries would need more than
``--max-gib`` is skipped with a printed row.

Labels: rows of the bundled Debtags set (597 labels), as bench_losses.py picks them; the
single-label rows use each row's first label (lowest vocabulary index) as its class.

Usage:
    python benchmarks/bench_peers.py --sizes 1024,4096,8192 --repeats 3
    python benchmarks/bench_peers.py --quick
    python benchmarks/bench_peers.py --device cuda --sizes 1024,4096,8192,16384

Needs the ``bench`` extra (``pip install -e ".[bench]"``) for the pytorch-metric-learning row; without
it that row is printed as unavailable.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _memory import peak_mib  # benchmarks/_memory.py (scripts run from this folder)
from bench_losses import make_inputs  # the same seeded features and Debtags rows as bench_losses.py

TEMPERATURE = 0.1
GIB = 2**30


# ----------------------------------------------------------------------------- reference-style losses
# Benchmark code, not library code: each is written the way its reference repository writes it, so
# that the timings show what a user of that code pays. Every one returns the scalar loss of
# features [B, V, D] (L2-normalised inside, as mlsupcon's default normalize=True does).


def _view_major(features: torch.Tensor) -> torch.Tensor:
    """[B, V, D] → [V·B, D], views stacked as SupContrast does (``torch.cat(torch.unbind(f, 1))``)."""
    return torch.cat(torch.unbind(features, dim=1))


def _supcontrast_body(z: torch.Tensor, mask: torch.Tensor, temperature: float, count_nonzero: bool) -> torch.Tensor:
    """SupContrast's loss body (``losses.py`` of HobbitLong/SupContrast) on a dense positive-weight mask.

    ``mask`` [N, N] holds the weight of every pair, the self pair included (it is removed here, as
    SupContrast does with ``logits_mask``). The per-anchor mean divides by ``mask.sum(1)`` (SupContrast),
    or by the number of positives with ``count_nonzero`` (SimDis's ``normalization="count"``).
    """
    n = z.shape[0]
    logits = z @ z.T / temperature
    logits = logits - logits.max(1, keepdim=True)[0].detach()
    logits_mask = 1 - torch.eye(n, dtype=z.dtype, device=z.device)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    count = (mask > 0).sum(1).to(z.dtype) if count_nonzero else mask.sum(1)
    # SupContrast averages over every anchor; anchors without a positive are left out here, as
    # mlsupcon does (with V ≥ 2 every anchor has one: its other views).
    valid = count > 0
    return -((mask * log_prob).sum(1)[valid] / count[valid]).mean()


def reference_any(features: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """ANY: positives share at least one label (``generate_output_any`` of the official MulSupCon code:
    ``(labels @ labels.T) > 0``), through SupContrast's loss body.

    Views of the same sample are positives even when the sample has no label (mlsupcon's documented
    same-sample rule; the official code would give such an anchor no positive).
    """
    b, v, _ = features.shape
    z = F.normalize(_view_major(features), dim=1)
    y = labels.to(z.dtype).repeat(v, 1)
    same = torch.arange(b, device=z.device).repeat(v)
    mask = ((y @ y.T) > 0) | (same[:, None] == same[None, :])
    return _supcontrast_body(z, mask.to(z.dtype), temperature, count_nonzero=False)


def reference_simdis(features: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SimDis (reciprocal dissimilarity, count normalisation) through SupContrast's loss body: the same
    computation as ``supcon_reference_dense`` of bench_losses.py, returning the loss."""
    b, v, _ = features.shape
    z = F.normalize(_view_major(features), dim=1)
    y = labels.to(z.dtype).repeat(v, 1)
    inter = y @ y.T
    na, nb = y.sum(1, keepdim=True), y.sum(1, keepdim=True).T
    mask = (inter / na.clamp(min=1)) / (1 + nb - inter) * (inter > 0)
    same = torch.arange(b, device=z.device).repeat(v)
    mask = torch.where(same[:, None] == same[None, :], torch.ones_like(mask), mask)
    return _supcontrast_body(z, mask, temperature, count_nonzero=True)


def reference_mulsupcon(features: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """MulSupCon written as the official code writes it (``generate_output_MulSupCon`` + ``SupCon`` of
    williamzhangsjtu/MulSupCon): one score row per (anchor, label), its mask the candidates holding
    that label, ``−mean log softmax`` over the mask, then the mean over all rows (``reduction="pair"``).

    In-batch differences from the official (MoCo-queue) code, which contrasts a query with keys that
    never include the query itself: the anchor's own column is removed from the softmax and from the
    mask; a row whose mask is empty is dropped; an anchor without labels forms one row whose positives
    are its other views (mlsupcon's documented convention; the official code gives it no row).
    ``log_softmax`` replaces ``log(softmax(·))``: the same value, without log(0) at the removed column.
    """
    b, v, _ = features.shape
    z = F.normalize(_view_major(features), dim=1)
    n = z.shape[0]
    y = labels.to(z.dtype).repeat(v, 1)  # [N, C]
    scores = z @ z.T / temperature  # [N, N]
    anchor, label = torch.where(y == 1)  # one row per (anchor, label), as the official code
    rows = torch.zeros(len(anchor), y.shape[1], dtype=z.dtype, device=z.device)
    rows[torch.arange(len(anchor), device=z.device), label] = 1
    masks = (rows @ y.T).to(torch.bool)  # [R, N]
    empty = torch.where(y.sum(1) == 0)[0]
    if len(empty):
        same = torch.arange(b, device=z.device).repeat(v)
        anchor = torch.cat([anchor, empty])
        masks = torch.cat([masks, same[empty][:, None] == same[None, :]])
    own = torch.zeros_like(masks)
    own[torch.arange(len(anchor), device=z.device), anchor] = True
    masks &= ~own
    keep = masks.any(1)
    log_prob = torch.log_softmax(scores[anchor].masked_fill(own, float("-inf")), dim=1)  # [R, N]
    loss = -torch.where(masks, log_prob, torch.zeros_like(log_prob)).sum(1) / masks.sum(1).clamp(min=1)
    if n < 2 or not bool(keep.any()):
        return scores.sum() * 0.0
    return loss[keep].mean()


def pml_supcon(features: torch.Tensor, class_ids: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """pytorch-metric-learning's ``SupConLoss`` on the V·B views, each view carrying its sample's class.

    Apples to apples with mlsupcon ``supcon`` (checked in its source, losses/supcon_loss.py, 2.9.0):
    its ``CosineSimilarity`` distance L2-normalises the embeddings; the self pair is neither positive
    (``get_matches_and_diffs`` zeroes the diagonal) nor in the denominator (nor a negative), as in
    SupCon; the per-anchor loss is the mean of −log p over the positives. Its default reducer
    ``AvgNonZeroReducer`` averages only the anchors whose loss is > 0, where mlsupcon averages the
    anchors with at least one positive: with V = 2 every anchor has a positive (its other view) and a
    positive loss, so the two means are over the same anchors and the values agree.
    """
    from pytorch_metric_learning.losses import SupConLoss

    v = features.shape[1]
    return SupConLoss(temperature=temperature)(_view_major(features), class_ids.repeat(v))


# ----------------------------------------------------------------------------- rows of the table
# (key, loss, implementation); every peer is compared with the mlsupcon row of the same loss.
ROWS = [
    ("bare", "—", "bare floor: normalize, z @ z.T"),
    ("ml:supcon", "supcon", "mlsupcon"),
    ("pml:supcon", "supcon", "pytorch-metric-learning SupConLoss"),
    ("ml:any", "any", "mlsupcon"),
    ("ref:any", "any", "reference-style dense (SupContrast body)"),
    ("ml:mulsupcon", "mulsupcon", "mlsupcon"),
    ("ref:mulsupcon", "mulsupcon", "reference-style dense (official: row per anchor×label)"),
    ("ml:simdis", "simdis", "mlsupcon"),
    ("ref:simdis", "simdis", "supcon_reference_dense"),
]
REFERENCES = {"ref:any": reference_any, "ref:mulsupcon": reference_mulsupcon, "ref:simdis": reference_simdis}

# Bytes per dense entry at a peer's peak (N×N entries; the MulSupCon reference also label rows × N),
# from this script's CPU peak-memory column (at N = 8,192: 29.7, 41.7, 45.4 and 12.3 bytes; a little more
# at 4,096), rounded up; used only to skip a peer that would not fit, never printed as a measurement.
BYTES_PER_ENTRY = {"ref:any": 32, "ref:simdis": 44, "pml:supcon": 52, "ref:mulsupcon": 14}


def pml_available() -> bool:
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        return False
    return True


def estimated_gib(key: str, n: int, labels: torch.Tensor) -> float:
    """Rough peak of a dense peer (0 for mlsupcon and the floor, which stay far below the limit)."""
    if key not in BYTES_PER_ENTRY:
        return 0.0
    entries = n * n
    if key == "ref:mulsupcon":
        entries += n // labels.shape[0] * int(labels.sum()) * n  # label rows × N
    return BYTES_PER_ENTRY[key] * entries / GIB


def make_function(key: str):
    """A callable (features, multi-hot labels, class ids) → loss value, running forward + backward."""
    if key == "bare":

        def run(feats, _labels, _ids):
            z = F.normalize(feats.reshape(-1, feats.shape[-1]).detach().requires_grad_(), dim=1)
            s = z @ z.T
            s.backward(torch.ones_like(s))  # a materialised N×N upstream gradient, as a loss gives
            return None

        return run
    kind, _, loss = key.partition(":")
    if kind == "ml":
        from mlsupcon.losses import build

        loss_fn = build(loss, temperature=TEMPERATURE)
        impl = (lambda f, y, ids: loss_fn(f, ids)) if loss == "supcon" else (lambda f, y, ids: loss_fn(f, y))
    elif kind == "pml":
        import pytorch_metric_learning.losses  # noqa: F401  (imported here, not inside a measured call)

        impl = lambda f, y, ids: pml_supcon(f, ids)  # noqa: E731
    else:
        reference = REFERENCES[key]
        impl = lambda f, y, ids: reference(f, y)  # noqa: E731

    def run(feats, labels, ids):
        f = feats.detach().requires_grad_()
        value = impl(f, labels, ids)
        value.backward()
        return value.detach()

    return run


def class_ids(labels: torch.Tensor) -> torch.Tensor:
    """Each row's first label (lowest vocabulary index) as its class, as bench_losses.py does."""
    return labels.argmax(1)


# ----------------------------------------------------------------------------- measurement
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(keys, feats, labels, ids, repeats: int, device: str):
    """Interleaved repeats: per repeat every function once, the first one rotating."""
    funcs = {k: make_function(k) for k in keys}
    times = {k: [] for k in keys}
    values = {k: [] for k in keys}
    for k in keys:  # warm-up
        funcs[k](feats, labels, ids)
    sync(device)
    for r in range(repeats):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            sync(device)
            t0 = time.perf_counter()
            value = funcs[k](feats, labels, ids)
            sync(device)
            times[k].append(time.perf_counter() - t0)
            values[k].append(None if value is None else value.item())
    return {k: statistics.median(t) for k, t in times.items()}, values


def peak_memory(key: str, n: int, device: str) -> float:
    """Peak memory (MiB) of one forward+backward, measured in a fresh process."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", key, str(n), device],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def child(key: str, n: int, device: str) -> None:
    feats, y = make_inputs(n, "debtags", device)
    ids = class_ids(y)
    fn = make_function(key)
    print(peak_mib(lambda: fn(feats, y, ids), device))


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,4096,8192,16384", help="N = B·V values, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-memory", action="store_true", help="skip the per-function peak-memory subprocesses")
    ap.add_argument("--quick", action="store_true", help="small smoke run (N = 256, 512; 2 repeats)")
    ap.add_argument("--max-gib", type=float, default=8.0, help="skip a peer whose estimated peak exceeds this")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        key, n, device = args.child
        child(key, int(n), device)
        return
    if args.quick:
        args.sizes, args.repeats = "256,512", 2
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    have_pml = pml_available()
    pml_version = "not installed"
    if have_pml:
        import pytorch_metric_learning

        pml_version = pytorch_metric_learning.__version__
    print(f"# device={args.device} torch={torch.__version__} pytorch-metric-learning={pml_version} "
          f"threads={torch.get_num_threads()} V=2 D=128 τ={TEMPERATURE} repeats={args.repeats} (interleaved, medians)")
    print(f"# command: python {shlex.join(['benchmarks/bench_peers.py', *sys.argv[1:]])}")
    print("# max |Δ value|: |peer − mlsupcon| of the loss value, float32, same inputs (relative in parentheses)")
    print()
    print("| N | loss | implementation | ms | × bare | × mlsupcon | peak MiB | max |Δ value| |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        feats, y = make_inputs(n, "debtags", args.device)
        ids = class_ids(y)
        keys, skipped = [], {}
        for key, _, _ in ROWS:
            need = estimated_gib(key, n, y)
            if key == "pml:supcon" and not have_pml:
                skipped[key] = "unavailable: pip install -e '.[bench]'"
            elif need > args.max_gib:
                skipped[key] = f"skipped: would need {need:.1f} GiB"
            else:
                keys.append(key)
        times, values = measure(keys, feats, y, ids, args.repeats, args.device)
        for key, loss, impl in ROWS:
            if key in skipped:
                print(f"| {n} | {loss} | {impl} | {skipped[key]} | | | | |", flush=True)
                continue
            ml = f"ml:{loss}"
            vs_ml, delta = "—", "—"
            if key != "bare" and not key.startswith("ml:"):
                vs_ml = f"{times[key] / times[ml]:.2f}"
                d = max(abs(a - b) for a, b in zip(values[key], values[ml]))
                rel = d / max(abs(v) for v in values[ml])
                delta = f"{d:.1e} ({rel:.0e})"
            mem = "—" if args.no_memory else f"{peak_memory(key, n, args.device):.0f}"
            print(f"| {n} | {loss} | {impl} | {times[key] * 1e3:.1f} | {times[key] / times['bare']:.2f} | {vs_ml} | "
                  f"{mem} | {delta} |", flush=True)


if __name__ == "__main__":
    main()
