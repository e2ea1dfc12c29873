"""Naive reference implementations of the losses in ``docs/spec/LOSSES.md``.

Written straight from the spec text, independently of ``mlsupcon.losses``, with explicit
Python loops over anchors, candidate pairs and (for ``mulsupcon``) labels. They are slow on
purpose: every weight and every normaliser is a plain Python number computed from Python
label *sets*, so a reader can check each line against the spec sentence it implements.

Only the similarity row of one anchor (``z @ z_a``) and the log-sum-exp over it use a
vector op; everything else is per pair. All arithmetic on features stays in torch so that
autograd gives reference gradients. Use float64 inputs for comparisons.

Conventions (spec, "Inputs and common conventions"):

* ``features`` is ``[B, D]`` (V = 1) or ``[B, V, D]``; the N = B*V embeddings are the
  anchors and the contrast set. Embedding ``n`` of the flattened ``[B*V, D]`` tensor belongs
  to sample ``n // V``.
* ``ref_features`` ``[M, D]`` with ``ref_labels`` are extra contrast candidates: never anchors,
  never a view of an anchor's sample; they enter every denominator and can be positives.
* Same-sample rule: two views of one sample are in the identical relation whatever their
  labels (even none), i.e. I = n_a = n_b, J = 1, K^s = K^d = 1.
* Generic loss: L_a = -(1/Z_a) sum_b w_ab log p_ab; anchors with Z_a = 0 are left out; the
  loss is the mean over the rest, or an exact 0 connected to ``features`` if none remain.
"""

from __future__ import annotations

import torch

DEFAULT_THRESHOLD = {"jaccard": 0.3, "mlcl": 0.0}
FLAT = ("all", "any", "simdis", "jaccard", "mulsupcon", "mlcl", "supcon", "simclr")


# --------------------------------------------------------------------------- helpers


def _label_sets(labels) -> list[frozenset]:
    """Multi-hot [B, C] (bool/int/float 0/1) -> list of frozensets of label indices."""
    rows = torch.as_tensor(labels).detach().to(torch.float64).tolist()
    return [frozenset(k for k, v in enumerate(row) if v != 0.0) for row in rows]


def _class_ids(labels) -> list:
    return [int(x) for x in torch.as_tensor(labels).detach().reshape(-1).tolist()]


def _flatten(features: torch.Tensor):
    """Return (flat [B*V, D], B, V)."""
    if features.dim() == 2:
        return features, features.shape[0], 1
    if features.dim() == 3:
        b, v, d = features.shape
        return features.reshape(b * v, d), b, v
    raise ValueError("features must be [B, D] or [B, V, D]")


def _zero(features: torch.Tensor) -> torch.Tensor:
    """Exact 0 still connected to ``features`` (backward gives zero gradients)."""
    return features.sum() * 0.0


class _Batch:
    """Embeddings, sample ids and label sets of anchors (first N) and candidates (N + M)."""

    def __init__(self, features, labels, ref_features, ref_labels, temperature, normalize,
                 class_labels: bool, need_labels: bool = True):
        flat, self.B, self.V = _flatten(features)
        self.N = flat.shape[0]
        self.raw_anchor = flat
        cand = flat
        if ref_features is not None:
            cand = torch.cat([flat, ref_features.to(flat.dtype)], 0)
        self.M = cand.shape[0] - self.N
        self.total = cand.shape[0]
        if normalize:
            rows = [cand[i] / cand[i].norm() for i in range(self.total)]
            cand = torch.stack(rows) if rows else cand
        self.z = cand
        self.tau = float(temperature)
        # sample id of every candidate; references get unique negative ids
        self.sample = [n // self.V for n in range(self.N)] + [-(m + 1) for m in range(self.M)]
        # labels per candidate
        if not need_labels:
            self.lab = [None] * self.total
        else:
            conv = _class_ids if class_labels else _label_sets
            per_sample = conv(labels) if labels is not None else [frozenset()] * self.B
            lab = [per_sample[n // self.V] for n in range(self.N)]
            if self.M:
                if ref_labels is None:
                    raise ValueError("ref_labels needed with ref_features")
                lab += conv(ref_labels)
            self.lab = lab

    def log_p(self, a: int) -> dict:
        """{b: log p_ab} for every candidate b != a; log p_ab = s_ab - log sum_{c!=a} exp s_ac."""
        others = [c for c in range(self.total) if c != a]
        if not others:
            return {}
        row = (self.z @ self.z[a]) / self.tau
        s = row[torch.tensor(others)]
        lse = torch.logsumexp(s, 0)
        return {c: s[j] - lse for j, c in enumerate(others)}

    def same(self, a: int, b: int) -> bool:
        return self.sample[a] == self.sample[b]


def _jacc(S: frozenset, T: frozenset) -> float:
    inter = len(S & T)
    union = len(S) + len(T) - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------- weights


def pair_weight(strategy, S, T, same, *, threshold=None, eps=1e-8,
                dissimilarity="reciprocal"):
    """w_ab of the generic strategies (spec table) for anchor labels S, sample labels T.

    ``same`` is True when b is another view of a's sample (same-sample rule). For
    ``supcon`` S and T are class ids. Returned as a Python float.
    """
    if strategy == "simclr":
        return 1.0 if same else 0.0
    if strategy == "supcon":
        return 1.0 if (same or S == T) else 0.0
    if strategy == "all":
        if same:
            return 1.0
        return 1.0 if (S == T and len(S) > 0) else 0.0
    if strategy == "any":
        if same:
            return 1.0
        return 1.0 if len(S & T) > 0 else 0.0
    if strategy == "simdis":
        if same:
            return 1.0  # K^s = K^d = 1
        inter = len(S & T)
        if inter == 0:
            return 0.0
        ks = inter / len(S)
        if dissimilarity == "reciprocal":
            kd = 1.0 / (1.0 + len(T) - inter)
        elif dissimilarity == "ratio":
            kd = inter / len(T)
        else:
            raise ValueError(dissimilarity)
        return ks * kd
    if strategy == "jaccard":
        c = DEFAULT_THRESHOLD["jaccard"] if threshold is None else threshold
        j = 1.0 if same else _jacc(S, T)
        return j / (c + eps) if j > c else 0.0
    raise ValueError(strategy)


# --------------------------------------------------------------------------- flat losses


def ref_flat(strategy, features, labels, *, temperature=0.1, normalize=True, threshold=None,
             eps=1e-8, beta=1.0, alpha=1.0, reg_weight=0.0, dissimilarity="reciprocal",
             normalization="count", reduction="pair", ref_features=None, ref_labels=None):
    """Naive loss of one flat strategy (all, any, simdis, jaccard, mulsupcon, mlcl, supcon,
    simclr). ``labels`` is multi-hot [B, C], or class ids [B] for supcon, or None for simclr.
    ``threshold=None`` means the strategy's default c (0.3 jaccard, 0 mlcl)."""
    if strategy not in FLAT:
        raise ValueError(strategy)
    bt = _Batch(features, labels, ref_features, ref_labels, temperature, normalize,
                class_labels=(strategy == "supcon"), need_labels=(strategy != "simclr"))
    if strategy == "mulsupcon":
        return _ref_mulsupcon(bt, features, reduction)
    if strategy == "mlcl":
        c = DEFAULT_THRESHOLD["mlcl"] if threshold is None else threshold
        return _ref_mlcl(bt, c, eps, beta, alpha, reg_weight)

    per_anchor = []
    for a in range(bt.N):
        logp = bt.log_p(a)
        contrib, count, wsum = [], 0, 0.0
        for b in range(bt.total):
            if b == a:
                continue
            w = pair_weight(strategy, bt.lab[a], bt.lab[b], bt.same(a, b),
                            threshold=threshold, eps=eps, dissimilarity=dissimilarity)
            if w > 0:
                contrib.append(w * logp[b])
                count += 1
                wsum += w
        if strategy == "simdis" and normalization == "weight":
            z_a = wsum
        elif strategy in ("simdis", "jaccard"):
            if strategy == "simdis" and normalization != "count":
                raise ValueError(normalization)
            z_a = count  # number of b with w_ab > 0
        else:
            z_a = wsum  # all, any, supcon, simclr: sum of 0/1 weights
        if z_a > 0:
            per_anchor.append(-torch.stack(contrib).sum() / z_a)
    if not per_anchor:
        return _zero(features)
    return torch.stack(per_anchor).mean()


def _ref_mulsupcon(bt: _Batch, features, reduction):
    rows = []  # (anchor, row loss)
    for a in range(bt.N):
        logp = bt.log_p(a)
        ya = bt.lab[a]
        if ya:
            for k in sorted(ya):  # one row per label k in y_a
                pos = [b for b in range(bt.total) if b != a and k in bt.lab[b]]
                if pos:  # rows with empty P_k(a) are dropped
                    rows.append((a, -torch.stack([logp[b] for b in pos]).sum() / len(pos)))
        else:  # no labels: one row whose positives are the anchor's own other views
            pos = [b for b in range(bt.N) if b != a and bt.same(a, b)]
            if pos:  # dropped when V = 1
                rows.append((a, -torch.stack([logp[b] for b in pos]).sum() / len(pos)))
    if not rows:
        return _zero(features)
    if reduction == "pair":
        return torch.stack([r for _, r in rows]).mean()
    if reduction == "anchor":
        by_anchor: dict = {}
        for a, r in rows:
            by_anchor.setdefault(a, []).append(r)
        return torch.stack([torch.stack(rs).mean() for rs in by_anchor.values()]).mean()
    raise ValueError(reduction)


def _ref_mlcl(bt: _Batch, c, eps, beta, alpha, reg_weight):
    total = []
    for a in range(bt.N):  # all N anchors count
        logp = bt.log_p(a)
        pos_terms, neg_terms, npos, nneg = [], [], 0, 0
        for b in range(bt.total):
            if b == a:
                continue
            j = 1.0 if bt.same(a, b) else _jacc(bt.lab[a], bt.lab[b])
            if j > c:  # m+ = 1
                pos_terms.append((j ** beta) * logp[b])
                npos += 1
            else:  # m- = 1
                neg_terms.append(logp[b])
                nneg += 1
        zero = bt.z.sum() * 0.0
        pos_a = (torch.stack(pos_terms).sum() if pos_terms else zero) / (npos + eps)
        neg_a = (torch.stack(neg_terms).sum() if neg_terms else zero) / (nneg + eps)
        total.append(alpha * pos_a + (1.0 - alpha) * neg_a)
    loss = -torch.stack(total).sum() / bt.N
    # R on the features as given (before normalisation), over the N anchors
    norms = [bt.raw_anchor[n].norm() for n in range(bt.N)]
    reg = torch.stack(norms).sum() / bt.N
    return loss + reg_weight * reg


# --------------------------------------------------------------------------- hierarchical


def level_labels(levels) -> list:
    """Per-level multi-hot labels, coarsest first.

    A list of L multi-hot tensors is used as given. A ``[B, L]`` path tensor of class ids is
    turned, for each level l, into one-hot labels of the *label prefix* path[:, :l+1] (one
    class per distinct prefix), so that ``all`` means "same label prefix up to level l".
    """
    if torch.is_tensor(levels):
        path = levels.detach().tolist()
        B = len(path)
        L = len(path[0]) if B else 0
        out = []
        for l in range(L):
            prefixes = [tuple(p[: l + 1]) for p in path]
            uniq = sorted(set(prefixes))
            lab = torch.zeros(B, len(uniq), dtype=torch.float64)
            for i, pre in enumerate(prefixes):
                lab[i, uniq.index(pre)] = 1.0
            out.append(lab)
        return out
    return list(levels)


def default_level_weights(L: int) -> list:
    """lambda_l = 2^(1/(L - l + 1)), l = 1..L (coarsest 2^(1/L), finest 2)."""
    return [2.0 ** (1.0 / (L - l + 1)) for l in range(1, L + 1)]


def ref_hierarchical(kind, features, levels, base="all", level_weights=None, **flat_opts):
    """himulcon / hicone / himulcone over per-level flat losses of strategy ``base``."""
    labs = level_labels(levels)
    L = len(labs)
    losses = [ref_flat(base, features, lab, **flat_opts) for lab in labs]
    lam = default_level_weights(L) if level_weights is None else [float(x) for x in level_weights]
    if kind == "himulcon":
        return sum(lam[l] * losses[l] for l in range(L)) / L
    if kind in ("hicone", "himulcone"):
        vals = losses if kind == "hicone" else [lam[l] * losses[l] for l in range(L)]
        upd = [None] * L
        running = None
        for l in reversed(range(L)):  # finest -> coarsest
            running = vals[l] if running is None else torch.maximum(vals[l], running)
            upd[l] = running
        return sum(upd) / L
    raise ValueError(kind)


# --------------------------------------------------------------------------- ASL


def ref_asl(logits, targets, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=1e-8,
            reduction="sum", detach_focal=False):
    """L = -sum_{i,k} [y (1-p)^g+ log p + (1-y) p_m^g- log(1-p_m)], p_m = max(p - m, 0),
    probabilities clamped to [eps, 1-eps] inside the logs; ``mean`` divides by B*C."""
    B, C = logits.shape
    y = torch.as_tensor(targets).detach().to(torch.float64).tolist()
    terms = []
    for i in range(B):
        for k in range(C):
            p = torch.sigmoid(logits[i, k])
            if y[i][k] != 0.0:
                focal = (1.0 - p) ** gamma_pos
                if detach_focal:
                    focal = focal.detach()
                terms.append(focal * torch.log(p.clamp(eps, 1.0 - eps)))
            else:
                pm = (p - clip).clamp(min=0.0) if clip and clip > 0 else p
                focal = pm ** gamma_neg
                if detach_focal:
                    focal = focal.detach()
                terms.append(focal * torch.log((1.0 - pm).clamp(eps, 1.0 - eps)))
    loss = -torch.stack(terms).sum()
    if reduction == "mean":
        return loss / (B * C)
    if reduction == "sum":
        return loss
    raise ValueError(reduction)


# --------------------------------------------------------------------------- relations


def relation_of(S: frozenset, T: frozenset) -> str:
    """Relation of a sample with labels T to an anchor with labels S.

    A pair with S ∩ T = ∅ is R1 (disjoint) -- also when one or both sets are empty, so two
    unlabelled samples count as R1, not R2. Otherwise R2 identical, R4 T ⊂ S strictly,
    R5 S ⊂ T strictly, R3 partial overlap."""
    if not (S & T):
        return "R1"
    if S == T:
        return "R2"
    if T < S:
        return "R4"
    if S < T:
        return "R5"
    return "R3"


def ref_relation_counts(labels) -> dict:
    """Counts of R1..R5 over ordered pairs (a, b), a != b, of samples, plus "pairs".

    A pair with I = 0 counts as R1 (disjoint) even when both label sets are empty."""
    sets = _label_sets(labels)
    counts = {"R1": 0, "R2": 0, "R3": 0, "R4": 0, "R5": 0}
    for a in range(len(sets)):
        for b in range(len(sets)):
            if a != b:
                counts[relation_of(sets[a], sets[b])] += 1
    counts["pairs"] = sum(counts[k] for k in ("R1", "R2", "R3", "R4", "R5"))
    return counts
