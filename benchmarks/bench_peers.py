"""mlsupcon's loss engine against peer implementations, timed in one run.

For N = B·V embeddings (V = 2 views), D = 128, τ = 0.1, forward + backward of each loss:
  * ``bare``: ``normalize(z)`` then ``z @ z.T`` forward + backward with a materialised N×N upstream
    gradient, the floor any contrastive loss pays;
  * single-label: pytorch-metric-learning's ``SupConLoss`` vs mlsupcon ``supcon``;
  * multi-label: implementations written the way the reference code writes them (SupContrast's
    loss body; the official MulSupCon code's one row per (anchor, label)), with full N×N (or
    rows × N) logits and masks through autograd, vs mlsupcon ``any``, ``mulsupcon``, ``simdis``;
  * the losses of issue 21 (``--rows new``), each against code written the way its original repository
    computes it (python loops over pairs, labels or samples, B×B×C label tensors, where the original has them;
    see the comment of each ``reference_*`` function), vs mlsupcon with the option that matches the original
    (``legacy=True`` for CL-MTC's 1e-20 terms, ``empty_rows="count"`` for the MulSupCon of Audibert et al.).
    Their natural inputs, built outside the timed call: the N = B·V embeddings as N one-view samples
    (view-major, each carrying its sample's labels: the originals take [B, D], except WolodjaZ's, which
    takes the [B, V, D] views), raw for the Audibert et al. losses (they normalise inside), L2-normalised
    for CL-MTC (whose code does not normalise; unit rows keep its 1e-20 terms immaterial) and WolodjaZ
    (whose training script normalises before the loss); prototypes P [C, D] (``LabelPrototypes``) with their
    gradient; logits [N, C] (N(0, 0.05²), as a classifier's near initialisation) for zlpr and cl_jspcl;
    label embeddings [N, 11, D] (unit rows, the 11 most frequent labels) for cl_icl.

Repeats are interleaved (every function once per repeat, round-robin, the starting function
rotated), and each figure is a median; read the ratios, not the milliseconds. ``max |Δ value|`` is
the largest difference over the repeats between a peer's loss value and mlsupcon's for the same
float32 inputs, with the relative difference in parentheses. Peak memory is measured in a fresh
subprocess per function (as in bench_losses.py). A peer whose dense temporaries would need more than
``--max-gib`` is skipped with a printed row, and so is a peer that loops in python over pairs or
labels when N > ``--max-loop-n``.

Labels: rows of the bundled Debtags set (597 labels), as bench_losses.py picks them; the
single-label rows use each row's first label (lowest vocabulary index) as its class.

Usage:
    python benchmarks/bench_peers.py --sizes 1024,4096,8192 --repeats 3
    python benchmarks/bench_peers.py --quick
    python benchmarks/bench_peers.py --rows new --sizes 256,1024,4096 --repeats 3 --max-gib 4   # issue 21 losses
    python benchmarks/bench_peers.py --device cuda --sizes 1024,4096,8192,16384

Needs the ``bench`` extra (``pip install -e ".[bench]"``) for the pytorch-metric-learning row; without
it that row is printed as unavailable.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _memory import peak_mib  # benchmarks/_memory.py (scripts run from this folder)
from bench_losses import make_inputs  # the same seeded features and Debtags rows as bench_losses.py

TEMPERATURE = 0.1
GIB = 2**30


# ----------------------------------------------------------------------------- reference-style losses
# Benchmark code, not library code: each is written the way its reference repository writes it, so
# that the timings show what a user of that code pays. Every one returns the scalar loss of
# features [B, V, D] (L2-normalised inside, as mlsupcon's default normalize=True does).


def _view_major(features: torch.Tensor) -> torch.Tensor:
    """[B, V, D] → [V·B, D], views stacked as SupContrast does (``torch.cat(torch.unbind(f, 1))``)."""
    return torch.cat(torch.unbind(features, dim=1))


def _supcontrast_body(z: torch.Tensor, mask: torch.Tensor, temperature: float, count_nonzero: bool) -> torch.Tensor:
    """SupContrast's loss body (``losses.py`` of HobbitLong/SupContrast) on a dense positive-weight mask.

    ``mask`` [N, N] holds the weight of every pair, the self pair included (it is removed here, as
    SupContrast does with ``logits_mask``). The per-anchor mean divides by ``mask.sum(1)`` (SupContrast),
    or by the number of positives with ``count_nonzero`` (SimDis's ``normalization="count"``).
    """
    n = z.shape[0]
    logits = z @ z.T / temperature
    logits = logits - logits.max(1, keepdim=True)[0].detach()
    logits_mask = 1 - torch.eye(n, dtype=z.dtype, device=z.device)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    count = (mask > 0).sum(1).to(z.dtype) if count_nonzero else mask.sum(1)
    # SupContrast averages over every anchor; anchors without a positive are left out here, as
    # mlsupcon does (with V ≥ 2 every anchor has one: its other views).
    valid = count > 0
    return -((mask * log_prob).sum(1)[valid] / count[valid]).mean()


def reference_any(features: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """ANY: positives share at least one label (``generate_output_any`` of the official MulSupCon code:
    ``(labels @ labels.T) > 0``), through SupContrast's loss body.

    Views of the same sample are positives even when the sample has no label (mlsupcon's documented
    same-sample rule; the official code would give such an anchor no positive).
    """
    b, v, _ = features.shape
    z = F.normalize(_view_major(features), dim=1)
    y = labels.to(z.dtype).repeat(v, 1)
    same = torch.arange(b, device=z.device).repeat(v)
    mask = ((y @ y.T) > 0) | (same[:, None] == same[None, :])
    return _supcontrast_body(z, mask.to(z.dtype), temperature, count_nonzero=False)


def reference_simdis(features: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SimDis (reciprocal dissimilarity, count normalisation) through SupContrast's loss body: the same
    computation as ``supcon_reference_dense`` of bench_losses.py, returning the loss."""
    b, v, _ = features.shape
    z = F.normalize(_view_major(features), dim=1)
    y = labels.to(z.dtype).repeat(v, 1)
    inter = y @ y.T
    na, nb = y.sum(1, keepdim=True), y.sum(1, keepdim=True).T
    mask = (inter / na.clamp(min=1)) / (1 + nb - inter) * (inter > 0)
    same = torch.arange(b, device=z.device).repeat(v)
    mask = torch.where(same[:, None] == same[None, :], torch.ones_like(mask), mask)
    return _supcontrast_body(z, mask, temperature, count_nonzero=True)


def reference_mulsupcon(features: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """MulSupCon written as the official code writes it (``generate_output_MulSupCon`` + ``SupCon`` of
    williamzhangsjtu/MulSupCon): one score row per (anchor, label), its mask the candidates holding
    that label, ``−mean log softmax`` over the mask, then the mean over all rows (``reduction="pair"``).

    In-batch differences from the official (MoCo-queue) code, which contrasts a query with keys that
    never include the query itself: the anchor's own column is removed from the softmax and from the
    mask; a row whose mask is empty is dropped; an anchor without labels forms one row whose positives
    are its other views (mlsupcon's documented convention; the official code gives it no row).
    ``log_softmax`` replaces ``log(softmax(·))``: the same value, without log(0) at the removed column.
    """
    b, v, _ = features.shape
    z = F.normalize(_view_major(features), dim=1)
    n = z.shape[0]
    y = labels.to(z.dtype).repeat(v, 1)  # [N, C]
    scores = z @ z.T / temperature  # [N, N]
    anchor, label = torch.where(y == 1)  # one row per (anchor, label), as the official code
    rows = torch.zeros(len(anchor), y.shape[1], dtype=z.dtype, device=z.device)
    rows[torch.arange(len(anchor), device=z.device), label] = 1
    masks = (rows @ y.T).to(torch.bool)  # [R, N]
    empty = torch.where(y.sum(1) == 0)[0]
    if len(empty):
        same = torch.arange(b, device=z.device).repeat(v)
        anchor = torch.cat([anchor, empty])
        masks = torch.cat([masks, same[empty][:, None] == same[None, :]])
    own = torch.zeros_like(masks)
    own[torch.arange(len(anchor), device=z.device), anchor] = True
    masks &= ~own
    keep = masks.any(1)
    log_prob = torch.log_softmax(scores[anchor].masked_fill(own, float("-inf")), dim=1)  # [R, N]
    loss = -torch.where(masks, log_prob, torch.zeros_like(log_prob)).sum(1) / masks.sum(1).clamp(min=1)
    if n < 2 or not bool(keep.any()):
        return scores.sum() * 0.0
    return loss[keep].mean()


def pml_supcon(features: torch.Tensor, class_ids: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """pytorch-metric-learning's ``SupConLoss`` on the V·B views, each view carrying its sample's class.

    Apples to apples with mlsupcon ``supcon`` (checked in its source, losses/supcon_loss.py, 2.9.0):
    its ``CosineSimilarity`` distance L2-normalises the embeddings; the self pair is neither positive
    (``get_matches_and_diffs`` zeroes the diagonal) nor in the denominator (nor a negative), as in
    SupCon; the per-anchor loss is the mean of −log p over the positives. Its default reducer
    ``AvgNonZeroReducer`` averages only the anchors whose loss is > 0, where mlsupcon averages the
    anchors with at least one positive: with V = 2 every anchor has a positive (its other view) and a
    positive loss, so the two means are over the same anchors and the values agree.
    """
    from pytorch_metric_learning.losses import SupConLoss

    v = features.shape[1]
    return SupConLoss(temperature=temperature)(_view_major(features), class_ids.repeat(v))


# ----------------------------------------------------------------------------- reference-style: issue 21 losses
# Each takes what its original takes (one-view rows [N, D] unless said) and follows the original's computation:
# its masks, its [B, B, C] label tensors, its python loops and its epsilons, written here as benchmark code.
AUDIBERT_EPS = 1e-8  # EPS of the Audibert et al. loss files
CLMTC_EPS = 1e-20  # the 1e-20 terms of CL-MTC's SupCon kernels
WZ_THRESHOLD = 0.3  # c_treshold of WolodjaZ's MultiSupConLoss
BASE_TEMPERATURE = 0.07  # τ_b of CL-MTC and WolodjaZ


def _audibert_log_softmax(scores: torch.Tensor, temperature: float, mask: torch.Tensor):
    """``log_softmax_temp`` of the Audibert et al. loss files: scores / τ, the row maximum (masked entries
    included) subtracted detached, the denominator summed over ``mask`` with no epsilon; also the detached
    softmax σ the mscrg file uses."""
    logits = scores / temperature
    logits = logits - logits.max(1, keepdim=True)[0].detach()
    exp = torch.exp(logits)
    denominator = (exp * mask).sum(1, keepdim=True)
    return logits - torch.log(denominator), (exp / denominator).detach()


def _audibert_label_union(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """``compute_or``: |y_a ∪ y_b| through a dense [A, B, C] tensor, as the original builds it."""
    union = ya.unsqueeze(1) + yb
    union[union == 2] = 1
    return union.sum(2)


def _off_diagonal(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """The originals' ``mask_diagonal``: ones with a zero at (i, i) for i < rows."""
    mask = torch.ones(rows, cols, dtype=like.dtype, device=like.device)
    idx = torch.arange(rows, device=like.device)
    mask[idx, idx] = 0
    return mask


def reference_jaccard_weight(x: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Imitates ``src/trainer/loss/loss_contrastive_base.py`` (LossContrastiveBase) of
    audibert-alexandre-fra/Multi-label-contrastive-comprehensive: w = I / (|y_a ∪ y_b| + EPS) from the
    [N, N, C] union, rows normalised (+ EPS), −Σ w log p divided by the number of rows with a positive."""
    z = F.normalize(x, dim=-1)
    y = y.to(z.dtype)
    off = _off_diagonal(len(y), len(y), z)
    w = (y @ y.T) * off * (1 / (_audibert_label_union(y, y) + AUDIBERT_EPS))
    w = w / (w.sum(1, keepdim=True) + AUDIBERT_EPS)
    log_prob, _ = _audibert_log_softmax(z @ z.T, temperature, off)
    return (-(log_prob * w).sum(1) / ((w.sum(1) != 0).int().sum() + AUDIBERT_EPS)).sum()


def reference_msc(x: torch.Tensor, y: torch.Tensor, prototypes: torch.Tensor, temperature: float = TEMPERATURE,
                  alpha: float = 1.0, beta: float = 0.1) -> torch.Tensor:
    """Imitates ``src/trainer/loss/loss_contrastive_msc.py`` (LossContrastiveMSC) of
    audibert-alexandre-fra/Multi-label-contrastive-comprehensive: the per-label pair weights as an
    ``einsum('ac,bc->abc')`` [N, N, C] tensor divided by the [N, N, C] union, the per-(anchor, label)
    normaliser with the ``(1 − α/n_a)·y_a`` correction, samples and prototypes as one [N, N + C] score
    matrix, β on the sample columns of the denominator, the row loss divided by n_a, mean over rows.
    α = β = 0 is ``loss_contrastive_proto_only.py`` (the spec checked it equal)."""
    z, p = F.normalize(x, dim=-1), F.normalize(prototypes, dim=-1)
    y = y.to(z.dtype)
    n, c = y.shape
    off = _off_diagonal(n, n + c, z)
    per_label = torch.einsum("ac,bc->abc", y, y) * (1 / _audibert_label_union(y, y).unsqueeze(2)) * alpha
    normaliser = per_label.sum(1) + (-alpha / y.sum(1, keepdim=True) + 1) * y  # [N, C]
    w = torch.cat([(per_label / (normaliser.unsqueeze(1) + AUDIBERT_EPS)).sum(2), y / (normaliser + AUDIBERT_EPS)], 1)
    w = w * off
    column = torch.full((n + c,), beta, dtype=z.dtype, device=z.device)
    column[n:] = 1
    log_prob, _ = _audibert_log_softmax(torch.cat([z @ z.T, z @ p.T], 1), temperature, off * column)
    return (-(log_prob * w).sum(1) / y.sum(1)).mean()


def reference_proto_only(x, y, prototypes, temperature: float = TEMPERATURE) -> torch.Tensor:
    """``loss_contrastive_proto_only.py`` = the MSC file's computation with α = β = 0 (see reference_msc)."""
    return reference_msc(x, y, prototypes, temperature, alpha=0.0, beta=0.0)


def reference_mscwrg(x: torch.Tensor, y: torch.Tensor, prototypes: torch.Tensor, temperature: float = TEMPERATURE,
                     alpha: float = 0.0, regularise: bool = False) -> torch.Tensor:
    """Imitates ``src/trainer/loss/loss_contrastive_mscwrg.py`` (and, with ``regularise``,
    ``loss_contrastive_mscrg.py``) of audibert-alexandre-fra/Multi-label-contrastive-comprehensive:
    samples and prototypes stacked as E (labels [y; I_C]), f = (I_ab / n_b)^α (α < 0: the hard threshold)
    on the (N + C)² pairs, the per-label weights as an [N + C, N + C, C] tensor, w divided by n_a,
    mscrg's term max(σ − w, 0)·1[w ≠ 0]·s/τ with σ the detached softmax."""
    z, p = F.normalize(x, dim=-1), F.normalize(prototypes, dim=-1)
    c = y.shape[1]
    e = torch.cat([z, p])
    lab = torch.cat([y.to(z.dtype), torch.eye(c, dtype=z.dtype, device=z.device)])
    off = _off_diagonal(len(e), len(e), z)
    ratio = (lab @ lab.T) / lab.sum(1).unsqueeze(0)
    if alpha < 0:
        f = (ratio >= 1 - AUDIBERT_EPS).to(z.dtype)
    else:
        f = ratio**alpha
    per_label = (f * off).unsqueeze(2) * torch.einsum("ac,bc->abc", lab, lab)  # [T, T, C]
    w = (per_label / (per_label.sum(1).unsqueeze(1) + AUDIBERT_EPS)).sum(2) / lab.sum(1, keepdim=True)
    scores = e @ e.T
    log_prob, sigma = _audibert_log_softmax(scores, temperature, off)
    terms = log_prob * w
    if regularise:
        terms = terms + torch.clamp(sigma - w, min=0) * (w != 0).to(z.dtype) * scores / temperature
    return (-terms.sum(1) / (w.sum(1) != 0).int().sum()).sum()


def reference_mscrg(x, y, prototypes, temperature: float = TEMPERATURE, alpha: float = 0.0) -> torch.Tensor:
    """``loss_contrastive_mscrg.py``: reference_mscwrg with its regularisation term."""
    return reference_mscwrg(x, y, prototypes, temperature, alpha, regularise=True)


def reference_mulsupcon_count(x: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Imitates ``src/trainer/loss/loss_contrastive_mulsupcon.py`` of
    audibert-alexandre-fra/Multi-label-contrastive-comprehensive: one score row per (anchor, label), the
    anchor's own column removed by boolean indexing, ``log(softmax)``, the mean over the mask (+ EPS, so
    an empty row counts 0) and weights 1/R built as a python list, as the original. = mlsupcon
    ``mulsupcon`` with ``empty_rows="count"``."""
    z = F.normalize(x, dim=-1)
    y = y.to(z.dtype)
    anchor, label = torch.where(y == 1)
    scores = (z @ z.T)[anchor]
    rows = torch.zeros(len(scores), y.shape[1], dtype=z.dtype, device=z.device)
    rows[torch.arange(len(rows), device=z.device), label] = 1
    masks = (rows @ y.T).to(torch.bool)
    keep = torch.ones_like(masks)
    keep[torch.arange(len(rows), device=z.device), anchor] = False
    masks = masks[keep].reshape(len(rows), -1)
    scores = scores[keep].reshape(len(rows), -1)
    per_sample = y.sum(1).to(torch.int16).tolist()
    weights = torch.tensor([1 / len(scores) for k in per_sample for _ in range(k)], dtype=z.dtype, device=z.device)
    loss = -(torch.log(F.softmax(scores / temperature, dim=1)) * masks).sum(1) / (masks.sum(1) + AUDIBERT_EPS)
    return (loss * weights).sum()


def reference_zlpr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Imitates ``multilabel_categorical_crossentropy`` of bojone/bert4keras (``bert4keras/backend.py``):
    signs flipped by the labels, the other class pushed out by ±1e12, a zero column appended, two
    logsumexps; the mean over samples as mlsupcon's ``reduction="mean"``."""
    y = y.to(logits.dtype)
    s = (1 - 2 * y) * logits
    s_neg, s_pos = s - y * 1e12, s - (1 - y) * 1e12
    zeros = torch.zeros_like(s[..., :1])
    s_neg, s_pos = torch.cat([s_neg, zeros], -1), torch.cat([s_pos, zeros], -1)
    return (torch.logsumexp(s_neg, -1) + torch.logsumexp(s_pos, -1)).mean()


def _clmtc_supcon(z: torch.Tensor, mask: torch.Tensor, temperature: float, weights=None) -> torch.Tensor:
    """The body of ``SupConLoss`` / ``SupConLossMulti`` (with ``weights``) in ``scripts/model.py`` of
    IIP-Lab-2024/CL-MTC, one view: the row max with the self entry, ``exp·logits_mask + 1e-20`` (times the
    pair weights), numerator and count + 1e-20, × τ/τ_b, the mean over every anchor."""
    n = z.shape[0]
    scores = torch.div(z @ z.T, temperature)
    logits = scores - scores.max(1, keepdim=True)[0].detach()
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(n, device=z.device).view(-1, 1), 0)
    mask = mask * logits_mask
    exp = torch.exp(logits) * logits_mask + CLMTC_EPS
    if weights is not None:
        exp = torch.mul(exp, weights)
    log_prob = logits - torch.log(exp.sum(1, keepdim=True))
    mean_log_prob_pos = ((mask * log_prob).sum(1) + CLMTC_EPS) / (mask.sum(1) + CLMTC_EPS)
    return (-(temperature / BASE_TEMPERATURE) * mean_log_prob_pos).mean()


def _clmtc_pair_lists(y: torch.Tensor):
    """SpanEmo.forward's double python loop over the batch: for every pair, ``add(t1, t2)`` turned into a
    python list and its 2s and 1s counted (the JSCL weights and the SCL mask are built from these)."""
    both, either = [], []
    for t1 in y:
        row2, row1 = [], []
        for t2 in y:
            tmp = torch.add(t1, t2).cpu().numpy().tolist()
            row2.append(tmp.count(2))
            row1.append(tmp.count(1))
        both.append(row2)
        either.append(row1)
    return both, either


def reference_cl_scl(z: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Imitates the ``'SCL'`` branch of ``SpanEmo.forward`` (``scripts/model.py``, IIP-Lab-2024/CL-MTC):
    the mask built by the python pair loop (1 where no label is held by exactly one of the two), then
    SupConLoss. = mlsupcon ``cl_scl`` with ``legacy=True``."""
    _, either = _clmtc_pair_lists(y)
    mask = torch.tensor([[1 if k == 0 else 0 for k in row] for row in either], dtype=z.dtype, device=z.device)
    return _clmtc_supcon(z, mask, temperature)


def _clmtc_jaccard_weights(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    both, either = _clmtc_pair_lists(y)
    weights = [[0 if b + e == 0 else 1.0 * b / (b + e) for b, e in zip(rb, re)] for rb, re in zip(both, either)]
    return torch.tensor(weights, device=like.device).to(like.dtype)


def reference_cl_jscl(z: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Imitates the ``'JSCL'`` branch (Jaccard weights from the python pair loop, an all-ones mask,
    SupConLossMulti). = mlsupcon ``cl_jscl`` with ``legacy=True``."""
    weights = _clmtc_jaccard_weights(y, z)
    return _clmtc_supcon(z, torch.ones(len(z), len(z), dtype=z.dtype, device=z.device), temperature, weights)


def reference_cl_jspcl(logits: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Imitates the ``'JSPCL'`` branch: the JSCL computation on the classifier's logits. = mlsupcon
    ``cl_jspcl`` with ``legacy=True``."""
    return reference_cl_jscl(logits, y, temperature)


def reference_cl_slcl(z: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Imitates the ``'SLCL'`` branch: a python loop over the C labels, each a SupConLoss with that label's
    0/1 column as the class (``torch.eq`` mask), divided by the batch size; the sum divided by C.
    = mlsupcon ``cl_slcl`` with ``legacy=True``."""
    total = 0
    for k in range(y.shape[1]):
        column = y[:, k].contiguous().view(-1, 1)
        mask = torch.eq(column, column.T).to(z.dtype)
        total = total + _clmtc_supcon(z, mask, temperature) / len(z)
    return total / y.shape[1]


def reference_cl_icl(e: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Imitates the ``'ICL'`` branch: a python loop over the samples, each a SupConLoss over its C label
    embeddings with its 0/1 labels as classes, divided by C; the sum divided by B. = mlsupcon ``cl_icl``
    with ``legacy=True``."""
    total = 0
    for i in range(e.shape[0]):
        column = y[i, :].contiguous().view(-1, 1)
        mask = torch.eq(column, column.T).to(e.dtype)
        total = total + _clmtc_supcon(e[i], mask, temperature) / e.shape[1]
    return total / e.shape[0]


def _wz_jaccard(label_a: torch.Tensor, label_b: torch.Tensor) -> torch.Tensor:
    """``calc_jacard_sim``: min and max of the stacked pair, summed."""
    stacked = torch.stack((label_a, label_b), dim=0)
    return torch.div(torch.min(stacked, dim=0)[0].sum().float(), torch.max(stacked, dim=0)[0].sum().float())


def reference_multisupcon_wz(features: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Imitates ``MultiSupConLoss`` of ``losses.py`` in WolodjaZ/MultiSupContrast: features [B, V, D],
    the B×B Jaccard matrix filled by a python double loop, mask J ≥ c, weights J, SupContrast's tiled masks
    and log-probabilities (no epsilon), × τ/τ_b, the mean over the V·B anchors (``contrast_mode='all'``)."""
    b, v, _ = features.shape
    jaccard = torch.zeros((b, b), dtype=torch.float32, device=features.device)
    for i in range(b):
        for j in range(b):
            jaccard[i, j] = _wz_jaccard(y[i], y[j])
    jaccard = jaccard.to(features.dtype)
    mask = torch.where(jaccard >= WZ_THRESHOLD, 1.0, 0.0).to(features.dtype)
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    scores = torch.div(contrast @ contrast.T, temperature)
    logits = scores - scores.max(1, keepdim=True)[0].detach()
    mask, weights = mask.repeat(v, v), jaccard.repeat(v, v)
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(b * v, device=features.device).view(-1, 1), 0)
    mask = mask * logits_mask
    log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True))
    mean = (mask * log_prob * weights).sum(1) / mask.sum(1)
    return (-(temperature / BASE_TEMPERATURE) * mean).view(v, b).mean()


# ----------------------------------------------------------------------------- rows of the table
# (key, loss, implementation); every peer is compared with the mlsupcon row of the same loss.
ROWS_EXISTING = [
    ("bare", "—", "bare floor: normalize, z @ z.T"),
    ("ml:supcon", "supcon", "mlsupcon"),
    ("pml:supcon", "supcon", "pytorch-metric-learning SupConLoss"),
    ("ml:any", "any", "mlsupcon"),
    ("ref:any", "any", "reference-style dense (SupContrast body)"),
    ("ml:mulsupcon", "mulsupcon", "mlsupcon"),
    ("ref:mulsupcon", "mulsupcon", "reference-style dense (official: row per anchor×label)"),
    ("ml:simdis", "simdis", "mlsupcon"),
    ("ref:simdis", "simdis", "supcon_reference_dense"),
]
REFERENCES = {"ref:any": reference_any, "ref:mulsupcon": reference_mulsupcon, "ref:simdis": reference_simdis}

# Issue 21 losses: name → (inputs, mlsupcon build options, reference-style peer, what the peer imitates).
# Inputs (see the module docstring): "flat" rows [N, D] raw; "proto" the same + P [C, D]; "unit" rows [N, D]
# L2-normalised; "logits" [N, C]; "icl" label embeddings [N, 11, D]; "views" the unit views [B, V, D].
NEW_LOSSES = {
    "jaccard_weight": ("flat", {}, reference_jaccard_weight, "Audibert et al. style (B×B×C union)"),
    "msc": ("proto", {}, reference_msc, "Audibert et al. style (B×B×C einsum)"),
    "proto_only": ("proto", {}, reference_proto_only, "Audibert et al. style (MSC, α = β = 0)"),
    "mscwrg": ("proto", {}, reference_mscwrg, "Audibert et al. style ((B+C)²×C einsum)"),
    "mscrg": ("proto", {}, reference_mscrg, "Audibert et al. style ((B+C)²×C einsum)"),
    "mulsupcon_count": ("flat", {"empty_rows": "count"}, reference_mulsupcon_count,
                        "Audibert et al. style (row per anchor×label)"),
    "zlpr": ("logits", {}, reference_zlpr, "bert4keras style (±1e12 masks, logsumexp)"),
    "cl_scl": ("unit", {"legacy": True}, reference_cl_scl, "CL-MTC style (python pair loop)"),
    "cl_jscl": ("unit", {"legacy": True}, reference_cl_jscl, "CL-MTC style (python pair loop)"),
    "cl_jspcl": ("logits", {"legacy": True}, reference_cl_jspcl, "CL-MTC style (python pair loop)"),
    "cl_slcl": ("unit", {"legacy": True}, reference_cl_slcl, "CL-MTC style (python loop over labels)"),
    "cl_icl": ("icl", {"legacy": True}, reference_cl_icl, "CL-MTC style (python loop over samples)"),
    "multisupcon_wz": ("views", {}, reference_multisupcon_wz, "WolodjaZ style (python pair loop)"),
}
ICL_LABELS = 11
FORM_INPUTS = {"flat": ("flat", "y_flat"), "proto": ("flat", "y_flat", "prototypes"), "unit": ("unit", "y_flat"),
               "logits": ("logits", "y_flat"), "icl": ("icl", "y_icl"), "views": ("views", "y")}
FORM_NOTE = {"flat": "", "proto": "", "unit": ", unit rows", "logits": ", logits [N, C]",
             "icl": f", [N, {ICL_LABELS}, D]", "views": ", unit views"}
ROWS_NEW = []
for _name, (_form, _options, _ref, _impl) in NEW_LOSSES.items():
    _suffix = " legacy=True" if _options.get("legacy") else ' empty_rows="count"' if "empty_rows" in _options else ""
    ROWS_NEW += [(f"ml:{_name}", _name, f"mlsupcon{_suffix}{FORM_NOTE[_form]}"), (f"ref:{_name}", _name, _impl)]
    REFERENCES[f"ref:{_name}"] = _ref
ROWS = ROWS_EXISTING + ROWS_NEW

# Bytes per dense entry at a peer's peak (N×N entries; the MulSupCon reference also label rows × N),
# from this script's CPU peak-memory column (at N = 8,192: 29.7, 41.7, 45.4 and 12.3 bytes; a little more
# at 4,096), rounded up; used only to skip a peer that would not fit, never printed as a measurement.
BYTES_PER_ENTRY = {"ref:any": 32, "ref:simdis": 44, "pml:supcon": 52, "ref:mulsupcon": 14,
                   "ref:mulsupcon_count": 14}
# Peers of the Audibert et al. style hold [N, N, C] (jaccard_weight, msc, proto_only) or [N + C, N + C, C]
# (mscwrg, mscrg) label tensors: bytes per entry of those, from this script's CPU peak memory with Debtags
# labels (C = 597; N = 128: 5.2 and 9.1 bytes; mscwrg and mscrg at N = 64: 8.0), rounded up.
BYTES_PER_LABEL_ENTRY = {"ref:jaccard_weight": 6, "ref:msc": 10, "ref:proto_only": 10, "ref:mscwrg": 9,
                         "ref:mscrg": 9}
# Peers that loop in python over pairs of samples (or over labels, each an N×N SupCon): skipped above --max-loop-n.
LOOP_PEERS = {"ref:cl_scl", "ref:cl_jscl", "ref:cl_jspcl", "ref:cl_slcl", "ref:multisupcon_wz"}


def pml_available() -> bool:
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        return False
    return True


def estimated_gib(key: str, n: int, labels: torch.Tensor) -> float:
    """Rough peak of a dense peer (0 for mlsupcon and the floor, which stay far below the limit)."""
    if key in BYTES_PER_LABEL_ENTRY:
        c = labels.shape[1]
        rows = n + c if key in ("ref:mscwrg", "ref:mscrg") else n
        return BYTES_PER_LABEL_ENTRY[key] * rows * rows * c / GIB
    if key not in BYTES_PER_ENTRY:
        return 0.0
    entries = n * n
    if key in ("ref:mulsupcon", "ref:mulsupcon_count"):
        entries += n // labels.shape[0] * int(labels.sum()) * n  # label rows × N
    return BYTES_PER_ENTRY[key] * entries / GIB


def make_case(n: int, device: str) -> dict:
    """Every input of every row for N = B·V embeddings, built once (not timed): the features [B, V, D] and
    Debtags labels of bench_losses.py, class ids, and the natural inputs of the issue 21 losses."""
    feats, y = make_inputs(n, "debtags", device)
    return case_from(feats, y)


def case_from(feats: torch.Tensor, y: torch.Tensor, icl_labels: int = ICL_LABELS) -> dict:
    """The inputs of every row from features [B, V, D] and multi-hot labels [B, C] (the extra inputs in the
    features' dtype and device, seeded)."""
    from mlsupcon.losses import LabelPrototypes

    v, d = feats.shape[1], feats.shape[2]
    flat = _view_major(feats)
    y_flat = y.repeat(v, 1)
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    top = y.sum(0).argsort(descending=True)[:icl_labels]
    like = {"dtype": feats.dtype, "device": feats.device}
    return {
        "feats": feats, "y": y, "ids": class_ids(y),
        "flat": flat, "y_flat": y_flat, "unit": F.normalize(flat, dim=-1), "views": F.normalize(feats, dim=-1),
        "prototypes": LabelPrototypes(y.shape[1], d).weight.detach().to(**like),
        "logits": (0.05 * torch.randn(len(flat), y.shape[1], generator=g)).to(**like),
        "icl": F.normalize(torch.randn(len(flat), icl_labels, d, generator=g), dim=-1).to(**like),
        "y_icl": y_flat[:, top],
    }


def new_loss_functions(name: str):
    """(mlsupcon's loss, the reference-style peer, the names of the case inputs both take) for an issue 21
    loss; the prototypes go to mlsupcon as ``prototypes=``, to the peer as its third argument."""
    from mlsupcon.losses import build

    form, options, reference, _ = NEW_LOSSES[name]
    build_options = dict(options) if name == "zlpr" else {"temperature": TEMPERATURE, **options}
    loss_fn = build("mulsupcon" if name == "mulsupcon_count" else name, **build_options)
    mine = (lambda x, y, p: loss_fn(x, y, prototypes=p)) if form == "proto" else loss_fn
    return mine, reference, FORM_INPUTS[form]


def make_function(key: str):
    """A callable (case of make_case) → loss value, running forward + backward."""
    if key == "bare":

        def run_bare(case):
            feats = case["feats"]
            z = F.normalize(feats.reshape(-1, feats.shape[-1]).detach().requires_grad_(), dim=1)
            s = z @ z.T
            s.backward(torch.ones_like(s))  # a materialised N×N upstream gradient, as a loss gives
            return None

        return run_bare
    kind, _, loss = key.partition(":")
    if loss in NEW_LOSSES:
        mine, reference, names = new_loss_functions(loss)
        impl = mine if kind == "ml" else reference

        def run_new(case):
            leaves = [case[k] if k.startswith("y_") or k == "y" else case[k].detach().requires_grad_() for k in names]
            value = impl(*leaves)
            value.backward()
            return value.detach()

        return run_new
    if kind == "ml":
        from mlsupcon.losses import build

        loss_fn = build(loss, temperature=TEMPERATURE)
        impl = (lambda f, y, ids: loss_fn(f, ids)) if loss == "supcon" else (lambda f, y, ids: loss_fn(f, y))
    elif kind == "pml":
        import pytorch_metric_learning.losses  # noqa: F401  (imported here, not inside a measured call)

        impl = lambda f, y, ids: pml_supcon(f, ids)  # noqa: E731
    else:
        reference = REFERENCES[key]
        impl = lambda f, y, ids: reference(f, y)  # noqa: E731

    def run(case):
        f = case["feats"].detach().requires_grad_()
        value = impl(f, case["y"], case["ids"])
        value.backward()
        return value.detach()

    return run


def class_ids(labels: torch.Tensor) -> torch.Tensor:
    """Each row's first label (lowest vocabulary index) as its class, as bench_losses.py does."""
    return labels.argmax(1)


# ----------------------------------------------------------------------------- measurement
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(keys, case, repeats: int, device: str):
    """Interleaved repeats: per repeat every function once, the first one rotating."""
    funcs = {k: make_function(k) for k in keys}
    times = {k: [] for k in keys}
    values = {k: [] for k in keys}
    for k in keys:  # warm-up
        funcs[k](case)
    sync(device)
    for r in range(repeats):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            sync(device)
            t0 = time.perf_counter()
            value = funcs[k](case)
            sync(device)
            times[k].append(time.perf_counter() - t0)
            values[k].append(None if value is None else value.item())
    return {k: statistics.median(t) for k, t in times.items()}, values


def peak_memory(key: str, n: int, device: str) -> float:
    """Peak memory (MiB) of one forward+backward, measured in a fresh process."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", key, str(n), device],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def child(key: str, n: int, device: str) -> None:
    case = make_case(n, device)
    fn = make_function(key)
    print(peak_mib(lambda: fn(case), device))


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,4096,8192,16384", help="N = B·V values, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-memory", action="store_true", help="skip the per-function peak-memory subprocesses")
    ap.add_argument("--quick", action="store_true", help="small smoke run (N = 256, 512; 2 repeats)")
    ap.add_argument("--max-gib", type=float, default=8.0, help="skip a peer whose estimated peak exceeds this")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--rows", default="existing", choices=["existing", "new", "all"],
                    help="the rows of the earlier table (default: its documented command reproduces it), those of "
                         "the issue 21 losses, or both")
    ap.add_argument("--max-loop-n", type=int, default=256,
                    help="skip a peer that loops in python over pairs or labels above this N")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        key, n, device = args.child
        child(key, int(n), device)
        return
    if args.quick:
        args.sizes, args.repeats = "256,512", 2
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    have_pml = pml_available()
    pml_version = "not installed"
    if have_pml:
        import pytorch_metric_learning

        pml_version = pytorch_metric_learning.__version__
    print(f"# device={args.device} torch={torch.__version__} pytorch-metric-learning={pml_version} "
          f"threads={torch.get_num_threads()} V=2 D=128 τ={TEMPERATURE} repeats={args.repeats} (interleaved, medians)")
    print(f"# command: python {shlex.join(['benchmarks/bench_peers.py', *sys.argv[1:]])}")
    print("# max |Δ value|: |peer − mlsupcon| of the loss value, float32, same inputs (relative in parentheses)")
    print()
    print("| N | loss | implementation | ms | × bare | × mlsupcon | peak MiB | max |Δ value| |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {"all": ROWS, "existing": ROWS_EXISTING, "new": [ROWS[0]] + ROWS_NEW}[args.rows]
    for n in sizes:
        case = make_case(n, args.device)
        y = case["y"]
        keys, skipped = [], {}
        for key, _, _ in rows:
            need = estimated_gib(key, n, y)
            if key == "pml:supcon" and not have_pml:
                skipped[key] = "unavailable: pip install -e '.[bench]'"
            elif key in LOOP_PEERS and n > args.max_loop_n:
                skipped[key] = f"skipped: python loop, N > --max-loop-n={args.max_loop_n}"
            elif need > args.max_gib:
                skipped[key] = f"skipped: would need {need:.1f} GiB"
            else:
                keys.append(key)
        times, values = measure(keys, case, args.repeats, args.device)
        for key, loss, impl in rows:
            if key in skipped:
                print(f"| {n} | {loss} | {impl} | {skipped[key]} | | | | |", flush=True)
                continue
            ml = f"ml:{loss}"
            vs_ml, delta = "—", "—"
            if key != "bare" and not key.startswith("ml:"):
                vs_ml = f"{times[key] / times[ml]:.2f}"
                d = max(abs(a - b) for a, b in zip(values[key], values[ml]))
                rel = d / max(abs(v) for v in values[ml])
                delta = f"{d:.1e} ({rel:.0e})"
            mem = "—" if args.no_memory else f"{peak_memory(key, n, args.device):.0f}"
            print(f"| {n} | {loss} | {impl} | {times[key] * 1e3:.1f} | {times[key] / times['bare']:.2f} | {vs_ml} | "
                  f"{mem} | {delta} |", flush=True)


if __name__ == "__main__":
    main()
