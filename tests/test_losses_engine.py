"""Engine internals: every label-statistics route and sparse inputs give the dense result."""

import pytest
import torch
from reference import ref_flat

from mlsupcon.losses import build, engine, relation_counts, relations
from mlsupcon.losses.engine import plan_chunks

FLAT = ["all", "any", "mulsupcon", "simdis", "jaccard", "mlcl"]


def _batch(seed, b=23, v=2, c=300, m=9, density=0.02):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, v, 12, generator=g, dtype=torch.float64)
    y = (torch.rand(b, c, generator=g) < density).double()
    y[:, 0] = (torch.rand(b, generator=g) < 0.4).double()  # a frequent label so positives exist
    y[0] = 0  # and a sample without labels
    refs = torch.randn(m, 12, generator=g, dtype=torch.float64)
    ry = (torch.rand(m, c, generator=g) < density).double()
    ry[:, 0] = 1
    return feats, y, refs, ry


def _value_and_grad(name, feats, y, refs=None, ry=None, **opts):
    f = feats.clone().requires_grad_()
    r = None if refs is None else refs.clone().requires_grad_()
    loss = build(name, **opts)(f, y, ref_features=r, ref_labels=ry)
    grads = torch.autograd.grad(loss, [f] + ([r] if r is not None else []))
    return loss.detach(), grads


ROUTES = {  # (DENSE_LABEL_SHARE, SCATTER_PAIRS_MAX)
    "all_dense": (0.0, 2**22),  # every present label a matmul column
    "all_scattered": (2.0, 2**22),  # every label by pairs
    "scattered_in_pieces": (2.0, 5),  # pairs in pieces of at most 5 (an entry is never split)
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("name", FLAT)
def test_label_routes_give_the_same_loss(monkeypatch, name, route):
    feats, y, refs, ry = _batch(seed=FLAT.index(name))
    # Small label matrices take one dense product (checked against the naive loops in
    # test_losses_reference.py); every route of the large-batch form must agree with it.
    expected = _value_and_grad(name, feats, y, refs, ry)
    monkeypatch.setattr(relations, "SMALL_DENSE_ENTRIES", 0)
    share, pieces = ROUTES[route]
    monkeypatch.setattr(relations, "DENSE_LABEL_SHARE", share)
    monkeypatch.setattr(relations, "SCATTER_PAIRS_MAX", pieces)
    got = _value_and_grad(name, feats, y, refs, ry)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-10, atol=1e-10)
    for a, b in zip(got[1], expected[1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # The route really was taken.
    stats = relations.LabelStatistics(torch.cat([y, ry]), torch.float64)
    dense_columns = 0 if stats._dense is None else stats._dense.shape[1]
    assert dense_columns == (stats.num_present if share == 0 else 0)


def test_default_route_mixes_dense_and_scattered_labels(monkeypatch):
    # A label on 40 % of the rows is a matmul column; the 2 %-labels are scattered.
    monkeypatch.setattr(relations, "SMALL_DENSE_ENTRIES", 0)
    feats, y, refs, ry = _batch(seed=0)
    stats = relations.LabelStatistics(torch.cat([y, ry]), torch.float64)
    assert stats._dense is not None and 0 < stats._dense.shape[1] < stats.num_present
    keep = torch.cat([y, ry]).any(0)
    rows = torch.cat([y, ry])[:, keep]
    for s0, s1 in ((0, 32), (5, 17)):
        assert torch.equal(stats.row_dot(s0, s1), rows[s0:s1] @ rows.T)
        w = torch.rand(rows.shape[1], dtype=torch.float64)
        torch.testing.assert_close(stats.row_dot(s0, s1, w), (rows[s0:s1] * w) @ rows.T)


@pytest.mark.parametrize("small_max", [0, 2**16])
def test_set_ids_are_equal_exactly_for_equal_label_sets(monkeypatch, small_max):
    monkeypatch.setattr(relations, "SMALL_DENSE_ENTRIES", small_max)
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(200, 6, generator=g) < 0.3).double()  # many repeated sets, some empty
    for labels in (y, y.to_sparse()):
        ids = relations.LabelStatistics(labels, torch.float32).set_ids()
        same = (y[:, None, :] == y[None, :, :]).all(-1)
        assert torch.equal(ids[:, None] == ids[None, :], same)


@pytest.mark.parametrize("name", FLAT + ["supcon"])
def test_small_dense_labels_and_the_large_batch_form_agree(monkeypatch, name):
    feats, y, refs, ry = _batch(seed=20 + len(name), b=40, c=30, density=0.1)
    if name == "supcon":
        y, ry = y.argmax(1), ry.argmax(1)
    expected = _value_and_grad(name, feats, y, refs, ry)
    monkeypatch.setattr(relations, "SMALL_DENSE_ENTRIES", 0)
    got = _value_and_grad(name, feats, y, refs, ry)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-10, atol=1e-10)
    for a, b in zip(got[1], expected[1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", FLAT)
def test_torch_sparse_label_tensors_equal_dense(name):
    feats, y, refs, ry = _batch(seed=10 + FLAT.index(name))
    expected = _value_and_grad(name, feats, y, refs, ry, chunk_size=5)
    got = _value_and_grad(name, feats, y.to_sparse(), refs, ry.to_sparse_csr(), chunk_size=5)
    torch.testing.assert_close(got[0], expected[0])
    for a, b in zip(got[1], expected[1]):
        torch.testing.assert_close(a, b)
    assert relation_counts(y.to_sparse()) == relation_counts(y)


def test_large_label_space_is_compacted_to_present_labels():
    # 25,000 codes, 15 per row: the statistics only see the codes that occur.
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 25_000, (64, 15), generator=g)
    y = torch.zeros(64, 25_000).scatter_(1, idx, 1.0)
    stats = relations.LabelStatistics(y.to_sparse(), torch.float32)
    assert stats.num_present == int(y.any(0).sum())
    inter = stats.row_dot(0, 64)
    torch.testing.assert_close(inter, y @ y.T)


def test_chunk_plan():
    assert plan_chunks(100, 2, 200, None) == (100, True)  # small: dense, G kept
    chunk, keep = plan_chunks(32768, 2, 65536, None)  # large: chunked, recompute
    assert not keep and chunk * 2 * 65536 <= engine.BLOCK_ENTRIES
    assert plan_chunks(100, 2, 200, 7) == (7, False)  # explicit: always bounded memory
    assert plan_chunks(5, 1, 5, 64) == (5, False)


@pytest.mark.parametrize("budget_blocks", [0, 1, 3])
def test_blocks_kept_from_forward_or_recomputed_give_the_same_gradients(monkeypatch, budget_blocks):
    # The engine's own chunking keeps G of the first blocks up to KEEP_MAX_ENTRIES and
    # recomputes the others; any split gives the dense result.
    feats, y, refs, ry = _batch(seed=4, b=60, c=40, density=0.1)
    n = 2 * 60 + 9
    for name in ["jaccard", "mulsupcon"]:
        dense = _value_and_grad(name, feats, y, refs, ry)
        monkeypatch.setattr(engine, "DENSE_MAX_ENTRIES", 0)
        monkeypatch.setattr(engine, "BLOCK_ENTRIES", 2 * 16 * n)  # blocks of 16 samples
        monkeypatch.setattr(engine, "KEEP_MAX_ENTRIES", budget_blocks * 16 * n)
        got = _value_and_grad(name, feats, y, refs, ry)
        monkeypatch.undo()
        torch.testing.assert_close(got[0], dense[0], rtol=1e-10, atol=1e-10)
        for a, b in zip(got[1], dense[1]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_a_second_backward_recomputes_what_the_first_freed():
    feats, y, refs, ry = _batch(seed=5)
    f = feats.clone().requires_grad_()
    loss = build("simdis")(f, y)
    (g1,) = torch.autograd.grad(loss, f, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, f)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


def test_chunked_and_dense_agree_on_a_larger_batch():
    feats, y, refs, ry = _batch(seed=3, b=150, c=40, density=0.1)
    for name in ["simdis", "mulsupcon"]:
        dense = _value_and_grad(name, feats, y, refs, ry)
        chunked = _value_and_grad(name, feats, y, refs, ry, chunk_size=16)
        torch.testing.assert_close(chunked[0], dense[0], rtol=1e-6, atol=1e-6)
        for a, b in zip(chunked[1], dense[1]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_small_temperature_uses_row_max_and_stays_finite():
    feats, y, _, _ = _batch(seed=4, c=20, density=0.2)
    for tau in (0.01, 0.005):
        loss, (grad,) = _value_and_grad("simdis", feats.float(), y, temperature=tau)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        ref, _ = _value_and_grad("simdis", feats, y, temperature=tau)
        torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-4)


def test_single_view_self_weight_does_not_cost_precision():
    # With V = 1 the own-sample column is only the self pair. MLCL gives it α/ε ≈ 1e8 for an
    # anchor without positives; adding then removing that term lost ~4% in float32.
    g = torch.Generator().manual_seed(1)
    f = torch.randn(6, 8, generator=g)
    y = torch.zeros(6, 4)
    y[0, 0] = 1
    y[1, 1] = 1
    y[2, 1] = 1
    for opts in ({"alpha": 0.5}, {"alpha": 0.5, "reg_weight": 0.1}, {}):
        got = build("mlcl", **opts)(f, y)
        want = ref_flat("mlcl", f.double(), y.double(), **opts)
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


def test_jaccard_zero_threshold_is_accurate_in_float32():
    # w = J/(c + ε) is 1e8·J at c = 0; the constant now sits in the normaliser, so float32
    # keeps the precision of the log-softmax (it once returned -32 where the exact loss is ≥ 0).
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        f = torch.randn(9, 2, 6, generator=g) * 10
        y = (torch.rand(9, 5, generator=g) < 0.4).float()
        got = build("jaccard", threshold=0.0, temperature=0.05)(f, y)
        want = ref_flat("jaccard", f.double(), y.double(), threshold=0.0, temperature=0.05)
        assert got.item() >= 0
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
