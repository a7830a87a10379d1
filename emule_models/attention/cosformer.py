"""cosFormer (Qin et al., 2022): linear attention with ReLU features and a cos re-weighting that favours nearby
tokens, computed in time linear in the length.

Scores are relu(q_i) . relu(k_j) cos(pi/2 (i - j) / M) with M = max(Tq, Tk). Because
cos(a - b) = cos a cos b + sin a sin b, the re-weighting splits into a cos and a sin half of each feature, and the
usual linear-attention reordering applies to features of width 2D.
"""

from __future__ import annotations

import math

import torch

from emule_models.attention.base import ATTENTION, Attention, AttentionShape


def cos_sin_features(x: torch.Tensor, length: int) -> torch.Tensor:
    """relu(x) times cos and sin of pi/2 * position / length: (B, H, T, D) -> (B, H, T, 2D)."""
    angle = torch.arange(x.shape[-2], device=x.device, dtype=x.dtype) * (math.pi / 2 / length)  # (T,)
    weights = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)[:, :, None]  # (T, 2, 1)
    # one broadcast product writes both halves: no concatenation of two (B, H, T, D) tensors
    return (torch.relu(x)[..., None, :] * weights).flatten(-2)  # (B, H, T, 2D)


@ATTENTION.register()
class CosFormerAttention(Attention):
    name = "cosformer"
    defaults = {"eps": 1e-6}

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        d = shape.head_dim
        # phi(k)^T v: 2*Tk*2D*D; phi(q) (phi(k)^T v): 2*Tq*2D*D; normaliser: 2*Tq*2D
        return shape.heads * (2 * t_k * 2 * d * d + 2 * t_q * 2 * d * d + 2 * t_q * 2 * d)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        length = max(q.shape[-2], k.shape[-2])
        phi_q = cos_sin_features(q, length)  # (B, H, Tq, 2D)
        phi_k = cos_sin_features(k, length)  # (B, H, Tk, 2D)
        if mask is not None:
            pad = ~mask[:, None, :, None]  # (B, 1, Tk, 1)
            phi_k, v = phi_k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)
        kv = torch.matmul(phi_k.transpose(-2, -1), v)  # (B, H, 2D, D)
        k_sum = phi_k.sum(dim=-2, keepdim=True)  # (B, H, 1, 2D)
        norm = torch.matmul(phi_q, k_sum.transpose(-2, -1))  # (B, H, Tq, 1)
        # ReLU features can leave a query with no overlap at all; clamping keeps its output finite (zero).
        return torch.matmul(phi_q, kv) / norm.clamp_min(self.options["eps"])  # (B, H, Tq, D)
