"""CL-MTC (cl_scl, cl_jscl, cl_jspcl, cl_slcl, cl_icl) and multisupcon_wz against the naive
references of ``tests/reference_next_clmtc.py`` (docs/spec/LOSSES.md, "CL-MTC" and
"Multi-SupCon (WolodjaZ)"): values and gradients in float64, the spec's hand cases, chunking,
the memory queue, half precision and bad input."""

from __future__ import annotations

import pytest
import torch
from reference_next_clmtc import ref_cl, ref_icl, ref_wz
from torch.testing import assert_close

from mlsupcon.losses import (
    CLASSIFIER_LOSSES,
    FLAT_LOSSES,
    LABEL_EMBEDDING_LOSSES,
    LOSSES,
    QueueLoss,
    build,
)

DT = torch.float64
TOL = dict(atol=1e-6, rtol=1e-6)
CHUNK_TOL = dict(atol=1e-9, rtol=1e-9)

Z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=DT)
V1 = torch.tensor([[0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]], dtype=DT)
Y_11 = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=DT)  # the spec's y of 1.1
Y_SCL = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=DT)
Y_EMPTY = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=DT)


def make_batch(seed, B, V, C, density, D=5, scale=1.0, empty=True, dup=True):
    """Random float64 features (V = 1 → [B, D]) and labels; sample 0 empty (B ≥ 3) and samples
    2, 3 with one label set (B ≥ 5) unless switched off. Label dtype varies with the seed."""
    g = torch.Generator().manual_seed(2000 + seed)
    shape = (B, D) if V == 1 else (B, V, D)
    feats = torch.randn(*shape, generator=g, dtype=DT) * scale
    lab = torch.rand(B, C, generator=g) < density
    if empty and B >= 3:
        lab[0] = False
    if dup and B >= 5:
        lab[2] = lab[3]
    return feats, lab.to((torch.bool, torch.int64, torch.float32, torch.float64)[seed % 4])


def make_refs(seed, M, D, C, density):
    g = torch.Generator().manual_seed(7000 + seed)
    rl = torch.rand(M, C, generator=g) < density
    if M >= 2:
        rl[0] = False
    return torch.randn(M, D, generator=g, dtype=DT), rl.to(torch.float32)


def value_and_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    assert out.dim() == 0
    out.backward()
    return out.detach(), x.grad.detach()


def check(loss_fn, ref_fn, x, tol=TOL):
    got, got_g = value_and_grad(loss_fn, x)
    exp, exp_g = value_and_grad(ref_fn, x)
    assert torch.isfinite(got), got
    assert_close(got.to(DT), exp, **tol)
    assert_close(got_g, exp_g, **tol)


SHAPES = [  # (seed, B, V, C, density)
    (0, 1, 1, 3, 0.5),
    (1, 1, 2, 3, 0.5),
    (2, 2, 1, 1, 0.5),
    (3, 3, 2, 4, 0.5),
    (4, 6, 1, 4, 0.5),
    (5, 7, 2, 2, 0.5),
    (6, 8, 1, 6, 0.2),
    (7, 6, 3, 3, 0.6),
]


def _sid(s):
    return "s{}-B{}-V{}-C{}-d{}".format(*s)


# --------------------------------------------------------------------------- CL-MTC, clean


@pytest.mark.parametrize("kind", ["scl", "jscl", "slcl"])
@pytest.mark.parametrize("shape", SHAPES, ids=_sid)
def test_cl_clean_matches_reference(kind, shape):
    seed, B, V, C, density = shape
    feats, lab = make_batch(seed, B, V, C, density, scale=0.7)
    opts = dict(temperature=0.5, base_temperature=0.07, normalize=bool(seed % 2))
    loss_fn = build("cl_" + kind, **opts)
    check(lambda f: loss_fn(f, lab), lambda f: ref_cl(kind, f, lab, **opts), feats)


@pytest.mark.parametrize("kind", ["scl", "jscl", "slcl"])
@pytest.mark.parametrize("seed,M,V", [(0, 1, 1), (1, 4, 2), (2, 5, 1)])
def test_cl_clean_with_reference_candidates(kind, seed, M, V):
    feats, lab = make_batch(seed, 5, V, 4, 0.5, scale=0.7)
    rf, rl = make_refs(seed, M, 5, 4, 0.5)
    opts = dict(temperature=0.3, base_temperature=0.1)
    loss_fn = build("cl_" + kind, **opts)
    check(lambda f: loss_fn(f, lab, ref_features=rf, ref_labels=rl),
          lambda f: ref_cl(kind, f, lab, ref_features=rf, ref_labels=rl, **opts), feats)


@pytest.mark.parametrize("kind", ["scl", "jscl", "slcl"])
@pytest.mark.parametrize("legacy", [False, True])
def test_cl_chunked_equals_dense(kind, legacy):
    V = 1 if legacy else 2
    feats, lab = make_batch(11, 9, V, 5, 0.4)
    if legacy and kind == "jscl":  # an empty row makes the code's JSCL NaN
        lab = lab.clone()
        lab[:, 0] = 1
    dense = build("cl_" + kind, temperature=0.4, legacy=legacy)
    chunked = build("cl_" + kind, temperature=0.4, legacy=legacy, chunk_size=2)
    got, got_g = value_and_grad(lambda f: chunked(f, lab), feats)
    exp, exp_g = value_and_grad(lambda f: dense(f, lab), feats)
    assert_close(got, exp, **CHUNK_TOL)
    assert_close(got_g, exp_g, **CHUNK_TOL)


def test_cl_jscl_anchor_without_denominator_is_left_out():
    # Spec §3 correction 2: y = [[1,0,0],[0,1,0],[0,1,0]]: the first anchor shares no label, so
    # Σ_{c≠a} J_ac = 0; clean leaves it out (3.5714), the code gives −103.93.
    y = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 0]], dtype=DT)
    assert float(build("cl_jscl", temperature=0.5)(Z, y)) == pytest.approx(3.5714285714, abs=1e-6)
    assert float(build("cl_jscl", temperature=0.5, legacy=True)(Z, y)) == pytest.approx(-103.93262, abs=1e-4)


# --------------------------------------------------------------------------- CL-MTC, legacy


LEGACY_SHAPES = [(0, 1, 3, 0.5), (1, 2, 2, 0.5), (2, 4, 3, 0.5), (3, 7, 4, 0.4), (4, 8, 2, 0.6)]


@pytest.mark.parametrize("kind", ["scl", "jscl", "slcl"])
@pytest.mark.parametrize("shape", LEGACY_SHAPES, ids=lambda s: "s{}-B{}-C{}-d{}".format(*s))
@pytest.mark.parametrize("scale", [0.5, 4.0], ids=["small", "raw-large"])
def test_cl_legacy_matches_reference(kind, shape, scale):
    seed, B, C, density = shape
    # cl_jscl: an empty label row makes the code NaN (tested below), so none here
    feats, lab = make_batch(seed, B, 1, C, density, scale=scale, empty=(kind != "jscl"))
    if kind == "jscl":
        lab = lab.clone()
        lab[:, 0] = 1  # every row non-empty
    opts = dict(temperature=0.5, base_temperature=0.07, legacy=True)
    loss_fn = build("cl_" + kind, **opts)
    check(lambda f: loss_fn(f, lab), lambda f: ref_cl(kind, f, lab, **opts), feats)


def test_cl_legacy_differs_from_clean_on_raw_features():
    # Spec §3 correction 1: with raw features the 1e-20 terms dominate when ‖z_a‖²/τ − max_c s_ac > 46.
    feats, lab = make_batch(3, 6, 1, 3, 0.5, D=16, scale=4.0, empty=False)
    clean = float(build("cl_scl", temperature=0.5)(feats, lab))
    legacy = float(build("cl_scl", temperature=0.5, legacy=True)(feats, lab))
    assert abs(clean - legacy) > 0.1


def test_cl_legacy_anchor_without_positive_adds_minus_scale():
    # Spec §3 correction 3: every anchor distinct → each contributes −τ/τ_b, no gradient.
    f = Z.clone().requires_grad_(True)
    loss = build("cl_scl", temperature=0.5, base_temperature=0.07, legacy=True)(f, Y_11)
    assert float(loss.detach()) == pytest.approx(-0.5 / 0.07, rel=1e-12)
    loss.backward()
    assert torch.count_nonzero(f.grad) == 0
    assert float(build("cl_scl", temperature=0.5)(Z, Y_11)) == 0.0  # clean: left out


@pytest.mark.parametrize("name", ["cl_jscl", "cl_jspcl"])
def test_cl_legacy_jscl_empty_row_is_nan_as_the_code(name):
    x = torch.cat([Z, V1[:, :1]], 1)  # 3 columns: logits need one per label
    assert torch.isnan(build(name, temperature=0.5, legacy=True)(x, Y_EMPTY))
    # clean: the empty anchor is left out (Σ_{c≠a} J_ac = 0), and so are the others here
    assert float(build(name, temperature=0.5)(x, Y_EMPTY)) == 0.0


# --------------------------------------------------------------------------- jspcl, icl


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("seed,B,C", [(0, 1, 3), (1, 4, 3), (2, 7, 5)])
def test_cl_jspcl_matches_reference(legacy, seed, B, C):
    logits, lab = make_batch(seed, B, 1, C, 0.5, D=C, scale=2.0, empty=not legacy)
    if legacy:
        lab = lab.clone()
        lab[:, -1] = 1
    opts = dict(temperature=0.5, legacy=legacy)
    loss_fn = build("cl_jspcl", **opts)
    check(lambda x: loss_fn(x, lab), lambda x: ref_cl("jspcl", x, lab, **opts), logits)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("seed,B,C", [(0, 1, 1), (1, 1, 3), (2, 3, 2), (3, 5, 4), (4, 4, 6)])
def test_cl_icl_matches_reference(legacy, normalize, seed, B, C):
    g = torch.Generator().manual_seed(300 + seed)
    emb = torch.randn(B, C, 4, generator=g, dtype=DT) * 2
    lab = (torch.rand(B, C, generator=g) < 0.5).to(torch.int64)
    if B >= 2:
        lab[0] = 0  # all labels of sample 0 negative
    opts = dict(temperature=0.5, base_temperature=0.07, normalize=normalize, legacy=legacy)
    loss_fn = build("cl_icl", **opts)
    check(lambda e: loss_fn(e, lab), lambda e: ref_icl(e, lab, **opts), emb)
    chunked = build("cl_icl", chunk_size=2, **opts)
    got, got_g = value_and_grad(lambda e: chunked(e, lab), emb)
    exp, exp_g = value_and_grad(lambda e: loss_fn(e, lab), emb)
    assert_close(got, exp, **CHUNK_TOL)
    assert_close(got_g, exp_g, **CHUNK_TOL)


# --------------------------------------------------------------------------- multisupcon_wz


WZ_CONFIGS = [
    {},
    {"multi": False},
    {"c_threshold": 0.0},
    {"c_threshold": 0.5, "multi": False},
    {"c_threshold": 1.0},
    {"contrast_mode": "one"},
    {"normalize": True, "temperature": 0.2, "base_temperature": 0.1},
]


@pytest.mark.parametrize("opts", WZ_CONFIGS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("shape", SHAPES, ids=_sid)
def test_wz_matches_reference(opts, shape):
    seed, B, V, C, density = shape
    feats, lab = make_batch(seed, B, V, C, density, scale=0.3)
    loss_fn = build("multisupcon_wz", **opts)
    check(lambda f: loss_fn(f, lab), lambda f: ref_wz(f, lab, **opts), feats)


@pytest.mark.parametrize("opts", [{}, {"multi": False, "c_threshold": 0.0}, {"contrast_mode": "one"}])
def test_wz_with_reference_candidates_and_chunks(opts):
    feats, lab = make_batch(21, 7, 2, 4, 0.5, scale=0.3)
    rf, rl = make_refs(21, 6, 5, 4, 0.5)
    ref = lambda f: ref_wz(f, lab, ref_features=rf, ref_labels=rl, **opts)  # noqa: E731
    for chunk in (None, 3):
        loss_fn = build("multisupcon_wz", chunk_size=chunk, **opts)
        check(lambda f, fn=loss_fn: fn(f, lab, ref_features=rf, ref_labels=rl), ref, feats)


def test_wz_memory_queue_matches_reference():
    # pytorch-metric-learning PR #667 broke with a memory queue: here the queue rows are extra
    # candidates with their labels, never anchors, the batch is enqueued after the loss.
    torch.manual_seed(0)
    crit = QueueLoss(build("multisupcon_wz", temperature=0.2, normalize=True), size=16, dim=5, num_labels=4)
    f1, y1 = make_batch(31, 6, 2, 4, 0.5)
    f2, y2 = make_batch(32, 5, 2, 4, 0.5)
    first = crit(f1.float(), y1)
    assert_close(first.double(), ref_wz(f1, y1, temperature=0.2, normalize=True), atol=1e-5, rtol=1e-5)
    assert len(crit.queue) == 12
    queued = f1.transpose(0, 1).reshape(12, 5)  # view-major rows, as enqueued
    queued_labels = torch.cat([y1, y1]).to(DT)
    got, got_g = value_and_grad(lambda f: crit(f, y2), f2.float())
    exp, exp_g = value_and_grad(lambda f: ref_wz(f, y2, temperature=0.2, normalize=True,
                                                 ref_features=queued, ref_labels=queued_labels), f2)
    assert_close(got.double(), exp, atol=1e-5, rtol=1e-5)
    assert_close(got_g.double(), exp_g, atol=1e-5, rtol=1e-5)
    assert len(crit.queue) == 16


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("normalize", [False, True])
def test_wz_half_precision_is_computed_in_float32(dtype, normalize):
    feats, lab = make_batch(41, 8, 2, 5, 0.4, D=8)
    half = feats.to(dtype)
    loss_fn = build("multisupcon_wz", temperature=0.1, normalize=normalize)
    got, got_g = value_and_grad(lambda f: loss_fn(f, lab), half)
    assert got.dtype == torch.float32 and got_g.dtype == dtype
    assert torch.isfinite(got) and bool(torch.isfinite(got_g.float()).all())
    # the same loss on the rounded inputs, in float64
    exp, exp_g = value_and_grad(lambda f: ref_wz(f, lab, temperature=0.1, normalize=normalize), half.to(DT))
    assert_close(got.double(), exp, atol=1e-4, rtol=1e-4)
    assert_close(got_g.double(), exp_g, atol=2e-2, rtol=2e-2)  # the gradient is rounded to `dtype`


@pytest.mark.parametrize("name", ["cl_scl", "cl_jscl", "cl_slcl"])
def test_cl_half_precision_and_queue(name):
    feats, lab = make_batch(42, 6, 2, 4, 0.5, D=8, scale=0.5)
    loss_fn = build(name, temperature=0.5)
    got = loss_fn(feats.half(), lab)
    assert got.dtype == torch.float32
    assert_close(got.double(), ref_cl(name[3:], feats.half().to(DT), lab, temperature=0.5), atol=1e-4, rtol=1e-4)
    crit = QueueLoss(loss_fn, size=8, dim=8, num_labels=4)
    crit(feats.float(), lab)
    assert torch.isfinite(crit(feats.float(), lab))


# --------------------------------------------------------------------------- hand cases (spec §3, §4)


HAND = [
    ("cl_scl", {}, Z, Y_SCL, 4.201063),
    ("cl_scl", {"legacy": True}, Z, Y_SCL, 0.419756),
    ("cl_scl", {}, Z, Y_11, 0.0),
    ("cl_jscl", {}, Z, Y_11, -6.433147),
    ("cl_jscl", {}, Z, Y_EMPTY, 0.0),
    ("cl_slcl", {}, Z, Y_11, 2.222134),
    ("cl_slcl", {"legacy": True}, Z, Y_11, 0.687772),
    ("multisupcon_wz", {}, torch.stack([Z, V1], 1), Y_11, 7.319587),
    ("multisupcon_wz", {}, Z, Y_11, 3.240101),
    ("multisupcon_wz", {}, torch.stack([Z, V1], 1), torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]]), 7.755797),
]


@pytest.mark.parametrize("case", HAND, ids=lambda c: f"{c[0]}-{c[4]}")
def test_spec_hand_cases(case):
    name, opts, feats, lab, expected = case
    for dtype in (torch.float64, torch.float32):
        loss = build(name, temperature=0.5, base_temperature=0.07, **opts)(feats.to(dtype), lab)
        assert float(loss) == pytest.approx(expected, abs=2e-6)
        if name.startswith("cl_"):  # the reference agrees with the spec's numbers too
            assert float(ref_cl(name[3:], feats, lab, temperature=0.5, **opts)) == pytest.approx(expected, abs=2e-6)


# --------------------------------------------------------------------------- degenerate batches


@pytest.mark.parametrize("name", ["cl_scl", "cl_jscl", "cl_slcl", "multisupcon_wz"])
def test_one_sample_gives_connected_zero(name):
    f = torch.randn(1, 4, dtype=DT, requires_grad=True)
    loss = build(name)(f, torch.tensor([[1, 0]]))
    assert float(loss) == 0.0
    loss.backward()
    assert torch.count_nonzero(f.grad) == 0


def test_icl_single_label_and_all_equal():
    e = torch.randn(3, 1, 4, dtype=DT, requires_grad=True)
    loss = build("cl_icl")(e, torch.ones(3, 1))
    assert float(loss) == 0.0
    loss.backward()
    assert torch.count_nonzero(e.grad) == 0


# --------------------------------------------------------------------------- registry, bad input


def test_registry_and_label_formats():
    for name in ("cl_scl", "cl_jscl", "cl_slcl", "multisupcon_wz"):
        assert name in FLAT_LOSSES and FLAT_LOSSES[name].label_format == "multi_hot"
    assert CLASSIFIER_LOSSES["cl_jspcl"].label_format == "logits"
    assert LABEL_EMBEDDING_LOSSES["cl_icl"].label_format == "label_embeddings"
    assert {"cl_scl", "cl_jscl", "cl_jspcl", "cl_slcl", "cl_icl", "multisupcon_wz"} <= set(LOSSES)
    wz = build("multisupcon_wz")
    assert (wz.temperature, wz.base_temperature, wz.c_threshold, wz.multi, wz.contrast_mode) == (
        0.07, 0.07, 0.3, True, "all")
    scl = build("cl_scl")
    assert (scl.base_temperature, scl.normalize, scl.legacy) == (0.07, False, False)


F3 = torch.randn(4, 3, dtype=DT)
Y3 = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
BAD = [
    (lambda: build("cl_scl", temperature=0.0), "temperature"),
    (lambda: build("cl_jscl", base_temperature=-1.0), "base_temperature"),
    (lambda: build("cl_icl", base_temperature=0), "base_temperature"),
    (lambda: build("cl_slcl", legacy="yes"), "legacy"),
    (lambda: build("cl_scl", legacy=True, gather_distributed=True), "legacy"),
    (lambda: build("multisupcon_wz", c_threshold=1.5), "c_threshold"),
    (lambda: build("multisupcon_wz", c_threshold=-0.1), "c_threshold"),
    (lambda: build("multisupcon_wz", contrast_mode="two"), "contrast_mode"),
    (lambda: build("multisupcon_wz", multi=1), "multi"),
    (lambda: build("multisupcon_wz", base_temperature=0.0), "base_temperature"),
    (lambda: build("cl_scl")(F3, Y3[:3]), "labels"),
    (lambda: build("cl_jscl")(F3, Y3 * 2), "labels"),
    (lambda: build("cl_slcl")(F3[:0], Y3[:0]), "features"),
    (lambda: build("cl_scl")(torch.full((4, 3), float("nan")), Y3), "features"),
    (lambda: build("cl_jscl")(F3, Y3, ref_features=torch.randn(2, 5), ref_labels=Y3[:2]), "ref_features"),
    (lambda: build("cl_scl", legacy=True)(F3, Y3, ref_features=F3, ref_labels=Y3), "ref_features"),
    (lambda: build("cl_jscl", legacy=True)(torch.randn(4, 2, 3), Y3), "features"),
    (lambda: build("cl_slcl")(F3, Y3, ref_features=F3), "ref_labels"),
    (lambda: build("multisupcon_wz")(F3, Y3, ref_features=F3, ref_labels=Y3[:, :2]), "ref_labels"),
    (lambda: build("multisupcon_wz")(torch.randn(4, 2, 2, 3), Y3), "features"),
    (lambda: build("multisupcon_wz")(F3, None), "labels"),
    (lambda: build("cl_jspcl")(torch.randn(4, 2), Y3), "labels"),
    (lambda: build("cl_jspcl")(torch.randn(4, 1, 3), Y3), "logits"),
    (lambda: build("cl_jspcl")(torch.tensor([[1.0, float("inf"), 0.0]] * 4), Y3), "logits"),
    (lambda: build("cl_jspcl")(torch.randn(3, 3), Y3), "labels"),
    (lambda: build("cl_icl")(torch.randn(4, 3), Y3), "label_embeddings"),
    (lambda: build("cl_icl")(torch.randn(4, 2, 5), Y3), "labels"),
    (lambda: build("cl_icl")(torch.randn(0, 3, 5), Y3[:0]), "label_embeddings"),
    (lambda: build("cl_icl")(torch.full((4, 3, 2), float("inf")), Y3), "label_embeddings"),
    (lambda: build("cl_icl")(torch.randn(4, 3, 2), Y3 - 1), "labels"),
    (lambda: build("cl_scl", nonsense=1), "options"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_input_names_the_argument(i):
    fn, arg = BAD[i]
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        fn()


@pytest.mark.parametrize("name,opts", [("cl_scl", {}), ("cl_jscl", {}), ("multisupcon_wz", {}),
                                       ("multisupcon_wz", {"contrast_mode": "one", "c_threshold": 0.0})])
def test_anchor_terms_split_like_gather_distributed(name, opts):
    # What gather_distributed relies on (losses/distributed.py): each rank's anchor terms, with the
    # other rank's rows as reference candidates, normalised over all ranks' valid anchors, sum to the
    # single-process loss of the concatenated batch.
    feats, lab = make_batch(51, 8, 2, 4, 0.5, scale=0.5)
    loss_fn = build(name, temperature=0.3, **opts)
    full = loss_fn(feats, lab)
    parts, valid = [], 0
    for mine, other in ((slice(0, 3), slice(3, 8)), (slice(3, 8), slice(0, 3))):
        of = feats[other].transpose(0, 1).reshape(-1, feats.shape[2])  # view-major, as gathered
        num, norm, pooled, _ = loss_fn.anchor_terms(feats[mine], lab[mine], of, torch.cat([lab[other]] * 2))
        assert not pooled
        parts.append((num[norm > 0] / norm[norm > 0]).sum())
        valid += int((norm > 0).sum())
    assert_close(sum(parts) / valid, full, **TOL)


@pytest.mark.parametrize("sparse", [False, True])
def test_slcl_wide_label_space_takes_the_compact_path(sparse):
    # 40 × 2000 labels (> 2**16 entries): LabelStatistics drops the 1,990 absent columns. Each absent
    # label is the loss of an all-zero column, so L(C = 2000) = (10·L(Y10) + 1990·L(zeros)) / 2000.
    g = torch.Generator().manual_seed(61)
    feats = torch.randn(40, 2, 6, generator=g, dtype=DT)
    y10 = (torch.rand(40, 10, generator=g) < 0.3).float()
    wide = torch.zeros(40, 2000)
    wide[:, 500:510] = y10
    loss_fn = build("cl_slcl", temperature=0.5)
    got = loss_fn(feats, wide.to_sparse() if sparse else wide)
    exp = (10 * loss_fn(feats, y10) + 1990 * loss_fn(feats, torch.zeros(40, 1))) / 2000
    assert_close(got, exp, **TOL)
