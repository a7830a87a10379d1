"""Exact softmax attention through ``F.scaled_dot_product_attention``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emule_models.attention.base import ATTENTION, Attention, AttentionShape


@ATTENTION.register()
class SoftmaxAttention(Attention):
    name = "softmax"
    complexity = "quadratic"
    contiguous = False

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        # q @ k^T and attn @ v, each 2 * Tq * Tk * D per head
        return 4 * shape.heads * t_q * t_k * shape.head_dim

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, Tk)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, Tq, D)
