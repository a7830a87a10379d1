"""The Transformer layer around the attention math: projections, heads, feed-forward, residuals."""

from __future__ import annotations

import torch
from torch import nn

from emule_models.attention import ATTENTION, AttentionShape


class MultiHeadAttention(nn.Module):
    """Projections and heads around one registered attention variant (built from ``nn.Linear`` so it quantizes)."""

    def __init__(self, width: int, heads: int, attention: str, shape: AttentionShape):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.attend = ATTENTION.lookup(attention)(shape)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, Tq, W) attends to ``context`` (B, Tk, W; default ``x``).

        ``mask`` (B, Tq) and ``context_mask`` (B, Tk) are True for real tokens; without a context, ``mask`` masks
        the keys too.
        """
        if context is None:
            context, context_mask = x, mask
        b, tq, w = x.shape
        tk = context.shape[1]
        q = self.q(x).view(b, tq, self.heads, -1).transpose(1, 2)  # (B, H, Tq, D), strided
        kv = self.kv(context).view(b, tk, 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # (2, B, H, Tk, D), strided
        if self.attend.contiguous:
            q, kv = q.contiguous(), kv.contiguous()
        out = self.attend(q, kv[0], kv[1], mask=context_mask, q_mask=mask)  # (B, H, Tq, D)
        return self.out(out.transpose(1, 2).reshape(b, tq, w))  # (B, Tq, W)

    @staticmethod
    def projection_flops(width: int, t_q: int, t_k: int) -> int:
        return 2 * t_q * width * width * 2 + 2 * t_k * width * 2 * width  # q + out on queries, k and v on keys


class Block(nn.Module):
    """Pre-norm Transformer block. Built with ``cross=True`` it cross-attends to a ``context`` given at each call,
    which it normalises with its own LayerNorm: the context is another stream's residual, whose scale is its own.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float, attention: str, shape: AttentionShape,
                 cross: bool = False, drop_path: float = 0.0):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(width) if cross else None
        self.attn = MultiHeadAttention(width, heads, attention, shape)
        self.norm2 = nn.LayerNorm(width)
        hidden = mlp_hidden(width, mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, T, W) with ``mask`` (B, T); ``context`` (B, Tk, W) with ``context_mask`` (B, Tk)."""
        if (context is None) != (self.norm_context is None):
            raise ValueError("Block: a context is given exactly when the block was built with cross=True")
        if context is not None:
            context = self.norm_context(context)
        x = x + self._skip(self.drop(self.attn(self.norm1(x), context=context, mask=mask, context_mask=context_mask)))
        return x + self._skip(self.drop(self.mlp(self.norm2(x))))

    def _skip(self, branch: torch.Tensor) -> torch.Tensor:
        """Stochastic depth: while training, drop the residual branch of whole samples with probability
        ``drop_path`` and rescale the rest (Huang et al. 2016)."""
        if not self.training or self.drop_path == 0.0:
            return branch
        keep = 1.0 - self.drop_path
        return branch * torch.empty(branch.shape[0], 1, 1, device=branch.device).bernoulli_(keep) / keep

    @staticmethod
    def flops(width: int, mlp_ratio: float, attention: str, shape: AttentionShape, t_q: int, t_k: int) -> int:
        """Forward matmul FLOPs of one block for one sample."""
        mlp = 2 * 2 * t_q * width * mlp_hidden(width, mlp_ratio)
        attend = ATTENTION.lookup(attention).flops(t_q, t_k, shape)
        return MultiHeadAttention.projection_flops(width, t_q, t_k) + attend + mlp


def mlp_hidden(width: int, mlp_ratio: float) -> int:
    return max(1, int(round(width * mlp_ratio)))
