"""Exact softmax attention through ``F.scaled_dot_product_attention``, with an optional relative position bias
(``position: relative``) added to its scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emule_models.attention.base import ATTENTION, Attention, AttentionShape
from emule_models.position import RelativeBias, key_offsets


@ATTENTION.register()
class SoftmaxAttention(Attention):
    name = "softmax"
    complexity = "quadratic"
    contiguous = False
    relative_bias = True

    def __init__(self, shape: AttentionShape):
        super().__init__(shape)
        self.relative = RelativeBias(shape.heads, shape.max_k) if shape.relative else None

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        # q @ k^T and attn @ v, each 2 * Tq * Tk * D per head
        return 4 * shape.heads * t_q * t_k * shape.head_dim

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, Tk)
        if self.relative is not None:
            bias = self.relative(key_offsets(q.shape[-2], k.shape[-2], q.device))[None].to(q.dtype)  # (1, H, Tq, Tk)
            # a padded key gets the lowest score, so exactly zero weight, as with a boolean mask
            attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, torch.finfo(q.dtype).min)
            # ONNX export (torch 2.13's decomposition of CPU SDPA) fails on a float mask over strided heads
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, Tq, D)
