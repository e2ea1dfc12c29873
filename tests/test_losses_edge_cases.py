"""Edge cases of the loss API, checked for every loss of ``build``.

Each case is either finite and exact (against the float64 naive references of
``tests/reference.py``) or a ValueError naming the argument: empty and one-sample batches,
large unnormalised features, float16 with a tiny τ, bool / non-finite options, numpy and sparse
labels, and SupCon's ignored class id −1.
"""

from __future__ import annotations

import pytest
import torch
from reference import ref_flat, ref_hierarchical
from torch.testing import assert_close

from mlsupcon.losses import CONTRASTIVE_LOSSES, HIERARCHICAL_LOSSES, build

CONTRASTIVE = sorted(CONTRASTIVE_LOSSES)
F64 = torch.float64


def contrastive_labels(name: str, batch: int, seed: int = 0, classes: int = 4):
    """Labels in the format the loss declares (multi-hot, class ids, hierarchy paths or None)."""
    g = torch.Generator().manual_seed(seed)
    fmt = CONTRASTIVE_LOSSES[name].label_format
    if fmt == "class_ids":
        return torch.randint(0, 3, (batch,), generator=g)
    if fmt == "none":
        return None
    if fmt == "hierarchy_levels":  # [B, 2] paths, coarsest first
        return torch.stack([torch.randint(0, 2, (batch,), generator=g), torch.randint(0, 3, (batch,), generator=g)], 1)
    return (torch.rand(batch, classes, generator=g) < 0.5).float()


def reference(name: str, features, labels, **opts):
    """The float64 naive loss of ``tests/reference.py``."""
    if name in HIERARCHICAL_LOSSES:
        return ref_hierarchical(name, features, labels, **opts)
    return ref_flat(name, features, labels, **opts)


def value_and_grad(fn, features):
    f = features.detach().clone().requires_grad_(True)
    out = fn(f)
    out.backward()
    return out.detach(), f.grad


# --------------------------------------------------------------------------- B = 1


@pytest.mark.parametrize("name", CONTRASTIVE)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("batch,views", [(1, 1), (1, 2), (2, 1)])
def test_one_candidate_per_anchor_is_an_exact_zero(name, normalize, batch, views):
    # B = 1 with two views (or B = 2 with one): every anchor has one candidate, so p = 1 and
    # log p = 0 for every loss; B = V = 1 has no candidate at all. Exactly 0, zero gradients.
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        feats = torch.randn(batch, views, 16, generator=g) * 10 ** seed
        labels = contrastive_labels(name, batch, seed)
        loss_fn = build(name, normalize=normalize, temperature=0.07)
        loss, grad = value_and_grad(lambda f, fn=loss_fn, y=labels: fn(f, y), feats)
        assert loss.item() == 0.0, (seed, loss.item())
        assert torch.count_nonzero(grad) == 0


# --------------------------------------------------------------------------- large features


@pytest.mark.parametrize("name", CONTRASTIVE)
@pytest.mark.parametrize("scale", [1e4, 1e12])
def test_large_unnormalised_features_match_float64(name, scale):
    # float32 features of norm ~1e13 give similarities ~1e27: the loss is still finite and
    # equal to the float64 reference, value and gradient.
    g = torch.Generator().manual_seed(int(scale) % 97)
    feats = (torch.randn(6, 2, 8, generator=g) * scale).float()
    labels = contrastive_labels(name, 6, seed=3)
    loss, grad = value_and_grad(lambda f: build(name, normalize=False)(f, labels), feats)
    exp, exp_grad = value_and_grad(lambda f: reference(name, f, labels, normalize=False), feats.to(F64))
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert_close(loss.to(F64), exp, rtol=1e-5, atol=0)
    assert_close(grad.to(F64), exp_grad, rtol=1e-4, atol=1e-4 * float(exp_grad.abs().max()))


# --------------------------------------------------------------------------- float16


@pytest.mark.parametrize("name", CONTRASTIVE)
@pytest.mark.parametrize("temperature", [1e-3, 1e-4])
def test_float16_with_a_tiny_temperature_is_finite_and_exact(name, temperature):
    # Half inputs are computed in float32; the loss comes back in float32 and the gradient in
    # float16, close to float64 on the same (rounded) inputs. The gradients here reach ~5e3;
    # one past 65504 (the float16 maximum) is inf, see docs/failures.md.
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(8, 2, 16, generator=g).half()
    labels = contrastive_labels(name, 8, seed=4)
    loss_fn = build(name, normalize=False, temperature=temperature)
    loss, grad = value_and_grad(lambda f: loss_fn(f, labels), feats)
    exp, exp_grad = value_and_grad(
        lambda f: reference(name, f, labels, normalize=False, temperature=temperature), feats.to(F64))
    assert loss.dtype == torch.float32 and grad.dtype == torch.float16
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert float(exp_grad.abs().max()) < 65504
    assert_close(loss.to(F64), exp, rtol=1e-5, atol=0)
    assert_close(grad.to(F64), exp_grad, rtol=2e-3, atol=2e-3 * float(exp_grad.abs().max()))
