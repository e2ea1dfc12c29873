"""Naive references for the Audibert et al. family and ZLPR (``docs/spec/LOSSES.md``, sections
"Audibert et al. family" and "ZLPR"; proposed in ``LOSSES-next.md`` §1, §2).

Written from the spec text, independently of ``mlsupcon.losses``: Python loops over anchors,
candidates and labels, every weight a Python float computed from Python label *sets*. Only the
similarities and the log-sum-exp of one anchor row are torch operations (so autograd gives the
reference gradients w.r.t. features and prototypes). Use float64 inputs.

Conventions: features ``[B, D]`` or ``[B, V, D]`` flattened view-major (row v·B + i = view v of
sample i); refs are extra candidates (never anchors, never a view of an anchor's sample);
prototypes P ``[C, D]``: prototype k is a candidate with the label set {k}.
"""

from __future__ import annotations

import torch


def _sets(labels) -> list[frozenset]:
    rows = torch.as_tensor(labels).detach().to(torch.float64).tolist()
    return [frozenset(k for k, v in enumerate(row) if v != 0.0) for row in rows]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[i] / x[i].norm() for i in range(x.shape[0])]) if x.shape[0] else x


class _Items:
    """The candidates: embeddings (view-major), then refs, then (optionally) prototypes.

    ``kind[i]`` is "emb", "ref" or "proto"; ``sample[i]`` a sample id (views of one sample share
    it, refs and prototypes have their own); ``lab[i]`` a label set.
    """

    def __init__(self, features, labels, prototypes, ref_features, ref_labels, normalize):
        if features.dim() == 2:
            features = features.unsqueeze(1)
        B, V, _ = features.shape
        self.B, self.V = B, V
        rows, kind, sample, lab = [], [], [], []
        ys = _sets(labels)
        for v in range(V):
            for i in range(B):
                rows.append(features[i, v])
                kind.append("emb")
                sample.append(i)
                lab.append(ys[i])
        if ref_features is not None:
            for r, yr in enumerate(_sets(ref_labels)):
                rows.append(ref_features[r].to(features.dtype))
                kind.append("ref")
                sample.append(-1 - r)
                lab.append(yr)
        if prototypes is not None:
            for k in range(prototypes.shape[0]):
                rows.append(prototypes[k])
                kind.append("proto")
                sample.append(-10_000 - k)
                lab.append(frozenset([k]))
        z = torch.stack(rows)
        self.z = _unit(z) if normalize else z
        self.kind, self.sample, self.lab = kind, sample, lab
        self.total = len(rows)

    def sim(self, a: int, b: int, tau: float) -> torch.Tensor:
        return self.z[a] @ self.z[b] / tau


def _zero(*tensors) -> torch.Tensor:
    return sum(t.sum() * 0.0 for t in tensors if t is not None)


def _union(S, T) -> int:
    return len(S) + len(T) - len(S & T)


# --------------------------------------------------------------------------- jaccard_weight


def ref_jaccard_weight(features, labels, temperature=0.1, normalize=True, ref_features=None, ref_labels=None):
    """w_ab = J_ab (same-sample views: 1), Z_a = Σ_b w_ab, denominator every other embedding and
    every ref; mean of L_a over anchors with Z_a > 0, an exact 0 if none."""
    it = _Items(features, labels, None, ref_features, ref_labels, normalize)
    losses = []
    for a in range(it.B * it.V):
        others = [b for b in range(it.total) if b != a]
        if not others:
            continue
        s = {b: it.sim(a, b, temperature) for b in others}
        lse = torch.logsumexp(torch.stack([s[b] for b in others]), 0)
        terms, z = [], 0.0
        for b in others:
            if it.sample[b] == it.sample[a]:
                w = 1.0
            else:
                S, T = it.lab[a], it.lab[b]
                u = _union(S, T)
                w = len(S & T) / u if u else 0.0
            if w > 0:
                terms.append(w * (s[b] - lse))
                z += w
        if z > 0:
            losses.append(-torch.stack(terms).sum() / z)
    return torch.stack(losses).mean() if losses else _zero(features)


# --------------------------------------------------------------------------- msc / proto_only


def ref_msc(features, labels, prototypes, temperature=0.1, alpha=1.0, beta=0.1, normalize=True,
            ref_features=None, ref_labels=None):
    """MSC: for c ∈ y_a, N_ac = 1 + α Σ_{b candidate sample/ref, c ∈ y_b} 1/U_ab;
    w_ab = (α/U_ab) Σ_{c ∈ y_a ∩ y_b} 1/N_ac, w_{a,P_k} = y_ak/N_ak;
    D_a = β Σ_{b ≠ a} e^{s_ab} + β Σ_r e^{s_ar} + Σ_k e^{s_{a,P_k}}, log p = s − log D_a;
    L_a = −(1/n_a) Σ_x w_ax log p_ax; mean over anchors with n_a > 0. An anchor without labels:
    one row whose positives are its other views (weight 1/(V − 1), normaliser 1), none when V = 1."""
    it = _Items(features, labels, prototypes, ref_features, ref_labels, normalize)
    tau = temperature
    losses = []
    for a in range(it.B * it.V):
        ya = it.lab[a]
        cand = [b for b in range(it.total) if b != a]
        s = {b: it.sim(a, b, tau) for b in cand}
        parts = []
        for b in cand:
            scale = 1.0 if it.kind[b] == "proto" else beta
            if scale > 0:
                parts.append(s[b] + torch.log(torch.tensor(scale, dtype=s[b].dtype)))
        log_d = torch.logsumexp(torch.stack(parts), 0)
        if not ya:
            own = [b for b in cand if it.sample[b] == it.sample[a]]
            if own:
                losses.append(-sum((1.0 / len(own)) * (s[b] - log_d) for b in own))
            continue
        n_a = len(ya)
        N = {}
        for c in ya:
            tot = 1.0
            for b in cand:
                if it.kind[b] != "proto" and c in it.lab[b]:
                    tot += alpha / _union(ya, it.lab[b])
            N[c] = tot
        terms = []
        for b in cand:
            yb = it.lab[b]
            if it.kind[b] == "proto":
                (k,) = yb
                w = 1.0 / N[k] if k in ya else 0.0
            else:
                common = ya & yb
                w = (alpha / _union(ya, yb)) * sum(1.0 / N[c] for c in common) if common else 0.0
            if w != 0:
                terms.append(w * (s[b] - log_d))
        losses.append(-torch.stack(terms).sum() / n_a)
    if not losses:
        return _zero(features, prototypes)
    return torch.stack(losses).mean()


def ref_proto_only(features, labels, prototypes, temperature=0.1, **kw):
    """proto_only = msc with α = β = 0."""
    return ref_msc(features, labels, prototypes, temperature, alpha=0.0, beta=0.0, **kw)


# --------------------------------------------------------------------------- mscwrg / mscrg


def ref_mscwrg(features, labels, prototypes, temperature=0.1, alpha=0.0, normalize=True,
               ref_features=None, ref_labels=None, regularise=False):
    """mscwrg (``regularise=False``) and mscrg (``True``).

    Anchors: the embeddings and the prototypes (E); refs are candidates only. For a ∈ E, b ≠ a:
    x_ab = I_ab/n_b, f_ab = x^α (α ≥ 0) or 1[x ≥ 1 − 1e-8] (α < 0), f = 0 if n_b = 0;
    N_ac = Σ_{b ≠ a, c ∈ L_b} f_ab; w_ab = (1/n_a) Σ_{c ∈ L_a ∩ L_b, N_ac > 0} f_ab / N_ac;
    log p_ab = s_ab − log Σ_{c ≠ a} e^{s_ac}; L_a = −Σ_b w_ab log p_ab (mscrg: − Σ_b r_ab s_ab,
    r = max(sg(p) − w, 0)·1[w > 0]); loss = Σ_a L_a / |{a : Σ_b w_ab > 0}|.
    Same-sample views: I = n_a = n_b (so x = 1); an anchor without labels: its other views,
    weight 1/(V − 1)."""
    it = _Items(features, labels, prototypes, ref_features, ref_labels, normalize)
    tau = temperature
    anchors = [i for i in range(it.total) if it.kind[i] != "ref"]

    def f(a, b):
        La, Lb = it.lab[a], it.lab[b]
        if it.sample[a] == it.sample[b]:
            return 1.0  # x = 1 by the same-sample rule
        if not Lb:
            return 0.0
        x = len(La & Lb) / len(Lb)
        if alpha >= 0:
            return x ** alpha
        return 1.0 if x >= 1 - 1e-8 else 0.0

    total, count = [], 0
    for a in anchors:
        La = it.lab[a]
        cand = [b for b in range(it.total) if b != a]
        s = {b: it.sim(a, b, tau) for b in cand}
        lse = torch.logsumexp(torch.stack([s[b] for b in cand]), 0)
        w = {}
        if not La:
            own = [b for b in cand if it.sample[b] == it.sample[a]]
            for b in own:
                w[b] = 1.0 / len(own)
        else:
            N = {c: sum(f(a, b) for b in cand if c in it.lab[b]) for c in La}
            for b in cand:
                common = [c for c in La & it.lab[b] if N[c] > 0]
                if common:
                    val = sum(f(a, b) / N[c] for c in common) / len(La)
                    if val > 0:
                        w[b] = val
        if sum(w.values()) > 0:
            count += 1
        terms = []
        for b, wb in w.items():
            logp = s[b] - lse
            terms.append(wb * logp)
            if regularise:
                r = max(float(torch.exp(logp.detach())) - wb, 0.0)
                terms.append(r * s[b])
        if terms:
            total.append(-torch.stack(terms).sum())
    if count == 0:
        return _zero(features, prototypes)
    return torch.stack(total).sum() / count


def ref_mscrg(features, labels, prototypes, temperature=0.1, alpha=0.0, **kw):
    return ref_mscwrg(features, labels, prototypes, temperature, alpha, regularise=True, **kw)


# --------------------------------------------------------------------------- mulsupcon parity


def ref_mulsupcon_count(features, labels, temperature=0.1, normalize=True, reduction="pair",
                        ref_features=None, ref_labels=None):
    """MulSupCon with ``empty_rows="count"``: rows (a, k ∈ y_a) whose P_k(a) is empty are kept
    with the value 0 (they count in the mean); an anchor without labels keeps its one row of
    other views (none when V = 1), as with ``"drop"``."""
    it = _Items(features, labels, None, ref_features, ref_labels, normalize)
    rows = []
    for a in range(it.B * it.V):
        cand = [b for b in range(it.total) if b != a]
        if not cand:
            continue
        s = {b: it.sim(a, b, temperature) for b in cand}
        lse = torch.logsumexp(torch.stack([s[b] for b in cand]), 0)
        ya = it.lab[a]
        if ya:
            for k in sorted(ya):
                pos = [b for b in cand if k in it.lab[b]]
                if pos:
                    rows.append((a, -sum(s[b] - lse for b in pos) / len(pos)))
                else:
                    rows.append((a, _zero(features)))
        else:
            pos = [b for b in cand if it.sample[b] == it.sample[a]]
            if pos:
                rows.append((a, -sum(s[b] - lse for b in pos) / len(pos)))
    if not rows:
        return _zero(features)
    if reduction == "pair":
        return torch.stack([r for _, r in rows]).mean()
    by_anchor: dict = {}
    for a, r in rows:
        by_anchor.setdefault(a, []).append(r)
    return torch.stack([torch.stack(v).mean() for v in by_anchor.values()]).mean()


# --------------------------------------------------------------------------- zlpr


def ref_zlpr(logits, labels, reduction="mean"):
    """L_i = log(1 + Σ_{j: y_ij = 0} e^{s_ij}) + log(1 + Σ_{j: y_ij = 1} e^{−s_ij})."""
    ys = torch.as_tensor(labels).detach().to(torch.float64).tolist()
    per = []
    for i, row in enumerate(ys):
        neg = [torch.exp(logits[i, j]) for j, v in enumerate(row) if v == 0]
        pos = [torch.exp(-logits[i, j]) for j, v in enumerate(row) if v != 0]
        one = logits[i].sum() * 0.0 + 1.0
        per.append(torch.log(one + sum(neg, one * 0)) + torch.log(one + sum(pos, one * 0)))
    out = torch.stack(per)
    if reduction == "mean":
        return out.mean()
    if reduction == "sum":
        return out.sum()
    return out
