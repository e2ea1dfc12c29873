"""mlsupcon's losses inside pytorch-metric-learning (pml) and sentence-transformers.

pml: the wrapped loss equals the mlsupcon loss (values and gradients) with multi-hot labels, half
precision gives the float32 value, the label-aware CrossBatchMemory equals the loss called with
the memory as references, training with them lowers the loss, and under pml's
DistributedLossWrapper on 2 gloo processes the result is W × the single-process loss of the
concatenated batch with DDP-averaged gradients equal to the single-process ones.
sentence-transformers: the loss's conventions, and a few SentenceTransformerTrainer steps on the
bundled MiniLM lower the loss on a fixed batch.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import traceback
import zlib

import pytest
import torch
import torch.distributed as dist
from pytorch_metric_learning.losses import CrossBatchMemory as PMLCrossBatchMemory
from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss
from pytorch_metric_learning.regularizers import LpRegularizer
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper
from torch import nn

from mlsupcon.integrations.pml import CrossBatchMemory, MultiLabelContrastiveLoss
from mlsupcon.losses import build

D_IN, D, C = 6, 5, 4
WORLD = 2
TOL = 1e-9


def _labels(name: str, b: int, g: torch.Generator, dtype=torch.float64):
    if name == "simclr":
        return None
    if name == "supcon":
        return torch.randint(0, 3, (b,), generator=g)
    pool = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 1]], dtype=dtype)
    return pool[torch.randint(0, len(pool), (b,), generator=g)]


def _max_err(a, b) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


# ------------------------------------------------------------------------ pml, one process
LOSSES = [("simdis", {}), ("mulsupcon", {}), ("all", {}), ("any", {}), ("jaccard", {"threshold": 0.3}),
          ("mlcl", {"reg_weight": 0.1}), ("supcon", {}), ("simclr", {})]


@pytest.mark.parametrize("views", [1, 2])
@pytest.mark.parametrize("name,opts", LOSSES, ids=[n for n, _ in LOSSES])
def test_pml_loss_equals_mlsupcon_loss(name, opts, views):
    g = torch.Generator().manual_seed(zlib.crc32(f"{name}{views}".encode()))
    shape = (10, D) if views == 1 else (10, views, D)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    y = _labels(name, 10, g)
    refs, ref_labels = torch.randn(3, D, generator=g, dtype=torch.float64), _labels(name, 3, g)
    for kw_pml, kw_ml in [({}, {}), ({"ref_emb": refs, "ref_labels": ref_labels},
                                     {"ref_features": refs, "ref_labels": ref_labels})]:
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        got = MultiLabelContrastiveLoss(name, **opts)(a, y, **kw_pml)
        want = build(name, **opts)(b, y, **kw_ml)
        got.backward()
        want.backward()
        assert got.item() == want.item()
        assert want.item() > 0 or (name == "simclr" and views == 1)  # SimCLR needs a second view
        assert torch.equal(a.grad, b.grad)


def test_pml_loss_with_sparse_labels_and_a_built_loss():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(12, 2, D, generator=g), _labels("simdis", 12, g, torch.float32)
    built = build("simdis", dissimilarity="ratio")
    want = built(x, y)
    assert float(MultiLabelContrastiveLoss(built)(x, y.to_sparse_coo())) == pytest.approx(float(want), abs=1e-6)


def test_pml_embedding_regularizer_adds_its_term():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(8, D, generator=g) * 3, _labels("any", 8, g, torch.float32)
    plain = MultiLabelContrastiveLoss("any")(x, y)
    reg = MultiLabelContrastiveLoss("any", embedding_regularizer=LpRegularizer(), embedding_reg_weight=0.5)(x, y)
    assert float(reg) == pytest.approx(float(plain) + 0.5 * float(x.norm(dim=1).mean()), rel=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_pml_half_precision_gives_the_float32_value(dtype, tol):
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(16, 2, 32, generator=g), _labels("simdis", 16, g, torch.float32)
    loss_fn = MultiLabelContrastiveLoss("simdis")
    half = x.to(dtype).requires_grad_()
    got = loss_fn(half, y)
    got.backward()
    assert got.dtype == torch.float32 and bool(torch.isfinite(got))
    assert half.grad.dtype == dtype and bool(torch.isfinite(half.grad.float()).all())
    # exactly the float32 loss of the rounded embeddings, and close to that of the originals
    assert got.item() == pytest.approx(loss_fn(half.detach().float(), y).item(), abs=1e-6)
    assert got.item() == pytest.approx(loss_fn(x, y).item(), rel=tol)

    # the cross-batch memory keeps float32 rows: the same values as a float32 memory
    mem_half = CrossBatchMemory(MultiLabelContrastiveLoss("simdis"), 32, memory_size=40, num_labels=C)
    mem_f32 = CrossBatchMemory(MultiLabelContrastiveLoss("simdis"), 32, memory_size=40, num_labels=C)
    for step in range(3):
        xs = torch.randn(8, 2, 32, generator=g).to(dtype)
        ys = _labels("simdis", 8, g, torch.float32)
        a, b = mem_half(xs, ys), mem_f32(xs.float(), ys)
        assert a.dtype == torch.float32
        assert float(a) == pytest.approx(float(b), abs=1e-6), step
    assert mem_half.embedding_memory.dtype == torch.float32


def test_pml_refuses_what_an_mlsupcon_loss_cannot_take():
    with pytest.raises(ValueError, match="^loss: 'asl' is not a flat contrastive loss"):
        MultiLabelContrastiveLoss("asl")
    with pytest.raises(ValueError, match="^distance: the loss uses CosineSimilarity"):
        from pytorch_metric_learning.distances import LpDistance

        MultiLabelContrastiveLoss("simdis", distance=LpDistance())
    loss_fn = MultiLabelContrastiveLoss("simdis")
    x, y = torch.randn(4, D), torch.randint(0, 2, (4, C))
    with pytest.raises(ValueError, match="^indices_tuple: "):
        loss_fn(x, y, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ValueError, match="^labels: has 3 rows but embeddings has 4"):
        loss_fn(x, y[:3])
    with pytest.raises(ValueError, match="^miner: "):
        CrossBatchMemory(loss_fn, D, 8, num_labels=C, miner=object())
    with pytest.raises(ValueError, match="^num_labels: required"):
        CrossBatchMemory(loss_fn, D, 8)
    with pytest.raises(ValueError, match="^loss: gather_distributed=True inside a CrossBatchMemory"):
        CrossBatchMemory(MultiLabelContrastiveLoss("any", gather_distributed=True), D, 8, num_labels=C)


def test_pml_own_losses_and_memory_refuse_multi_hot_labels():
    """Why this module exists: pml 2.x takes one class id per sample (and its memory a 1-D buffer)."""
    x, y = torch.randn(8, D), torch.randint(0, 2, (8, C))
    with pytest.raises(ValueError, match="1D tensor"):
        PMLSupConLoss()(x, y)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        PMLCrossBatchMemory(PMLSupConLoss(), D, memory_size=16)(x, y)


def test_pml_cross_batch_memory_equals_the_loss_with_the_memory_as_references():
    g = torch.Generator().manual_seed(6)
    name = "mulsupcon"
    mem = CrossBatchMemory(MultiLabelContrastiveLoss(name), D, memory_size=20, num_labels=C)
    assert isinstance(mem, PMLCrossBatchMemory)  # so that pml's DistributedLossWrapper accepts it
    loss_fn = build(name)
    rows, row_labels = torch.zeros(0, D, dtype=torch.float64), torch.zeros(0, C, dtype=torch.float64)
    for step in range(4):  # 8 samples × 2 views a step: the memory of 20 rows wraps at step 2
        x, y = torch.randn(8, 2, D, generator=g, dtype=torch.float64), _labels(name, 8, g)
        got = mem(x, y)
        # the memory stores float32 rows
        want = loss_fn(x, y) if not len(rows) else loss_fn(x, y, ref_features=rows.float().double(),
                                                           ref_labels=row_labels)
        assert float(got) == pytest.approx(float(want), abs=1e-12), step
        rows = torch.cat([rows, x.transpose(0, 1).reshape(16, D)])[-20:]  # view-major, last 20 kept
        row_labels = torch.cat([row_labels, y, y])[-20:]
        stored, stored_labels = mem.queue.contents()
        assert torch.equal(stored.double(), rows.float().double())
        assert torch.equal(stored_labels.double(), row_labels)
    assert len(mem.queue) == 20 and mem.has_been_filled and mem.queue_idx == (4 * 16) % 20

    # enqueue_mask (pml's MoCo-style use): masked rows are only enqueued and are candidates
    x, y = torch.randn(8, D, generator=g, dtype=torch.float64), _labels(name, 8, g)
    mask = torch.tensor([True, False] * 4)
    before, before_labels = mem.queue.stored()
    want = loss_fn(x[~mask], y[~mask], ref_features=torch.cat([x[mask], before.double()]),
                   ref_labels=torch.cat([y[mask], before_labels.double()]))
    assert float(mem(x, y, enqueue_mask=mask)) == pytest.approx(float(want), abs=1e-6)
    assert torch.equal(mem.queue.contents()[0][-4:].double(), x[mask].float().double())

    # evaluation reads the memory without writing it; reset_queue empties it
    mem.eval()
    mem(x, y)
    assert mem.queue_idx == (4 * 16 + 4) % 20
    mem.reset_queue()
    assert len(mem.queue) == 0


@pytest.mark.parametrize("memory", [False, True], ids=["loss", "cross-batch-memory"])
def test_pml_training_lowers_the_loss(memory):
    """A linear embedder trained with the pml loss (alone or in the memory) on synthetic multi-label
    data whose label signal (8 dimensions) hides among 24 noise dimensions of larger scale."""
    g = torch.Generator().manual_seed(7)
    centers = torch.randn(C, 8, generator=g)

    def batch(n):
        y = (torch.rand(n, C, generator=g) < 0.35).float()
        y[y.sum(1) == 0, 0] = 1.0
        return torch.cat([y @ centers, 2 * torch.randn(n, 24, generator=g)], 1), y

    torch.manual_seed(0)
    model = nn.Linear(32, 8)
    loss_func = MultiLabelContrastiveLoss("simdis", temperature=0.2)
    train_loss = CrossBatchMemory(loss_func, 8, memory_size=96, num_labels=C) if memory else loss_func
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    xe, ye = batch(64)
    with torch.no_grad():
        start = float(loss_func(model(xe), ye))
    for _ in range(20):
        x, y = batch(32)
        loss = train_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = float(loss_func(model(xe), ye))
    assert end < 0.8 * start, (start, end)


# ------------------------------------------------------------------ pml, 2 gloo processes
DIST_CASES = {
    "wrapper-simdis-V1": dict(name="simdis", V=1, kind="wrapper"),
    "wrapper-simdis-V2": dict(name="simdis", V=2, kind="wrapper"),
    "wrapper-mlcl-V1": dict(name="mlcl", V=1, kind="wrapper", opts={"reg_weight": 0.1}),
    "wrapper-supcon-V2": dict(name="supcon", V=2, kind="wrapper"),
    "gather-mulsupcon-V2": dict(name="mulsupcon", V=2, kind="gather"),
    "memory-simdis-V1": dict(name="simdis", V=1, kind="memory", memory_size=16, mask=False),
    "memory-any-mask-V2": dict(name="any", V=2, kind="memory", memory_size=64, mask=True),
}
EFFICIENT_CASE = "wrapper-efficient"


def _model():
    torch.manual_seed(1234)
    return nn.Sequential(nn.Linear(D_IN, D), nn.Tanh(), nn.Linear(D, D)).double()


def _embed(model, x, views):
    out = model(x)
    return out[:, 0] if views == 1 else out


def _averaged(grads, world):
    out = []
    for gp in grads:
        gp = gp.clone()
        dist.all_reduce(gp)
        out.append(gp / world)
    return out


def _run_loss_case(cid, spec, rank, world):
    g = torch.Generator().manual_seed(zlib.crc32(cid.encode()))
    name, v, opts = spec["name"], spec["V"], spec.get("opts", {})
    b = 4  # per rank: pml's all_gather needs equal batch sizes
    x = torch.randn(world * b, v, D_IN, generator=g, dtype=torch.float64)
    y = _labels(name, world * b, g)
    model = _model()
    params = list(model.parameters())
    xf = x.clone().requires_grad_()
    full = MultiLabelContrastiveLoss(name, **opts)(_embed(model, xf, v), y)
    full_grads = torch.autograd.grad(full, params + [xf])

    sl = slice(rank * b, (rank + 1) * b)
    xr = x[sl].clone().requires_grad_()
    if spec["kind"] == "wrapper":
        loss_fn = DistributedLossWrapper(MultiLabelContrastiveLoss(name, **opts))
        scale = world  # pml returns W × the loss of the gathered batch
    else:
        loss_fn = MultiLabelContrastiveLoss(name, gather_distributed=True, **opts)
        scale = 1
    loss = loss_fn(_embed(model, xr, v), y[sl])
    grads = torch.autograd.grad(loss, params + [xr])
    avg = _averaged(grads[:-1], world)
    return {
        "loss_err": abs(float(loss) / scale - float(full)),
        "param_grad_err": max(_max_err(a, c) for a, c in zip(avg, full_grads[:-1])),
        "input_grad_err": _max_err(grads[-1] / world, full_grads[-1][sl]),
        "ref_loss": float(full),
        "ref_grad_norm": float(sum(gp.norm() for gp in full_grads[:-1])),
    }


def _run_memory_case(cid, spec, rank, world):
    g = torch.Generator().manual_seed(zlib.crc32(cid.encode()))
    name, v, b = spec["name"], spec["V"], 4
    model = _model()
    params = list(model.parameters())
    single = CrossBatchMemory(name, D, memory_size=spec["memory_size"], num_labels=C)
    wrapped = DistributedLossWrapper(CrossBatchMemory(name, D, memory_size=spec["memory_size"], num_labels=C))
    sl = slice(rank * b, (rank + 1) * b)
    out = {"loss_err": 0.0, "param_grad_err": 0.0, "memory_err": 0.0, "ref_grad_norm": 0.0, "filled": []}
    for _step in range(3):
        x = torch.randn(world * b, v, D_IN, generator=g, dtype=torch.float64)
        y = _labels(name, world * b, g)
        mask = torch.rand(world * b, generator=g) < 0.4 if spec["mask"] else None
        ls = single(_embed(model, x, v), y, enqueue_mask=mask)
        gs = torch.autograd.grad(ls, params)
        ld = wrapped(_embed(model, x[sl], v), y[sl], enqueue_mask=None if mask is None else mask[sl])
        avg = _averaged(torch.autograd.grad(ld, params), world)
        out["loss_err"] = max(out["loss_err"], abs(float(ld) / world - float(ls)))
        out["param_grad_err"] = max(out["param_grad_err"], max(_max_err(a, c) for a, c in zip(avg, gs)))
        out["ref_grad_norm"] += float(sum(gp.norm() for gp in gs))
        # the same rows (with their labels) on both ranks as in one process, in some order
        a_rows, a_lab = single.queue.contents()
        b_rows, b_lab = wrapped.loss.queue.contents()
        key_a, key_b = torch.argsort(a_rows[:, 0]), torch.argsort(b_rows[:, 0])
        out["memory_err"] = max(out["memory_err"], _max_err(a_rows[key_a], b_rows[key_b]),
                                _max_err(a_lab[key_a].double(), b_lab[key_b].double()))
        out["filled"].append(len(wrapped.loss.queue))
    return out


def _run_efficient_case(rank, world):
    """pml's efficient=True pairs samples by label equality (1-D labels) before calling the loss."""
    loss_fn = DistributedLossWrapper(MultiLabelContrastiveLoss("simdis"), efficient=True)
    try:
        loss_fn(torch.randn(4, D), torch.randint(0, 2, (4, C)))
    except Exception as exc:  # noqa: BLE001 - what pml raises is the measurement
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"error": None}


def _worker(rank, world, port, outdir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    results = {}
    try:
        for cid, spec in DIST_CASES.items():
            run = _run_memory_case if spec["kind"] == "memory" else _run_loss_case
            try:
                results[cid] = run(cid, spec, rank, world)
            except Exception:  # noqa: BLE001 - reported by the test of this case
                results[cid] = {"exception": traceback.format_exc()}
        results[EFFICIENT_CASE] = _run_efficient_case(rank, world)
    finally:
        with open(os.path.join(outdir, f"rank{rank}.json"), "w") as fh:
            json.dump(results, fh)
        dist.barrier()  # both ranks done before the group is torn down (see test_distributed._worker)
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dist_results(tmp_path_factory):
    import torch.multiprocessing as mp

    outdir = str(tmp_path_factory.mktemp("pml-dist"))
    ctx = mp.start_processes(_worker, args=(WORLD, _free_port(), outdir), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 240
    try:
        while not ctx.join(timeout=5):
            if time.monotonic() > deadline:
                raise TimeoutError("distributed workers did not finish in 240 s")
    finally:
        for p in ctx.processes:  # only the two workers started above
            if p.is_alive():
                p.kill()
    out = []
    for r in range(WORLD):
        with open(os.path.join(outdir, f"rank{r}.json")) as fh:
            out.append(json.load(fh))
    return out


def _per_rank(results, cid):
    per_rank = [res[cid] for res in results]
    for r, res in enumerate(per_rank):
        assert "exception" not in res, f"rank {r}:\n{res['exception']}"
    return per_rank


@pytest.mark.distributed
@pytest.mark.parametrize("cid", [c for c, s in DIST_CASES.items() if s["kind"] != "memory"])
def test_pml_distributed_equals_one_process_on_the_concatenated_batch(dist_results, cid):
    """DistributedLossWrapper (and the loss's own gather_distributed) with 2-D labels on 2 ranks."""
    for r, res in enumerate(_per_rank(dist_results, cid)):
        assert res["ref_loss"] > 0 and res["ref_grad_norm"] > 0
        assert res["loss_err"] < TOL, (r, res)
        assert res["param_grad_err"] < TOL, (r, res)
        assert res["input_grad_err"] < TOL, (r, res)


@pytest.mark.distributed
@pytest.mark.parametrize("cid", [c for c, s in DIST_CASES.items() if s["kind"] == "memory"])
def test_pml_distributed_cross_batch_memory_matches_one_process(dist_results, cid):
    size = DIST_CASES[cid]["memory_size"]
    for r, res in enumerate(_per_rank(dist_results, cid)):
        assert res["ref_grad_norm"] > 0
        assert res["loss_err"] < TOL, (r, res)
        assert res["param_grad_err"] < TOL, (r, res)
        assert res["memory_err"] < 1e-6, (r, res)  # float32 rows
        assert 0 < res["filled"][-1] <= size


@pytest.mark.distributed
def test_pml_efficient_distributed_wrapper_cannot_take_multi_hot_labels(dist_results):
    """Documented limit: pml's efficient=True fails inside pml (use gather_distributed=True)."""
    for res in _per_rank(dist_results, EFFICIENT_CASE):
        assert res["error"] is not None and "ValueError" in res["error"], res


# ------------------------------------------------------------------- sentence-transformers
def test_to_multi_hot_and_its_errors():
    from mlsupcon.integrations.sentence_transformers import to_multi_hot

    assert to_multi_hot([["b", "a"], "c", []], ["a", "b", "c"]) == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="^label_lists: row 1 has label 'd'"):
        to_multi_hot([["a"], ["d"]], ["a", "b"])
    with pytest.raises(ValueError, match="^label_names: contains repeated names"):
        to_multi_hot([["a"]], ["a", "a"])


class _TinyEncoder(nn.Module):
    """Stands in for a SentenceTransformer in the loss-convention test: one embedding per text."""

    def __init__(self):
        super().__init__()
        self.emb = nn.EmbeddingBag(50, D)

    def forward(self, features):
        return {"sentence_embedding": self.emb(features["input_ids"])}


def test_sentence_transformers_loss_conventions():
    from mlsupcon.integrations.sentence_transformers import MultiLabelContrastiveLoss as STLoss

    torch.manual_seed(0)
    model = _TinyEncoder()
    loss = STLoss(model, loss="simdis", temperature=0.2)
    assert loss.model is model  # the trainer swaps in its wrapped model through this attribute
    assert loss.get_config_dict() == {"loss": "simdis", "temperature": 0.2}
    assert "Similarity-Dissimilarity" in loss.citation
    jaccard = STLoss(model, loss="jaccard").citation  # from the loss's docstring "Source:" line
    assert jaccard.startswith("\n@misc{jaccard") and "supCLR-MultiLabel-Classification" in jaccard

    g = torch.Generator().manual_seed(8)
    ids = [{"input_ids": torch.randint(0, 50, (6, 7), generator=g)} for _ in range(2)]
    y = torch.randint(0, 2, (6, C), generator=g)  # what the collator makes of multi-hot list rows
    want_one = build("simdis", temperature=0.2)(model(ids[0])["sentence_embedding"].unsqueeze(1), y)
    assert loss(ids[:1], y).item() == pytest.approx(want_one.item(), abs=1e-6)
    both = torch.stack([model(f)["sentence_embedding"] for f in ids], dim=1)  # two columns = two views
    assert loss(ids, y).item() == pytest.approx(build("simdis", temperature=0.2)(both, y).item(), abs=1e-6)
    with pytest.raises(ValueError, match="^labels: the simdis loss needs a 'labels'"):
        loss(ids, None)
    assert STLoss(model, "simclr")(ids, None).item() > 0
    with pytest.raises(ValueError, match="^loss: expected the name of a flat contrastive loss"):
        STLoss(model, loss="asl")


@pytest.mark.slow
def test_sentence_transformers_trainer_fine_tunes_minilm(tmp_path, monkeypatch):
    """10 SentenceTransformerTrainer steps on the bundled MiniLM lower the loss on a fixed batch."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import random

    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    from mlsupcon.integrations.sentence_transformers import MultiLabelContrastiveLoss as STLoss
    from mlsupcon.integrations.sentence_transformers import to_multi_hot
    from mlsupcon.models.transformer import minilm_path

    rng = random.Random(0)
    topics = {"sports": ["goal", "match", "team", "coach", "league"],
              "money": ["stock", "bank", "price", "market", "loan"],
              "weather": ["rain", "storm", "sunny", "wind", "snow"],
              "food": ["pizza", "recipe", "soup", "bread", "cheese"]}
    names = list(topics)
    texts, label_lists = [], []
    for _ in range(80):
        chosen = rng.sample(names, rng.choice([1, 2]))
        words = [rng.choice(topics[t]) for t in chosen for _ in range(3)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        label_lists.append(chosen)
    train = Dataset.from_dict({"text": texts, "labels": to_multi_hot(label_lists, names)})

    model = SentenceTransformer(minilm_path(), device="cpu")
    model.max_seq_length = 32
    loss = STLoss(model, loss="simdis", temperature=0.05)

    fixed = train.select(range(64, 80))  # a fixed held-out batch, dropout off

    def fixed_loss() -> float:
        model.eval()
        features = [getattr(model, "preprocess", model.tokenize)(fixed["text"])]
        with torch.no_grad():
            return float(loss(features, torch.tensor(fixed["labels"])))

    before = fixed_loss()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=10, per_device_train_batch_size=8, learning_rate=2e-4,
        warmup_steps=0, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train.select(range(64)), loss=loss)
    trainer.train()
    after = fixed_loss()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 10 and all(v == v for v in logged)
    assert after < 0.7 * before, (before, after, logged)  # measured: 2.01 -> 1.08
