"""Engine internals: every label-statistics route and sparse inputs give the dense result."""

import pytest
import torch
from reference import ref_flat

from mlsupcon.losses import build, relation_counts, relations
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


@pytest.mark.parametrize("route", ["csr_dense", "sparse_sparse"])
@pytest.mark.parametrize("name", FLAT)
def test_sparse_label_routes_equal_dense(monkeypatch, name, route):
    feats, y, refs, ry = _batch(seed=FLAT.index(name))
    expected = _value_and_grad(name, feats, y, refs, ry)
    monkeypatch.setattr(relations, "DENSE_LABELS_MAX", 0)
    if route == "sparse_sparse":
        monkeypatch.setattr(relations, "SPARSE_DENSE_RHS_MAX_ENTRIES", 0)
    got = _value_and_grad(name, feats, y, refs, ry)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-10, atol=1e-10)
    for a, b in zip(got[1], expected[1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # The route really was taken.
    stats = relations.LabelStatistics(torch.cat([y, ry]), torch.float64)
    assert stats.sparse
    assert (stats._dense_t is None) == (route == "sparse_sparse")


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
    assert not keep and chunk * 2 * 65536 <= 2**22
    assert plan_chunks(100, 2, 200, 7) == (7, False)  # explicit: always bounded memory
    assert plan_chunks(5, 1, 5, 64) == (5, False)


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
