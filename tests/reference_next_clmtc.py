"""Naive references for CL-MTC (cl_scl, cl_jscl, cl_jspcl, cl_slcl, cl_icl) and multisupcon_wz.

Written from the text of ``docs/spec/LOSSES.md`` (sections "CL-MTC" and "Multi-SupCon
(WolodjaZ)"), independently of ``mlsupcon.losses``: explicit Python loops over anchors,
candidates and labels, weights and masks computed from Python label *sets*. Only a similarity
row (``z @ z_a``) uses a vector op; everything on features stays in torch so that autograd gives
reference gradients. Use float64 inputs.

Conventions: features ``[B, D]`` or ``[B, V, D]`` flattened view-major (row v·B + i = view v of
sample i); ``ref_features`` ``[M, D]`` with ``ref_labels`` are extra candidates, never anchors.
Same-sample rule: two views of one sample have J = 1 and equal label sets.
"""

from __future__ import annotations

import math

import torch

LEGACY_EPS = 1e-20


def _sets(labels) -> list[frozenset]:
    rows = torch.as_tensor(labels).detach().to(torch.float64).tolist()
    return [frozenset(k for k, v in enumerate(row) if v != 0.0) for row in rows]


def _jacc(S: frozenset, T: frozenset) -> float:
    union = len(S | T)
    return len(S & T) / union if union else 0.0


def _zero(features):
    return features.sum() * 0.0


class _Batch:
    """Flattened anchors (view-major) + refs, their samples and label sets."""

    def __init__(self, features, labels, ref_features, ref_labels, temperature, normalize):
        f = features if features.dim() == 3 else features.unsqueeze(1)
        B, V, _ = f.shape
        self.B, self.V, self.N = B, V, B * V
        z = f.transpose(0, 1).reshape(B * V, -1)
        sets = _sets(labels)
        self.lab = [sets[n % B] for n in range(self.N)]
        self.sample = [n % B for n in range(self.N)]
        if ref_features is not None:
            z = torch.cat([z, ref_features.to(z.dtype)])
            rs = _sets(ref_labels)
            self.lab += rs
            self.sample += [None] * len(rs)
        if normalize:
            z = z / z.norm(dim=1, keepdim=True)
        self.z = z
        self.total = z.shape[0]
        self.t = temperature

    def same(self, a, b) -> bool:
        return self.sample[b] is not None and self.sample[a] == self.sample[b]

    def sims(self, a):
        return self.z @ self.z[a] / self.t


def _log_p(s, a, weights=None):
    """s_ab − log Σ_{c≠a} w_ac e^{s_ac} (w = 1 without weights); None if that sum is 0."""
    if weights is None:
        weights = [1.0] * len(s)
    terms = [s[c] + math.log(weights[c]) for c in range(len(s)) if c != a and weights[c] > 0]
    if not terms:
        return None
    return s - torch.logsumexp(torch.stack(terms), 0)


# --------------------------------------------------------------------------- CL-MTC, clean


def ref_cl(kind, features, labels, *, temperature=0.1, base_temperature=0.07, normalize=False,
           legacy=False, ref_features=None, ref_labels=None):
    """cl_scl / cl_jscl / cl_jspcl / cl_slcl (cl_jspcl = cl_jscl on logits)."""
    if legacy:
        return _ref_cl_legacy(kind, features, labels, temperature, base_temperature, normalize)
    bt = _Batch(features, labels, ref_features, ref_labels, temperature, normalize)
    scale = temperature / base_temperature
    if kind in ("scl", "jscl", "jspcl"):
        per_anchor = []
        for a in range(bt.N):
            s = bt.sims(a)
            if kind == "scl":
                lp = _log_p(s, a)
                pos = [b for b in range(bt.total) if b != a and bt.lab[b] == bt.lab[a]]
            else:
                w = [1.0 if bt.same(a, c) else _jacc(bt.lab[a], bt.lab[c]) for c in range(bt.total)]
                lp = _log_p(s, a, w)  # None: Σ_{c≠a} J_ac = 0, the anchor is left out
                pos = [b for b in range(bt.total) if b != a]  # every b
            if pos and lp is not None:
                per_anchor.append(-scale * torch.stack([lp[b] for b in pos]).sum() / len(pos))
        return torch.stack(per_anchor).mean() if per_anchor else _zero(features)
    if kind == "slcl":
        C = torch.as_tensor(labels).shape[1]
        total = _zero(features)
        for k in range(C):
            per_anchor = []
            for a in range(bt.N):
                lp = _log_p(bt.sims(a), a)
                pos = [b for b in range(bt.total) if b != a and ((k in bt.lab[b]) == (k in bt.lab[a]))]
                if pos and lp is not None:
                    per_anchor.append(-torch.stack([lp[b] for b in pos]).sum() / len(pos))
            if per_anchor:  # a label where no anchor has a positive adds 0
                total = total + scale * torch.stack(per_anchor).mean() / bt.B
        return total / C
    raise ValueError(kind)


def ref_icl(E, labels, *, temperature=0.1, base_temperature=0.07, normalize=False, legacy=False):
    """cl_icl: per sample i, SupCon over its C label embeddings with the binary labels y_ij."""
    B, C, _ = E.shape
    y = torch.as_tensor(labels).detach().to(torch.float64).tolist()
    scale = temperature / base_temperature
    total = _zero(E)
    for i in range(B):
        e = E[i]
        if normalize:
            e = e / e.norm(dim=1, keepdim=True)
        if legacy:
            mask = [[1.0 if (j != jj and y[i][j] == y[i][jj]) else 0.0 for jj in range(C)] for j in range(C)]
            rows = [_legacy_anchor(e @ e[j] / temperature, j, mask[j], [1.0] * C, scale) for j in range(C)]
            total = total + torch.stack(rows).mean() / C
            continue
        per_anchor = []
        for j in range(C):
            lp = _log_p(e @ e[j] / temperature, j)
            pos = [jj for jj in range(C) if jj != j and y[i][jj] == y[i][j]]
            if pos and lp is not None:
                per_anchor.append(-scale * torch.stack([lp[jj] for jj in pos]).sum() / len(pos))
        if per_anchor:
            total = total + torch.stack(per_anchor).mean() / C
    return total / B


# --------------------------------------------------------------------------- CL-MTC, legacy


def _legacy_anchor(s, a, mask_row, den_w, scale):
    """The code's SupCon row: max with self, +1e-20·w_ac for every c (a included),
    numerator +1e-20, (Σ + 1e-20)/(|P| + 1e-20), times −τ/τ_b."""
    m = s.detach().max()
    den = sum((torch.exp(s[c] - m) * (0.0 if c == a else 1.0) + LEGACY_EPS) * den_w[c] for c in range(len(s)))
    lp = s - m - torch.log(den)
    num = sum(mask_row[b] * lp[b] for b in range(len(s))) + LEGACY_EPS  # the mask's own entry is 0
    return -scale * num / (sum(mask_row) + LEGACY_EPS)


def _ref_cl_legacy(kind, features, labels, temperature, base_temperature, normalize):
    bt = _Batch(features, labels, None, None, temperature, normalize)
    assert bt.V == 1
    scale = temperature / base_temperature
    B = bt.B
    if kind == "slcl":
        C = torch.as_tensor(labels).shape[1]
        total = _zero(features)
        for k in range(C):
            rows = []
            for a in range(B):
                mask = [1.0 if (b != a and (k in bt.lab[b]) == (k in bt.lab[a])) else 0.0 for b in range(B)]
                rows.append(_legacy_anchor(bt.sims(a), a, mask, [1.0] * B, scale))
            total = total + torch.stack(rows).mean() / B
        return total / C
    rows = []
    for a in range(B):
        if kind == "scl":  # y_b = y_a exactly, two empty rows included
            mask = [1.0 if (b != a and bt.lab[b] == bt.lab[a]) else 0.0 for b in range(B)]
            den_w = [1.0] * B
        else:  # jscl / jspcl: every b, denominator weighted by the code's J (J_aa = 0 for an empty row)
            mask = [0.0 if b == a else 1.0 for b in range(B)]
            den_w = [_jacc(bt.lab[a], bt.lab[c]) for c in range(B)]
        rows.append(_legacy_anchor(bt.sims(a), a, mask, den_w, scale))
    return torch.stack(rows).mean()


# --------------------------------------------------------------------------- multisupcon_wz


def ref_wz(features, labels, *, temperature=0.07, base_temperature=0.07, c_threshold=0.3, multi=True,
           contrast_mode="all", normalize=False, ref_features=None, ref_labels=None):
    """N(a) = {b ≠ a : J_ab ≥ c} (same-sample views J = 1), weight J (multi) or 1,
    L_a = −(τ/τ_b)(1/|N(a)|) Σ_{b∈N(a)} w_ab log p_ab; anchors without N(a) left out."""
    bt = _Batch(features, labels, ref_features, ref_labels, temperature, normalize)
    scale = temperature / base_temperature
    anchors = range(bt.B) if contrast_mode == "one" else range(bt.N)
    per_anchor = []
    for a in anchors:
        lp = _log_p(bt.sims(a), a)
        terms = []
        for b in range(bt.total):
            if b == a:
                continue
            j = 1.0 if bt.same(a, b) else _jacc(bt.lab[a], bt.lab[b])
            if j >= c_threshold:
                terms.append((j if multi else 1.0) * lp[b])
        if terms and lp is not None:
            per_anchor.append(-scale * torch.stack(terms).sum() / len(terms))
    return torch.stack(per_anchor).mean() if per_anchor else _zero(features)
