"""Several text encoders side by side: their pooled features concatenated.

For instance TF-IDF features (``sparse``) and frozen sentence embeddings (``frozen``): one
sees exact words and rare terms, the other paraphrases. Each branch is an ordinary encoder
built from a sub-config; the fusion encoder only routes data:

* :meth:`FusionEncoder.preprocess` runs every branch's ``preprocess`` and merges the batch
  dicts, each key prefixed with its branch (``"sparse0.ids"``, ``"frozen1.x"``);
* :meth:`FusionEncoder.forward` concatenates the branches' outputs (``output_dim`` is the sum);
* :meth:`FusionEncoder.make_view_fn` applies each branch's own view to its keys;
* :meth:`FusionEncoder.prepare` forwards to the branches that have one (``frozen``).

Example:
    >>> from mlsupcon.models import build_encoder
    >>> enc = build_encoder("fusion", train_texts=["fever and cough", "broken arm"], encoders=[
    ...     {"name": "cnn", "embed_dim": 8, "num_filters": 4, "kernel_size": 2},
    ...     {"name": "cnn", "tokenizer": "char", "embed_dim": 8, "num_filters": 3, "kernel_size": 2}])
    >>> batch = enc.preprocess(["a cough"])
    >>> sorted(batch), enc(batch).shape
    (['cnn0.attention_mask', 'cnn0.input_ids', 'cnn1.attention_mask', 'cnn1.input_ids'], torch.Size([1, 7]))
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .base import Encoder
from .factory import build_encoder, encoder_options, register_encoder
from .heads.blend import BlendHead
from .heads.slice import SliceHead

__all__ = ["FusionEncoder", "branches_unused_by"]

# Options whose presence means "rebuild from a saved config()": train_texts must not be added then.
_SAVED_MARKERS = ("tokenizer_json", "tokenizer_path", "num_features")


@register_encoder
class FusionEncoder(Encoder):
    """Concatenated outputs of two or more text encoders given as sub-configs.

    Args:
        encoders: Sub-configs, each a dict with ``name`` and that encoder's options (what
            :func:`~mlsupcon.models.build_encoder` takes; a saved ``config()`` works too).
        train_texts: Training documents, handed to every branch that trains something on
            them (``cnn``'s tokenizer, ``sparse``'s TF-IDF) unless its sub-config is a saved
            one (it has ``tokenizer_json``, ``tokenizer_path`` or ``num_features``).

    Raises:
        ValueError: Fewer than two sub-configs, a non-text encoder, or a branch's own error
            (prefixed with ``encoders[i]``).

    Example:
        >>> enc = FusionEncoder([{"name": "frozen", "hidden_dims": [8], "progress": False},
        ...                      {"name": "frozen", "hidden_dims": [], "progress": False}])
        >>> enc.output_dim, enc.input_keys
        (392, ('frozen0.x', 'frozen1.x'))
    """

    name = "fusion"
    modality = "text"

    def __init__(self, encoders: Sequence[Mapping[str, Any]] = (), train_texts: Iterable[str] | None = None,
                 embedding_branch: int | None = None) -> None:
        super().__init__()
        if isinstance(encoders, Mapping) or not isinstance(encoders, Sequence) or len(encoders) < 2:
            raise ValueError("encoders must be a list of at least two encoder sub-configs (dicts with a 'name')")
        if isinstance(train_texts, str):
            raise ValueError("train_texts must be a list of documents, not one string")
        texts = None if train_texts is None else list(train_texts)
        branches: list[Encoder] = []
        for i, sub in enumerate(encoders):
            if not isinstance(sub, Mapping) or not isinstance(sub.get("name"), str):
                raise ValueError(f"encoders[{i}] must be a dict with the encoder's 'name', got {sub!r}")
            opts = {k: v for k, v in sub.items() if k != "name"}
            name = sub["name"].strip().lower()
            if name == "fusion":
                raise ValueError(f"encoders[{i}]: a fusion encoder cannot contain another fusion encoder")
            try:
                accepts = "train_texts" in encoder_options(name)
                if texts is not None and accepts and not any(opts.get(k) is not None for k in _SAVED_MARKERS):
                    opts.setdefault("train_texts", texts)
                enc = build_encoder(name, **opts)
            except ValueError as e:
                raise ValueError(f"encoders[{i}] ({name}): {e}") from None
            if enc.modality != "text":
                raise ValueError(f"encoders[{i}]: '{name}' takes {enc.modality} inputs; fusion joins text encoders")
            branches.append(enc)
        self._set_branches(branches, embedding_branch)

    def _set_branches(self, branches: Sequence[Encoder], embedding_branch: int | None) -> None:
        if embedding_branch is not None and not 0 <= int(embedding_branch) < len(branches):
            raise ValueError(f"embedding_branch must be in [0, {len(branches)}), got {embedding_branch!r}")
        self.embedding_branch = None if embedding_branch is None else int(embedding_branch)
        self.branches = nn.ModuleList(branches)
        self.prefixes = tuple(f"{b.name}{i}." for i, b in enumerate(branches))
        self.input_keys = tuple(p + k for p, b in zip(self.prefixes, branches) for k in b.input_keys)
        self.output_dim = sum(b.output_dim for b in branches)
        self._skipped: frozenset[int] = frozenset()

    @contextlib.contextmanager
    def skipping(self, branches: Iterable[int]) -> Iterator[None]:
        """Within it, ``branches`` are not run: :meth:`preprocess` and :meth:`prepare` leave them
        out and :meth:`forward` gives zeros for their columns. For a head that gives those
        columns weight 0 (:func:`branches_unused_by`): its scores are then bit-identical, and a
        branch such as a frozen MiniLM costs nothing."""
        skip = frozenset(int(i) for i in branches)
        if len(skip - set(range(len(self.branches)))) or len(skip) >= len(self.branches):
            raise ValueError(f"branches: expected some of the branch numbers 0..{len(self.branches) - 1}, not all; "
                             f"got {sorted(skip)}")
        saved, self._skipped = self._skipped, skip
        try:
            yield
        finally:
            self._skipped = saved

    # ------------------------------------------------------------------ routing
    def _split(self, batch: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The merged batch -> one dict per branch with its own (unprefixed) keys."""
        parts: list[dict[str, torch.Tensor]] = [{} for _ in self.prefixes]
        for key, value in batch.items():
            for i, p in enumerate(self.prefixes):
                if key.startswith(p):
                    parts[i][key[len(p) :]] = value
                    break
        return parts

    def _merge(self, parts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {p + k: v for p, part in zip(self.prefixes, parts) for k, v in part.items()}

    def prepare(self, split_inputs: Any) -> dict[str, Any]:
        """Run ``prepare(split_inputs)`` of every branch that has one; their reports by prefix."""
        return {
            p.rstrip("."): b.prepare(split_inputs)
            for i, (p, b) in enumerate(zip(self.prefixes, self.branches))
            if b.prepare is not None and i not in self._skipped
        }

    def preprocess(self, raw: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Texts -> every branch's batch dict, keys prefixed (``"cnn0.input_ids"``...)."""
        texts = [raw] if isinstance(raw, str) else list(raw)
        return self._merge([{} if i in self._skipped else b.preprocess(texts) for i, b in enumerate(self.branches)])

    def collate(self, batches: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Each branch collates its own keys (padding as it needs)."""
        if not batches:
            raise ValueError("collate: batches must not be empty")
        split = [self._split(b) for b in batches]
        return self._merge([br.collate([s[i] for s in split]) for i, br in enumerate(self.branches)])

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenation of the branches' pooled features ``[n, sum of output_dims]``."""
        skipped = tuple(p for i, p in enumerate(self.prefixes) if i in self._skipped)
        missing = [k for k in self.input_keys if k not in batch and not any(k.startswith(p) for p in skipped)]
        if missing:
            raise KeyError(f"FusionEncoder expects batch keys {list(self.input_keys)}, missing {missing}")
        parts = self._split(batch)
        outs = [None if i in self._skipped else b(part) for i, (b, part) in enumerate(zip(self.branches, parts))]
        ref = next(o for o in outs if o is not None)
        return torch.cat([o if o is not None else ref.new_zeros(ref.shape[0], b.output_dim)
                          for o, b in zip(outs, self.branches)], dim=1)

    # ------------------------------------------------------------------ views
    def make_view_fn(
        self, per_branch: Sequence[Mapping[str, Any]] | None = None, **options: Any
    ) -> Callable[..., dict[str, torch.Tensor]]:
        """One random view of a merged batch: each branch's own view applied to its keys.

        A branch with ``make_view_fn`` (``sparse``, ``frozen``, ``fusion``) gets ``options``
        (plus ``per_branch[i]``); a token encoder (``cnn``, ``transformer``) gets token
        dropout/masking/cropping (:class:`~mlsupcon.data.views.TokenViews`, options
        ``p_drop``, ``p_mask``, ``crop``; others ignored).

        Args:
            per_branch: Optional per-branch overrides, one dict per branch.
            **options: View options shared by every branch.

        Example:
            >>> enc = FusionEncoder([{"name": "frozen", "hidden_dims": [], "progress": False}] * 2)
            >>> view = enc.make_view_fn(per_branch=[{"p_mask": 0.5, "noise_std": 0.0}, {"p_mask": 0.0}])
            >>> out = view({"frozen0.x": torch.ones(4, 384), "frozen1.x": torch.ones(4, 384)})
            >>> bool((out["frozen0.x"] == 0).any()), bool((out["frozen1.x"] == 0).any())
            (True, False)
        """
        if per_branch is not None and len(per_branch) != len(self.branches):
            raise ValueError(f"per_branch must have one dict per branch ({len(self.branches)}), got {len(per_branch)}")
        views = []
        for i, b in enumerate(self.branches):
            opts = {**options, **(dict(per_branch[i]) if per_branch is not None else {})}
            views.append(_branch_view(b, opts))

        def view(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return self._merge([v(part) for v, part in zip(views, self._split(batch))])

        return view

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name, "encoders": [b.config() for b in self.branches]}
        if self.embedding_branch is not None:
            cfg["embedding_branch"] = self.embedding_branch
        return cfg

    @classmethod
    def from_encoders(cls, encoders: Sequence[Encoder], embedding_branch: int | None = None) -> "FusionEncoder":
        """Joins already built (trained) text encoders, e.g. a contrastive encoder and a fitted
        linear model's featurizer, keeping their state (caches included)."""
        self = cls.__new__(cls)
        Encoder.__init__(self)
        self._set_branches(list(encoders), embedding_branch)
        return self

    @property
    def embedding_slice(self) -> slice | None:
        """Columns of :meth:`forward` that are the ``embedding_branch``'s features (None: all)."""
        if self.embedding_branch is None:
            return None
        start = sum(b.output_dim for b in self.branches[: self.embedding_branch])
        return slice(start, start + self.branches[self.embedding_branch].output_dim)


def _branch_view(enc: Encoder, options: dict[str, Any]) -> Callable[[dict], dict]:
    if enc.make_view_fn is not None:
        return enc.make_view_fn(**options)
    info = enc.tokenizer_info
    if info is None:
        raise ValueError(f"fusion views: encoder {enc.name!r} has neither make_view_fn nor a tokenizer")
    from mlsupcon.data.views import TokenViews

    mask_id = info.get("mask_token_id")
    if mask_id is None:
        mask_id = info.get("unk_token_id")
    if mask_id is None:
        mask_id = info["pad_token_id"]  # masking then equals deleting
    valid = set(inspect.signature(TokenViews.__init__).parameters) - {"self", "mask_token_id", "pad_token_id"}
    maker = TokenViews(
        mask_token_id=mask_id,
        pad_token_id=info["pad_token_id"],
        special_ids=info.get("special_token_ids", ()),
        **{k: v for k, v in options.items() if k in valid - {"special_ids"}},
    )

    def view(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids, mask = maker(batch["input_ids"], batch["attention_mask"])
        return {**batch, "input_ids": ids, "attention_mask": mask}

    return view


def branches_unused_by(head: nn.Module, encoder: nn.Module) -> frozenset[int]:
    """Branches of a fusion ``encoder`` whose columns ``head`` gives weight 0: a validation-chosen
    :class:`~mlsupcon.models.heads.blend.BlendHead` of weight 0 or 1 over two
    :class:`~mlsupcon.models.heads.slice.SliceHead` s (the wide & deep blend). Empty otherwise.

    Example:
        >>> import torch
        >>> from mlsupcon.models import BlendHead, ScoresHead, SliceHead
        >>> enc = FusionEncoder([{"name": "frozen", "hidden_dims": [], "progress": False}] * 2)
        >>> head = BlendHead(SliceHead(ScoresHead(384), 0, 384), SliceHead(ScoresHead(384), 384, 768), weight=0.0)
        >>> sorted(branches_unused_by(head, enc))
        [0]
    """
    if not isinstance(encoder, FusionEncoder) or not isinstance(head, BlendHead) or head.weight not in (0.0, 1.0):
        return frozenset()
    used = head.head_b if head.weight == 0.0 else head.head_a
    if not (isinstance(used, SliceHead) and isinstance(head.head_a, SliceHead) and isinstance(head.head_b, SliceHead)):
        return frozenset()
    unused, start = set(), 0
    for i, b in enumerate(encoder.branches):
        stop = start + b.output_dim
        if stop <= used.start or start >= used.stop:  # none of its columns is read by the head that counts
            unused.add(i)
        start = stop
    return frozenset(unused)
