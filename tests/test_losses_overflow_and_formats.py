"""Float32 range of the losses and the label format of the hierarchical losses (issue 19, items 4 and 6).

Item 4: with ``normalize=True`` a contrastive loss is invariant to the scale of each embedding,
so float32 features scaled by 1e19 (squared norm beyond float32) or 1e-30 (squares underflow)
must give the float64 value of the unscaled features, and the gradient scaled back by the
factor. KMCL's terms must be finite wherever the float64 value of the same inputs fits in float32.

Item 6: a hierarchical loss given a single multi-hot ``[B, C]`` matrix must refuse it, not read
it as a ``[B, L]`` path of class ids.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from mlsupcon.losses import build
from mlsupcon.losses.hierarchical import path_to_levels
from mlsupcon.losses.kmcl import KMCLLoss, kmcl_contrastive_loss

FLAT = ["all", "any", "mulsupcon", "simdis", "jaccard", "mlcl", "supcon", "simclr"]
HIER = ["himulcon", "hicone", "himulcone"]
SCALES = [1e19, 1e-30]
F32_MAX = torch.finfo(torch.float32).max


def _batch(seed=0, b=8, v=2, d=16, c=5):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, v, d, generator=g, dtype=torch.float64)
    labels = (torch.rand(b, c, generator=g) < 0.4).long()
    labels[0] = labels[1]  # at least one identical pair
    return feats, labels


def _labels_for(name, labels):
    if name == "supcon":
        return labels.argmax(1)
    if name == "simclr":
        return None
    return labels


def _value_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def _check_scaled(fn, feats64, scale, chunk_msg=""):
    """fn on float32 features × scale vs fn on the same (rounded) features in float64, unscaled."""
    x32 = (feats64 * scale).to(torch.float32)
    assert torch.isfinite(x32).all() and (x32 != 0).any()
    x64 = x32.to(torch.float64) / scale  # the very same numbers, back at unit scale
    v32, g32 = _value_grad(fn, x32)
    v64, g64 = _value_grad(fn, x64)
    assert v32.dtype == torch.float32
    assert torch.isfinite(v32), f"{chunk_msg} scale {scale}: loss {v32}"
    assert_close(v32.double(), v64, rtol=1e-4, atol=1e-6, msg=lambda m: f"{chunk_msg} scale {scale} value: {m}")
    assert torch.isfinite(g32).all(), f"{chunk_msg} scale {scale}: non-finite gradient"
    # d/dx L(x) at x = s·u is (dL/du)(u) / s
    assert_close(g32.double() * scale, g64, rtol=1e-3, atol=1e-5 * float(g64.abs().max()),
                 msg=lambda m: f"{chunk_msg} scale {scale} grad: {m}")


# ----------------------------------------------------------------------------- item 4: flat


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", FLAT)
def test_flat_loss_scale_invariant_in_float32(name, scale):
    feats, labels = _batch()
    y = _labels_for(name, labels)
    loss_fn = build(name)
    _check_scaled(lambda f: loss_fn(f, y), feats, scale, name)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", ["simdis", "mulsupcon"])
def test_flat_loss_scale_invariant_chunked_with_refs(name, scale):
    feats, labels = _batch(1, b=7)
    refs, ref_labels = _batch(2, b=5, v=1)
    loss_fn = build(name, chunk_size=3)
    # the references get their own scale: every row is normalised on its own
    ref32 = (refs[:, 0] * 1e-3).to(torch.float32)
    _check_scaled(lambda f: loss_fn(f, labels, ref_features=ref32.to(f.dtype), ref_labels=ref_labels),
                  feats, scale, name)


def test_flat_loss_zero_row_stays_finite():
    feats, labels = _batch(3)
    x = feats.to(torch.float32)
    x[2, 1] = 0.0
    v, g = _value_grad(lambda f: build("simdis")(f, labels), x)
    v64, g64 = _value_grad(lambda f: build("simdis")(f, labels), x.double())
    assert torch.isfinite(v) and torch.isfinite(g).all()
    assert_close(v.double(), v64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1e19, 1e-30])
def test_mlcl_norm_regulariser_does_not_overflow(scale):
    # R = mean ||f|| on the features as given: at 1e19 the squared norm overflows float32
    feats, labels = _batch(4)
    loss_fn = build("mlcl", reg_weight=0.01)
    x32 = (feats * scale).to(torch.float32)
    v32, g32 = _value_grad(lambda f: loss_fn(f, labels), x32)
    v64, g64 = _value_grad(lambda f: loss_fn(f, labels), x32.double())
    assert torch.isfinite(v32) and torch.isfinite(g32).all()
    assert_close(v32.double(), v64, rtol=1e-4, atol=1e-6)
    assert_close(g32.double(), g64, rtol=1e-3, atol=1e-5 * float(g64.abs().max()))


# ----------------------------------------------------------------------------- item 4: hierarchical


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("kind", HIER)
def test_hierarchical_scale_invariant_in_float32(kind, scale):
    feats, fine = _batch(5, c=6)
    parent = torch.tensor([0, 0, 1, 1, 2, 2])
    coarse = torch.zeros(fine.shape[0], 3, dtype=torch.long).index_add_(1, parent, fine).clamp_max(1)
    loss_fn = build(kind, base="simdis")
    _check_scaled(lambda f: loss_fn(f, [coarse, fine]), feats, scale, kind)


# ----------------------------------------------------------------------------- item 4: KMCL


def _kmcl_inputs(mode, seed=0, b=6, k=3, m=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, m, generator=g, dtype=torch.float64)
    pi = torch.randn(b, k, generator=g, dtype=torch.float64)
    mu_shape = (b, k) if mode == "iso_scalar" else (b, k, m)
    s2_shape = (b, k, m) if mode == "aniso" else (b, k)
    mu = torch.randn(*mu_shape, generator=g, dtype=torch.float64)
    s2 = torch.rand(*s2_shape, generator=g, dtype=torch.float64) + 0.5
    y = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1], [1, 1, 1]])[:b]
    return x, pi, mu, s2, y


def _kmcl_terms(x, pi, mu, s2, y):
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, pi, mu, s2)]
    total, terms = KMCLLoss()(*leaves, y, return_terms=True)
    grads = torch.autograd.grad(total, leaves)
    return {k: v.detach() for k, v in terms.items()}, total.detach(), grads


def _assert_grad_matches_where_it_fits(g32, g64, what):
    fits = g64.abs() < F32_MAX / 16
    assert torch.isfinite(g32[fits]).all(), f"{what}: non-finite gradient where float64's fits in float32"
    assert_close(g32[fits].double(), g64[fits], rtol=1e-3, atol=1e-5 * float(g64[fits].abs().max()) + 1e-30,
                 msg=lambda m: f"{what}: {m}")


MODES = ["iso_scalar", "iso_vector", "aniso"]


@pytest.mark.parametrize("mode", MODES)
def test_kmcl_means_times_1e19(mode):
    x, pi, mu, s2, y = _kmcl_inputs(mode)
    ins32 = [t.to(torch.float32) for t in (x, pi, mu * 1e19, s2)]
    terms32, total32, grads32 = _kmcl_terms(*ins32, y)
    terms64, total64, grads64 = _kmcl_terms(*[t.double() for t in ins32], y)
    assert total64.abs() < F32_MAX  # the true value fits in float32
    for name in terms64:
        assert torch.isfinite(terms32[name]), f"{mode} {name}: {terms32[name]}"
        assert_close(terms32[name].double(), terms64[name], rtol=1e-4, atol=1e-6,
                     msg=lambda m, name=name: f"{name}: {m}")
    for g32, g64, name in zip(grads32, grads64, ("x", "pi", "mu", "sigma2")):
        _assert_grad_matches_where_it_fits(g32, g64, f"{mode} grad {name}")


@pytest.mark.parametrize("mode", MODES)
def test_kmcl_contrastive_variances_times_1e_minus_40(mode):
    x, pi, mu, s2, y = _kmcl_inputs(mode, seed=1)
    mu32, s232 = mu.to(torch.float32), (s2 * 1e-40).to(torch.float32)  # subnormal variances
    assert (s232 > 0).all()
    m = x.shape[1]

    def con(a, b):
        a, b = a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
        v = kmcl_contrastive_loss(a, b, y, dim=m)
        return v.detach(), torch.autograd.grad(v, (a, b))

    v32, g32 = con(mu32, s232)
    v64, g64 = con(mu32.double(), s232.double())
    assert torch.isfinite(v32), f"{mode}: {v32}"
    assert_close(v32.double(), v64, rtol=1e-4, atol=1e-6)
    for a, b, name in zip(g32, g64, ("mu", "sigma2")):
        _assert_grad_matches_where_it_fits(a, b, f"{mode} grad {name}")
    # the whole objective: every term finite where float64's fits (L_rec ~ 1/σ² does not)
    terms32, _, _ = _kmcl_terms(x.float(), pi.float(), mu32, s232, y)
    terms64, _, _ = _kmcl_terms(x, pi.float().double(), mu32.double(), s232.double(), y)
    for name in terms64:
        if terms64[name].abs() < F32_MAX / 16:
            assert_close(terms32[name].double(), terms64[name], rtol=1e-4, atol=1e-6)
        else:
            assert terms32[name] == float("inf")


@pytest.mark.parametrize("scale", [1e19, 1e-20])
@pytest.mark.parametrize("mode", MODES)
def test_kmcl_joint_rescale_is_invariant(mode, scale):
    # x, μ → s·x, s·μ and σ² → s²·σ² leave every term unchanged (and ∂/∂μ scales by 1/s)
    x, pi, mu, s2, y = _kmcl_inputs(mode, seed=2)
    ins32 = [(x * scale).float(), pi.float(), (mu * scale).float(), (s2 * scale**2).float()]
    terms32, total32, grads32 = _kmcl_terms(*ins32, y)
    unscaled = [ins32[0].double() / scale, ins32[1].double(), ins32[2].double() / scale,
                ins32[3].double() / scale**2]
    terms64, total64, grads64 = _kmcl_terms(*unscaled, y)
    for name in terms64:
        assert_close(terms32[name].double(), terms64[name], rtol=1e-4, atol=1e-6,
                     msg=lambda m, name=name: f"{name}: {m}")
    if scale > 1:  # at 1e-20 the σ² gradient (~1e40) does not fit in float32
        for g32, g64, name, p in zip(grads32, grads64, ("x", "pi", "mu", "sigma2"), (1, 0, 1, 2)):
            _assert_grad_matches_where_it_fits(g32.double() * scale**p, g64, f"{mode} grad {name}")


# ----------------------------------------------------------------------------- item 6


@pytest.mark.parametrize("kind", HIER)
@pytest.mark.parametrize("dtype", [torch.long, torch.bool, torch.float32, torch.uint8])
def test_hierarchical_refuses_a_multi_hot_matrix(kind, dtype):
    feats = torch.randn(64, 2, 32)
    multi_hot = torch.randint(0, 2, (64, 20)).to(dtype)  # the README's simdis example
    with pytest.raises(ValueError, match=r"^labels: .*one label tensor per hierarchy level.*\[64, 20\]"):
        build(kind)(feats, multi_hot)


@pytest.mark.parametrize("kind", HIER)
def test_hierarchical_bare_path_tensor_needs_paths_true(kind):
    feats = torch.randn(4, 2, 8)
    paths = torch.tensor([[0, 0], [0, 1], [1, 2], [0, 0]])
    with pytest.raises(ValueError, match=r"^labels: .*paths=True"):
        build(kind)(feats, paths)
    with pytest.raises(ValueError, match=r"^labels: .*paths=True"):
        build(kind, paths=True)(feats, [torch.ones(4, 1), torch.ones(4, 2)])
    with pytest.raises(ValueError, match="paths"):
        build(kind, paths="yes")


@pytest.mark.parametrize("kind", HIER)
def test_hierarchical_correct_calls_still_work(kind):
    g = torch.Generator().manual_seed(9)
    feats = torch.randn(6, 2, 8, generator=g, dtype=torch.float64)
    paths = torch.tensor([[0, 0], [0, 1], [1, 0], [0, 0], [1, 1], [1, 0]])  # only 0/1: still a path
    levels = [lvl for lvl, _ in path_to_levels(paths)]
    by_paths = build(kind, paths=True)(feats, paths)
    by_levels = build(kind)(feats, levels)
    by_tuple = build(kind)(feats, tuple(levels))
    assert torch.isfinite(by_paths) and by_paths > 0
    assert_close(by_paths, by_levels)
    assert_close(by_tuple, by_levels)
    # the per-level loss of level 2 (same coarse and fine id) is the flat `all` loss on those rows
    manual = build("all")(feats, levels[1])
    assert not torch.allclose(manual, build("all")(feats, levels[0]))
