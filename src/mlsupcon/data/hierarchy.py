"""Label hierarchies: coarse levels above a fine label vocabulary.

A :class:`LabelHierarchy` stores one or more coarse levels above the fine labels of
a dataset (Debtags facets over tags, ICD chapters over categories over codes, COCO
supercategories over categories). Hierarchical contrastive losses use
:meth:`LabelHierarchy.levels` to turn a batch of fine multi-hot labels into the
multi-hot labels of every level: an example carries a coarse label exactly when it
carries at least one of that coarse label's fine children.

Example:
    >>> import torch
    >>> h = LabelHierarchy.from_paths(
    ...     ["use::editing", "use::gameplaying", "role::program"],
    ...     [("use",), ("use",), ("role",)],
    ...     level_titles=["facet", "tag"],
    ... )
    >>> h.coarse_names, h.parent.tolist()
    (['role', 'use'], [1, 1, 0])
    >>> [t.tolist() for t in h.levels(torch.tensor([[1.0, 0.0, 1.0]]))]
    [[[1.0, 1.0]], [[1.0, 0.0, 1.0]]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where labels are mapped: reading data needs no torch
    import torch

__all__ = ["LabelHierarchy", "mapping_hierarchy", "prefix_hierarchy"]


class LabelHierarchy:
    """A tree of label levels above a fine label vocabulary.

    Levels are stored coarsest first; the last level is the fine vocabulary itself.
    ``parents[j]`` maps every name of level ``j + 1`` to the index of its parent in
    level ``j``.

    Attributes:
        names: Per level the list of names, coarsest first, last = fine labels.
        parents: Per adjacent pair of levels an int64 array; ``parents[j][i]`` is the
            index in level ``j`` of the parent of name ``i`` of level ``j + 1``.
        level_titles: A short title per level (e.g. ``["chapter", "category", "code"]``).

    Example:
        >>> h = LabelHierarchy(["a1", "a2", "b1"], ["a", "b"], [0, 0, 1])
        >>> h.coarse_names, h.depth
        (['a', 'b'], 2)
    """

    def __init__(
        self,
        fine_names: Sequence[str],
        coarse_names: Sequence[str],
        parent: Sequence[int] | np.ndarray,
        *,
        coarser: LabelHierarchy | None = None,
        level_titles: Sequence[str] | None = None,
    ) -> None:
        """Build a two-level hierarchy, optionally stacked on a coarser one.

        Args:
            fine_names: The fine labels (length C).
            coarse_names: The coarse labels (length K).
            parent: Length-C sequence of indices into ``coarse_names``.
            coarser: Optional hierarchy whose fine names equal ``coarse_names``; its
                levels are placed above ``coarse_names``.
            level_titles: Optional title per level, coarsest first.

        Raises:
            ValueError: If the parent array has the wrong length or out-of-range
                entries, a coarse name has no child, or ``coarser`` does not match.
        """
        fine = [str(n) for n in fine_names]
        coarse = [str(n) for n in coarse_names]
        par = np.asarray(parent, dtype=np.int64).reshape(-1)
        if par.shape[0] != len(fine):
            raise ValueError(
                f"parent has {par.shape[0]} entries but there are {len(fine)} fine labels"
            )
        if par.size and (par.min() < 0 or par.max() >= len(coarse)):
            raise ValueError(f"parent entries must lie in [0, {len(coarse)}), got {par.min()}..{par.max()}")
        childless = sorted(set(range(len(coarse))) - set(par.tolist()))
        if childless:
            raise ValueError(
                f"coarse label(s) without any fine label: {[coarse[i] for i in childless][:10]}"
            )
        if coarser is not None:
            if coarser.fine_names != coarse:
                raise ValueError("coarser hierarchy's fine names must equal coarse_names")
            self.names: list[list[str]] = [list(n) for n in coarser.names] + [fine]
            self.parents: list[np.ndarray] = [p.copy() for p in coarser.parents] + [par]
        else:
            self.names = [coarse, fine]
            self.parents = [par]
        if level_titles is None:
            level_titles = [f"level{i}" for i in range(len(self.names) - 1)] + ["label"]
        level_titles = [str(t) for t in level_titles]
        if len(level_titles) != len(self.names):
            raise ValueError(
                f"level_titles has {len(level_titles)} entries for {len(self.names)} levels"
            )
        self.level_titles: list[str] = level_titles
        # Cache of one-hot parent tensors per (level, device): levels() runs every step.
        self._cache: dict[tuple[int, str], torch.Tensor] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_paths(
        cls,
        fine_names: Sequence[str],
        paths: Sequence[Sequence[str]],
        *,
        level_titles: Sequence[str] | None = None,
    ) -> LabelHierarchy:
        """Build a hierarchy from each fine label's ancestor path.

        Coarse names of every level are sorted, so the result does not depend on the
        order of ``fine_names``.

        Args:
            fine_names: The fine labels.
            paths: Per fine label a tuple of ancestors, coarsest first; all of equal
                length >= 1.
            level_titles: Optional title per level (ancestors + the fine level).

        Returns:
            The hierarchy.

        Raises:
            ValueError: On ragged paths or an ancestor with two different parents.

        Example:
            >>> h = LabelHierarchy.from_paths(["428.0", "401.9"], [("circ", "428"), ("circ", "401")])
            >>> h.names
            [['circ'], ['401', '428'], ['428.0', '401.9']]
        """
        fine = [str(n) for n in fine_names]
        if len(paths) != len(fine):
            raise ValueError(f"got {len(paths)} paths for {len(fine)} fine labels")
        paths = [tuple(str(p) for p in path) for path in paths]
        depth = {len(p) for p in paths}
        if len(depth) > 1:
            raise ValueError(f"all ancestor paths must have the same length, got lengths {sorted(depth)}")
        d = depth.pop() if depth else 1
        if d < 1:
            raise ValueError("ancestor paths must have at least one element")
        hier: LabelHierarchy | None = None
        level_names: list[list[str]] = [sorted({p[j] for p in paths}) for j in range(d)]
        titles = list(level_titles) if level_titles is not None else None
        for j in range(1, d):
            # Each level-j name must have exactly one parent at level j-1.
            parent_of: dict[str, str] = {}
            for p in paths:
                prev = parent_of.setdefault(p[j], p[j - 1])
                if prev != p[j - 1]:
                    raise ValueError(
                        f"'{p[j]}' has two parents: '{prev}' and '{p[j - 1]}'"
                    )
            idx = {n: i for i, n in enumerate(level_names[j - 1])}
            par = [idx[parent_of[n]] for n in level_names[j]]
            sub_titles = titles[: j + 1] if titles is not None else None
            hier = cls(level_names[j], level_names[j - 1], par, coarser=hier, level_titles=sub_titles)
        idx = {n: i for i, n in enumerate(level_names[-1])}
        return cls(
            fine,
            level_names[-1],
            [idx[p[-1]] for p in paths],
            coarser=hier,
            level_titles=titles,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelHierarchy:
        """Rebuild a hierarchy saved with :meth:`to_dict`."""
        names, parents = d["names"], d["parents"]
        hier: LabelHierarchy | None = None
        titles = d.get("level_titles")
        for j in range(1, len(names)):
            hier = cls(
                names[j],
                names[j - 1],
                parents[j - 1],
                coarser=hier,
                level_titles=titles[: j + 1] if titles else None,
            )
        assert hier is not None
        return hier

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (for checkpoints and run records)."""
        return {
            "names": [list(n) for n in self.names],
            "parents": [p.tolist() for p in self.parents],
            "level_titles": list(self.level_titles),
        }

    # ------------------------------------------------------------------ accessors
    @property
    def fine_names(self) -> list[str]:
        """The fine labels (the dataset's ``label_names``)."""
        return self.names[-1]

    @property
    def coarse_names(self) -> list[str]:
        """Names of the level directly above the fine labels."""
        return self.names[-2]

    @property
    def parent(self) -> np.ndarray:
        """Int64 array [C]: index in :attr:`coarse_names` of each fine label's parent."""
        return self.parents[-1]

    @property
    def depth(self) -> int:
        """Number of levels including the fine level (2 for facet/tag)."""
        return len(self.names)

    def coarse_of(self, fine_name: str) -> str:
        """Name of the direct coarse parent of a fine label."""
        return self.coarse_names[int(self.parent[self.fine_names.index(fine_name)])]

    def ancestors_of(self, fine_name: str) -> list[str]:
        """Ancestors of a fine label, coarsest first (excluding the label itself)."""
        i = self.fine_names.index(fine_name)
        out = []
        for j in range(len(self.parents) - 1, -1, -1):
            i = int(self.parents[j][i])
            out.append(self.names[j][i])
        return out[::-1]

    def parent_matrix(self, level: int = -2) -> np.ndarray:
        """0/1 float32 matrix [n_{level+1}, n_level] mapping a level to the one above.

        Args:
            level: Index of the coarse level (default: the one above the fine labels).
        """
        level = level % self.depth
        par = self.parents[level]
        m = np.zeros((par.shape[0], len(self.names[level])), dtype=np.float32)
        m[np.arange(par.shape[0]), par] = 1.0
        return m

    # ------------------------------------------------------------------ label maps
    def levels(self, labels: torch.Tensor) -> list[torch.Tensor]:
        """Multi-hot labels at every level, coarsest first; the last is ``labels``.

        Args:
            labels: Multi-hot tensor [..., C] (float, int or bool) of fine labels.

        Returns:
            One tensor per level, same dtype and device as ``labels``; a coarse label
            is 1 when any of its fine descendants is 1.

        Example:
            >>> import torch
            >>> h = LabelHierarchy(["a1", "a2", "b1"], ["a", "b"], [0, 0, 1])
            >>> h.levels(torch.tensor([[0, 1, 0]]))[0].tolist()
            [[1, 0]]
        """
        import torch

        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(np.asarray(labels))
        if labels.shape[-1] != len(self.fine_names):
            raise ValueError(
                f"labels have {labels.shape[-1]} columns but the hierarchy has "
                f"{len(self.fine_names)} fine labels"
            )
        out = [labels]
        cur = labels
        for j in range(len(self.parents) - 1, -1, -1):
            cur = self._coarsen(cur, j)
            out.append(cur)
        return out[::-1]

    def _coarsen(self, labels: torch.Tensor, j: int) -> torch.Tensor:
        import torch

        key = (j, str(labels.device))
        idx = self._cache.get(key)
        if idx is None:
            idx = torch.as_tensor(self.parents[j], dtype=torch.long, device=labels.device)
            self._cache[key] = idx
        k = len(self.names[j])
        # Counting children per parent then thresholding gives the "any child" rule
        # for any input dtype without a dense [C, K] matmul.
        acc = torch.zeros(*labels.shape[:-1], k, dtype=torch.float32, device=labels.device)
        acc.index_add_(-1, idx, (labels != 0).to(torch.float32))
        return (acc > 0).to(labels.dtype)

    # ------------------------------------------------------------------ restriction
    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelHierarchy:
        """The hierarchy restricted to some fine labels (coarse nodes left childless vanish).

        Args:
            indices: Indices of the fine labels to keep, in the new order.

        Example:
            >>> h = LabelHierarchy(["a1", "a2", "b1"], ["a", "b"], [0, 0, 1])
            >>> h.subset([2]).names
            [['b'], ['b1']]
        """
        idx = np.asarray(indices, dtype=np.int64)
        fine = [self.fine_names[i] for i in idx]
        paths = [tuple(self.ancestors_of_index(int(i))) for i in idx]
        return LabelHierarchy.from_paths(fine, paths, level_titles=self.level_titles)

    def ancestors_of_index(self, i: int) -> list[str]:
        """Ancestors (coarsest first) of the fine label at index ``i``."""
        out = []
        for j in range(len(self.parents) - 1, -1, -1):
            i = int(self.parents[j][i])
            out.append(self.names[j][i])
        return out[::-1]

    def __getstate__(self) -> dict[str, Any]:
        # Cached device tensors are not worth pickling (DataLoader workers, checkpoints).
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelHierarchy):
            return NotImplemented
        return self.names == other.names and all(
            np.array_equal(a, b) for a, b in zip(self.parents, other.parents)
        )

    def __repr__(self) -> str:
        sizes = " > ".join(f"{t}:{len(n)}" for t, n in zip(self.level_titles, self.names))
        return f"LabelHierarchy({sizes})"


def prefix_hierarchy(
    label_names: Sequence[str],
    separator: str = "::",
    *,
    level_titles: Sequence[str] = ("facet", "tag"),
) -> LabelHierarchy:
    """Two-level hierarchy from label prefixes (``facet::tag`` → ``facet``).

    A label without the separator becomes its own coarse group.

    Args:
        label_names: The fine labels.
        separator: Separator between the coarse prefix and the rest.
        level_titles: Titles of the coarse and the fine level.

    Example:
        >>> prefix_hierarchy(["use::editing", "role::program"]).coarse_of("use::editing")
        'use'
    """
    return LabelHierarchy.from_paths(
        label_names,
        [(n.split(separator, 1)[0],) for n in label_names],
        level_titles=level_titles,
    )


def mapping_hierarchy(
    label_names: Sequence[str],
    coarse_of: Callable[[str], str] | dict[str, str],
    *,
    level_titles: Sequence[str] | None = None,
) -> LabelHierarchy:
    """Two-level hierarchy from a fine→coarse mapping (dict or function).

    Example:
        >>> mapping_hierarchy(["cat", "dog", "car"], {"cat": "animal", "dog": "animal", "car": "vehicle"}).coarse_names
        ['animal', 'vehicle']
    """
    fn = coarse_of.__getitem__ if isinstance(coarse_of, dict) else coarse_of
    return LabelHierarchy.from_paths(
        label_names, [(str(fn(n)),) for n in label_names], level_titles=level_titles
    )
