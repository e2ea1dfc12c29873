"""Edge cases of the loss API, checked for every loss of ``build``.

Each case is either finite and exact (against the float64 naive references of
``tests/reference.py``) or a ValueError naming the argument: empty and one-sample batches,
large unnormalised features, float16 with a tiny τ, bool / non-finite options, numpy and sparse
labels, and SupCon's ignored class id −1.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from reference import ref_asl, ref_flat, ref_hierarchical
from reference_next_audibert import ref_jaccard_weight
from reference_next_clmtc import ref_cl, ref_wz
from torch.testing import assert_close

from mlsupcon.losses import CONTRASTIVE_LOSSES, HIERARCHICAL_LOSSES, LOSSES, PROTOTYPE_LOSSES, build

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
    if fmt == "hierarchy_levels":  # one [B, 6] one-hot tensor per level, coarsest first, from [B, 2] paths
        from mlsupcon.losses.hierarchical import path_to_levels

        paths = torch.stack([torch.randint(0, 2, (batch,), generator=g), torch.randint(0, 3, (batch,), generator=g)], 1)
        if batch == 0:
            return [torch.zeros(0, 6), torch.zeros(0, 6)]
        return [torch.nn.functional.pad(t, (0, 6 - t.shape[1])) for t, _ in path_to_levels(paths)]
    return (torch.rand(batch, classes, generator=g) < 0.5).float()


def reference(name: str, features, labels, **opts):
    """The float64 naive loss of ``tests/reference.py``."""
    if name in HIERARCHICAL_LOSSES:
        return ref_hierarchical(name, features, labels, **opts)
    if name == "jaccard_weight":
        return ref_jaccard_weight(features, labels, **opts)
    if name in ("cl_scl", "cl_jscl", "cl_slcl"):
        return ref_cl(name[3:], features, labels, **opts)
    if name == "multisupcon_wz":
        return ref_wz(features, labels, **opts)
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
        if name == "cl_jscl":  # its denominator is J-weighted: one candidate b gives (τ/τ_b)·log J_ab
            exp = reference(name, feats.double(), labels, normalize=normalize, temperature=0.07)
            assert loss.item() == pytest.approx(exp.item(), abs=1e-6), seed
        else:
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


def test_classifier_losses_at_one_sample():
    # KMCL's contrastive term has no pair at B = 1: an exact 0 with zero gradients; ASL is a
    # per-entry loss and stays its reference value.
    x, pi, mu, sigma2 = kmcl_inputs(1)
    total, terms = build("kmcl")(x, pi, mu, sigma2, torch.tensor([[1, 0, 1]]), return_terms=True)
    assert terms["con"].item() == 0.0 and torch.isfinite(total)
    con_only = build("kmcl", weight_asl=0.0, weight_rec=0.0)(x, pi, mu, sigma2, torch.tensor([[1, 0, 1]]))
    con_only.backward()
    assert con_only.item() == 0.0 and torch.count_nonzero(mu.grad) == 0
    logits, targets = torch.tensor([[2.0, -1.0, 0.5]], dtype=F64), torch.tensor([[1, 0, 1]])
    assert_close(build("asl")(logits, targets), ref_asl(logits, targets))


# --------------------------------------------------------------------------- empty batches


def kmcl_inputs(batch: int, classes: int = 3, dim: int = 4, seed: int = 0, dtype=torch.float32):
    """(x, pi, mu, sigma2) of a KMCL head, leaves that require grad."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, generator=g)
    pi = torch.randn(batch, classes, generator=g)
    mu = torch.randn(batch, classes, dim, generator=g)
    sigma2 = torch.rand(batch, classes, generator=g) + 0.5
    return tuple(t.to(dtype).requires_grad_(True) for t in (x, pi, mu, sigma2))


def call_with_batch(name: str, batch: int, labels=None):
    """Calls loss ``name`` on a batch of ``batch`` samples (labels in its format unless given)."""
    loss_fn = build(name)
    if name in ("asl", "zlpr", "cl_jspcl", "label_nce"):
        y = torch.zeros(batch, 3) if labels is None else labels
        return loss_fn(torch.randn(batch, 3), y)
    if name == "cl_icl":
        y = torch.zeros(batch, 3) if labels is None else labels
        return loss_fn(torch.randn(batch, 3, 8), y)
    if name in PROTOTYPE_LOSSES:
        y = torch.zeros(batch, 3) if labels is None else labels
        return loss_fn(torch.randn(batch, 2, 8), y, prototypes=torch.randn(3, 8))
    if name == "kmcl":
        y = torch.zeros(batch, 3) if labels is None else labels
        return loss_fn(*kmcl_inputs(batch), y)
    y = contrastive_labels(name, batch) if labels is None else labels
    return loss_fn(torch.randn(batch, 2, 8), y)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_empty_batch_is_a_value_error(name):
    # Every loss, flat, hierarchical or classifier: B = 0 is a ValueError naming the input.
    first = {"asl": "logits", "zlpr": "logits", "cl_jspcl": "logits", "label_nce": "logits", "kmcl": "x",
             "cl_icl": "label_embeddings"}.get(name, "features")
    with pytest.raises(ValueError, match=rf"^{first}: empty batch \(B = 0\)$"):
        call_with_batch(name, 0)


# --------------------------------------------------------------------------- options


def option_cases():
    """(loss, option, kind) for every float and bool option of every loss, read from the
    constructors' defaults (the hierarchical losses pass the flat ones to their base)."""
    cases = []
    for name, cls in sorted(LOSSES.items()):
        params = inspect.signature(cls.__init__).parameters
        defaults = {p.name: p.default for p in params.values() if p.default is not inspect.Parameter.empty}
        if name in HIERARCHICAL_LOSSES:
            defaults.update(temperature=0.1, normalize=True, level_weights=[1.0, 1.0])
        for option, default in defaults.items():
            if isinstance(default, bool):
                cases.append((name, option, "bool"))
            elif isinstance(default, (float, list)):
                cases.append((name, option, "float"))
    return cases


@pytest.mark.parametrize("name,option,kind", option_cases())
def test_options_refuse_bools_and_non_finite_numbers(name, option, kind):
    if kind == "bool":
        bad = [1, 0, "false", None]
    else:
        bad = [True, False, float("inf"), float("-inf"), float("nan"), "0.1"]
    for value in bad:
        if option == "level_weights":
            value = [1.0, value]
        with pytest.raises(ValueError, match=rf"^{option}: expected"):
            build(name, **{option: value})


def test_option_messages_state_the_range():
    with pytest.raises(ValueError, match=r"^temperature: expected a finite number > 0, got True$"):
        build("simdis", temperature=True)
    with pytest.raises(ValueError, match=r"^threshold: expected a finite number in \[0, 1\), got 1.0$"):
        build("jaccard", threshold=1.0)
    with pytest.raises(ValueError, match=r"^alpha: expected a finite number in \[0, 1\], got inf$"):
        build("mlcl", alpha=float("inf"))
    with pytest.raises(ValueError, match=r"^normalize: expected True or False, got 'no'$"):
        build("all", normalize="no")
    assert build("simclr", temperature=1).temperature == 1.0  # ints and numpy floats are numbers
    assert build("simclr", temperature=np.float32(0.5)).temperature == 0.5
    assert build("asl", clip=0).clip == 0


# --------------------------------------------------------------------------- label formats

MULTI_HOT = sorted(n for n, cls in CONTRASTIVE_LOSSES.items() if cls.label_format == "multi_hot")


@pytest.mark.parametrize("name", MULTI_HOT + ["asl", "kmcl"] + sorted(HIERARCHICAL_LOSSES))
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_labels_give_the_dense_value(name, layout):
    def sparse(t):
        return t.to_sparse() if layout == "coo" else t.to_sparse_csr()

    g = torch.Generator().manual_seed(11)
    y = (torch.rand(6, 4, generator=g) < 0.5).float()
    loss_fn = build(name)
    if name == "asl":
        logits = torch.randn(6, 4, generator=g)
        dense, got = loss_fn(logits, y), loss_fn(logits, sparse(y))
    elif name == "kmcl":
        inputs = kmcl_inputs(6, classes=4)
        dense, got = loss_fn(*inputs, y), loss_fn(*inputs, sparse(y))
    elif name in HIERARCHICAL_LOSSES:
        feats, levels = torch.randn(6, 2, 8, generator=g), [y[:, :2], y]
        dense, got = loss_fn(feats, levels), loss_fn(feats, [sparse(t) for t in levels])
    else:
        feats = torch.randn(6, 2, 8, generator=g)
        dense, got = loss_fn(feats, y), loss_fn(feats, sparse(y))
    assert_close(got, dense, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n in LOSSES if n != "simclr"))
def test_numpy_labels_are_a_value_error_naming_them(name):
    # No loss takes numpy labels (the flat losses never did): one ValueError naming the argument.
    arg = "targets" if name == "asl" else "labels"
    y = contrastive_labels(name, 4) if name in CONTRASTIVE_LOSSES else torch.zeros(4, 3)
    with pytest.raises(ValueError, match=rf"^{arg}: expected .*ndarray"):
        call_with_batch(name, 4, labels=np.asarray(y))


# --------------------------------------------------------------------------- classifier losses: range


@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_asl_large_logits_match_float64(scale):
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(5, 4, generator=g) * scale).float()
    targets = (torch.rand(5, 4, generator=g) < 0.5).float()
    loss, grad = value_and_grad(lambda t: build("asl")(t, targets), logits)
    exp, exp_grad = value_and_grad(lambda t: ref_asl(t, targets), logits.to(F64))
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert_close(loss.to(F64), exp, rtol=1e-5, atol=1e-6)
    assert_close(grad.to(F64), exp_grad, rtol=1e-5, atol=1e-6)


def test_asl_float16_sum_is_float32():
    # 64 × 300 positives at logit −10 sum to ~1.9e5 > 65504: a float16 result would be inf.
    logits = torch.full((64, 300), -10.0, dtype=torch.float16, requires_grad=True)
    loss = build("asl")(logits, torch.ones(64, 300))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert_close(loss.double(), torch.tensor(64 * 300 * math.log1p(math.exp(10.0)), dtype=F64), rtol=1e-5, atol=0)


def test_kmcl_float16_is_finite_and_close_to_float64():
    y = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    half = kmcl_inputs(4, dtype=torch.float16, seed=3)
    wide = tuple(t.detach().double().requires_grad_(True) for t in half)
    loss, exp = build("kmcl")(*half, y), build("kmcl")(*wide, y)
    loss.backward()
    exp.backward()
    assert loss.dtype == torch.float32
    assert_close(loss.double(), exp.detach(), rtol=1e-5, atol=1e-5)
    for h, w in zip(half, wide):
        assert h.grad.dtype == torch.float16
        assert_close(h.grad.double(), w.grad, rtol=5e-3, atol=5e-3)


# --------------------------------------------------------------------------- SupCon: class id −1


def naive_supcon_ignoring(features, ids, temperature=0.1, ref_features=None, ref_ids=None):
    """SupCon written as loops, with the samples of class id −1 taken out of the batch: they are
    no anchor, no candidate and no positive."""
    emb, cls = [], []
    for i in range(features.shape[0]):
        if int(ids[i]) == -1:
            continue
        for v in range(features.shape[1]):
            emb.append(features[i, v])
            cls.append(int(ids[i]))
    anchors = len(emb)
    if ref_features is not None:
        for m in range(ref_features.shape[0]):
            if int(ref_ids[m]) != -1:
                emb.append(ref_features[m])
                cls.append(int(ref_ids[m]))
    z = [e / e.norm() for e in emb]
    per_anchor = []
    for a in range(anchors):
        others = [b for b in range(len(z)) if b != a]
        if not others:
            continue
        s = torch.stack([z[a] @ z[b] / temperature for b in others])
        lse = torch.logsumexp(s, 0)
        pos = [j for j, b in enumerate(others) if cls[b] == cls[a]]
        if pos:
            per_anchor.append(-sum(s[j] - lse for j in pos) / len(pos))
    if not per_anchor:
        return features.sum() * 0.0
    return torch.stack(per_anchor).mean()


@pytest.mark.parametrize("seed", range(4))
def test_supcon_ignores_class_minus_one(seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(9, 2, 6, generator=g, dtype=F64)
    ids = torch.randint(-1, 3, (9,), generator=g)
    ids[0], ids[1] = -1, 2  # at least one ignored and one kept sample
    loss, grad = value_and_grad(lambda f: build("supcon")(f, ids), feats)
    exp, exp_grad = value_and_grad(lambda f: naive_supcon_ignoring(f, ids), feats)
    assert_close(loss, exp, rtol=1e-10, atol=1e-10)
    assert_close(grad, exp_grad, rtol=1e-10, atol=1e-10)
    ignored = ids == -1
    assert torch.count_nonzero(grad[ignored]) == 0
    # the batch without the ignored samples gives the same value; their features do not matter
    assert_close(build("supcon")(feats[~ignored], ids[~ignored]), loss, rtol=1e-12, atol=1e-12)
    moved = feats.clone()
    moved[ignored] = 100.0
    assert_close(build("supcon")(moved, ids), loss, rtol=1e-12, atol=1e-12)


def test_supcon_ignores_reference_rows_of_class_minus_one():
    g = torch.Generator().manual_seed(7)
    feats, refs = torch.randn(5, 2, 6, generator=g, dtype=F64), torch.randn(4, 6, generator=g, dtype=F64)
    ids, ref_ids = torch.tensor([0, 1, -1, 0, 1]), torch.tensor([1, -1, 0, -1])
    loss, grad = value_and_grad(lambda f: build("supcon")(f, ids, ref_features=refs, ref_labels=ref_ids), feats)
    exp, exp_grad = value_and_grad(lambda f: naive_supcon_ignoring(f, ids, ref_features=refs, ref_ids=ref_ids), feats)
    assert_close(loss, exp, rtol=1e-10, atol=1e-10)
    assert_close(grad, exp_grad, rtol=1e-10, atol=1e-10)
    # every reference ignored: the loss of the batch alone
    all_ignored = torch.full((4,), -1)
    assert_close(build("supcon")(feats, ids, ref_features=refs, ref_labels=all_ignored), build("supcon")(feats, ids))


def test_supcon_batch_of_ignored_samples_is_an_exact_zero():
    feats = torch.randn(3, 2, 6, requires_grad=True)
    loss = build("supcon")(feats, torch.full((3,), -1))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(feats.grad) == 0


def test_supcon_other_negative_ids_are_a_value_error():
    with pytest.raises(ValueError, match=r"^labels: class ids must be integers$"):
        build("supcon")(torch.randn(3, 2, 6), torch.tensor([0.0, float("inf"), 1.0]))  # not a huge class id
    with pytest.raises(ValueError, match=r"^labels: class ids must be >= 0 \(or -1 to ignore a sample\), got -2$"):
        build("supcon")(torch.randn(3, 2, 6), torch.tensor([0, -2, 1]))
    with pytest.raises(ValueError, match=r"^ref_labels: class ids must be >= 0"):
        build("supcon")(torch.randn(3, 2, 6), torch.tensor([0, 1, 1]), ref_features=torch.randn(2, 6),
                        ref_labels=torch.tensor([-3, 0]))
