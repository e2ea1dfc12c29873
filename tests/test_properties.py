"""Property tests of the flat contrastive losses (hypothesis).

For random shapes (B 1..12, V 1..3, C 1..8, D 2..8), label densities (from no label at all to
every label), temperatures (0.02..1), feature scales (1e-3, 1, 1e3), with and without
normalisation, and each loss's own options:

* float64: the loss and its gradient equal the naive reference of ``tests/reference.py``
  (rtol = atol = 1e-5), and both are finite;
* float32: finite, and equal to the float64 reference up to float32 rounding of the logits
  (tolerance relative to the largest |z_a·z_b| / τ);
* float16 / bfloat16: the loss is finite, and so is the gradient wherever the exact gradient
  is representable in that dtype.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import ref_flat
from torch.testing import assert_close

from mlsupcon.losses import build

LOSSES = ("all", "any", "mulsupcon", "simdis", "jaccard", "mlcl")

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def loss_options(name: str):
    """Each loss's own options (engine and reference share the names)."""
    if name == "simdis":
        return st.fixed_dictionaries({"dissimilarity": st.sampled_from(["reciprocal", "ratio"]),
                                      "normalization": st.sampled_from(["count", "weight"])})
    if name == "mulsupcon":
        return st.fixed_dictionaries({"reduction": st.sampled_from(["pair", "anchor"])})
    if name == "jaccard":
        return st.fixed_dictionaries({"threshold": st.sampled_from([0.0, 0.3, 0.5, 0.99])})
    if name == "mlcl":
        return st.fixed_dictionaries({"threshold": st.sampled_from([0.0, 0.5]),
                                      "alpha": st.sampled_from([1.0, 0.5]),
                                      "beta": st.sampled_from([1.0, 2.0]),
                                      "reg_weight": st.sampled_from([0.0, 0.1])})
    return st.just({})


@st.composite
def cases(draw, names=LOSSES):
    name = draw(st.sampled_from(names))
    b, v = draw(st.integers(1, 12)), draw(st.integers(1, 3))
    c, d = draw(st.integers(1, 8)), draw(st.integers(2, 8))
    return {
        "name": name,
        "opts": {**draw(loss_options(name)), "temperature": draw(st.floats(0.02, 1.0)),
                 "normalize": draw(st.booleans())},
        "shape": (b, v, c, d),
        "flat_v1": v == 1 and draw(st.booleans()),  # [B, D] instead of [B, 1, D]
        "density": draw(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.9, 1.0])),
        "scale": draw(st.sampled_from([1.0, 1.0, 1e-3, 1e3])),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def make_inputs(case, dtype):
    b, v, c, d = case["shape"]
    g = torch.Generator().manual_seed(case["seed"])
    feats = torch.randn(b, v, d, generator=g, dtype=torch.float64) * case["scale"]
    if case["flat_v1"]:
        feats = feats[:, 0]
    labels = (torch.rand(b, c, generator=g, dtype=torch.float64) < case["density"]).to(torch.float32)
    return feats.to(dtype), labels


def value_and_grad(fn, feats):
    f = feats.detach().clone().requires_grad_(True)
    out = fn(f)
    assert out.dim() == 0
    out.backward()
    return out.detach(), f.grad.detach()


def reference(case, feats64, labels):
    return value_and_grad(lambda f: ref_flat(case["name"], f, labels, **case["opts"]), feats64)


def engine(case, feats, labels):
    loss_fn = build(case["name"], **case["opts"])
    return value_and_grad(lambda f: loss_fn(f, labels), feats)


def max_weight(case) -> float:
    """The largest pair weight w_ab of the loss (docs/spec/LOSSES.md): J/(c + ε) ≤ 1/(c + ε) for
    jaccard, at most 1 for the others."""
    if case["name"] == "jaccard":
        return 1.0 / (case["opts"].get("threshold", 0.3) + 1e-8)
    return 1.0


def max_logit(case, feats64) -> float:
    z = feats64.reshape(-1, feats64.shape[-1])
    if case["opts"]["normalize"]:
        z = torch.nn.functional.normalize(z, dim=1)
    return float((z @ z.T).abs().max()) / case["opts"]["temperature"]


@settings(max_examples=400, **SETTINGS)
@given(case=cases())
def test_float64_matches_the_reference(case):
    feats, labels = make_inputs(case, torch.float64)
    got, got_grad = engine(case, feats, labels)
    exp, exp_grad = reference(case, feats, labels)
    assert torch.isfinite(got) and torch.isfinite(got_grad).all(), case
    assert torch.isfinite(exp)
    assert_close(got, exp, rtol=1e-5, atol=1e-5, msg=lambda m: f"{case}: value {m}")
    assert_close(got_grad, exp_grad, rtol=1e-5, atol=1e-5, msg=lambda m: f"{case}: gradient {m}")


@settings(max_examples=250, **SETTINGS)
@given(case=cases())
def test_float32_is_finite_and_matches_the_reference(case):
    feats32, labels = make_inputs(case, torch.float32)
    got, got_grad = engine(case, feats32, labels)
    assert got.dtype == torch.float32
    assert torch.isfinite(got) and torch.isfinite(got_grad).all(), case
    exp, _ = reference(case, feats32.to(torch.float64), labels)
    # float32 rounds each log p_ab to about 1e-7·(1 + max |s|), s = z_a·z_b/τ, and the loss
    # is a weighted mean of them: the error scales with the largest pair weight too.
    tol = 1e-4 * max_weight(case) * (1.0 + max_logit(case, feats32.to(torch.float64)))
    assert abs(float(got) - float(exp)) <= tol + 1e-4 * abs(float(exp)), (case, float(got), float(exp))


@settings(max_examples=200, **SETTINGS)
@given(case=cases(), dtype=st.sampled_from([torch.float16, torch.bfloat16]))
def test_half_precision_is_finite(case, dtype):
    feats, labels = make_inputs(case, dtype)
    got, got_grad = engine(case, feats, labels)
    assert torch.isfinite(got), case
    # The gradient is returned in the input's dtype: it must be finite wherever the exact
    # gradient (float64, from the same rounded inputs) fits in that dtype.
    _, exact_grad = engine(case, feats.to(torch.float64), labels)
    if float(exact_grad.abs().max()) < torch.finfo(dtype).max / 4:
        assert torch.isfinite(got_grad).all(), case


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_extreme_inputs_are_finite(name, dtype):
    """The corners hypothesis may not hit: 1e3-scaled unnormalised features at the smallest τ,
    identical embeddings, and all labels / no labels."""
    g = torch.Generator().manual_seed(0)
    feats = (torch.randn(6, 2, 4, generator=g, dtype=torch.float64) * 1e3)
    same = torch.ones(6, 2, 4, dtype=torch.float64)
    for f, labels, normalize in ((feats, torch.ones(6, 3), False), (feats, torch.zeros(6, 3), True),
                                 (same, (torch.rand(6, 3, generator=g) < 0.5).float(), True),
                                 (feats, (torch.rand(6, 3, generator=g) < 0.5).float(), True)):
        case = {"name": name, "opts": {"temperature": 0.02, "normalize": normalize}}
        got, grad = engine(case, f.to(dtype), labels)
        assert torch.isfinite(got), (name, dtype, normalize)
        if dtype in (torch.float64, torch.float32, torch.bfloat16) or normalize:
            assert torch.isfinite(grad).all(), (name, dtype, normalize)
        if dtype == torch.float64:
            exp, exp_grad = reference(case, f, labels)
            assert_close(got, exp, rtol=1e-5, atol=1e-5)
            assert_close(grad, exp_grad, rtol=1e-5, atol=1e-5)
