"""KMCL head and losses against the naive loop reference written from docs/spec/LOSSES.md."""

from __future__ import annotations

import math

import pytest
import torch
from kmcl_reference import (
    ref_asl,
    ref_contrastive,
    ref_distance,
    ref_reconstruction,
    ref_total,
)

from mlsupcon.losses import kmcl as kmcl_mod
from mlsupcon.losses.kmcl import (
    KMCLContrastiveLoss,
    KMCLLoss,
    KMCLReconstructionLoss,
    bhattacharyya_distance,
    kmcl_contrastive_loss,
    kmcl_log_kernel,
    kmcl_reconstruction_loss,
)
from mlsupcon.models.kmcl import KMCLHead, KMCLHeadOutput

F64 = torch.float64
TOL = dict(rtol=1e-5, atol=1e-7)
# (mean shape, variance shape): "iso" = spec isotropic scalars, "isovec" = mean vectors with one
# variance per class, "aniso" = the anisotropic mode
MODES = ("iso", "isovec", "aniso")


def make_inputs(seed, b, k, m=4, mode="iso", p=0.4, dtype=F64, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(b, k, generator=g) < p).to(torch.int64)
    x = torch.randn(b, m, generator=g, dtype=dtype)
    pi = torch.randn(b, k, generator=g, dtype=dtype)
    mu_shape = (b, k) if mode == "iso" else (b, k, m)
    s2_shape = (b, k, m) if mode == "aniso" else (b, k)
    mu = 0.7 * torch.randn(*mu_shape, generator=g, dtype=dtype)
    sigma2 = 1.0 + 1.5 * torch.rand(*s2_shape, generator=g, dtype=dtype)
    tensors = [t.requires_grad_(requires_grad) for t in (x, pi, mu, sigma2)]
    return (*tensors, labels)


def grads(value, inputs):
    return torch.autograd.grad(value, inputs, allow_unused=True, retain_graph=True)


def assert_grads_close(got, want):
    for g, w in zip(got, want):
        if w is None:
            assert g is None or bool((g == 0).all())
            continue
        assert g is not None
        torch.testing.assert_close(g, w, **TOL)


# ------------------------------------------------------------------------------------------------
# values and gradients against the reference
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [1, 3, 10])
@pytest.mark.parametrize("b", [1, 2, 7, 16])
def test_contrastive_and_reconstruction_match_reference(b, k, mode):
    seeds = (0,) if b >= 16 else (0, 1, 2)
    for seed in seeds:
        x, pi, mu, sigma2, y = make_inputs(seed, b, k, m=3, mode=mode, p=0.5 if k > 1 else 0.7)
        m = x.shape[1]
        got = kmcl_contrastive_loss(mu, sigma2, y, dim=m)
        want = ref_contrastive(mu, sigma2, y, m)
        torch.testing.assert_close(got, want.to(got.dtype), **TOL)
        if want.requires_grad:
            assert_grads_close(grads(got, (mu, sigma2)), grads(want, (mu, sigma2)))
        else:  # no anchor has a positive: exact zero, zero gradients
            assert got.item() == 0.0
            for g in grads(got, (mu, sigma2)):
                assert g is not None and bool((g == 0).all())

        got = kmcl_reconstruction_loss(x, pi, mu, sigma2, y)
        want = ref_reconstruction(x, pi, mu, sigma2, y)
        if not torch.is_tensor(want):  # every row without labels
            assert got.item() == 0.0
            continue
        torch.testing.assert_close(got, want, **TOL)
        assert_grads_close(grads(got, (x, pi, mu, sigma2)), grads(want, (x, pi, mu, sigma2)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("b,k", [(1, 3), (5, 4), (9, 6)])
def test_total_matches_reference(b, k, mode):
    x, pi, mu, sigma2, y = make_inputs(10 + b, b, k, m=3, mode=mode, p=0.5)
    y[0, 0] = 1  # at least one labelled row
    loss_fn = KMCLLoss(weight_asl=0.5, weight_rec=2.0, weight_con=1.5)
    total, terms = loss_fn(x, pi, mu, sigma2, y, return_terms=True)
    want = ref_total(x, pi, mu, sigma2, y, weights=(0.5, 2.0, 1.5))
    torch.testing.assert_close(total, want, **TOL)
    torch.testing.assert_close(terms["asl"], ref_asl(pi, y), **TOL)
    assert set(loss_fn.last_terms) == {"asl", "rec", "con"}
    assert not any(t.requires_grad for t in loss_fn.last_terms.values())
    inputs = (x, pi, mu, sigma2)
    assert_grads_close(grads(total, inputs), grads(want, inputs))
    # default call returns the total only
    torch.testing.assert_close(KMCLLoss()(x, pi, mu, sigma2, y), ref_total(x, pi, mu, sigma2, y), **TOL)


def test_asl_options_are_forwarded():
    x, pi, mu, sigma2, y = make_inputs(3, 4, 3, mode="iso")
    opts = dict(gamma_pos=1.0, gamma_neg=2.0, clip=0.1, eps=1e-6)
    got = KMCLLoss(weight_rec=0, weight_con=0, **opts)(x, pi, mu, sigma2, y)
    torch.testing.assert_close(got, ref_asl(pi, y, **opts), **TOL)
    mean = KMCLLoss(weight_rec=0, weight_con=0, asl_reduction="mean")(x, pi, mu, sigma2, y)
    torch.testing.assert_close(mean, ref_asl(pi, y) / y.numel(), **TOL)


@pytest.mark.parametrize(
    "mode,reduce_dim,isotropic_mean",
    [("isotropic", None, "scalar"), ("isotropic", 3, "vector"), ("anisotropic", 3, "scalar")],
)
def test_head_parameter_gradients_match_reference(mode, reduce_dim, isotropic_mean):
    torch.manual_seed(0)
    head = KMCLHead(5, 4, mode=mode, reduce_dim=reduce_dim, isotropic_mean=isotropic_mean).double()
    feats = 0.5 * torch.randn(6, 5, dtype=F64)
    y = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0]])
    out = head(feats)
    got = KMCLLoss()(*out, y)
    want = ref_total(out.x, out.pi, out.mu, out.sigma2, y)
    torch.testing.assert_close(got, want, **TOL)
    params = [p for p in head.parameters()]
    assert_grads_close(grads(got, params), grads(want, params))


def test_anisotropic_without_dim_factor_matches_reference():
    x, pi, mu, sigma2, y = make_inputs(4, 6, 3, m=3, mode="aniso", p=0.6)
    got = kmcl_contrastive_loss(mu, sigma2, y, scale_anisotropic_by_dim=False)
    want = ref_contrastive(mu, sigma2, y, 3, scale_anisotropic_by_dim=False)
    torch.testing.assert_close(got, want, **TOL)
    assert_grads_close(grads(got, (mu, sigma2)), grads(want, (mu, sigma2)))


@pytest.mark.parametrize("tau", [0.015, 0.05, 0.17, 1.0, 3.0])
def test_temperature(tau):  # 1/τ > 50 takes the max-shifted log-sum-exp path
    _, _, mu, sigma2, y = make_inputs(5, 6, 3, mode="iso", p=0.6)
    got = kmcl_contrastive_loss(mu, sigma2, y, temperature=tau, dim=4)
    want = ref_contrastive(mu, sigma2, y, 4, temperature=tau)
    torch.testing.assert_close(got, want, **TOL)
    assert_grads_close(grads(got, (mu, sigma2)), grads(want, (mu, sigma2)))


# ------------------------------------------------------------------------------------------------
# the Bhattacharyya distance
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_bhattacharyya_distance_matches_reference(mode):
    _, _, mu, sigma2, _ = make_inputs(6, 5, 3, m=3, mode=mode)
    d = bhattacharyya_distance(mu, sigma2, dim=3)
    assert d.shape == (5, 5, 3)
    for i in range(5):
        for j in range(5):
            for k in range(3):
                torch.testing.assert_close(d[i, j, k], ref_distance(mu, sigma2, i, j, k, 3), **TOL)
    torch.testing.assert_close(d, d.transpose(0, 1), **TOL)
    assert bool((d.diagonal(dim1=0, dim2=1).abs() < 1e-12).all())
    # two sets
    d2 = bhattacharyya_distance(mu[:2], sigma2[:2], mu[2:], sigma2[2:], dim=3)
    torch.testing.assert_close(d2, d[:2, 2:], **TOL)


def _numeric_bhattacharyya_1d(m1, v1, m2, v2):
    t = torch.linspace(-40, 40, 400001, dtype=F64)
    p = torch.exp(-0.5 * (t - m1) ** 2 / v1) / math.sqrt(2 * math.pi * v1)
    q = torch.exp(-0.5 * (t - m2) ** 2 / v2) / math.sqrt(2 * math.pi * v2)
    return -math.log(float(torch.trapezoid(torch.sqrt(p * q), t)))


def test_bhattacharyya_is_the_true_distance():
    # isotropic scalars: D = M × the 1-d distance = the distance of N(μ·1, σ² I) in R^M
    mu = torch.tensor([[0.3], [-1.1]], dtype=F64)
    s2 = torch.tensor([[1.4], [2.9]], dtype=F64)
    one_d = _numeric_bhattacharyya_1d(0.3, 1.4, -1.1, 2.9)
    d = bhattacharyya_distance(mu, s2, dim=5)[0, 1, 0]
    assert abs(float(d) - 5 * one_d) < 1e-8
    # anisotropic, exact variant: Σ_m of 1-d distances; default variant: M times that
    mu_a = torch.tensor([[[0.3, 2.0]], [[-1.1, 0.5]]], dtype=F64)
    s2_a = torch.tensor([[[1.4, 1.0]], [[2.9, 3.5]]], dtype=F64)
    exact = _numeric_bhattacharyya_1d(0.3, 1.4, -1.1, 2.9) + _numeric_bhattacharyya_1d(2.0, 1.0, 0.5, 3.5)
    d_exact = bhattacharyya_distance(mu_a, s2_a, scale_anisotropic_by_dim=False)[0, 1, 0]
    d_spec = bhattacharyya_distance(mu_a, s2_a)[0, 1, 0]
    assert abs(float(d_exact) - exact) < 1e-8
    assert abs(float(d_spec) - 2 * exact) < 1e-8


def test_isotropic_vector_means_keep_precision_far_from_the_origin():
    _, _, mu, sigma2, _ = make_inputs(7, 6, 3, m=8, mode="isovec", dtype=torch.float32,
                                      requires_grad=False)
    offset = 1000.0
    d32 = bhattacharyya_distance(mu + offset, sigma2)
    d64 = bhattacharyya_distance(mu.double(), sigma2.double())
    torch.testing.assert_close(d32.double(), d64, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# chunking
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk", [1, 3, 5, 16])
def test_chunked_equals_unchunked(mode, chunk):
    _, _, mu, sigma2, y = make_inputs(8, 11, 5, m=4, mode=mode, p=0.4)
    full = kmcl_contrastive_loss(mu, sigma2, y, chunk_size=None, dim=4)
    part = kmcl_contrastive_loss(mu, sigma2, y, chunk_size=chunk, dim=4)
    torch.testing.assert_close(part, full, rtol=1e-6, atol=1e-6)
    assert_grads_close(grads(part, (mu, sigma2)), grads(full, (mu, sigma2)))
    with torch.no_grad():
        torch.testing.assert_close(
            kmcl_contrastive_loss(mu, sigma2, y, chunk_size=chunk, dim=4), full.detach(),
            rtol=1e-6, atol=1e-6,
        )


def test_chunked_float32_equals_unchunked():
    _, _, mu, sigma2, y = make_inputs(9, 32, 7, m=6, mode="aniso", p=0.3, dtype=torch.float32)
    full = kmcl_contrastive_loss(mu, sigma2, y)
    part = kmcl_contrastive_loss(mu, sigma2, y, chunk_size=5)
    torch.testing.assert_close(part, full, rtol=1e-6, atol=1e-6)
    g_full, g_part = grads(full, (mu, sigma2)), grads(part, (mu, sigma2))
    for a, b in zip(g_part, g_full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_auto_chunking(monkeypatch, mode):
    _, _, mu, sigma2, y = make_inputs(10, 9, 3, m=4, mode=mode, p=0.5)
    full = kmcl_contrastive_loss(mu, sigma2, y, chunk_size=9, dim=4)
    want = grads(full, (mu, sigma2))
    calls = []
    original = kmcl_mod._fused_block

    def spy(start, stop, *args):
        calls.append((start, stop))
        return original(start, stop, *args)

    monkeypatch.setattr(kmcl_mod, "_fused_block", spy)
    monkeypatch.setattr(kmcl_mod, "AUTO_BLOCK_ELEMENTS", 2 * 9 * 3 * 4)  # two anchors per block
    monkeypatch.setattr(kmcl_mod, "AUTO_BLOCK_PAIRS", 2 * 9 * 3)
    auto = kmcl_contrastive_loss(mu, sigma2, y, dim=4)
    assert calls == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]
    torch.testing.assert_close(auto, full, rtol=1e-6, atol=1e-6)
    assert_grads_close(grads(auto, (mu, sigma2)), want)


@pytest.mark.parametrize("mode", MODES)
def test_max_shift_path_matches_direct_sum(monkeypatch, mode):
    _, _, mu, sigma2, y = make_inputs(21, 8, 4, m=3, mode=mode, p=0.5)
    direct = kmcl_contrastive_loss(mu, sigma2, y, chunk_size=3, dim=3)
    want = grads(direct, (mu, sigma2))
    monkeypatch.setattr(kmcl_mod, "_DIRECT_EXP_MAX", 0.0)  # force the log-sum-exp path
    shifted = kmcl_contrastive_loss(mu, sigma2, y, chunk_size=3, dim=3)
    torch.testing.assert_close(shifted, direct, rtol=1e-10, atol=1e-12)
    assert_grads_close(grads(shifted, (mu, sigma2)), want)


def _largest_saved_tensor(fn):
    sizes = [0]

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, max(sizes)


def _largest_created_tensor(fn):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    Record.largest = max(Record.largest, t.numel())
            return out

    with Record():
        out = fn()
    return out, Record.largest


@pytest.mark.parametrize("mode", MODES)
def test_chunked_memory_is_bounded(mode):
    b, k, m, chunk = 12, 5, 6, 2
    _, _, mu, sigma2, y = make_inputs(11, b, k, m=m, mode=mode, p=0.5)
    per_anchor = b * k * (m if mode == "aniso" else 1)  # one anchor's pairwise entries
    out, created = _largest_created_tensor(
        lambda: kmcl_contrastive_loss(mu, sigma2, y, chunk_size=chunk, dim=m)
    )
    assert created <= max(chunk * per_anchor, b * k * m)
    _, unchunked = _largest_created_tensor(lambda: kmcl_contrastive_loss(mu, sigma2, y, dim=m))
    assert unchunked >= b * per_anchor  # the unchunked path does hold all pairs at once
    # nothing pairwise is kept for backward, chunked or not
    for c in (chunk, b):
        _, saved = _largest_saved_tensor(
            lambda c=c: kmcl_contrastive_loss(mu, sigma2, y, chunk_size=c, dim=m)
        )
        assert saved <= b * k * m
    out.backward()
    assert mu.grad is not None and bool(torch.isfinite(mu.grad).all())


def test_blocks_cover_the_anchors(monkeypatch):
    calls = []
    original = kmcl_mod._fused_block

    def spy(start, stop, *args):
        calls.append((start, stop))
        return original(start, stop, *args)

    monkeypatch.setattr(kmcl_mod, "_fused_block", spy)
    _, _, mu, sigma2, y = make_inputs(19, 10, 3, mode="aniso", p=0.5)
    kmcl_contrastive_loss(mu, sigma2, y, chunk_size=4)
    assert calls == [(0, 4), (4, 8), (8, 10)]


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode):
    _, _, mu, sigma2, y = make_inputs(20, 5, 3, m=2, mode=mode, p=0.6)
    y[0, 0] = y[1, 0] = 1
    for chunk in (None, 2):
        assert torch.autograd.gradcheck(
            lambda a, s, chunk=chunk: kmcl_contrastive_loss(a, s, y, chunk_size=chunk, dim=2), (mu, sigma2)
        )


# ------------------------------------------------------------------------------------------------
# degenerate batches
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_no_shared_labels_gives_zero_with_zero_gradients(mode):
    _, _, mu, sigma2, _ = make_inputs(12, 4, 4, m=3, mode=mode)
    y = torch.eye(4, dtype=torch.int64)
    y[3] = 0
    for chunk in (None, 1):
        loss = kmcl_contrastive_loss(mu, sigma2, y, chunk_size=chunk, dim=3)
        assert loss.item() == 0.0
        g_mu, g_s2 = grads(loss, (mu, sigma2))
        assert bool((g_mu == 0).all()) and bool((g_s2 == 0).all())


@pytest.mark.parametrize("mode", MODES)
def test_single_sample(mode):
    x, pi, mu, sigma2, _ = make_inputs(13, 1, 3, m=3, mode=mode)
    y = torch.tensor([[1, 0, 1]])
    con = kmcl_contrastive_loss(mu, sigma2, y, dim=3)
    assert con.item() == 0.0
    total = KMCLLoss()(x, pi, mu, sigma2, y)
    torch.testing.assert_close(total, ref_total(x, pi, mu, sigma2, y), **TOL)
    total.backward()
    for t in (x, pi, mu, sigma2):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())


@pytest.mark.parametrize("mode", MODES)
def test_rows_without_labels(mode):
    x, pi, mu, sigma2, _ = make_inputs(14, 5, 3, m=3, mode=mode)
    y = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1]])
    rec = kmcl_reconstruction_loss(x, pi, mu, sigma2, y)
    torch.testing.assert_close(rec, ref_reconstruction(x, pi, mu, sigma2, y), **TOL)
    total = KMCLLoss()(x, pi, mu, sigma2, y)
    want = ref_total(x, pi, mu, sigma2, y)
    torch.testing.assert_close(total, want, **TOL)
    inputs = (x, pi, mu, sigma2)
    got_g = grads(total, inputs)
    assert_grads_close(got_g, grads(want, inputs))
    # the unlabelled rows get no reconstruction gradient
    g_rec = grads(rec, (x,))[0]
    assert bool((g_rec[[1, 3]] == 0).all())
    # all rows empty: both kernel terms are an exact 0, gradients finite
    empty = torch.zeros_like(y)
    t2, terms = KMCLLoss()(x, pi, mu, sigma2, empty, return_terms=True)
    assert terms["rec"].item() == 0.0 and terms["con"].item() == 0.0
    for g in grads(t2, inputs):
        assert g is not None and bool(torch.isfinite(g).all())


def test_extreme_distances_are_finite():
    # far-apart means: exp(-D) underflows to 0, log s = 0; tiny/huge variances
    mu = torch.tensor([[0.0, 0.0], [1e4, -1e4], [1e4 + 1, 3.0]], dtype=torch.float32, requires_grad=True)
    sigma2 = torch.tensor([[1e-6, 1.0], [1e6, 1.0], [1.0, 1e-3]], dtype=torch.float32, requires_grad=True)
    y = torch.tensor([[1, 1], [1, 1], [1, 0]])
    x = torch.tensor([[5e3, 0.0], [0.0, 0.0], [1.0, 2.0]], requires_grad=True)
    pi = torch.tensor([[30.0, -30.0], [0.0, 0.0], [-50.0, 50.0]], requires_grad=True)
    total = KMCLLoss()(x, pi, mu, sigma2, y)
    assert bool(torch.isfinite(total))
    total.backward()
    for t in (x, pi, mu, sigma2):
        assert bool(torch.isfinite(t.grad).all())


def test_reconstruction_exact_when_kernels_underflow():
    # κ = e^-10000 and e^-9801 both underflow (the naive ratio is 0/0); in log space the loss is
    # log(1 + e^-199) exactly
    x = torch.tensor([[100.0, 100.0]], dtype=F64)
    mu = torch.tensor([[0.0, 1.0]], dtype=F64)
    sigma2 = torch.tensor([[1.0, 1.0]], dtype=F64)
    pi = torch.zeros(1, 2, dtype=F64)
    y = torch.tensor([[0, 1]])
    torch.testing.assert_close(kmcl_log_kernel(x, mu, sigma2), torch.tensor([[-10000.0, -9801.0]], dtype=F64))
    got = kmcl_reconstruction_loss(x, pi, mu, sigma2, y)
    torch.testing.assert_close(got, torch.tensor(math.log1p(math.exp(-199.0)), dtype=F64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    x, pi, mu, sigma2, y = make_inputs(15, 8, 4, m=4, mode="aniso", p=0.5, dtype=torch.float32,
                                       requires_grad=False)
    half = [t.to(dtype) for t in (x, pi, mu, sigma2)]
    ref = KMCLLoss()(*[t.float() for t in half], y)
    got = KMCLLoss()(*half, y)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


def test_label_dtypes():
    x, pi, mu, sigma2, y = make_inputs(16, 6, 3, mode="iso", p=0.5, requires_grad=False)
    want = KMCLLoss()(x, pi, mu, sigma2, y)
    for lab in (y.bool(), y.float(), y.double(), y.to(torch.uint8)):
        torch.testing.assert_close(KMCLLoss()(x, pi, mu, sigma2, lab), want)


def test_modules_and_head_output_unpacking():
    torch.manual_seed(1)
    head = KMCLHead(6, 3, mode="anisotropic", reduce_dim=2)
    y = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]])
    out = head(torch.randn(4, 6))
    total = KMCLLoss(chunk_size=2)(*out, y)
    manual = (KMCLLoss(weight_rec=0, weight_con=0)(*out, y)
              + KMCLReconstructionLoss()(*out, y)
              + KMCLContrastiveLoss(chunk_size=3)(out.mu, out.sigma2, y))
    torch.testing.assert_close(total, manual, rtol=1e-5, atol=1e-5)
    total.backward()
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, pi, mu, sigma2, y = make_inputs(17, 10, 5, m=4, mode="aniso", p=0.4, requires_grad=False)
    cpu = KMCLLoss(chunk_size=3)(x, pi, mu, sigma2, y)
    gpu = KMCLLoss(chunk_size=3)(*(t.cuda() for t in (x, pi, mu, sigma2, y)))
    torch.testing.assert_close(gpu.cpu(), cpu)


# ------------------------------------------------------------------------------------------------
# head
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode,reduce_dim,isotropic_mean,mu_shape,s2_shape",
    [
        ("isotropic", None, "scalar", (3, 5), (3, 5)),
        ("isotropic", 4, "scalar", (3, 5), (3, 5)),
        ("isotropic", None, "vector", (3, 5, 16), (3, 5)),
        ("anisotropic", None, "scalar", (3, 5, 16), (3, 5, 16)),
        ("anisotropic", 4, "scalar", (3, 5, 4), (3, 5, 4)),
    ],
)
def test_head_shapes(mode, reduce_dim, isotropic_mean, mu_shape, s2_shape):
    head = KMCLHead(16, 5, mode=mode, reduce_dim=reduce_dim, isotropic_mean=isotropic_mean)
    out = head(torch.randn(3, 16))
    assert isinstance(out, KMCLHeadOutput)
    assert out.x.shape == (3, reduce_dim or 16)
    assert out.pi.shape == (3, 5)
    assert out.mu.shape == mu_shape
    assert out.sigma2.shape == s2_shape
    assert head.dim == (reduce_dim or 16)


def test_head_variance_floor():
    head = KMCLHead(4, 3, mode="anisotropic")
    with torch.no_grad():
        head.var.weight.fill_(0.0)
        head.var.bias.fill_(-1e4)  # ELU → -1
    out = head(torch.randn(2, 4))
    assert bool((out.sigma2 >= 1 + 1e-7 - 1e-12).all()) and bool((out.sigma2 > 1).all())
    with torch.no_grad():
        head.var.bias.fill_(0.0)
    out = head(torch.zeros(2, 4))
    torch.testing.assert_close(out.sigma2, torch.full_like(out.sigma2, 2 + 1e-7))


def test_head_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        KMCLHead(4, 3, mode="diagonal")
    with pytest.raises(ValueError, match="in_dim"):
        KMCLHead(0, 3)
    with pytest.raises(ValueError, match="num_classes"):
        KMCLHead(4, 0)
    with pytest.raises(ValueError, match="reduce_dim"):
        KMCLHead(4, 3, reduce_dim=0)
    with pytest.raises(ValueError, match="isotropic_mean"):
        KMCLHead(4, 3, isotropic_mean="matrix")
    with pytest.raises(ValueError, match="features"):
        KMCLHead(4, 3)(torch.randn(2, 5))


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_bad_inputs():
    x, pi, mu, sigma2, y = make_inputs(18, 4, 3, m=2, mode="aniso", requires_grad=False)
    loss = KMCLLoss()
    cases = [
        ("labels", lambda: loss(x, pi, mu, sigma2, y[:3])),
        ("labels", lambda: loss(x, pi, mu, sigma2, y[:, :2])),
        ("labels", lambda: loss(x, pi, mu, sigma2, y * 2)),
        ("labels", lambda: loss(x, pi, mu, sigma2, y.float() * 0.5)),
        ("sigma2", lambda: loss(x, pi, mu, -sigma2, y)),
        ("sigma2", lambda: loss(x, pi, mu, sigma2 * 0, y)),
        ("sigma2", lambda: loss(x, pi, mu, sigma2[..., :1], y)),
        ("sigma2", lambda: loss(x, pi, mu, sigma2[:3], y)),
        ("mu", lambda: loss(x, pi, mu[:, :, :1], sigma2, y)),
        ("mu", lambda: loss(x, pi, mu[0], sigma2, y)),
        ("mu", lambda: loss(x, pi, mu * float("nan"), sigma2, y)),
        ("x", lambda: loss(x[:, None], pi, mu, sigma2, y)),
        ("x", lambda: loss(x * float("inf"), pi, mu, sigma2, y)),
        ("x", lambda: loss(x[:0], pi[:0], mu[:0], sigma2[:0], y[:0])),
        ("pi", lambda: kmcl_reconstruction_loss(x, pi[:, :2], mu, sigma2, y)),
        ("pi", lambda: kmcl_reconstruction_loss(x, pi * float("nan"), mu, sigma2, y)),
        ("temperature", lambda: kmcl_contrastive_loss(mu, sigma2, y, temperature=0.0)),
        ("temperature", lambda: kmcl_contrastive_loss(mu, sigma2, y, temperature=-1.0)),
        ("temperature", lambda: kmcl_contrastive_loss(mu, sigma2, y, temperature=float("nan"))),
        ("temperature", lambda: KMCLLoss(temperature=0)),
        ("chunk_size", lambda: kmcl_contrastive_loss(mu, sigma2, y, chunk_size=0)),
        ("chunk_size", lambda: KMCLLoss(chunk_size=1.5)),
        ("mu", lambda: kmcl_contrastive_loss(mu[:0], sigma2[:0], y[:0])),
        ("dim", lambda: kmcl_contrastive_loss(mu[..., 0], sigma2[..., 0], y)),
        ("mu", lambda: kmcl_contrastive_loss(mu, sigma2, y, dim=5)),
        ("weight_con", lambda: KMCLLoss(weight_con=-1.0)),
        ("asl_reduction", lambda: KMCLLoss(asl_reduction="none")),
        ("x", lambda: loss(x.long(), pi, mu, sigma2, y)),
        ("sigma2_2", lambda: bhattacharyya_distance(mu, sigma2, mu, sigma2[..., 0])),
        ("mu2", lambda: bhattacharyya_distance(mu, sigma2, mu[..., 0], sigma2)),
        ("mu2/sigma2_2", lambda: bhattacharyya_distance(mu, sigma2, mu)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=name.replace("/", ".")):
            call()
