"""The loss engine against the naive references of ``tests/reference.py`` (docs/spec/LOSSES.md).

Values and gradients (autograd on ``features``) are compared in float64 to 1e-5 on many small
random batches; chunked runs are compared with dense runs to 1e-6.
"""

from __future__ import annotations

import pytest
import torch
from reference import ref_asl, ref_flat, ref_hierarchical, ref_relation_counts
from torch.testing import assert_close

from mlsupcon.losses import build, relation_counts

DT = torch.float64
TOL = dict(atol=1e-5, rtol=1e-5)


CHUNK_TOL = dict(atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------- data


def make_batch(seed, B, V, C, density, D=6, class_ids=False):
    """Random float64 features and labels.

    V = 1 alternates between [B, D] and [B, 1, D] by seed parity. Labels alternate dtype
    (bool / int64 / float32 / float64), sample 0 has no labels (B >= 3), and samples 2 and 3
    share an identical label set (B >= 5) so distinct samples can be in relation R2.
    """
    g = torch.Generator().manual_seed(1000 + seed)
    if V == 1 and seed % 2 == 0:
        feats = torch.randn(B, D, generator=g, dtype=DT)
    else:
        feats = torch.randn(B, V, D, generator=g, dtype=DT)
    if class_ids:
        return feats, torch.randint(0, C, (B,), generator=g)
    lab = torch.rand(B, C, generator=g) < density
    if B >= 3:
        lab[0] = False
    if B >= 5:
        lab[2] = lab[3]
    dtype = (torch.bool, torch.int64, torch.float32, torch.float64)[seed % 4]
    return feats, lab.to(dtype)


def make_refs(seed, M, D, C, density, class_ids=False):
    g = torch.Generator().manual_seed(5000 + seed)
    rf = torch.randn(M, D, generator=g, dtype=DT)
    if class_ids:
        return rf, torch.randint(0, C, (M,), generator=g)
    rl = (torch.rand(M, C, generator=g) < density)
    if M >= 2:
        rl[0] = False
    return rf, rl.to(torch.float32)


def _value_and_grad(fn, feats):
    f = feats.detach().clone().requires_grad_(True)
    out = fn(f)
    assert out.dim() == 0, "loss must be a scalar"
    out.backward()
    assert f.grad is not None
    return out.detach(), f.grad.detach()


def check(name, opts, feats, labels, ref_fn, tol=TOL, **call_kwargs):
    loss_fn = build(name, **opts)
    got, got_g = _value_and_grad(lambda f: loss_fn(f, labels, **call_kwargs), feats)
    exp, exp_g = _value_and_grad(ref_fn, feats)
    assert torch.isfinite(got), f"{name} {opts}: non-finite loss {got}"
    assert_close(got.to(DT), exp, **tol, msg=lambda m: f"{name} {opts} value: {m}")
    assert_close(got_g, exp_g, **tol, msg=lambda m: f"{name} {opts} grad: {m}")


def ref_opts(opts):
    """Engine options -> reference keyword arguments (same names, chunk_size dropped)."""
    return {k: v for k, v in opts.items() if k != "chunk_size"}


# --------------------------------------------------------------------------- flat strategies

SHAPES = [  # (seed, B, V, C, density)
    (0, 1, 1, 3, 0.5),
    (1, 1, 2, 3, 0.5),
    (2, 2, 1, 1, 0.5),
    (3, 2, 3, 10, 0.5),
    (4, 5, 2, 1, 0.5),
    (5, 5, 1, 10, 0.05),
    (6, 17, 2, 10, 0.05),
    (7, 17, 3, 3, 0.5),
    (8, 17, 1, 50, 0.05),
    (9, 12, 2, 50, 0.5),
    (12, 17, 2, 3, 0.5),
]

CONFIGS = [
    ("all", {}),
    ("any", {}),
    ("simdis", {}),
    ("simdis", {"dissimilarity": "ratio"}),
    ("simdis", {"normalization": "weight"}),
    ("simdis", {"dissimilarity": "ratio", "normalization": "weight"}),
    ("jaccard", {}),
    ("jaccard", {"threshold": 0.0}),
    ("jaccard", {"threshold": 0.5}),
    ("mulsupcon", {}),
    ("mulsupcon", {"reduction": "anchor"}),
    ("mlcl", {}),
    ("mlcl", {"threshold": 0.5}),
    ("mlcl", {"alpha": 0.7, "beta": 2.0, "reg_weight": 0.1}),
    ("mlcl", {"threshold": 0.3, "alpha": 0.5, "reg_weight": 0.5}),
    ("supcon", {}),
    ("simclr", {}),
]


def _cid(c):
    name, opts = c
    return name + "".join(f"-{k}={v}" for k, v in opts.items())


def _labels_for(name, seed, B, V, C, density, D=6):
    if name == "supcon":
        return make_batch(seed, B, V, C, density, D, class_ids=True)
    feats, lab = make_batch(seed, B, V, C, density, D)
    if name == "simclr":
        return feats, None
    return feats, lab


@pytest.mark.parametrize("config", CONFIGS, ids=_cid)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "s{}-B{}-V{}-C{}-d{}".format(*s))
def test_flat_matches_reference(config, shape):
    name, opts = config
    seed, B, V, C, density = shape
    feats, lab = _labels_for(name, seed, B, V, C, density)
    check(name, opts, feats, lab, lambda f: ref_flat(name, f, lab, **ref_opts(opts)))


BIG = [
    ("simdis", {}),
    ("mulsupcon", {}),
    ("mulsupcon", {"reduction": "anchor"}),
    ("jaccard", {}),
    ("mlcl", {"alpha": 0.7, "beta": 2.0, "reg_weight": 0.1}),
    ("all", {}),
]


@pytest.mark.parametrize("config", BIG, ids=_cid)
def test_flat_matches_reference_b64(config):
    name, opts = config
    seed = 11 + BIG.index(config)
    density = 0.05 if seed % 2 else 0.5
    V = 3 if seed % 3 == 0 else 2
    feats, lab = make_batch(seed, 64, V, 10, density)
    check(name, opts, feats, lab, lambda f: ref_flat(name, f, lab, **ref_opts(opts)))


TEMPERATURE_CONFIGS = [
    ("all", {}),
    ("any", {}),
    ("simdis", {}),
    ("jaccard", {}),
    ("mulsupcon", {}),
    ("mlcl", {"alpha": 0.7}),
    ("supcon", {}),
    ("simclr", {}),
]


TEMPERATURE_SHAPES = [(20, 5, 2, 3, 0.5), (21, 13, 1, 10, 0.1)]


@pytest.mark.parametrize("config", TEMPERATURE_CONFIGS, ids=_cid)
@pytest.mark.parametrize(
    "temperature,normalize", [(0.05, True), (0.5, True), (0.1, False), (0.5, False)]
)
def test_temperature_and_normalize(config, temperature, normalize):
    name, base_opts = config
    opts = dict(base_opts, temperature=temperature, normalize=normalize)
    # alternate between a small multi-view batch and a sparser single-view one
    i = TEMPERATURE_CONFIGS.index(config) + int(temperature * 100) + int(normalize)
    seed, B, V, C, density = TEMPERATURE_SHAPES[i % 2]
    feats, lab = _labels_for(name, seed, B, V, C, density)
    check(name, opts, feats, lab, lambda f: ref_flat(name, f, lab, **ref_opts(opts)))


def test_mlcl_regulariser_uses_raw_features():
    """R = mean ||f_a|| on the features as given: scaling features changes only λ·R."""
    feats, lab = make_batch(30, 5, 2, 3, 0.5)
    opts = {"reg_weight": 0.25}
    check("mlcl", opts, feats * 3.0, lab, lambda f: ref_flat("mlcl", f, lab, **opts))
    loss_fn = build("mlcl", **opts)
    a = loss_fn(feats, lab)
    b = loss_fn(feats * 3.0, lab)
    norms = feats.reshape(-1, feats.shape[-1]).norm(dim=1).mean()
    assert_close(b - a, 0.25 * 2.0 * norms, **TOL)


# --------------------------------------------------------------------------- reference features

REF_CONFIGS = [
    ("all", {}),
    ("any", {}),
    ("simdis", {}),
    ("simdis", {"dissimilarity": "ratio", "normalization": "weight"}),
    ("jaccard", {}),
    ("jaccard", {"threshold": 0.0}),
    ("mulsupcon", {}),
    ("mulsupcon", {"reduction": "anchor"}),
    ("mlcl", {}),
    ("mlcl", {"alpha": 0.6, "beta": 2.0, "reg_weight": 0.1, "threshold": 0.3}),
    ("supcon", {}),
    ("simclr", {}),
]
REF_SHAPES = [  # (seed, B, V, C, density, M)
    (40, 1, 1, 3, 0.5, 4),
    (41, 5, 2, 3, 0.5, 1),
    (42, 5, 1, 10, 0.05, 7),
    (43, 17, 2, 10, 0.5, 7),
]


@pytest.mark.parametrize("config", REF_CONFIGS, ids=_cid)
@pytest.mark.parametrize("shape", REF_SHAPES, ids=lambda s: "s{}-B{}-V{}-M{}".format(*s[:3], s[5]))
def test_ref_features(config, shape):
    name, opts = config
    seed, B, V, C, density, M = shape
    D = 6
    feats, lab = _labels_for(name, seed, B, V, C, density, D)
    rf, rl = make_refs(seed, M, D, C, density, class_ids=(name == "supcon"))
    check(name, opts, feats, lab,
          lambda f: ref_flat(name, f, lab, ref_features=rf, ref_labels=rl, **ref_opts(opts)),
          ref_features=rf, ref_labels=rl)


# --------------------------------------------------------------------------- chunking

CHUNK_CONFIGS = [c for c in CONFIGS if c[0] != "mlcl"] + [
    ("mlcl", {"alpha": 0.7, "beta": 2.0, "reg_weight": 0.1}),
    ("mlcl", {"threshold": 0.5}),
]


@pytest.mark.parametrize("config", CHUNK_CONFIGS, ids=_cid)
@pytest.mark.parametrize("with_refs", [False, True], ids=["norefs", "refs"])
def test_chunked_equals_dense(config, with_refs):
    name, opts = config
    B, V, C, D = 17, 2, 10, 6  # neither 3 nor 7 divides B
    feats, lab = _labels_for(name, 50, B, V, C, 0.3, D)
    kw = {}
    if with_refs:
        rf, rl = make_refs(50, 5, D, C, 0.3, class_ids=(name == "supcon"))
        kw = {"ref_features": rf, "ref_labels": rl}
    dense = build(name, chunk_size=None, **opts)
    exp, exp_g = _value_and_grad(lambda f: dense(f, lab, **kw), feats)
    for chunk in (3, 7):
        chunked = build(name, chunk_size=chunk, **opts)
        got, got_g = _value_and_grad(lambda f, chunked=chunked: chunked(f, lab, **kw), feats)
        assert_close(got, exp, **CHUNK_TOL, msg=lambda m, chunk=chunk: f"{name} chunk={chunk} value: {m}")
        assert_close(got_g, exp_g, **CHUNK_TOL, msg=lambda m, chunk=chunk: f"{name} chunk={chunk} grad: {m}")


@pytest.mark.parametrize("name", ["simdis", "mulsupcon", "jaccard"])
def test_chunked_matches_reference(name):
    feats, lab = make_batch(51, 17, 3, 10, 0.3)
    check(name, {"chunk_size": 3}, feats, lab, lambda f: ref_flat(name, f, lab))


# --------------------------------------------------------------------------- hierarchical


def make_path(seed, B):
    """[B, 3] path of class ids, coarsest first. Ids are local to their parent (child ids
    0..2 reused under every parent), so equal level-l ids do not imply equal prefixes."""
    g = torch.Generator().manual_seed(7000 + seed)
    coarse = torch.randint(0, 2, (B,), generator=g)
    mid = torch.randint(0, 3, (B,), generator=g)
    fine = torch.randint(0, 2, (B,), generator=g)
    return torch.stack([coarse, mid, fine], 1)


def make_levels(seed, B, density=0.25):
    """List of 3 multi-hot levels derived from fine labels (C=8) and a parent map
    8 -> 4 -> 2: a sample has a coarser label if it has any of its children."""
    g = torch.Generator().manual_seed(8000 + seed)
    fine = torch.rand(B, 8, generator=g) < density
    fine[0] = False  # one sample without labels at every level
    parent_fine = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    parent_mid = torch.tensor([0, 0, 1, 1])
    mid = torch.zeros(B, 4, dtype=torch.bool)
    for k in range(8):
        mid[:, parent_fine[k]] |= fine[:, k]
    coarse = torch.zeros(B, 2, dtype=torch.bool)
    for k in range(4):
        coarse[:, parent_mid[k]] |= mid[:, k]
    return [coarse.float(), mid.float(), fine.float()]


HIER = [
    ("himulcon", None),
    ("himulcon", [0.5, 1.0, 3.0]),
    ("hicone", None),
    ("himulcone", None),
    ("himulcone", [3.0, 1.0, 0.5]),
]


@pytest.mark.parametrize("kind,weights", HIER, ids=lambda x: str(x))
@pytest.mark.parametrize("fmt", ["path", "list"])
@pytest.mark.parametrize("base", ["all", "simdis"])
def test_hierarchical(kind, weights, fmt, base):
    # alternate (B, V) = (9, 2) / (14, 1) over the grid
    i = HIER.index((kind, weights)) + (fmt == "list") + (base == "simdis")
    B, V = ((9, 2), (14, 1))[i % 2]
    seed = 3 * i + B
    feats, _ = make_batch(seed, B, V, 3, 0.5)
    levels = make_path(seed, B) if fmt == "path" else make_levels(seed, B)
    opts = {"base": base, "paths": fmt == "path"}
    if weights is not None:
        opts["level_weights"] = weights
    check(kind, opts, feats, levels,
          lambda f: ref_hierarchical(kind, f, levels, base=base, level_weights=weights))


@pytest.mark.parametrize("kind,base,opts,fmt", [
    ("himulcon", "simdis", {"temperature": 0.5, "dissimilarity": "ratio"}, "list"),
    ("himulcon", "mulsupcon", {"reduction": "anchor"}, "list"),
    ("himulcone", "jaccard", {"threshold": 0.0}, "list"),
    ("hicone", "any", {}, "list"),
    ("himulcon", "mulsupcon", {}, "path"),
    ("hicone", "simdis", {"normalization": "weight", "normalize": False}, "path"),
], ids=lambda x: str(x))
def test_hierarchical_other_bases_and_options(kind, base, opts, fmt):
    feats, _ = make_batch(60, 9, 2, 3, 0.5)
    levels = make_levels(60, 9) if fmt == "list" else make_path(60, 9)
    check(kind, dict(opts, base=base, paths=fmt == "path"), feats, levels,
          lambda f: ref_hierarchical(kind, f, levels, base=base, **opts))


@pytest.mark.parametrize("kind", ["himulcon", "hicone", "himulcone"])
@pytest.mark.parametrize("fmt", ["path", "list"])
@pytest.mark.parametrize("B", [1, 2])
def test_hierarchical_tiny_batches(kind, fmt, B):
    feats, _ = make_batch(70 + B, B, 3, 3, 0.5)
    levels = make_path(70 + B, B) if fmt == "path" else make_levels(70 + B, B, density=0.6)
    check(kind, {"paths": fmt == "path"}, feats, levels, lambda f: ref_hierarchical(kind, f, levels))


def test_non_contiguous_features():
    g = torch.Generator().manual_seed(80)
    feats = torch.randn(3, 7, 5, generator=g, dtype=DT).transpose(0, 1)  # [B, V, D] view
    assert not feats.is_contiguous()
    lab = (torch.rand(7, 4, generator=g) < 0.4).float()
    for name in ("simdis", "mulsupcon", "mlcl"):
        loss_fn = build(name)
        assert_close(loss_fn(feats, lab), ref_flat(name, feats, lab), **TOL)


# --------------------------------------------------------------------------- ASL

ASL_CONFIGS = [
    {},
    {"reduction": "mean"},
    {"detach_focal": True},
    {"detach_focal": True, "reduction": "mean"},
    {"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.1},
    {"gamma_pos": 0.0, "gamma_neg": 0.0, "clip": 0.0},
    {"gamma_pos": 2.0, "gamma_neg": 4.0, "clip": 0.0, "detach_focal": True},
]


@pytest.mark.parametrize("opts", ASL_CONFIGS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("seed,B,C", [(0, 1, 1), (1, 6, 5), (2, 16, 12)])
def test_asl_matches_reference(opts, seed, B, C):
    g = torch.Generator().manual_seed(9000 + seed)
    logits = torch.randn(B, C, generator=g, dtype=DT) * 3.0
    targets = (torch.rand(B, C, generator=g) < 0.4).float()
    if B > 1:
        targets[0] = 0.0
    loss_fn = build("asl", **opts)
    got, got_g = _value_and_grad(lambda x: loss_fn(x, targets), logits)
    exp, exp_g = _value_and_grad(lambda x: ref_asl(x, targets, **opts), logits)
    assert_close(got.to(DT), exp, **TOL)
    assert_close(got_g, exp_g, **TOL)


# --------------------------------------------------------------------------- relation counts


@pytest.mark.parametrize("seed,B,C,density", [(0, 1, 3, 0.5), (1, 6, 3, 0.5), (2, 17, 4, 0.4),
                                              (3, 30, 10, 0.05), (4, 12, 1, 0.5)])
def test_relation_counts_matches_reference(seed, B, C, density):
    _, lab = make_batch(seed, B, 1, C, density)
    got = relation_counts(lab)
    exp = ref_relation_counts(lab)
    assert {k: int(got[k]) for k in exp} == exp
