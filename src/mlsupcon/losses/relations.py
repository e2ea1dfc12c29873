"""Label statistics between samples: intersections I, label counts n, and the five relations.

Everything here works on *samples* (rows of the label matrix), not on views: the views of one
sample share its labels, so the engine computes label statistics once per sample pair and
expands them to view pairs, which saves a factor V² of label work.
"""

from __future__ import annotations

import torch

from mlsupcon.losses._validation import check_labels

__all__ = ["LabelStatistics", "relation_counts", "to_dense_multi_hot"]

# A label held by more than this share of the rows goes through a dense matmul; the others add
# their pairs by scatter. A dense label column costs every (anchor, candidate) entry once; a
# scattered one costs its own pairs n_k², each many times a multiply-add of the matmul, so only the
# most frequent labels are worth a column: a few dense columns and a small share of scattered
# pairs instead of a matmul as deep as the number of labels.
DENSE_LABEL_SHARE = 1 / 16
# Pairs scattered at once (bounds the index buffers: 4 int64 arrays of this length).
SCATTER_PAIRS_MAX = 2**22
# Dense label matrices up to this many entries skip the compaction and the dense/scatter split:
# at batch sizes of a training step (B = 64 × 14 labels) the set-up would cost more than the
# product it saves.
SMALL_DENSE_ENTRIES = 2**16


def to_dense_multi_hot(labels: torch.Tensor) -> torch.Tensor:
    """Returns a strided tensor (sparse COO/CSR label matrices are densified)."""
    if labels.layout != torch.strided:
        return labels.to_dense()
    return labels


class LabelStatistics:
    """Intersections between blocks of anchor samples and every candidate sample.

    Candidates are the B anchor samples followed by the M reference rows. Label columns that no
    row uses are dropped first, so a 25,000-code vocabulary costs what its present codes cost.
    Intersections are exact: frequent labels through one dense matmul over their columns, the
    other labels by adding 1 for each pair of rows that share them (cost ∝ those pairs).

    Args:
        labels: ``[B + M, C]`` multi-hot rows (anchor samples first), any dtype, dense or sparse.
        dtype: floating dtype of the returned statistics.
    """

    def __init__(self, labels: torch.Tensor, dtype: torch.dtype) -> None:
        self.dtype = dtype
        device = labels.device
        self._set_ids = None
        # float32 is exact for counts below 2**24; float64 inputs keep float64.
        self._mm_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        self.num_rows = labels.shape[0]
        if labels.layout == torch.strided and labels.numel() <= SMALL_DENSE_ENTRIES:
            # Every column dense, absent ones included (their counts are 0, so nothing changes).
            self._small = labels.to(self._mm_dtype)
            self.counts = self._small.sum(1).to(dtype)
            self.num_present = labels.shape[1]
            self._rows = None
            return
        self._small = None
        if labels.layout != torch.strided:
            coo = labels.to_sparse_coo().coalesce()
            rows, cols = coo.indices()
            keep = coo.values() != 0
            rows, cols = rows[keep], cols[keep]
        else:
            rows, cols = labels.nonzero(as_tuple=True)
        n_rows = labels.shape[0]
        present, cols = torch.unique(cols, return_inverse=True)
        k = int(present.numel())
        self.num_present = k
        self.num_rows = n_rows
        self.counts = torch.zeros(n_rows, dtype=dtype, device=device).index_add_(
            0, rows, torch.ones_like(rows, dtype=dtype)
        )
        # Row-major order of the non-zeros (set ids need each row's labels sorted).
        order = torch.argsort(rows * max(k, 1) + cols)
        self._rows, self._cols = rows[order], cols[order]
        self._crow = torch.zeros(n_rows + 1, dtype=torch.long, device=device)
        self._crow[1:] = torch.cumsum(torch.bincount(self._rows, minlength=n_rows), 0)
        label_n = torch.bincount(self._cols, minlength=k)
        dense = label_n > n_rows * DENSE_LABEL_SHARE
        self._dense_labels = dense.nonzero().flatten()
        col_of = torch.full((k,), -1, dtype=torch.long, device=device)
        col_of[self._dense_labels] = torch.arange(self._dense_labels.numel(), device=device)
        in_dense = dense[self._cols] if k else torch.zeros(0, dtype=torch.bool, device=device)
        self._dense = None
        if self._dense_labels.numel():
            self._dense = torch.zeros(n_rows, self._dense_labels.numel(), dtype=self._mm_dtype, device=device)
            self._dense[self._rows[in_dense], col_of[self._cols[in_dense]]] = 1
        # The other labels: by row (which labels an anchor holds) and by label (which rows hold it).
        rare = ~in_dense
        self._r_rows, self._r_cols = self._rows[rare], self._cols[rare]
        self._r_crow = torch.zeros(n_rows + 1, dtype=torch.long, device=device)
        self._r_crow[1:] = torch.cumsum(torch.bincount(self._r_rows, minlength=n_rows), 0)
        by_label = torch.argsort(self._r_cols * n_rows + self._r_rows)
        self._l_rows = self._r_rows[by_label]
        self._l_n = torch.bincount(self._r_cols, minlength=k)
        self._l_ptr = torch.zeros(k + 1, dtype=torch.long, device=device)
        self._l_ptr[1:] = torch.cumsum(self._l_n, 0)

    def column_counts(self, multiplicity: torch.Tensor) -> torch.Tensor:
        """Σ_rows multiplicity[row] · Y[row, k] for each present label k."""
        if self._small is not None:
            return (multiplicity.to(self._small.dtype) @ self._small).to(self.dtype)
        out = torch.zeros(max(self.num_present, 1), dtype=self.dtype, device=self.counts.device)
        return out.index_add_(0, self._cols, multiplicity[self._rows].to(self.dtype))

    def row_sums(self, col_weight: torch.Tensor) -> torch.Tensor:
        """Σ_k Y[row, k] · col_weight[k] for every row."""
        if self._small is not None:
            return (self._small @ col_weight.to(self._small.dtype)).to(self.dtype)
        out = torch.zeros(self.num_rows, dtype=self.dtype, device=self.counts.device)
        return out.index_add_(0, self._rows, col_weight[self._cols].to(self.dtype))

    def set_ids(self) -> torch.Tensor:
        """``[B + M]`` integer ids, equal exactly when two rows hold the same label set."""
        if self._set_ids is None:
            device = self.counts.device
            if self._rows is None:  # the small dense form: its non-zeros, row-major
                self._rows, self._cols = self._small.nonzero(as_tuple=True)
                self._crow = torch.zeros(self.num_rows + 1, dtype=torch.long, device=device)
                self._crow[1:] = torch.cumsum(torch.bincount(self._rows, minlength=self.num_rows), 0)
            per_row = self._crow.diff()
            width = max(1, int(per_row.max())) if self.num_rows else 1
            padded = torch.full((self.num_rows, width), -1, dtype=torch.long, device=device)
            pos = torch.arange(self._rows.numel(), device=device) - self._crow[self._rows]
            padded[self._rows, pos] = self._cols  # each row's labels, sorted, then -1
            # Rows in lexicographic order by stable sorts from the last column to the first
            # (torch.unique(dim=0) compares row by row and is much slower), then an id per run.
            order = torch.arange(self.num_rows, device=device)
            for j in range(width - 1, -1, -1):
                order = order[torch.sort(padded[order, j], stable=True)[1]]
            ranked = padded[order]
            new = torch.ones(self.num_rows, dtype=torch.long, device=device)
            if self.num_rows > 1:
                new[1:] = (ranked[1:] != ranked[:-1]).any(1)
            self._set_ids = torch.empty_like(order)
            self._set_ids[order] = torch.cumsum(new, 0) - 1
        return self._set_ids

    def row_dot(self, s0: int, s1: int, col_weight: torch.Tensor | None = None) -> torch.Tensor:
        """``[s1 - s0, B + M]`` matrix Σ_k Y[a, k] · col_weight[k] · Y[b, k] for anchors a in s0:s1.

        Without ``col_weight`` this is the intersection size I_ab (exact integers).
        """
        device, n = self.counts.device, self.num_rows
        if self._small is not None:
            left = self._small[s0:s1] if col_weight is None else self._small[s0:s1] * col_weight.to(self._mm_dtype)
            out = left @ self._small.T
            return out if out.dtype == self.dtype else out.to(self.dtype)
        if self._dense is not None:
            left = self._dense[s0:s1]
            if col_weight is not None:
                left = left * col_weight[self._dense_labels].to(left.dtype)
            out = left @ self._dense.T
        else:
            out = torch.zeros(s1 - s0, n, dtype=self._mm_dtype, device=device)
        lo, hi = int(self._r_crow[s0]), int(self._r_crow[s1])
        if hi > lo:
            self._scatter_pairs(out.view(-1), self._r_rows[lo:hi] - s0, self._r_cols[lo:hi], col_weight)
        return out if out.dtype == self.dtype else out.to(self.dtype)

    def _scatter_pairs(self, flat: torch.Tensor, ent_rows: torch.Tensor, ent_labels: torch.Tensor,
                       col_weight: torch.Tensor | None) -> None:
        """Adds, for each entry (anchor row, label k), col_weight[k] to the anchor's column of
        every row holding k. Entries go in pieces of at most SCATTER_PAIRS_MAX pairs."""
        device, n = flat.device, self.num_rows
        per_entry = self._l_n[ent_labels]  # rows holding each entry's label
        ends = torch.cumsum(per_entry, 0)
        start, m = 0, ent_rows.numel()
        while start < m:
            done = int(ends[start - 1]) if start else 0
            stop = max(start + 1, int(torch.searchsorted(ends, done + SCATTER_PAIRS_MAX, right=True)))
            cnt = per_entry[start:stop]
            pairs = int(ends[stop - 1]) - done
            if pairs:
                owner = torch.repeat_interleave(torch.arange(stop - start, device=device), cnt, output_size=pairs)
                first = ends[start:stop] - cnt - done  # each entry's first pair in this piece
                labels = ent_labels[start:stop][owner]
                within = torch.arange(pairs, device=device) - first[owner]
                cand = self._l_rows[self._l_ptr[labels] + within]
                index = ent_rows[start:stop][owner] * n + cand
                vals = (torch.ones(pairs, dtype=flat.dtype, device=device) if col_weight is None
                        else col_weight[labels].to(flat.dtype))
                flat.index_add_(0, index, vals)
            start = stop


def relation_counts(labels: torch.Tensor) -> dict[str, int]:
    """Counts the five relations R1..R5 over ordered pairs (a, b), a ≠ b, of samples.

    With S = y_a (the anchor's labels) and T = y_b: R1 disjoint (S ∩ T = ∅), R2 identical
    (T = S ≠ ∅), R3 partial overlap, R4 T ⊂ S strictly, R5 S ⊂ T strictly. A pair with no
    shared label is R1 even when both sets are empty, because no loss treats it as positive.
    This shows why each strategy finds the positives it does: ``all`` keeps only R2, ``any``
    keeps R2–R5, ``simdis`` weighs them R2 > R4, R5 > R3.

    Args:
        labels: ``[B, C]`` multi-hot tensor (dense or sparse).

    Returns:
        ``{"R1": …, "R2": …, "R3": …, "R4": …, "R5": …, "pairs": B·(B − 1)}`` as Python ints.

    Example:
        >>> import torch
        >>> y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 1]])
        >>> relation_counts(y)["R4"]  # {0} ⊂ {0, 1}, seen from the first sample
        1
    """
    if isinstance(labels, torch.Tensor) and labels.ndim == 2:
        check_labels(labels, labels.shape[0])
    else:
        raise ValueError(f"labels: expected a multi-hot [B, C] tensor, got {labels!r:.80}")
    b = labels.shape[0]
    counts = dict.fromkeys(("R1", "R2", "R3", "R4", "R5"), 0)
    stats = LabelStatistics(labels, torch.float64)
    n = stats.counts
    # Blocks of rows keep memory O(block · B) for large label sets.
    block = max(1, 2**22 // max(b, 1))
    for s0 in range(0, b, block):
        s1 = min(b, s0 + block)
        inter = stats.row_dot(s0, s1)
        na, nb = n[s0:s1, None], n[None, :]
        not_self = torch.ones_like(inter, dtype=torch.bool)
        not_self[torch.arange(s1 - s0), torch.arange(s0, s1)] = False
        shared = (inter > 0) & not_self
        counts["R1"] += int(((inter == 0) & not_self).sum())
        counts["R2"] += int((shared & (inter == na) & (inter == nb)).sum())
        counts["R4"] += int((shared & (inter == nb) & (nb < na)).sum())
        counts["R5"] += int((shared & (inter == na) & (na < nb)).sum())
        counts["R3"] += int((shared & (inter < na) & (inter < nb)).sum())
    counts["pairs"] = b * (b - 1)
    return counts
