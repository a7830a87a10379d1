"""Linformer (Wang et al., 2020): keys and values projected along the sequence to ``proj_len`` rows by learned
(proj_len, max_k) matrices shared across heads, then exact softmax attention over those rows.

The projections are sized by the longest key sequence, so Linformer needs that bound (``shape.max_k``).
Variable lengths: padded keys and values are zeroed and shorter sequences are zero-padded up to ``max_k``; a
padded position therefore multiplies zero, and real outputs do not depend on it. Longer sequences are refused.
The projections are ``nn.Linear`` so that int8 export quantizes them with the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emule_models.attention.base import ATTENTION, Attention, AttentionShape


@ATTENTION.register()
class LinformerAttention(Attention):
    name = "linformer"
    defaults = {"proj_len": 64}
    contiguous = False

    def __init__(self, shape: AttentionShape):
        super().__init__(shape)
        self.max_k = shape.max_k
        self.proj_k = nn.Linear(shape.max_k, self.options["proj_len"], bias=False)
        self.proj_v = nn.Linear(shape.max_k, self.options["proj_len"], bias=False)

    @classmethod
    def not_supported_reasons(cls, shape: AttentionShape) -> list[str]:
        reasons = super().not_supported_reasons(shape)
        if shape.max_k < 1:
            reasons.append(f"max_k: {shape.max_k} - linformer projects along the sequence and needs a length bound; "
                           "accepted: a maximum key length >= 1 (declare each modality's length)")
        return reasons

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        d, p = shape.head_dim, {**cls.defaults, **shape.options}["proj_len"]
        # keys and values are projected at the padded length max_k; then softmax attention over p rows
        return shape.heads * (2 * 2 * d * shape.max_k * p + 4 * t_q * p * d)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        t_k = k.shape[-2]
        if t_k > self.max_k:
            raise ValueError(f"linformer: {t_k} keys exceed the length bound max_k={self.max_k} it was built for")
        if mask is not None:
            pad = ~mask[:, None, :, None]  # (B, 1, Tk, 1)
            k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)
        if t_k < self.max_k:
            k = F.pad(k, (0, 0, 0, self.max_k - t_k))  # (B, H, max_k, D)
            v = F.pad(v, (0, 0, 0, self.max_k - t_k))  # (B, H, max_k, D)
        # contiguous: SDPA's fused kernels want the head dimension innermost, which the projection's transpose undoes
        k = self.proj_k(k.transpose(-2, -1)).transpose(-2, -1).contiguous()  # (B, H, P, D)
        v = self.proj_v(v.transpose(-2, -1)).transpose(-2, -1).contiguous()  # (B, H, P, D)
        return F.scaled_dot_product_attention(q, k, v)  # (B, H, Tq, D)
