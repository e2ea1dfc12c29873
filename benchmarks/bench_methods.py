"""Cost of a contrastive stage-1 step against V BCE steps, per encoder, and the share of data preparation.

Goal (a benchmark goal, not a timed test): a stage-1 step with V views costs at most
1.1 × V × a BCE step with the same encoder and batch (loss, views and projection add ≤ 10 %),
and building a batch never dominates a step.

A step = forward + backward + AdamW step on one batch, through the pipeline's own code:
encoder, loader and batches as :func:`mlsupcon.training.runner.make_encoder` and
:func:`~mlsupcon.training.batches.make_loader` make them (the training loader: shuffled, last
partial batch dropped); the BCE loss of :class:`~mlsupcon.training.modules.ClassifierModule`
(head of the config's ``head``); the contrastive loss of
:class:`~mlsupcon.training.modules.ContrastiveModule` with the projection head, criterion, label
converter and view maker of :func:`~mlsupcon.training.methods.base.contrastive_parts` (V views
by the encoder's ``build_view_fn``, one encoder pass over V·B rows). Lightning's own per-step
bookkeeping is not timed. Cases:

* ``mlp``: the yeast preset (MLP 103→256→512→256, views: mask features with p = 0.5), batch 64
  and batch 256;
* ``cnn``: Debtags with the auto settings of :mod:`mlsupcon.config.auto` for ``encoder: cnn``
  (own tokenizer, max_length the 95th percentile of the token counts, the Debtags recipe's
  sizes, token crop/drop/mask views), batch 256;
* ``sparse``: Debtags with the auto settings for ``encoder: sparse`` (TF-IDF features, one
  512-wide layer, feature-drop views), batch 256;
* ``transformer``: the bundled all-MiniLM-L6-v2 fine-tuned, max_length 128, default token
  views, batch 16 (``--transformer-batch``).

Columns: ``ms / step`` the median step; ``× bce`` over the BCE step; ``÷ (V·bce)`` the
contrastive step over V BCE steps (goal ≤ 1.1). Data preparation is one batch as the training
loader builds it (sampler, label densifying, collation, preprocessing: tokenisation or TF-IDF
featurisation where it happens per batch), timed while iterating the loader; ``data %`` is
load ÷ (load + step), in the first epoch and in later ones (the same batches built again): the
text encoders keep per-text work (TF-IDF rows, token ids), so later epochs redo none of it.
``--breakdown`` adds partial steps (the views; views + encoder; + projection head, each with a
trivial loss, backward and AdamW step) to split the contrastive step into views, encoder,
projection and loss, and counts minor page faults per step (large temporaries that the
allocator maps afresh in every step).

Times are this process's CPU time by default (``--clock cpu``): on a machine shared with other
jobs the elapsed time also counts the waits for a core; ``--clock wall`` measures elapsed time.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_methods.py [--repeats 10] [--cases mlp,cnn,sparse,transformer]
        [--breakdown]
Repeats are interleaved (round-robin over the methods within a repeat, each repeat on the next
batch of the loader); medians. Read the ratios (measured in the same run), not the milliseconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from mlsupcon.config import TrainConfig
from mlsupcon.config.presets import preset_for
from mlsupcon.data import load_dataset
from mlsupcon.models import build_head
from mlsupcon.training.batches import concat_batches, make_loader
from mlsupcon.training.methods.base import FitContext, contrastive_parts
from mlsupcon.training.modules import ClassifierModule, ContrastiveModule
from mlsupcon.training.runner import make_encoder

CONTRASTIVE = ("mulsupcon", "simdis")
GOAL = 1.1


@dataclasses.dataclass
class Case:
    name: str
    cfg: TrainConfig
    dataset: object
    note: str


def _auto_cfg(ds, encoder: str, **fields) -> TrainConfig:
    """A TrainConfig with the encoder options, views and batch size auto settings choose for ``encoder``."""
    from mlsupcon.config.auto import auto_settings

    overrides, _ = auto_settings(ds, encoder=encoder, method="two-stage")
    enc_opts = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("encoder_options.")}
    return TrainConfig(dataset=ds.name, encoder=encoder, encoder_options=enc_opts,
                       view_options=overrides["view_options"], batch_size=overrides["batch_size"],
                       method="two-stage", auto=False, **fields)


def make_cases(names: list[str], transformer_batch: int) -> list[Case]:
    cases = []
    if "mlp" in names:
        ds = load_dataset("yeast")
        for batch in (64, 256):
            p = preset_for("yeast")
            cfg = TrainConfig(**{**p, "batch_size": batch, "auto": False})
            cases.append(Case(f"mlp b{batch}", cfg, ds, "yeast preset"))
    if {"cnn", "sparse"} & set(names):
        ds = load_dataset("debtags")
        if "cnn" in names:
            cfg = _auto_cfg(ds, "cnn")
            cases.append(Case(f"cnn b{cfg.batch_size}", cfg, ds,
                              f"debtags, max_length {cfg.encoder_options['max_length']}"))
        if "sparse" in names:
            cfg = _auto_cfg(ds, "sparse")
            cases.append(Case(f"sparse b{cfg.batch_size}", cfg, ds, "debtags"))
    if "transformer" in names:
        ds = load_dataset("debtags")
        cfg = TrainConfig(dataset="debtags", encoder="transformer", encoder_options={"max_length": 128},
                          batch_size=transformer_batch, method="two-stage", auto=False)
        cases.append(Case(f"transformer b{transformer_batch}", cfg, ds, "debtags, MiniLM, max_length 128"))
    return cases


def make_steps(cfg: TrainConfig, ds, encoder, breakdown: bool) -> dict[str, Callable]:
    """One optimizer step per method (and per partial step with ``breakdown``), all on ``encoder``.

    One AdamW (as ``_Base.configure_optimizers`` makes it) over every module's parameters: a step
    updates only those its loss reached (the others have no gradient), and the encoder's moments
    are held once, not once per method (the sparse encoder's first layer is ~400 MB).
    """
    modules, losses = [], {}
    bce_head = build_head(cfg.head, encoder, ds.num_labels, **cfg.head_options)
    bce = ClassifierModule(encoder, bce_head, cfg.lr, cfg.weight_decay, classifier_loss="bce")
    modules.append(bce)
    losses["bce"] = lambda batch: bce._cls_loss(bce.logits(batch[0]), batch[1])
    if breakdown:  # the encoder pass alone (a trivial loss on its output)
        losses["bce: encoder"] = lambda batch: encoder(batch[0]).square().mean()
    views = None
    for loss_name in CONTRASTIVE:
        parts = contrastive_parts(FitContext(dataclasses.replace(cfg, loss=loss_name), ds, encoder, {}, Path(".")))
        con = ContrastiveModule(encoder, parts["projection"], parts["loss_fn"], parts["loss_labels"],
                                parts["view_fn"], parts["views"], cfg.lr, cfg.weight_decay)
        modules.append(con)
        losses[loss_name] = lambda batch, con=con: con._loss(batch)[0]
        if breakdown and views is None:
            def views(batch, parts=parts):  # what embed_views does before the encoder pass
                return concat_batches([parts["view_fn"](batch[0]) for _ in range(parts["views"])])

            losses["views + encoder"] = lambda batch: encoder(views(batch)).square().mean()
            losses["views + encoder + projection"] = (
                lambda batch, proj=parts["projection"]: proj(encoder(views(batch))).square().mean())
    params = {id(p): p for m in modules for p in m.parameters() if p.requires_grad}
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for m in modules:
        m.train()

    def optimizer_step(loss: Callable) -> Callable:
        def step(batch):
            opt.zero_grad()
            loss(batch).backward()
            opt.step()

        return step

    steps = {name: optimizer_step(loss) for name, loss in losses.items()}
    if views is not None:
        steps["views"] = views
    return steps


def load_batches(cfg: TrainConfig, ds, encoder, n: int, epoch: int, clock: Callable) -> tuple[list, list[float]]:
    """``n`` batches of the training loader (epoch ``epoch``) and the time each one took to build."""
    loader = make_loader(ds.splits["train"], encoder.preprocess, cfg.batch_size, shuffle=True, seed=cfg.seed,
                         drop_last=True, num_workers=cfg.num_workers)
    loader.sampler.set_epoch(epoch)
    batches, times = [], []
    it = iter(loader)
    while len(batches) < n:
        t0 = clock()
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        times.append(clock() - t0)
        batches.append(b)
    return batches, times


def run_case(case: Case, repeats: int, clock: Callable, breakdown: bool) -> dict:
    """Medians (seconds) of every step variant, of building a batch, and minor page faults per step."""
    cfg, ds = case.cfg, case.dataset
    torch.manual_seed(cfg.seed)
    encoder = make_encoder(cfg, ds)
    batches, load_s = load_batches(cfg, ds, encoder, repeats + 1, epoch=0, clock=clock)
    # The same batches again, as a later epoch builds them: encoders that keep per-text work (TF-IDF
    # rows, token ids) redo none of it.
    _, warm_s = load_batches(cfg, ds, encoder, repeats + 1, epoch=0, clock=clock)
    steps = make_steps(cfg, ds, encoder, breakdown)
    times: dict[str, list[float]] = {m: [] for m in steps}
    faults: dict[str, list[int]] = {m: [] for m in steps}
    for step in steps.values():  # warm-up (allocator, lazy initialisation)
        step(batches[0])
    for r in range(repeats):  # round-robin: every method on the same batch, then the next batch
        for m, step in steps.items():
            f0, t0 = _minflt(), clock()
            step(batches[r + 1])
            times[m].append(clock() - t0)
            faults[m].append(_minflt() - f0)
    return {"step": {m: statistics.median(t) for m, t in times.items()},
            "faults": {m: statistics.median(f) for m, f in faults.items()},
            "load": statistics.median(load_s[1:]), "warm": statistics.median(warm_s[1:]),
            "views": cfg.views, "repeats": repeats}


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.0f} %"


def print_table(results: list[tuple[Case, dict]]) -> None:
    print("| case | data | method | ms / step | × bce | ÷ (V·bce) | load ms (first epoch / later) | data % (first "
          "epoch) | data % (later) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, res in results:
        t, v = res["step"], res["views"]
        for m in ("bce",) + CONTRASTIVE:
            per_v = None if m == "bce" else t[m] / (v * t["bce"])
            per_v_s = "" if per_v is None else f"{per_v:.2f}" + (" ✗" if per_v > GOAL else "")
            load, warm = res["load"], res["warm"]
            print(f"| {case.name} | {case.note} | {m if m == 'bce' else f'{m} V={v}'} | {1000 * t[m]:.1f} | "
                  f"{t[m] / t['bce']:.2f} | {per_v_s} | {1000 * load:.1f} / {1000 * warm:.1f} | "
                  f"{_pct(load / (load + t[m]))} | {_pct(warm / (warm + t[m]))} |")


def print_breakdown(results: list[tuple[Case, dict]]) -> None:
    name = CONTRASTIVE[0]
    print(f"\nWhere the {name} step's time goes, in units of V BCE steps (differences of partial steps, each adding "
          "one stage with its backward and the AdamW step); the encoder's scaling from B to V·B rows (1 = linear); "
          "minor page faults per step.\n")
    print(f"| case | views | encoder on V·B rows | projection | loss | = {name} | encoder V·B ÷ V·(encoder B) | "
          f"faults bce | faults {name} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, res in results:
        t, f, v = res["step"], res["faults"], res["views"]
        unit = v * t["bce"]
        enc_vb = t["views + encoder"] - t["views"]
        print(f"| {case.name} | {t['views'] / unit:.2f} | {enc_vb / unit:.2f} | "
              f"{(t['views + encoder + projection'] - t['views + encoder']) / unit:.2f} | "
              f"{(t[name] - t['views + encoder + projection']) / unit:.2f} | {t[name] / unit:.2f} | "
              f"{enc_vb / (v * t['bce: encoder']):.2f} | {f['bce']:.0f} | {f[name]:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--transformer-repeats", type=int, default=5, help="repeats of the (slow) transformer case")
    ap.add_argument("--cases", default="mlp,cnn,sparse,transformer")
    ap.add_argument("--transformer-batch", type=int, default=16)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this process's CPU time (steady on a shared machine; default), wall: elapsed time")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time partial steps (views; + encoder; + projection) and count page faults")
    args = ap.parse_args()
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(names) - {"mlp", "cnn", "sparse", "transformer"})
    if unknown:
        ap.error(f"--cases: unknown {unknown}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cmd = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    print(f"# torch {torch.__version__}, threads={torch.get_num_threads()}, {args.clock} time, medians of "
          f"{args.repeats} ({args.transformer_repeats} for the transformer); `{cmd}`")
    print(f"# goal: contrastive ÷ (V·bce) ≤ {GOAL}; data % = building one batch ÷ (building it + the step)\n")
    results = []
    for case in make_cases(names, args.transformer_batch):
        repeats = args.transformer_repeats if case.cfg.encoder == "transformer" else args.repeats
        results.append((case, run_case(case, repeats, clock, args.breakdown)))
        print(f"# {case.name} done", file=sys.stderr, flush=True)
    print_table(results)
    if args.breakdown:
        print_breakdown(results)


if __name__ == "__main__":
    main()
