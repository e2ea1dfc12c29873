"""MemoryQueue, QueueLoss and MomentumEncoder (one process; the distributed queue is in
tests/test_distributed.py)."""

from __future__ import annotations

import io

import pytest
import torch
from reference import ref_flat
from torch import nn

from mlsupcon.losses import MemoryQueue, MomentumEncoder, QueueLoss, build
from mlsupcon.losses import queue as queue_module

C, D = 4, 6
FLAT = [
    ("all", {}),
    ("any", {}),
    ("mulsupcon", {"reduction": "pair"}),
    ("mulsupcon", {"reduction": "anchor"}),
    ("simdis", {}),
    ("jaccard", {}),
    ("mlcl", {"reg_weight": 0.05, "threshold": 0.2}),
    ("supcon", {}),
    ("simclr", {}),
]


def _labels(name, b, g):
    if name == "simclr":
        return None
    if name == "supcon":
        return torch.randint(0, 3, (b,), generator=g)
    pool = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    y = pool[torch.randint(0, len(pool), (b,), generator=g)]
    y[0] = 0
    return y


def _rows_of(feats, labels, views="all"):
    """What the queue should receive from one batch: view-major rows, labels repeated."""
    f = feats.detach()
    if f.ndim == 2:
        f = f.unsqueeze(1)
    if views == "first":
        f = f[:, :1]
    v = f.shape[1]
    rows = f.transpose(0, 1).reshape(-1, f.shape[2])
    lab = None if labels is None else torch.cat([labels] * v)
    return rows, lab


# ------------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("name,opts", FLAT, ids=[f"{n}-{o.get('reduction', '')}" for n, o in FLAT])
@pytest.mark.parametrize("views", ["all", "first"])
def test_queue_loss_equals_loss_with_queue_as_references(name, opts, views):
    g = torch.Generator().manual_seed(7)
    size, v = 11, 2
    crit = QueueLoss(build(name, **opts), size=size, dim=D, num_labels=C, enqueue_views=views, dtype=torch.float64)
    plain = build(name, **opts)
    hist_f, hist_y = [], []
    for _step in range(4):  # 4 × (5 or 10) rows through 11 slots: wraps around
        f = torch.randn(5, v, D, generator=g, dtype=torch.float64, requires_grad=True)
        y = _labels(name, 5, g)
        loss = crit(f, y)
        (grad,) = torch.autograd.grad(loss, f)
        if hist_f:
            rf = torch.cat(hist_f)[-size:]
            ry = None if y is None else torch.cat(hist_y)[-size:]
            f2 = f.detach().clone().requires_grad_()
            expected = plain(f2, y, ref_features=rf, ref_labels=ry)
        else:
            f2 = f.detach().clone().requires_grad_()
            expected = plain(f2, y)
        (expected_grad,) = torch.autograd.grad(expected, f2)
        torch.testing.assert_close(loss, expected, atol=1e-10, rtol=0)
        torch.testing.assert_close(grad, expected_grad, atol=1e-10, rtol=0)
        rows, lab = _rows_of(f, y, views)
        hist_f.append(rows)
        if lab is not None:
            hist_y.append(lab)
    stored, stored_y = crit.queue.contents()  # oldest first = the last `size` rows pushed
    torch.testing.assert_close(stored, torch.cat(hist_f)[-size:], atol=0, rtol=0)
    if name == "supcon":
        assert stored_y.dtype == torch.long
        assert torch.equal(stored_y, torch.cat(hist_y)[-size:].long())
    elif name == "simclr":
        assert stored_y is None and crit.queue.labels.shape == (size, 0)
    else:
        assert stored_y.dtype == torch.uint8
        assert torch.equal(stored_y, torch.cat(hist_y)[-size:].to(torch.uint8))


@pytest.mark.parametrize("name", ["simdis", "mulsupcon", "any"])
def test_queue_loss_matches_naive_reference(name):
    g = torch.Generator().manual_seed(11)
    crit = QueueLoss(build(name), size=7, dim=D, num_labels=C, dtype=torch.float64)
    f0 = torch.randn(4, 2, D, generator=g, dtype=torch.float64)
    y0 = _labels(name, 4, g)
    crit(f0, y0)  # fills 8 rows into 7 slots: view 0 of sample 0 is overwritten
    f1 = torch.randn(5, 2, D, generator=g, dtype=torch.float64, requires_grad=True)
    y1 = _labels(name, 5, g)
    loss = crit(f1, y1)
    rows, lab = _rows_of(f0, y0)
    expected = ref_flat(name, f1, y1, ref_features=rows[1:], ref_labels=lab[1:])
    torch.testing.assert_close(loss, expected, atol=1e-10, rtol=0)
    g1, g2 = torch.autograd.grad(loss, f1), torch.autograd.grad(expected, f1)
    torch.testing.assert_close(g1, g2, atol=1e-10, rtol=0)


def test_queue_rows_are_detached_and_loss_uses_the_queue_before_the_batch():
    crit = QueueLoss(build("any"), size=8, dim=D, num_labels=C)
    f = torch.randn(3, D, requires_grad=True)
    y = torch.ones(3, C)
    first = crit(f, y)
    assert torch.allclose(first, build("any")(f, y))  # empty queue: the plain loss
    assert not crit.queue.features.requires_grad and len(crit.queue) == 3
    first.backward()


def test_keys_are_candidates_and_are_what_is_enqueued():
    g = torch.Generator().manual_seed(5)
    crit = QueueLoss(build("mulsupcon"), size=16, dim=D, num_labels=C, dtype=torch.float64)
    y_old = _labels("mulsupcon", 3, g)
    k_old = torch.randn(3, D, generator=g, dtype=torch.float64)
    crit.queue.push(k_old, y_old)
    q = torch.randn(4, D, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, D, generator=g, dtype=torch.float64)
    y = _labels("mulsupcon", 4, g)
    loss = crit(q, y, keys=k)
    expected = build("mulsupcon")(q, y, ref_features=torch.cat([k, k_old]), ref_labels=torch.cat([y, y_old]))
    torch.testing.assert_close(loss, expected, atol=1e-12, rtol=0)
    stored, stored_y = crit.queue.contents()
    assert torch.equal(stored, torch.cat([k_old, k]))  # the keys, not the queries
    assert torch.equal(stored_y, torch.cat([y_old, y]).to(torch.uint8))


# ------------------------------------------------------------------------------- FIFO
def test_fifo_order_and_wrap_around():
    q = MemoryQueue(size=5, dim=1, label_format="class_ids")
    pushed = []
    for n in (2, 2, 3, 1, 7):  # the last push is larger than the queue
        rows = torch.arange(len(pushed), len(pushed) + n, dtype=torch.float32)
        q.push(rows[:, None], rows.long())
        pushed += rows.tolist()
        feats, ids = q.contents()
        assert feats[:, 0].tolist() == pushed[-5:]
        assert ids.tolist() == [int(x) for x in pushed[-5:]]
        assert len(q) == min(5, len(pushed)) and int(q.ptr) == len(pushed) % 5
    assert q.full
    stored, _ = q.stored()  # storage order: position i holds the latest row written there
    assert stored[:, 0].tolist() == [float(next(x for x in reversed(pushed) if x % 5 == i)) for i in range(5)]
    q.reset()
    assert len(q) == 0 and int(q.ptr) == 0


def test_enqueue_views_order_and_enqueue_mask():
    f = torch.arange(4 * 2 * D, dtype=torch.float32).reshape(4, 2, D)
    y = torch.eye(C)[[0, 1, 2, 3]]
    mask = torch.tensor([True, False, True, False])
    all_views = QueueLoss(build("simdis"), size=32, dim=D, num_labels=C)
    all_views(f, y, enqueue_mask=mask)
    stored, lab = all_views.queue.contents()
    expected = torch.stack([f[0, 0], f[2, 0], f[0, 1], f[2, 1]])  # view-major
    assert torch.equal(stored, expected)
    assert torch.equal(lab, y[[0, 2, 0, 2]].to(torch.uint8))
    first = QueueLoss(build("simdis"), size=32, dim=D, num_labels=C, enqueue_views="first")
    first(f, y, enqueue_mask=mask)
    stored, lab = first.queue.contents()
    assert torch.equal(stored, f[[0, 2], 0]) and torch.equal(lab, y[[0, 2]].to(torch.uint8))
    nothing = QueueLoss(build("simdis"), size=32, dim=D, num_labels=C)
    nothing(f, y, enqueue_mask=torch.zeros(4, dtype=torch.bool))
    assert len(nothing.queue) == 0


# ------------------------------------------------------------------------------- state
def test_state_dict_round_trip_into_a_fresh_wrapper():
    g = torch.Generator().manual_seed(2)
    make = lambda: QueueLoss(build("simdis"), size=9, dim=D, num_labels=C)  # noqa: E731
    a = make()
    for _ in range(3):
        a(torch.randn(4, 2, D, generator=g), _labels("simdis", 4, g))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    assert set(a.state_dict()) == {"queue.features", "queue.labels", "queue.ptr", "queue.filled"}
    b = make()
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    f, y = torch.randn(4, 2, D, generator=g), _labels("simdis", 4, g)
    assert torch.equal(a(f, y), b(f, y))
    assert torch.equal(a.queue.features, b.queue.features) and int(a.queue.ptr) == int(b.queue.ptr)


def test_to_dtype_keeps_contents_and_label_storage():
    g = torch.Generator().manual_seed(4)
    crit = QueueLoss(build("jaccard"), size=6, dim=D, num_labels=C)
    crit(torch.randn(4, D, generator=g), _labels("jaccard", 4, g))
    before = crit.queue.features.clone()
    crit = crit.to(torch.float64)
    assert crit.queue.features.dtype == torch.float64 and crit.queue.labels.dtype == torch.uint8
    assert crit.queue.ptr.dtype == torch.long
    assert torch.equal(crit.queue.features, before.double())
    loss = crit(torch.randn(3, D, generator=g, dtype=torch.float64), _labels("jaccard", 3, g))
    assert loss.dtype == torch.float64 and len(crit.queue) == 6


def test_sparse_and_many_label_columns_give_the_dense_result(monkeypatch):
    g = torch.Generator().manual_seed(8)
    feats = [torch.randn(5, 2, D, generator=g, dtype=torch.float64) for _ in range(3)]
    labels = [_labels("simdis", 5, g) for _ in range(3)]

    def run(sparse_input):
        crit = QueueLoss(build("simdis"), size=12, dim=D, num_labels=C)
        return [crit(f, y.to_sparse_coo() if sparse_input else y) for f, y in zip(feats, labels)]

    dense = run(False)
    torch.testing.assert_close(run(True), dense, atol=1e-12, rtol=0)
    monkeypatch.setattr(queue_module, "SPARSE_LABELS_ABOVE", 2)  # queue labels go to the loss sparse
    torch.testing.assert_close(run(False), dense, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------- bad input
def test_bad_arguments_name_the_argument():
    loss = build("simdis")
    for kwargs, arg in [
        (dict(size=0, dim=D, num_labels=C), "size"),
        (dict(size=4, dim=0, num_labels=C), "dim"),
        (dict(size=4, dim=D), "num_labels"),
        (dict(size=4, dim=D, num_labels=C, enqueue_views="last"), "enqueue_views"),
        (dict(size=4, dim=D, num_labels=C, label_format="ids"), "label_format"),
        (dict(size=4, dim=D, num_labels=C, dtype=torch.long), "dtype"),
    ]:
        with pytest.raises(ValueError, match=f"^{arg}:"):
            QueueLoss(loss, **kwargs)
    with pytest.raises(ValueError, match="^loss_fn:"):
        QueueLoss(lambda *a: 0, size=4, dim=D, num_labels=C)
    crit = QueueLoss(loss, size=4, dim=D, num_labels=C)
    f, y = torch.randn(3, 2, D), torch.ones(3, C)
    for call, arg in [
        (lambda: crit(torch.randn(3, 2, D + 1), y), "features"),
        (lambda: crit(f, torch.ones(3, C + 1)), "labels"),
        (lambda: crit(f, torch.ones(2, C)), "labels"),
        (lambda: crit(f, y, enqueue_mask=torch.ones(3)), "enqueue_mask"),
        (lambda: crit(f, y, enqueue_mask=torch.ones(4, dtype=torch.bool)), "enqueue_mask"),
        (lambda: crit(f, y, keys=torch.randn(2, D)), "keys"),
        (lambda: crit(f, y, keys=torch.randn(3, D + 1)), "keys"),
        (lambda: crit.queue.push(torch.randn(2, D + 1), torch.ones(2, C)), "features"),
    ]:
        with pytest.raises(ValueError, match=f"^{arg}:"):
            call()
    assert len(crit.queue) == 0  # nothing was enqueued by the failed calls
    ids = QueueLoss(build("supcon"), size=4, dim=D)
    with pytest.raises(ValueError, match="^labels:"):
        ids(f, torch.ones(3, C))


# ------------------------------------------------------------------------------- momentum
def test_momentum_encoder_ema_no_grad_and_state_dict():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    m = 0.9
    ema = MomentumEncoder(online, momentum=m)
    expected = {k: v.clone() for k, v in online.named_parameters()}
    opt = torch.optim.SGD(online.parameters(), lr=0.05)
    for _step in range(3):
        x = torch.randn(5, 3, dtype=torch.float64)
        out = ema(x)
        assert not out.requires_grad
        online(x).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
        ema.update()
        for k, p in online.named_parameters():
            expected[k] = m * expected[k] + (1 - m) * p.detach()
    for k, p in ema.encoder.named_parameters():
        assert not p.requires_grad and p.grad is None
        torch.testing.assert_close(p, expected[k], atol=1e-12, rtol=1e-12)
    assert int(ema.num_updates) == 3
    # only the copy is a submodule: not saved twice, not trained
    assert all(k.startswith("encoder.") or k == "num_updates" for k in ema.state_dict())
    assert list(ema.parameters()) == list(ema.encoder.parameters())
    fresh = MomentumEncoder(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double(), m)
    fresh.load_state_dict(ema.state_dict())
    x = torch.randn(5, 3, dtype=torch.float64)
    ema.eval(), fresh.eval()
    assert torch.equal(ema(x), fresh(x)) and int(fresh.num_updates) == 3


def test_momentum_encoder_extremes_and_bad_input():
    online = nn.Linear(2, 2)
    frozen, copy_ = MomentumEncoder(online, 1.0), MomentumEncoder(online, 0.0)
    w0 = online.weight.detach().clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    frozen.update(), copy_.update()
    assert torch.equal(frozen.encoder.weight, w0) and torch.equal(copy_.encoder.weight, online.weight)
    other = nn.Linear(2, 2)
    copy_.update(other)  # an explicit online module
    assert torch.equal(copy_.encoder.weight, other.weight)
    for bad in (-0.1, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="^momentum:"):
            MomentumEncoder(online, bad)
    with pytest.raises(ValueError, match="^module:"):
        copy_.update(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="^module:"):
        MomentumEncoder("not a module")


def test_momentum_keys_fill_the_queue():
    torch.manual_seed(1)
    encoder = nn.Linear(3, D)
    key_encoder = MomentumEncoder(encoder, momentum=0.99)
    crit = QueueLoss(build("mulsupcon"), size=20, dim=D, num_labels=C, enqueue_views="first")
    opt = torch.optim.SGD(encoder.parameters(), lr=0.1)
    for _step in range(3):
        x1, x2 = torch.randn(4, 3), torch.randn(4, 3)
        y = torch.randint(0, 2, (4, C))
        key_encoder.update()
        q, k = encoder(x1), key_encoder(x2)
        loss = crit(q, y, keys=k)
        loss.backward()
        opt.step()
        opt.zero_grad()
        assert torch.equal(crit.queue.contents()[0][-4:], k)
    assert len(crit.queue) == 12


def test_eval_mode_reads_but_does_not_write_the_queue():
    g = torch.Generator().manual_seed(6)
    crit = QueueLoss(build("any"), size=10, dim=D, num_labels=C)
    crit(torch.randn(3, D, generator=g), torch.ones(3, C))
    before = {k: v.clone() for k, v in crit.state_dict().items()}
    crit.eval()
    f = torch.randn(2, D, generator=g)
    loss = crit(f, torch.ones(2, C))
    stored, lab = crit.queue.contents()
    assert torch.equal(loss, build("any")(f, torch.ones(2, C), ref_features=stored, ref_labels=lab))
    for k, v in crit.state_dict().items():
        assert torch.equal(v, before[k]), k
    crit.train()
    crit(f, torch.ones(2, C))
    assert len(crit.queue) == 5
