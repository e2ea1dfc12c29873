"""Hand-computed cases for the contrastive losses (docs/spec/LOSSES.md).

Every expected number here is derived by hand in the comments, not produced by the engine.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from mlsupcon.losses import build, relation_counts

DT = torch.float64
TOL = dict(atol=1e-5, rtol=1e-5)



# --------------------------------------------------------------------------- simdis weights
#
# Samples (V = 1), label sets:       n
#   s0 = {0, 1}   (the anchor in the spec table below)   2
#   s1 = {0, 1}   R2 identical to s0                       2
#   s2 = {0}      R4 strict subset of s0                   1
#   s3 = {0,1,2}  R5 strict superset of s0                 3
#   s4 = {0, 2}   R3 partial overlap with s0               2
#   s5 = {3}      R1 disjoint from s0                      1
#
# simdis: w = K^s K^d with K^s = I/n_a;
#   reciprocal K^d = 1/(1 + n_b - I),  ratio K^d = I/n_b.
# Row s0 (n_a = 2):
#   s1: I=2  Ks=1    rec 1/(1+2-2)=1    -> 1      ratio 2/2=1   -> 1
#   s2: I=1  Ks=1/2  rec 1/(1+1-1)=1    -> 1/2    ratio 1/1     -> 1/2
#   s3: I=2  Ks=1    rec 1/(1+3-2)=1/2  -> 1/2    ratio 2/3     -> 2/3
#   s4: I=1  Ks=1/2  rec 1/(1+2-1)=1/2  -> 1/4    ratio 1/2     -> 1/4
#   s5: I=0                             -> 0                    -> 0
# Row s1 is row s0 with s0 in place of s1.
# Row s2 (n_a = 1): s0,s1: I=1 Ks=1, rec 1/2, ratio 1/2 -> 1/2 ; s3: I=1, rec 1/3, ratio 1/3
#   -> 1/3 ; s4: I=1, rec 1/2, ratio 1/2 -> 1/2 ; s5: 0
# Row s3 (n_a = 3): s0,s1: I=2 Ks=2/3, rec 1/(1+2-2)=1, ratio 2/2=1 -> 2/3 ; s2: I=1 Ks=1/3,
#   rec 1, ratio 1 -> 1/3 ; s4: I=2 Ks=2/3, rec 1, ratio 1 -> 2/3 ; s5: 0
# Row s4 (n_a = 2): s0,s1: I=1 Ks=1/2, rec 1/(1+2-1)=1/2, ratio 1/2 -> 1/4 ; s2: I=1 Ks=1/2,
#   rec 1, ratio 1 -> 1/2 ; s3: I=2 Ks=1, rec 1/(1+3-2)=1/2 -> 1/2, ratio 2/3 -> 2/3 ; s5: 0
# Row s5: all 0 -> Z = 0, anchor s5 is left out.

SIX_LABELS = torch.tensor([
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [1, 0, 0, 0],
    [1, 1, 1, 0],
    [1, 0, 1, 0],
    [0, 0, 0, 1],
])

W_RECIPROCAL = [
    [0, 1, 1 / 2, 1 / 2, 1 / 4, 0],
    [1, 0, 1 / 2, 1 / 2, 1 / 4, 0],
    [1 / 2, 1 / 2, 0, 1 / 3, 1 / 2, 0],
    [2 / 3, 2 / 3, 1 / 3, 0, 2 / 3, 0],
    [1 / 4, 1 / 4, 1 / 2, 1 / 2, 0, 0],
    [0, 0, 0, 0, 0, 0],
]
W_RATIO = [
    [0, 1, 1 / 2, 2 / 3, 1 / 4, 0],
    [1, 0, 1 / 2, 2 / 3, 1 / 4, 0],
    [1 / 2, 1 / 2, 0, 1 / 3, 1 / 2, 0],
    [2 / 3, 2 / 3, 1 / 3, 0, 2 / 3, 0],
    [1 / 4, 1 / 4, 1 / 2, 2 / 3, 0, 0],
    [0, 0, 0, 0, 0, 0],
]


def test_hand_weights_order_relations():
    # spec: w(R2) = 1 > w(R4), w(R5) > w(R3) > w(R1) = 0 (anchor s0, both readings)
    for W in (W_RECIPROCAL, W_RATIO):
        r2, r4, r5, r3, r1 = W[0][1], W[0][2], W[0][3], W[0][4], W[0][5]
        assert r2 == 1 and r2 > r4 and r2 > r5 and min(r4, r5) > r3 > r1 == 0


def _loss_from_weights(feats, W, tau, by_weight):
    """mean over anchors with positives of -(1/Z_a) sum_b W[a][b] log p_ab (V = 1)."""
    z = torch.nn.functional.normalize(feats, dim=1)
    s = z @ z.T / tau
    n = len(W)
    terms = []
    for a in range(n):
        others = [c for c in range(n) if c != a]
        lse = torch.logsumexp(s[a, others], 0)
        pos = [b for b in others if W[a][b] > 0]
        if not pos:
            continue
        z_a = sum(W[a][b] for b in pos) if by_weight else len(pos)
        terms.append(-sum(W[a][b] * (s[a, b] - lse) for b in pos) / z_a)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("dissimilarity,W", [("reciprocal", W_RECIPROCAL), ("ratio", W_RATIO)])
@pytest.mark.parametrize("normalization", ["count", "weight"])
def test_simdis_hand_weights(dissimilarity, W, normalization):
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(6, 5, generator=g, dtype=DT)
    loss_fn = build("simdis", temperature=0.5, dissimilarity=dissimilarity,
                    normalization=normalization)
    got = loss_fn(feats, SIX_LABELS)
    exp = _loss_from_weights(feats, W, 0.5, normalization == "weight")
    assert_close(got.to(DT), exp, **TOL)


@pytest.mark.parametrize("dissimilarity,expected_factor", [
    # identical features: every log p_ab = -log 5 (5 others, equal similarities), so with
    # count normalisation L_a = log 5 * (row sum)/(number of positives = 4), s5 left out.
    # reciprocal row sums: 9/4, 9/4, 11/6, 7/3, 3/2 -> total 61/6 -> mean/4 = 61/120
    ("reciprocal", 61 / 120),
    # ratio row sums: 29/12, 29/12, 11/6, 7/3, 5/3 -> total 32/3 -> mean/4 = 8/15
    ("ratio", 8 / 15),
])
def test_simdis_identical_features(dissimilarity, expected_factor):
    feats = torch.ones(6, 3, dtype=DT)
    got = build("simdis", dissimilarity=dissimilarity)(feats, SIX_LABELS)
    assert_close(got.to(DT), torch.tensor(expected_factor * math.log(5), dtype=DT), **TOL)
    # weight normalisation: L_a = log 5 for every remaining anchor
    got_w = build("simdis", dissimilarity=dissimilarity, normalization="weight")(feats, SIX_LABELS)
    assert_close(got_w.to(DT), torch.tensor(math.log(5), dtype=DT), **TOL)


# --------------------------------------------------------------------------- relation counts


def test_relation_counts_hand():
    # ordered pairs over SIX_LABELS (row = anchor a with S, column = sample b with T):
    #   s0: s1 R2, s2 R4, s3 R5, s4 R3, s5 R1
    #   s1: s0 R2, s2 R4, s3 R5, s4 R3, s5 R1
    #   s2 {0}: s0 R5, s1 R5, s3 R5, s4 R5, s5 R1
    #   s3 {0,1,2}: s0 R4, s1 R4, s2 R4, s4 R4, s5 R1
    #   s4 {0,2}: s0 R3, s1 R3, s2 R4, s3 R5, s5 R1
    #   s5 {3}: 5 x R1
    # R1 = 5 + 5 = 10, R2 = 2, R3 = 4, R4 = 2 + 4 + 1 = 7, R5 = 2 + 4 + 1 = 7, pairs = 30
    got = relation_counts(SIX_LABELS)
    assert all(type(got[k]) is int for k in ("R1", "R2", "R3", "R4", "R5", "pairs"))
    assert {k: int(got[k]) for k in ("R1", "R2", "R3", "R4", "R5", "pairs")} == {
        "R1": 10, "R2": 2, "R3": 4, "R4": 7, "R5": 7, "pairs": 30}


def test_relation_counts_empty_sets_are_disjoint():
    # I = 0 -> R1 even when both sets are empty: rows 0 and 1 are empty, row 2 = {0}.
    # 3*2 = 6 ordered pairs, all disjoint.
    got = relation_counts(torch.tensor([[0, 0], [0, 0], [1, 0]]))
    assert {k: int(got[k]) for k in ("R1", "R2", "R3", "R4", "R5", "pairs")} == {
        "R1": 6, "R2": 0, "R3": 0, "R4": 0, "R5": 0, "pairs": 6}
    # two identical non-empty rows -> 2 x R2; the empty row is R1 to both in both directions
    got = relation_counts(torch.tensor([[1, 0], [1, 0], [0, 0]], dtype=torch.bool))
    assert {k: int(got[k]) for k in ("R1", "R2", "R3", "R4", "R5", "pairs")} == {
        "R1": 4, "R2": 2, "R3": 0, "R4": 0, "R5": 0, "pairs": 6}


# --------------------------------------------------------------------------- no positives

NO_POS = [
    ("all", {}), ("any", {}), ("simdis", {}), ("simdis", {"normalization": "weight"}),
    ("jaccard", {}), ("jaccard", {"threshold": 0.0}), ("mulsupcon", {}),
    ("mulsupcon", {"reduction": "anchor"}), ("mlcl", {}), ("supcon", {}), ("simclr", {}),
]


NO_POS_CASES = [(n, o, k) for n, o in NO_POS for k in ("distinct", "empty")
                if not (n == "supcon" and k == "empty")]  # class ids cannot be empty


@pytest.mark.parametrize("name,opts,labels_kind", NO_POS_CASES, ids=lambda x: str(x))
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_no_anchor_has_positives(name, opts, labels_kind, chunk_size):
    # V = 1 and every sample has its own label (or none at all): no anchor has a positive.
    # spec: the loss is an exact 0 still connected to features; backward gives zero gradients.
    # (mlcl with alpha = 1, lambda = 0: pos_a = 0/(0 + eps) = 0 for every anchor -> 0.)
    B = 5
    feats = torch.randn(B, 4, dtype=DT, requires_grad=True)
    if name == "supcon":
        lab = torch.arange(B)
    elif name == "simclr":
        lab = None
    elif labels_kind == "distinct":
        lab = torch.eye(B)
    else:
        lab = torch.zeros(B, 3)
    loss = build(name, chunk_size=chunk_size, **opts)(feats, lab)
    assert loss.dim() == 0
    assert loss.item() == 0.0
    loss.backward()
    assert feats.grad is not None
    assert torch.isfinite(feats.grad).all()
    assert (feats.grad == 0).all()


def test_empty_labels_with_views_are_positives():
    # B = 2, V = 2, no labels anywhere: each anchor's only positive is its other view, so
    # all/any/simdis/simclr coincide (same-sample rule), and mulsupcon gives one row per anchor.
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(2, 2, 3, generator=g, dtype=DT)
    lab = torch.zeros(2, 4)
    simclr = build("simclr")(feats, None)
    assert simclr.item() > 0
    for name in ("all", "any", "simdis", "mulsupcon", "supcon"):
        arg = torch.tensor([0, 1]) if name == "supcon" else lab
        assert_close(build(name)(feats, arg), simclr, **TOL)


# --------------------------------------------------------------------------- single label


@pytest.mark.parametrize("V", [1, 2])
def test_single_label_strategies_agree(V):
    # one-hot labels: I in {0, 1} and n = 1, so simdis weights are 1 for same class (both
    # readings), all == any == supcon; mulsupcon has one row per anchor = supcon's anchor term;
    # jaccard has weight 1/(c + eps) on every positive and Z = count -> supcon / (c + eps).
    g = torch.Generator().manual_seed(11 + V)
    B, C = 12, 5
    feats = torch.randn(B, V, 6, generator=g, dtype=DT)
    cls = torch.tensor([0, 0, 1, 1, 1, 2, 3, 0, 2, 1, 3, 4])  # class 4 once: no positive at V=1
    onehot = torch.nn.functional.one_hot(cls, C)
    sup = build("supcon")(feats, cls)
    for name, opts in [("simdis", {}), ("simdis", {"dissimilarity": "ratio"}),
                       ("simdis", {"normalization": "weight"}), ("all", {}), ("any", {}),
                       ("mulsupcon", {}), ("mulsupcon", {"reduction": "anchor"})]:
        assert_close(build(name, **opts)(feats, onehot), sup, **TOL,
                     msg=lambda m, name=name, opts=opts: f"{name} {opts}: {m}")
    jac = build("jaccard")(feats, onehot)
    assert_close(jac * (0.3 + 1e-8), sup, **TOL)


# --------------------------------------------------------------------------- simclr by hand


def test_simclr_hand_numbers():
    # z11 = z12 = (1, 0) (given as (3,0), (1,0): normalised), z21 = z22 = (0, 1), tau = 1.
    # anchor 11: positive 12 with s = 1, negatives 21, 22 with s = 0:
    #   L = -(1 - log(e + 2)) = log(e + 2) - 1; every anchor is symmetric.
    f = torch.tensor([[[3.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, 1.0]]], dtype=DT)
    got = build("simclr", temperature=1.0)(f, None)
    assert_close(got.to(DT), torch.tensor(math.log(math.e + 2) - 1, dtype=DT), **TOL)
    # z11 = (1,0), z12 = (0,1), z21 = (-1,0), z22 = (0,-1), tau = 0.5: anchor 11 has positive
    # 12 with s = 0, negatives 21 (s = -2) and 22 (s = 0): L = log(2 + e^-2); all symmetric.
    f = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]], dtype=DT)
    got = build("simclr", temperature=0.5)(f, None)
    assert_close(got.to(DT), torch.tensor(math.log(2 + math.exp(-2)), dtype=DT), **TOL)


def test_simclr_hand_formula_random():
    # B = 2, V = 2: L = 1/4 sum over anchors (i, v) of
    #   -s(iv, i v') + log(exp s(iv, iv') + exp s(iv, j0) + exp s(iv, j1)),  j the other sample.
    g = torch.Generator().manual_seed(21)
    f = torch.randn(2, 2, 5, generator=g, dtype=DT)
    tau = 0.2
    z = f / f.norm(dim=-1, keepdim=True)

    def s(x, y):
        return float((x * y).sum()) / tau

    total = 0.0
    for i in range(2):
        j = 1 - i
        for v in range(2):
            a, p = z[i, v], z[i, 1 - v]
            sp, n0, n1 = s(a, p), s(a, z[j, 0]), s(a, z[j, 1])
            total += -sp + math.log(math.exp(sp) + math.exp(n0) + math.exp(n1))
    got = build("simclr", temperature=tau)(f, None)
    assert_close(got.to(DT), torch.tensor(total / 4, dtype=DT), **TOL)
    # labels argument may be omitted for simclr
    assert_close(build("simclr", temperature=tau)(f), got, **TOL)


# --------------------------------------------------------------------------- bad input

MULTIHOT = ["all", "any", "simdis", "jaccard", "mulsupcon", "mlcl"]


def _raises(match, fn):
    with pytest.raises(ValueError, match=match):
        fn()


@pytest.mark.parametrize("name", MULTIHOT + ["supcon"])
def test_shape_mismatch(name):
    feats = torch.randn(4, 8)
    lab = torch.zeros(5, dtype=torch.long) if name == "supcon" else torch.ones(5, 3)
    _raises("features|labels", lambda: build(name)(feats, lab))
    feats3 = torch.randn(4, 2, 8)
    _raises("features|labels", lambda: build(name)(feats3, lab))


@pytest.mark.parametrize("name", MULTIHOT)
@pytest.mark.parametrize("bad", [2.0, -1.0, 0.5])
def test_labels_outside_01(name, bad):
    lab = torch.zeros(4, 3)
    lab[1, 2] = bad
    _raises("labels", lambda: build(name)(torch.randn(4, 8), lab))


@pytest.mark.parametrize("name", MULTIHOT + ["supcon", "simclr"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_features(name, bad):
    feats = torch.randn(4, 2, 8)
    feats[2, 1, 3] = bad
    lab = {"supcon": torch.tensor([0, 1, 0, 1]), "simclr": None}.get(name, torch.ones(4, 3))
    _raises("features", lambda: build(name)(feats, lab))


@pytest.mark.parametrize("name", MULTIHOT + ["supcon", "simclr"])
@pytest.mark.parametrize("tau", [0.0, -0.1])
def test_bad_temperature(name, tau):
    lab = {"supcon": torch.tensor([0, 1, 0, 1]), "simclr": None}.get(name, torch.ones(4, 3))
    # the error may come at construction or at the call
    _raises("temperature", lambda: build(name, temperature=tau)(torch.randn(4, 8), lab))


@pytest.mark.parametrize("name", MULTIHOT + ["supcon", "simclr"])
def test_empty_batch(name):
    lab = {"supcon": torch.zeros(0, dtype=torch.long), "simclr": None}.get(
        name, torch.zeros(0, 3))
    _raises("features|labels", lambda: build(name)(torch.randn(0, 8), lab))
    _raises("features|labels", lambda: build(name)(torch.randn(0, 2, 8), lab))


@pytest.mark.parametrize("name", MULTIHOT)
def test_bad_reference_set(name):
    feats, lab = torch.randn(4, 2, 8), torch.ones(4, 3)
    loss_fn = build(name)
    # ref_features with another embedding dimension
    _raises("ref_features", lambda: loss_fn(feats, lab, ref_features=torch.randn(5, 7),
                                            ref_labels=torch.ones(5, 3)))
    # ref_labels with the wrong number of rows / label columns, or missing
    _raises("ref_labels", lambda: loss_fn(feats, lab, ref_features=torch.randn(5, 8),
                                          ref_labels=torch.ones(4, 3)))
    _raises("ref_labels", lambda: loss_fn(feats, lab, ref_features=torch.randn(5, 8),
                                          ref_labels=torch.ones(5, 2)))
    _raises("ref_labels", lambda: loss_fn(feats, lab, ref_features=torch.randn(5, 8)))


@pytest.mark.parametrize("kind", ["himulcon", "hicone", "himulcone"])
def test_bad_hierarchical_levels(kind):
    feats = torch.randn(4, 2, 8)
    _raises("labels|levels", lambda: build(kind)(feats, torch.zeros(5, 3, dtype=torch.long)))
    _raises("labels|levels", lambda: build(kind)(feats, [torch.ones(4, 2), torch.ones(5, 3)]))
    bad = torch.ones(4, 3)
    bad[0, 0] = 2.0
    _raises("labels|levels", lambda: build(kind)(feats, [torch.ones(4, 2), bad]))


# --------------------------------------------------------------------------- low precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["all", "any", "simdis", "jaccard", "mulsupcon", "mlcl",
                                  "supcon", "simclr"])
def test_low_precision_close_to_float32(dtype, name):
    g = torch.Generator().manual_seed(99)
    B, V, D, C = 16, 2, 32, 6
    feats = torch.randn(B, V, D, generator=g).to(dtype)
    if name == "supcon":
        lab = torch.randint(0, C, (B,), generator=g)
    elif name == "simclr":
        lab = None
    else:
        lab = (torch.rand(B, C, generator=g) < 0.3).float()
    loss_fn = build(name)
    f_low = feats.clone().requires_grad_(True)
    low = loss_fn(f_low, lab)
    ref = loss_fn(feats.float(), lab)  # same (rounded) inputs, computed in float32
    assert torch.isfinite(low)
    lo, hi = float(low.detach()), float(ref)
    assert abs(lo - hi) <= 2e-2 * abs(hi), (lo, hi)
    low.backward()
    assert f_low.grad is not None and torch.isfinite(f_low.grad).all()
