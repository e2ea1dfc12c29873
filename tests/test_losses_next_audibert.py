"""The Audibert et al. family (jaccard_weight, msc, proto_only, mscwrg, mscrg, mulsupcon
``empty_rows``) and ZLPR against the naive references of ``tests/reference_next_audibert.py``
(``docs/spec/LOSSES.md``, "Audibert et al. family" and "ZLPR").

Values and gradients (features, prototypes, refs) in float64 to 1e-5 on random and degenerate
batches; chunked equal to unchunked; the spec's hand cases as golden values.
"""

from __future__ import annotations

import pytest
import torch
from reference_next_audibert import (
    ref_jaccard_weight,
    ref_msc,
    ref_mscrg,
    ref_mscwrg,
    ref_mulsupcon_count,
    ref_proto_only,
    ref_zlpr,
)
from torch.testing import assert_close

from mlsupcon.losses import (
    CLASSIFIER_LOSSES,
    FLAT_LOSSES,
    LOSSES,
    PROTOTYPE_LOSSES,
    BoundPrototypeLoss,
    LabelPrototypes,
    QueueLoss,
    available,
    build,
)

DT = torch.float64
TOL = dict(atol=1e-5, rtol=1e-5)
CHUNK_TOL = dict(atol=1e-10, rtol=1e-10)

PROTO_REFS = {"msc": ref_msc, "proto_only": ref_proto_only, "mscwrg": ref_mscwrg, "mscrg": ref_mscrg}

# --------------------------------------------------------------------------- hand cases (spec)

Z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=DT)
V1 = torch.tensor([[0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]], dtype=DT)
Y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=DT)
Y_EMPTY = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=DT)
P = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.5]], dtype=DT)
TWO_VIEWS = torch.stack([Z, V1], 1)

# (name, options, features, labels, extra call arguments, spec value)
HAND = [
    ("jaccard_weight", {"temperature": 0.5}, Z, Y, {}, 1.146733),
    ("jaccard_weight", {"temperature": 1.0}, Z, Y, {}, 0.882242),
    ("jaccard_weight", {"temperature": 0.5}, Z, Y_EMPTY, {}, 0.0),
    ("jaccard_weight", {"temperature": 0.5}, TWO_VIEWS, Y_EMPTY, {}, 1.252459),
    ("msc", {"temperature": 0.5, "alpha": 1.0, "beta": 1.0}, Z, Y, {"prototypes": P}, 1.693805),
    ("msc", {"temperature": 0.5, "alpha": 1.0, "beta": 0.1}, Z, Y, {"prototypes": P}, 1.197965),
    ("msc", {"temperature": 0.5, "alpha": 0.0, "beta": 0.1}, Z, Y, {"prototypes": P}, 1.099409),
    ("msc", {"temperature": 0.5, "alpha": 1.0, "beta": 1.0}, Z, Y_EMPTY, {"prototypes": P}, 2.121323),
    ("msc", {"temperature": 0.5, "alpha": 1.0, "beta": 0.1}, Z, Y,
     {"prototypes": P, "ref_features": V1, "ref_labels": Y_EMPTY}, 1.200770),
    ("msc", {"temperature": 0.5, "alpha": 1.0, "beta": 0.1}, TWO_VIEWS, Y, {"prototypes": P}, 1.242387),
    ("msc", {"temperature": 0.5, "alpha": 1.0, "beta": 1.0}, TWO_VIEWS, Y_EMPTY, {"prototypes": P}, 2.027939),
    ("mscwrg", {"temperature": 0.5, "alpha": 0.0}, Z, Y, {"prototypes": P}, 1.448305),
    ("mscwrg", {"temperature": 0.5, "alpha": 1.0}, Z, Y, {"prototypes": P}, 1.410927),
    ("mscwrg", {"temperature": 0.5, "alpha": -1.0}, Z, Y, {"prototypes": P}, 1.423151),
    ("mscrg", {"temperature": 0.5, "alpha": 0.0}, Z, Y, {"prototypes": P}, 1.374393),
    ("mscrg", {"temperature": 0.5, "alpha": 1.0}, Z, Y, {"prototypes": P}, 1.354346),
    ("mscrg", {"temperature": 0.5, "alpha": -1.0}, Z, Y, {"prototypes": P}, 1.393812),
    ("mscrg", {"temperature": 0.5, "alpha": 0.0}, TWO_VIEWS, Y_EMPTY, {"prototypes": P}, 2.098136),
    ("mscwrg", {"temperature": 0.5, "alpha": 0.0}, TWO_VIEWS, Y_EMPTY, {"prototypes": P}, 2.098136),
]


@pytest.mark.parametrize("case", HAND, ids=lambda c: f"{c[0]}-{c[5]}")
def test_spec_hand_cases(case):
    name, opts, feats, labels, kw, expected = case
    for chunk in (None, 1):
        got = build(name, chunk_size=chunk, **opts)(feats, labels, **kw)
        assert abs(got.item() - expected) < 1e-6, (chunk, got.item())


def test_proto_only_is_msc_with_zero_alpha_beta():
    got = build("proto_only", temperature=0.5)(Z, Y, prototypes=P)
    assert_close(got, build("msc", temperature=0.5, alpha=0.0, beta=0.0)(Z, Y, prototypes=P))
    assert_close(got, ref_proto_only(Z, Y, P, 0.5))


@pytest.mark.parametrize("logits,labels,expected", [
    ([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], [[1, 0, 1], [0, 0, 0]], 1.127256),
    ([[0.3, -0.2]], [[1, 1]], 1.085939),
    ([[2.0, -1.0, 0.5]], [[1, 0, 1]], 0.868219),
])
def test_zlpr_spec_cases(logits, labels, expected):
    got = build("zlpr")(torch.tensor(logits, dtype=DT), torch.tensor(labels))
    assert abs(got.item() - expected) < 1e-6


# --------------------------------------------------------------------------- random batches


def make_batch(seed, B, V, C, density, D=5, refs=0):
    """float64 features (``[B, D]`` when V = 1 and the seed is even), multi-hot labels whose
    sample 0 is empty (B ≥ 3) and samples 1, 2 equal (B ≥ 4), prototypes, and refs."""
    g = torch.Generator().manual_seed(100 + seed)
    feats = torch.randn(B, D, generator=g, dtype=DT) if V == 1 and seed % 2 == 0 \
        else torch.randn(B, V, D, generator=g, dtype=DT)
    lab = torch.rand(B, C, generator=g) < density
    if B >= 3:
        lab[0] = False
    if B >= 4:
        lab[2] = lab[1]
    lab = lab.to((torch.bool, torch.int64, torch.float32, torch.float64)[seed % 4])
    protos = torch.randn(C, D, generator=g, dtype=DT)
    if not refs:
        return feats, lab, protos, {}
    rf = torch.randn(refs, D, generator=g, dtype=DT)
    rl = (torch.rand(refs, C, generator=g) < density).float()
    rl[0] = 0
    return feats, lab, protos, {"ref_features": rf, "ref_labels": rl}


SHAPES = [  # (seed, B, V, C, density, refs)
    (0, 1, 1, 3, 0.5, 0),   # one sample, one view: no candidate but the prototypes
    (1, 1, 2, 3, 0.5, 0),   # one sample, two views
    (2, 2, 1, 1, 0.5, 0),
    (3, 5, 2, 4, 0.5, 0),
    (4, 6, 1, 4, 0.4, 0),
    (5, 7, 3, 3, 0.6, 0),
    (6, 6, 1, 6, 0.15, 0),  # sparse: most labels held by one sample (no positives)
    (7, 5, 2, 4, 0.5, 3),   # reference rows
    (8, 4, 1, 3, 0.5, 4),
    (9, 9, 2, 5, 0.3, 2),
]
PROTO_CONFIGS = [
    ("msc", {}),
    ("msc", {"alpha": 0.5, "beta": 1.0}),
    ("msc", {"alpha": 2.0, "beta": 0.0}),
    ("proto_only", {}),
    ("mscwrg", {}),
    ("mscwrg", {"alpha": 1.0}),
    ("mscwrg", {"alpha": -1.0}),
    ("mscwrg", {"alpha": 2.5}),
    ("mscrg", {}),
    ("mscrg", {"alpha": 1.0}),
    ("mscrg", {"alpha": -1.0}),
]


def _cid(c):
    return c[0] + "".join(f"-{k}={v}" for k, v in c[1].items())


def _grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    assert out.dim() == 0
    out.backward()
    return out.detach(), [t.grad for t in leaves]


def check_proto(name, opts, feats, lab, protos, kw, tol=TOL):
    loss_fn = build(name, **opts)
    ref = PROTO_REFS[name]
    ref_opts = {k: v for k, v in opts.items() if k != "chunk_size"}
    rf = kw.get("ref_features")
    if rf is None:
        got, got_g = _grads(lambda f, p: loss_fn(f, lab, prototypes=p), feats, protos)
        exp, exp_g = _grads(lambda f, p: ref(f, lab, p, **ref_opts), feats, protos)
    else:
        rl = kw["ref_labels"]
        got, got_g = _grads(lambda f, p, r: loss_fn(f, lab, prototypes=p, ref_features=r, ref_labels=rl),
                            feats, protos, rf)
        exp, exp_g = _grads(lambda f, p, r: ref(f, lab, p, ref_features=r, ref_labels=rl, **ref_opts),
                            feats, protos, rf)
    assert torch.isfinite(got)
    assert_close(got.to(DT), exp, **tol)
    for g, e, what in zip(got_g, exp_g, ("features", "prototypes", "ref_features")):
        assert_close(g, e, **tol, msg=lambda m, what=what: f"{name} {opts} grad {what}: {m}")


@pytest.mark.parametrize("config", PROTO_CONFIGS, ids=_cid)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "s{}-B{}-V{}-C{}-M{}".format(*s[:4], s[5]))
def test_prototype_losses_match_reference(config, shape):
    name, opts = config
    seed, B, V, C, density, refs = shape
    feats, lab, protos, kw = make_batch(seed, B, V, C, density, refs=refs)
    check_proto(name, dict(opts, temperature=0.3), feats, lab, protos, kw)


@pytest.mark.parametrize("name", sorted(PROTO_REFS))
@pytest.mark.parametrize("temperature,normalize", [(0.05, True), (0.01, True), (0.5, False)])
def test_prototype_losses_temperature_and_raw_features(name, temperature, normalize):
    # τ = 0.01 and raw features take the row-maximum shift (with MSC's β offsets)
    feats, lab, protos, kw = make_batch(20, 6, 2, 4, 0.5, refs=2)
    check_proto(name, {"temperature": temperature, "normalize": normalize}, feats * 0.7, lab, protos * 1.3, kw)


@pytest.mark.parametrize("name", sorted(PROTO_REFS))
def test_prototype_losses_no_positive_anywhere(name):
    # every label row empty, one view: no anchor (nor prototype) has a positive → exact 0, connected
    feats, _, protos, _ = make_batch(30, 4, 1, 3, 0.5)
    lab = torch.zeros(4, 3)
    loss, (gf, gp) = _grads(lambda f, p: build(name)(f, lab, prototypes=p), feats, protos)
    assert loss.item() == 0.0 and torch.count_nonzero(gf) == 0 and torch.count_nonzero(gp) == 0
    assert_close(loss, PROTO_REFS[name](feats, lab, protos))


@pytest.mark.parametrize("config", PROTO_CONFIGS[:1] + PROTO_CONFIGS[3:5] + PROTO_CONFIGS[8:9], ids=_cid)
@pytest.mark.parametrize("with_refs", [False, True], ids=["norefs", "refs"])
def test_prototype_losses_chunked_equals_dense(config, with_refs):
    name, opts = config
    feats, lab, protos, kw = make_batch(40, 7, 2, 4, 0.5, refs=3 if with_refs else 0)
    loss_fn = build(name, **opts)
    exp, exp_g = _grads(lambda f, p: loss_fn(f, lab, prototypes=p, **kw), feats, protos)
    for chunk in (1, 3):
        chunked = build(name, chunk_size=chunk, **opts)
        got, got_g = _grads(lambda f, p, c=chunked: c(f, lab, prototypes=p, **kw), feats, protos)
        assert_close(got, exp, **CHUNK_TOL)
        for g, e in zip(got_g, exp_g):
            assert_close(g, e, **CHUNK_TOL)


def test_mscrg_positives_are_never_pushed_away():
    # ∂L/∂s_ab = min(p − w, 0) ≤ 0 for positives: mscrg's gradient differs from mscwrg's
    feats, lab, protos, _ = make_batch(41, 6, 1, 3, 0.6)
    a, ga = _grads(lambda f: build("mscrg")(f, lab, prototypes=protos), feats)
    b, gb = _grads(lambda f: build("mscwrg")(f, lab, prototypes=protos), feats)
    assert not torch.allclose(ga[0], gb[0])


def test_prototype_losses_half_precision():
    feats, lab, protos, _ = make_batch(42, 8, 2, 4, 0.5, D=16)
    for name in sorted(PROTO_REFS):
        got = build(name)(feats.half(), lab, prototypes=protos.half())
        exp = PROTO_REFS[name](feats.half().to(DT), lab, protos.half().to(DT))
        assert got.dtype == torch.float32
        assert_close(got.to(DT), exp, rtol=1e-5, atol=1e-5)


def test_prototype_losses_overflow_safe_normalisation():
    feats, lab, protos, _ = make_batch(43, 5, 2, 3, 0.5)
    for name in sorted(PROTO_REFS):
        exp = PROTO_REFS[name](feats, lab, protos)
        got = build(name)((feats * 1e25).float(), lab, prototypes=(protos * 1e-30).float())
        assert_close(got.to(DT), exp, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- jaccard_weight, mulsupcon


FLAT_SHAPES = SHAPES


@pytest.mark.parametrize("shape", FLAT_SHAPES, ids=lambda s: "s{}-B{}-V{}-C{}-M{}".format(*s[:4], s[5]))
@pytest.mark.parametrize("name,opts,ref", [
    ("jaccard_weight", {}, ref_jaccard_weight),
    ("mulsupcon", {"empty_rows": "count"}, ref_mulsupcon_count),
    ("mulsupcon", {"empty_rows": "count", "reduction": "anchor"},
     lambda f, y, **kw: ref_mulsupcon_count(f, y, reduction="anchor", **kw)),
], ids=["jaccard_weight", "mulsupcon-count", "mulsupcon-count-anchor"])
def test_flat_additions_match_reference(shape, name, opts, ref):
    seed, B, V, C, density, refs = shape
    feats, lab, _, kw = make_batch(seed, B, V, C, density, refs=refs)
    loss_fn = build(name, temperature=0.3, **opts)
    if kw:
        rf, rl = kw["ref_features"], kw["ref_labels"]
        got, got_g = _grads(lambda f, r: loss_fn(f, lab, ref_features=r, ref_labels=rl), feats, rf)
        exp, exp_g = _grads(lambda f, r: ref(f, lab, temperature=0.3, ref_features=r, ref_labels=rl), feats, rf)
    else:
        got, got_g = _grads(lambda f: loss_fn(f, lab), feats)
        exp, exp_g = _grads(lambda f: ref(f, lab, temperature=0.3), feats)
    assert_close(got.to(DT), exp, **TOL)
    for g, e in zip(got_g, exp_g):
        assert_close(g, e, **TOL)


def test_mulsupcon_empty_rows_count_differs_only_with_lone_labels():
    feats, lab, _, _ = make_batch(50, 6, 1, 6, 0.15)  # labels held by one sample only
    drop, count = build("mulsupcon")(feats, lab), build("mulsupcon", empty_rows="count")(feats, lab)
    assert count.item() < drop.item()  # zero rows pull the mean down
    dense = (torch.rand(6, 2, generator=torch.Generator().manual_seed(0)) < 2).float()  # every label shared
    assert_close(build("mulsupcon")(feats, dense), build("mulsupcon", empty_rows="count")(feats, dense))
    assert build("mulsupcon").empty_rows == "drop"


@pytest.mark.parametrize("name,opts", [("jaccard_weight", {}), ("mulsupcon", {"empty_rows": "count"})])
def test_flat_additions_chunked_equals_dense(name, opts):
    feats, lab, _, kw = make_batch(51, 9, 2, 5, 0.3, refs=3)
    exp, exp_g = _grads(lambda f: build(name, **opts)(f, lab, **kw), feats)
    for chunk in (1, 4):
        got, got_g = _grads(lambda f, c=chunk: build(name, chunk_size=c, **opts)(f, lab, **kw), feats)
        assert_close(got, exp, **CHUNK_TOL)
        assert_close(got_g[0], exp_g[0], **CHUNK_TOL)


# --------------------------------------------------------------------------- zlpr


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("seed,B,C", [(0, 1, 1), (1, 6, 5), (2, 9, 12)])
def test_zlpr_matches_reference(reduction, seed, B, C):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, C, generator=g, dtype=DT) * 3.0
    labels = (torch.rand(B, C, generator=g) < 0.4).float()
    if B > 2:
        labels[0] = 0  # no positive
        labels[1] = 1  # no negative
    loss_fn = build("zlpr", reduction=reduction)
    got, (gg,) = _grads(lambda x: loss_fn(x, labels).sum(), logits)
    exp, (eg,) = _grads(lambda x: ref_zlpr(x, labels, reduction).sum(), logits)
    assert_close(got, exp, **TOL)
    assert_close(gg, eg, **TOL)
    assert loss_fn(logits, labels).shape == ((B,) if reduction == "none" else ())


def test_zlpr_large_logits_half_and_sparse():
    logits = torch.tensor([[1e4, -1e4, 3e4], [0.0, 5e4, -5e4]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 0]])
    loss = build("zlpr")(logits, labels)
    # row 1: log(1 + e^{3e4}) + log(1 + e^{−1e4}) = 3e4; row 2: log(1 + e^0 + e^{−5e4}) + log(1 + e^{−5e4}) = log 2
    assert_close(loss, (torch.tensor(3e4) + torch.tensor(2.0).log()) / 2)
    half = build("zlpr")(logits.half() / 1e4, labels)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    y = (torch.rand(4, 3, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    x = torch.randn(4, 3)
    assert_close(build("zlpr")(x, y.to_sparse()), build("zlpr")(x, y))
    assert build("zlpr").predict(torch.tensor([[0.0, 0.1, -0.1]])).tolist() == [[False, True, False]]


# --------------------------------------------------------------------------- prototypes module, queue


def test_label_prototypes_initialisation():
    torch.manual_seed(0)
    p = LabelPrototypes(40, 60)
    bound = (6 / 100) ** 0.5
    assert isinstance(p.weight, torch.nn.Parameter) and p().shape == (40, 60) and p() is p.weight
    w = p.weight.detach()
    assert float(w.abs().max()) <= bound
    assert abs(float(w.var()) - bound**2 / 3) < 0.1 * bound**2 / 3  # U(−b, b)
    assert [n for n, _ in p.named_parameters()] == ["weight"]
    for bad, arg in (((0, 3), "num_labels"), ((2, True), "dim"), ((2.0, 3), "num_labels")):
        with pytest.raises(ValueError, match=rf"^{arg}: expected an int >= 1"):
            LabelPrototypes(*bad)


def test_prototypes_train():
    # prototypes receive gradients and a few steps lower the loss
    feats, lab, _, _ = make_batch(60, 8, 2, 4, 0.5, D=6)
    protos = LabelPrototypes(4, 6).double()
    opt = torch.optim.SGD(protos.parameters(), lr=0.5)
    loss_fn = build("msc")
    first = None
    for _ in range(10):
        loss = loss_fn(feats, lab, prototypes=protos())
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


@pytest.mark.parametrize("name", sorted(PROTOTYPE_LOSSES))
def test_queue_with_bound_prototypes(name):
    feats, lab, _, _ = make_batch(61, 4, 2, 3, 0.6)
    protos = LabelPrototypes(3, 5).double()
    crit = QueueLoss(BoundPrototypeLoss(build(name), protos), size=16, dim=5, num_labels=3, dtype=DT)
    crit(feats, lab)  # fills the queue with 8 rows
    qf, ql = crit.queue.contents()
    feats2, lab2, _, _ = make_batch(62, 4, 2, 3, 0.6)
    got = crit(feats2, lab2)
    exp = build(name)(feats2, lab2, prototypes=protos(), ref_features=qf, ref_labels=ql)
    assert_close(got, exp)
    assert any(p is protos.weight for p in crit.parameters())
    with pytest.raises(ValueError, match="^loss_fn: "):
        BoundPrototypeLoss(build("simdis"), protos)


def test_registry():
    for name in ("msc", "proto_only", "mscwrg", "mscrg"):
        assert name in PROTOTYPE_LOSSES and name in available() and name not in FLAT_LOSSES
        loss = build(name)
        assert loss.uses_prototypes is True and loss.label_format == "multi_hot"
    assert FLAT_LOSSES["jaccard_weight"].label_format == "multi_hot"
    assert CLASSIFIER_LOSSES["zlpr"].label_format == "logits"
    assert not getattr(LOSSES["simdis"], "uses_prototypes", False)
    assert build("msc").alpha == 1.0 and build("msc").beta == 0.1 and build("mscwrg").alpha == 0.0


# --------------------------------------------------------------------------- bad input (spec §5)


def _call(name, **over):
    feats, lab, protos, _ = make_batch(70, 4, 2, 3, 0.5)
    args = {"features": feats, "labels": lab, "prototypes": protos}
    args.update(over)
    return build(name)(args.pop("features"), args.pop("labels"), **args)


@pytest.mark.parametrize("name", sorted(PROTOTYPE_LOSSES))
@pytest.mark.parametrize("over,match", [
    ({"prototypes": None}, "prototypes: required"),
    ({"prototypes": torch.randn(4, 5, dtype=DT)}, r"prototypes: expected shape \[C, D\] = \[3, 5\]"),
    ({"prototypes": torch.randn(3, 4, dtype=DT)}, r"prototypes: expected shape"),
    ({"prototypes": torch.ones(3, 5, dtype=torch.long)}, "prototypes: expected a floating-point"),
    ({"prototypes": torch.full((3, 5), float("nan"))}, "prototypes: contains 15 non-finite"),
    ({"labels": torch.full((4, 3), 2.0)}, "labels: expected multi-hot"),
    ({"labels": torch.ones(5, 3)}, "labels: has 5 rows"),
    ({"features": torch.full((4, 2, 5), float("inf"))}, "features: contains"),
    ({"features": torch.zeros(0, 5)}, r"features: empty batch \(B = 0\)"),
    ({"ref_features": torch.randn(2, 5, dtype=DT)}, "ref_labels: required"),
    ({"ref_features": torch.randn(2, 4, dtype=DT), "ref_labels": torch.ones(2, 3)}, "ref_features: has dimension 4"),
    ({"ref_features": torch.randn(2, 5, dtype=DT), "ref_labels": torch.ones(2, 4)}, "ref_labels: has 4 label columns"),
    ({"ref_labels": torch.ones(2, 3)}, "ref_labels: given without ref_features"),
])
def test_prototype_losses_bad_input(name, over, match):
    with pytest.raises(ValueError, match=rf"^{match}"):
        _call(name, **over)


@pytest.mark.parametrize("name,opts,match", [
    ("msc", {"alpha": -0.5}, r"^alpha: expected a finite number >= 0"),
    ("msc", {"beta": -1.0}, r"^beta: expected a finite number >= 0"),
    ("msc", {"temperature": 0.0}, r"^temperature: expected a finite number > 0"),
    ("mscwrg", {"alpha": float("nan")}, r"^alpha: expected a finite number"),
    ("mscrg", {"temperature": -1.0}, r"^temperature: "),
    ("proto_only", {"alpha": 1.0}, r"^options: "),
    ("mulsupcon", {"empty_rows": "keep"}, r"^empty_rows: expected one of \('drop', 'count'\)"),
    ("zlpr", {"reduction": "avg"}, r"^reduction: expected one of"),
    ("jaccard_weight", {"temperature": True}, r"^temperature: "),
])
def test_bad_options(name, opts, match):
    with pytest.raises(ValueError, match=match):
        build(name, **opts)
    assert build("mscrg", alpha=-2.0).alpha == -2.0  # α < 0: the hard threshold


@pytest.mark.parametrize("logits,labels,match", [
    (torch.zeros(2, 0), torch.zeros(2, 0), r"^logits: no label columns \(C = 0\)"),
    (torch.zeros(0, 3), torch.zeros(0, 3), r"^logits: empty batch"),
    (torch.zeros(2, 3), torch.zeros(2, 4), r"^labels: expected shape \(2, 3\)"),
    (torch.zeros(2, 3, 1), torch.zeros(2, 3), r"^logits: expected a \[B, C\]"),
    (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2), r"^logits: contains 1 non-finite"),
    (torch.zeros(1, 2), torch.tensor([[0.5, 1.0]]), r"^labels: expected multi-hot"),
    (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2), r"^logits: expected a floating-point"),
])
def test_zlpr_bad_input(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        build("zlpr")(logits, labels)
