"""Heads put on top of an encoder: projection (for the contrastive loss), linear classifier,
and label-wise attention over token states (CAML / LAAT / PLM-ICD).

Classifier heads derive from :class:`ClassifierHead`, the interface that
:class:`mlsupcon.models.Classifier` and its head registry (``HEADS`` in
:mod:`mlsupcon.models.classifier`) rely on: what the head reads from the encoder (``input``),
how it is built for an encoder (``create``) and rebuilt from JSON (``config``).

Example:
    >>> import torch
    >>> from mlsupcon.models import ProjectionHead, LinearClassifier, LabelWiseAttention
    >>> h = torch.randn(4, 16)
    >>> ProjectionHead(16, out_dim=8)(h).shape
    torch.Size([4, 8])
    >>> LinearClassifier(16, 5)(h).shape
    torch.Size([4, 5])
    >>> seq, mask = torch.randn(4, 7, 16), torch.ones(4, 7)
    >>> LabelWiseAttention(16, 5)(seq, mask).shape
    torch.Size([4, 5])
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .base import check_choice, check_positive_int, check_prob

__all__ = ["ProjectionHead", "ClassifierHead", "LinearClassifier", "LabelWiseAttention"]

#: What a classifier head reads from the encoder (:attr:`ClassifierHead.input`).
HEAD_INPUTS = ("pooled", "sequence", "batch")


class ProjectionHead(nn.Module):
    """SupCon's projection MLP: Linear -> ReLU -> Linear.

    The output is not L2-normalised: the contrastive losses normalise (``normalize=True``).

    Args:
        in_dim: Encoder feature size.
        hidden_dim: Hidden size (default: ``in_dim``, as in SupCon).
        out_dim: Projection size (default 128, as in SupCon).

    Example:
        >>> import torch
        >>> ProjectionHead(32)(torch.randn(2, 32)).shape
        torch.Size([2, 128])
    """

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128) -> None:
        super().__init__()
        in_dim = check_positive_int(in_dim, "in_dim")
        hidden_dim = in_dim if hidden_dim is None else check_positive_int(hidden_dim, "hidden_dim")
        out_dim = check_positive_int(out_dim, "out_dim")
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[n, in_dim]`` (or ``[..., in_dim]``) -> ``[..., out_dim]``."""
        return self.net(h)

    def config(self) -> dict[str, Any]:
        """JSON options: ``ProjectionHead(**head.config())`` rebuilds it (without the weights)."""
        return {"in_dim": self.in_dim, "hidden_dim": self.hidden_dim, "out_dim": self.out_dim}


class ClassifierHead(nn.Module):
    """Base class of the classifier heads: encoder features -> one logit per label.

    A head declares what it reads from the encoder in ``input``:

    * ``"pooled"``: ``forward(h)`` with the pooled features ``encoder(batch)`` ``[n, D]``;
    * ``"sequence"``: ``forward(seq, mask)`` with ``encoder.encode_sequence(batch)``;
    * ``"batch"``: ``forward(encoder, batch)``, for heads that combine several inputs (e.g. a
      blend of two heads, each evaluated with :func:`mlsupcon.models.classifier.head_logits`).

    Attributes:
        kind: Registry name (``HEADS`` in :mod:`mlsupcon.models.classifier`), stored in exports.
        input: ``"pooled"``, ``"sequence"`` or ``"batch"`` (see above).
        options: Names of the options a run's ``head_options`` may set for this head; the other
            constructor arguments come from the encoder and the labels (:meth:`create`).
        num_labels: Number of labels C (logits ``[n, C]``).
    """

    kind: ClassVar[str] = ""
    input: ClassVar[str] = "pooled"
    options: ClassVar[tuple[str, ...]] = ()
    num_labels: int

    @classmethod
    def check_encoder(cls, encoder: nn.Module) -> None:
        """Raises ValueError (naming the head) if this head cannot sit on ``encoder``."""

    @classmethod
    def create(cls, encoder: nn.Module, num_labels: int, **options: Any) -> "ClassifierHead":
        """A new (randomly initialised) head for ``encoder``'s features and ``num_labels`` labels."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON options such that ``type(head)(**head.config())`` rebuilds it (without the weights)."""
        raise NotImplementedError

    def init_prior(self, prior_logits: torch.Tensor) -> None:
        """Starts label l's logit at ``prior_logits[l]`` (its training log-odds), where the head
        has a per-label bias; a no-op otherwise."""

    def _set_bias(self, bias: torch.Tensor, prior_logits: torch.Tensor) -> None:
        with torch.no_grad():
            bias.copy_(prior_logits.to(bias.dtype))


class LinearClassifier(ClassifierHead):
    """A linear layer producing one logit per label (multi-label: apply a sigmoid/BCE).

    Head kind ``"linear"``: reads the encoder's pooled features.

    Args:
        in_dim: Feature size.
        num_labels: Number of labels C.
        dropout: Dropout on the features before the linear layer (default 0).

    Example:
        >>> import torch
        >>> LinearClassifier(8, 3)(torch.randn(5, 8)).shape
        torch.Size([5, 3])
    """

    kind = "linear"
    input = "pooled"
    options = ("dropout",)

    def __init__(self, in_dim: int, num_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        self.num_labels = check_positive_int(num_labels, "num_labels")
        self.dropout = nn.Dropout(check_prob(dropout, "dropout"))
        self.linear = nn.Linear(self.in_dim, self.num_labels)

    @classmethod
    def create(cls, encoder: nn.Module, num_labels: int, **options: Any) -> "LinearClassifier":
        return cls(encoder.output_dim, num_labels, **options)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[n, in_dim]`` -> logits ``[n, num_labels]``."""
        return self.linear(self.dropout(h))

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "num_labels": self.num_labels, "dropout": float(self.dropout.p)}

    def init_prior(self, prior_logits: torch.Tensor) -> None:
        self._set_bias(self.linear.bias, prior_logits)


class LabelWiseAttention(ClassifierHead):
    """Label-wise attention over token states, giving one logit per label.

    Head kind ``"attention"``: reads ``encoder.encode_sequence(batch)`` (text encoders).

    ``form="laat"`` (LAAT, Vu et al. 2020; PLM-ICD, Huang et al. 2022):
    ``Z = tanh(W H)``, ``A = softmax_tokens(U Z)``, ``v_l = A_l H``,
    ``logit_l = w_l · v_l + b_l``. ``form="caml"`` (Mullenbach et al. 2018) drops ``W`` and
    the tanh: ``A = softmax_tokens(U H)``.

    Padding positions get zero attention. Nothing loops over labels and the per-label vectors
    ``v_l`` (``[n, C, H]``) are never materialised: ``w_l · (A_l H) = A_l · (H w_l)``, so
    memory is O(n·C·T).

    Args:
        hidden_dim: Size H of the token states.
        num_labels: Number of labels C.
        attention_dim: Size of ``W``'s output for ``laat`` (default ``hidden_dim``, as in
            PLM-ICD).
        form: ``"laat"`` (default) or ``"caml"``.

    Example:
        >>> import torch
        >>> att = LabelWiseAttention(8, 3, attention_dim=4)
        >>> seq, mask = torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1] * 5])
        >>> logits, a = att(seq, mask, return_attention=True)
        >>> logits.shape, a.shape, bool((a[0, :, 3:] == 0).all())
        (torch.Size([2, 3]), torch.Size([2, 3, 5]), True)
    """

    kind = "attention"
    input = "sequence"
    options = ("attention_dim", "form")

    def __init__(
        self, hidden_dim: int, num_labels: int, attention_dim: int | None = None, form: str = "laat"
    ) -> None:
        super().__init__()
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.num_labels = check_positive_int(num_labels, "num_labels")
        self.form = check_choice(form, "form", ("laat", "caml"))
        if self.form == "laat":
            self.attention_dim = (
                self.hidden_dim if attention_dim is None else check_positive_int(attention_dim, "attention_dim")
            )
            self.W = nn.Linear(self.hidden_dim, self.attention_dim, bias=False)
            u_in = self.attention_dim
        else:
            self.attention_dim = None
            self.W = None
            u_in = self.hidden_dim
        self.U = nn.Linear(u_in, self.num_labels, bias=False)
        # Per-label output vectors w_l and biases b_l (LAAT's "third linear").
        self.weight = nn.Parameter(torch.empty(self.num_labels, self.hidden_dim))
        self.bias = nn.Parameter(torch.zeros(self.num_labels))
        self.reset_parameters()

    @classmethod
    def check_encoder(cls, encoder: nn.Module) -> None:
        if getattr(encoder, "sequence_dim", None) is None:
            raise ValueError(f"head: 'attention' needs a text encoder (cnn, transformer), not "
                             f"'{getattr(encoder, 'name', type(encoder).__name__)}'")

    @classmethod
    def create(cls, encoder: nn.Module, num_labels: int, **options: Any) -> "LabelWiseAttention":
        cls.check_encoder(encoder)
        return cls(encoder.sequence_dim, num_labels, **options)

    def config(self) -> dict[str, Any]:
        # attention_dim None (caml) or its value (laat): the constructor takes both back.
        return {"hidden_dim": self.hidden_dim, "num_labels": self.num_labels,
                "attention_dim": self.attention_dim, "form": self.form}

    def init_prior(self, prior_logits: torch.Tensor) -> None:
        self._set_bias(self.bias, prior_logits)

    def reset_parameters(self) -> None:
        """Xavier-uniform weights (CAML's initialisation), zero biases."""
        if self.W is not None:
            nn.init.xavier_uniform_(self.W.weight)
        nn.init.xavier_uniform_(self.U.weight)
        nn.init.xavier_uniform_(self.weight)
        nn.init.zeros_(self.bias)

    def attention(self, seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights ``[n, C, T]`` (each row sums to 1 over the real tokens)."""
        z = torch.tanh(self.W(seq)) if self.W is not None else seq
        scores = self.U(z).transpose(1, 2)  # [n, C, T]
        if mask is not None:
            keep = mask.to(torch.bool).unsqueeze(1)
            # finfo.min rather than -inf: a row with no real token gets uniform weights, not NaN.
            scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1)

    def forward(
        self, seq: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[n, C]`` from token states ``seq`` ``[n, T, H]`` and ``mask`` ``[n, T]``.

        Args:
            seq: Token states (e.g. ``encoder.encode_sequence(batch)[0]``).
            mask: 1 for real tokens, 0 for padding (None: all real).
            return_attention: Also return the attention weights ``[n, C, T]``.
        """
        if seq.dim() != 3 or seq.shape[-1] != self.hidden_dim:
            raise ValueError(f"seq must be [n, T, {self.hidden_dim}], got {tuple(seq.shape)}")
        a = self.attention(seq, mask)
        hw = torch.matmul(seq, self.weight.t())  # [n, T, C]: H w_l for every label at once
        logits = torch.einsum("nct,ntc->nc", a, hw) + self.bias
        return (logits, a) if return_attention else logits

    def label_vectors(self, seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-label document vectors ``v_l = A_l H`` ``[n, C, H]`` (memory O(n·C·H))."""
        return torch.bmm(self.attention(seq, mask), seq)

    def extra_repr(self) -> str:
        return (f"hidden_dim={self.hidden_dim}, num_labels={self.num_labels}, form={self.form!r}, "
                f"attention_dim={self.attention_dim}")

