"""The ``attention`` head: label-wise attention over token states (CAML / LAAT / PLM-ICD).

Example:
    >>> import torch
    >>> from mlsupcon.models import LabelWiseAttention
    >>> seq, mask = torch.randn(4, 7, 16), torch.ones(4, 7)
    >>> LabelWiseAttention(16, 5)(seq, mask).shape
    torch.Size([4, 5])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..base import Encoder, check_choice, check_positive_int
from .base import ClassifierHead
from .registry import register_head

__all__ = ["LabelWiseAttention"]


@register_head
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
    def check_encoder(cls, encoder: Encoder) -> None:
        if encoder.sequence_dim is None:
            raise ValueError(f"head: 'attention' needs a text encoder (cnn, transformer), not '{encoder.name}'")

    @classmethod
    def create(cls, encoder: Encoder, num_labels: int, **options: Any) -> "LabelWiseAttention":
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
