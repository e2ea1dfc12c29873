"""Naive loop reference for the KMCL losses, written from docs/spec/LOSSES.md (test code only).

Explicit Python loops over anchors i, samples j/a and classes k (the per-dimension bracket of the
anisotropic distance is a small vector over m); every quantity is formed as the spec writes it
(s_ijk = exp(exp(-D_ijk)/τ) itself, the ratio inside the log, ...). Slow by design: use small
float64 inputs. Gradients come from autograd through the loops.

Shapes: x [B, M]; pi, labels [B, K]; mu [B, K] (scalar mean per class) or [B, K, M];
sigma2 [B, K] (isotropic) or [B, K, M] (anisotropic).
"""

from __future__ import annotations

import torch


def ref_kernel(x, mu, sigma2, i, k):
    """κ_k(x_i) = exp(-½ Σ_m (x_im - μ_ikm)² / σ²_ikm)."""
    m = x.shape[1]
    total = 0.0
    for d in range(m):
        mu_d = mu[i, k] if mu.ndim == 2 else mu[i, k, d]
        s2_d = sigma2[i, k] if sigma2.ndim == 2 else sigma2[i, k, d]
        total = total + (x[i, d] - mu_d) ** 2 / s2_d
    return torch.exp(-0.5 * total)


def ref_distance(mu, sigma2, i, j, k, m, scale_anisotropic_by_dim=True):
    """D_ijk as in the spec."""
    if sigma2.ndim == 2:
        s_i, s_j = sigma2[i, k], sigma2[j, k]
        log_term = 0.5 * torch.log((s_i + s_j) / (2 * torch.sqrt(s_i) * torch.sqrt(s_j)))
        if mu.ndim == 2:
            # spec, isotropic scalars: M[½ log(...) + ¼ (μ_ik - μ_jk)² / (σ²_ik + σ²_jk)]
            return m * (log_term + 0.25 * (mu[i, k] - mu[j, k]) ** 2 / (s_i + s_j))
        # mean vectors, one variance: the exact distance M·½ log(...) + ¼ ||μ_ik - μ_jk||² / (σ²+σ²)
        sq = ((mu[i, k] - mu[j, k]) ** 2).sum()
        return m * log_term + 0.25 * sq / (s_i + s_j)
    # anisotropic: the bracket (a vector over the M dimensions) summed over dimensions, times M
    # (spec / official code)
    s_i, s_j = sigma2[i, k], sigma2[j, k]
    mu_i, mu_j = mu[i, k], mu[j, k]
    bracket = 0.5 * torch.log((s_i + s_j) / (2 * torch.sqrt(s_i) * torch.sqrt(s_j))) \
        + 0.25 * (mu_i - mu_j) ** 2 / (s_i + s_j)
    total = bracket.sum()
    return m * total if scale_anisotropic_by_dim else total


def ref_reconstruction(x, pi, mu, sigma2, labels):
    """L_rec = -(1/B) Σ_i log(Σ_k y_ik p_ik κ_k(x_i) / Σ_k p_ik κ_k(x_i)); label-less rows add 0."""
    b, k_num = pi.shape
    total = 0.0
    for i in range(b):
        if not any(int(labels[i, k]) for k in range(k_num)):
            continue
        num = 0.0
        den = 0.0
        for k in range(k_num):
            p = torch.sigmoid(pi[i, k])
            kap = ref_kernel(x, mu, sigma2, i, k)
            num = num + int(labels[i, k]) * p * kap
            den = den + p * kap
        total = total - torch.log(num / den)
    return total / b


def ref_contrastive(mu, sigma2, labels, m, temperature=0.17, scale_anisotropic_by_dim=True):
    """L_con from the spec, with explicit loops over i, j, a and k."""
    b, k_num = labels.shape
    lab = [[int(labels[i, k]) for k in range(k_num)] for i in range(b)]
    cache = {}
    den_cache = {}

    def s(i, j, k):
        key = (i, j, k)
        if key not in cache:
            d = ref_distance(mu, sigma2, i, j, k, m, scale_anisotropic_by_dim)
            cache[key] = torch.exp(torch.exp(-d) / temperature)
        return cache[key]

    def denominator(i, k):  # Σ_{a ≠ i} s_iak
        if (i, k) not in den_cache:
            den = 0.0
            for a in range(b):
                if a != i:
                    den = den + s(i, a, k)
            den_cache[(i, k)] = den
        return den_cache[(i, k)]

    total = 0.0
    for i in range(b):
        a_set = [j for j in range(b) if j != i and sum(lab[i][k] * lab[j][k] for k in range(k_num)) > 0]
        if not a_set:
            continue
        acc = 0.0
        for j in a_set:
            inter = sum(lab[i][k] * lab[j][k] for k in range(k_num))
            union = sum(lab[i]) + sum(lab[j]) - inter
            jac = inter / union
            for k in range(k_num):
                if lab[i][k] and lab[j][k]:
                    acc = acc + torch.log(jac * s(i, j, k) / denominator(i, k))
        total = total - acc / len(a_set)
    if isinstance(total, float):
        return torch.zeros((), dtype=mu.dtype)
    return total / b


def ref_asl(logits, labels, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, eps=1e-8):
    """ASL from the spec, reduction "sum", looping over entries."""
    total = 0.0
    b, k_num = logits.shape
    for i in range(b):
        for k in range(k_num):
            p = torch.sigmoid(logits[i, k])
            p_m = torch.clamp(p - clip, min=0)
            if int(labels[i, k]):
                total = total - (1 - p) ** gamma_pos * torch.log(p.clamp(eps, 1 - eps))
            else:
                total = total - p_m ** gamma_neg * torch.log((1 - p_m).clamp(eps, 1 - eps))
    return total


def ref_total(x, pi, mu, sigma2, labels, temperature=0.17, weights=(1.0, 1.0, 1.0)):
    m = x.shape[1]
    return (
        weights[0] * ref_asl(pi, labels)
        + weights[1] * ref_reconstruction(x, pi, mu, sigma2, labels)
        + weights[2] * ref_contrastive(mu, sigma2, labels, m, temperature)
    )


__all__ = [
    "ref_kernel", "ref_distance", "ref_reconstruction", "ref_contrastive", "ref_asl", "ref_total",
]
