"""label_nce (label-anchored InfoNCE on logits) against a naive loop written from its formula, in
float64, values and gradients, on random and degenerate batches; and on end-to-end's logits."""

from __future__ import annotations

import math

import pytest
import torch

from mlsupcon.losses import build, label_nce_loss


def naive_label_nce(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """l_k = mean over positives i of -log(e^{s_ik} / (e^{s_ik} + sum_{j negative} e^{s_jk})),
    averaged over the labels with at least one positive and one negative (0 if none)."""
    b, c = logits.shape
    per_label = []
    for k in range(c):
        pos = [i for i in range(b) if labels[i, k] != 0]
        neg = [j for j in range(b) if labels[j, k] == 0]
        if not pos or not neg:
            continue
        terms = []
        for i in pos:
            s_i = logits[i, k] / temperature
            denom = torch.exp(s_i)
            for j in neg:
                denom = denom + torch.exp(logits[j, k] / temperature)
            terms.append(-(s_i - torch.log(denom)))
        per_label.append(sum(terms) / len(terms))
    if not per_label:
        return logits.sum() * 0.0
    return sum(per_label) / len(per_label)


def _grads(fn, logits, labels, **kw):
    x = logits.clone().requires_grad_(True)
    value = fn(x, labels, **kw)
    value.backward()
    return value.detach(), x.grad


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_matches_the_naive_loop_values_and_gradients(seed, temperature):
    g = torch.Generator().manual_seed(seed)
    b, c = int(torch.randint(2, 12, (1,), generator=g)), int(torch.randint(1, 7, (1,), generator=g))
    logits = torch.randn(b, c, generator=g, dtype=torch.float64) * 3
    labels = (torch.rand(b, c, generator=g) < 0.35).to(torch.float64)
    v, gr = _grads(label_nce_loss, logits, labels, temperature=temperature)
    v_ref, gr_ref = _grads(naive_label_nce, logits, labels, temperature=temperature)
    torch.testing.assert_close(v, v_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gr, gr_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", ["no_positive", "all_positive", "one_row", "mixed_degenerate_columns"])
def test_degenerate_batches(case):
    logits = torch.tensor([[2.0, -1.0, 0.5], [1.0, 0.0, -2.0], [-1.0, 1.5, 0.3]], dtype=torch.float64)
    labels = {
        "no_positive": torch.zeros(3, 3),
        "all_positive": torch.ones(3, 3),
        "one_row": None,
        # column 0 all positive, column 1 no positive: only column 2 counts
        "mixed_degenerate_columns": torch.tensor([[1, 0, 1], [1, 0, 0], [1, 0, 0]]),
    }[case]
    if case == "one_row":
        logits, labels = logits[:1], torch.tensor([[1, 0, 1]])
    v, gr = _grads(label_nce_loss, logits, labels)
    v_ref, gr_ref = _grads(naive_label_nce, logits, labels.to(torch.float64))
    assert torch.isfinite(v) and torch.isfinite(gr).all()
    torch.testing.assert_close(v, v_ref.to(v.dtype))
    torch.testing.assert_close(gr, gr_ref)
    if case in ("no_positive", "all_positive", "one_row"):
        assert float(v) == 0.0 and not gr.any()  # nothing to rank: no value, no gradient
    else:
        assert not gr[:, :2].any() and gr[:, 2].abs().sum() > 0


def test_invariant_to_a_shift_of_each_label_and_large_logits_stay_finite():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=g, dtype=torch.float64)
    labels = (torch.rand(16, 5, generator=g) < 0.3).long()
    shift = torch.randn(1, 5, generator=g, dtype=torch.float64) * 50  # per-label bias: no effect
    torch.testing.assert_close(label_nce_loss(logits + shift, labels), label_nce_loss(logits, labels))
    big = label_nce_loss(logits.float() * 1e4, labels)
    assert torch.isfinite(big)
    ref = naive_label_nce(logits * 1e4, labels)  # float64 overflows past ~709 / 1e4 too: compare in log space
    assert math.isfinite(float(big)) and (math.isinf(float(ref)) or abs(float(big) - float(ref)) / float(ref) < 1e-4)


def test_one_positive_among_equal_negatives_is_log_of_the_candidates():
    # zeros: each positive vs B - 1 negatives of equal score -> log(B) for a one-positive label
    v = build("label_nce", temperature=0.5)(torch.zeros(4, 3), torch.eye(4, 3))
    assert v.item() == pytest.approx(math.log(4))


def test_ranking_positives_above_negatives_lowers_it():
    labels = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    good = torch.where(labels.bool(), 3.0, -3.0)
    bad = -good
    assert label_nce_loss(good, labels) < 0.1 < math.log(3) < label_nce_loss(bad, labels)


@pytest.mark.parametrize("bad, message", [
    (dict(logits=torch.zeros(2, 3, dtype=torch.long)), "logits: expected a floating-point tensor"),
    (dict(labels=torch.zeros(2, 4)), r"labels: expected shape \(2, 3\)"),
    (dict(labels=torch.full((2, 3), 2.0)), "labels: expected multi-hot values"),
    (dict(logits=torch.tensor([[float("nan"), 0, 0], [0, 0, 0]])), "logits: contains 1 non-finite"),
    (dict(temperature=0.0), "temperature"),
])
def test_user_errors_name_the_input(bad, message):
    kw = dict(logits=torch.zeros(2, 3), labels=torch.zeros(2, 3), temperature=1.0)
    kw.update(bad)
    with pytest.raises(ValueError, match=message):
        build("label_nce", temperature=kw["temperature"])(kw["logits"], kw["labels"])
