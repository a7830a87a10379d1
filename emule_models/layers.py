"""The Transformer layer around the attention math: projections, heads, feed-forward, residuals."""

from __future__ import annotations

import torch
from torch import nn

from emule_models.attention import AttentionShape, get_attention


class MultiHeadAttention(nn.Module):
    """Projections and heads around one registered attention variant (built from ``nn.Linear`` so it quantizes)."""

    def __init__(self, width: int, heads: int, attention: str, shape: AttentionShape):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.attend = get_attention(attention)(shape)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, Tq, W) attends to ``context`` (B, Tk, W; default ``x``); ``mask`` (B, Tk) is True for real keys."""
        context = x if context is None else context
        b, tq, w = x.shape
        tk = context.shape[1]
        q = self.q(x).view(b, tq, self.heads, -1).transpose(1, 2)  # (B, H, Tq, D)
        k, v = self.kv(context).view(b, tk, 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # 2 x (B, H, Tk, D)
        out = self.attend(q, k, v, mask)  # (B, H, Tq, D)
        return self.out(out.transpose(1, 2).reshape(b, tq, w))  # (B, Tq, W)

    @staticmethod
    def projection_flops(width: int, t_q: int, t_k: int) -> int:
        return 2 * t_q * width * width * 2 + 2 * t_k * width * 2 * width  # q + out on queries, k and v on keys


class Block(nn.Module):
    """Pre-norm Transformer block; with ``context`` it cross-attends instead of self-attending."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float, attention: str, shape: AttentionShape):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = MultiHeadAttention(width, heads, attention, shape)
        self.norm2 = nn.LayerNorm(width)
        hidden = mlp_hidden(width, mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        if context is None:
            x = x + self.drop(self.attn(h, mask=mask))
        else:
            x = x + self.drop(self.attn(h, context=context, mask=context_mask))
        return x + self.drop(self.mlp(self.norm2(x)))

    @staticmethod
    def flops(width: int, mlp_ratio: float, attention: str, shape: AttentionShape, t_q: int, t_k: int) -> int:
        """Forward matmul FLOPs of one block for one sample."""
        mlp = 2 * 2 * t_q * width * mlp_hidden(width, mlp_ratio)
        return (MultiHeadAttention.projection_flops(width, t_q, t_k) + get_attention(attention).flops(t_q, t_k, shape)
                + mlp)


def mlp_hidden(width: int, mlp_ratio: float) -> int:
    return max(1, int(round(width * mlp_ratio)))
