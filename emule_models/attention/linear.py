"""Kernelized linear attention with the elu(x) + 1 feature map (Katharopoulos et al., 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emule_models.attention.base import ATTENTION, Attention, AttentionShape


@ATTENTION.register()
class LinearAttention(Attention):
    name = "linear"
    defaults = {"eps": 1e-6}

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        d = shape.head_dim
        # phi(k)^T v: 2*Tk*D*D; phi(q) (k^T v): 2*Tq*D*D; normaliser phi(q) . sum phi(k): 2*Tq*D
        return shape.heads * (2 * t_k * d * d + 2 * t_q * d * d + 2 * t_q * d)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if mask is not None:
            pad = ~mask[:, None, :, None]  # (B, 1, Tk, 1)
            k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)  # padded keys add nothing to either sum
        kv = torch.matmul(k.transpose(-2, -1), v)  # (B, H, D, D)
        k_sum = k.sum(dim=-2, keepdim=True)  # (B, H, 1, D)
        norm = torch.matmul(q, k_sum.transpose(-2, -1))  # (B, H, Tq, 1)
        return torch.matmul(q, kv) / (norm + self.options["eps"])  # (B, H, Tq, D)
