"""Blocked local attention: exact softmax attention inside a window of neighbouring blocks.

The keys are cut into blocks of ``window`` tokens and the queries into as many blocks; query block ``c`` attends
to key blocks ``c - 1``, ``c`` and ``c + 1``. Each query thus sees at least ``window`` keys on either side of its
own block, in time linear in the length. When the keys fit in one block (``window >= Tk``) this is full softmax
attention. Queries and keys of different lengths (cross-attention) are aligned by relative position: query
block ``c`` covers the same fraction of its sequence as key block ``c``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from emule_models.attention.base import ATTENTION, Attention, AttentionShape


def block_geometry(t_q: int, t_k: int, window: int) -> tuple[int, int, int, int]:
    """(blocks, query block size, key block size, keys seen per query block)."""
    blocks = min(math.ceil(t_k / window), t_q)
    b_q, b_k = math.ceil(t_q / blocks), math.ceil(t_k / blocks)
    return blocks, b_q, b_k, b_k if blocks == 1 else 3 * b_k


def with_neighbours(x: torch.Tensor) -> torch.Tensor:
    """(..., N, S, X) blocks -> (..., N, 3S, X): each block with its predecessor and successor (zeros at the ends)."""
    padded = F.pad(x, (0, 0, 0, 0, 1, 1))  # (..., N + 2, S, X)
    return torch.cat([padded[..., :-2, :, :], padded[..., 1:-1, :, :], padded[..., 2:, :, :]], dim=-2)


@ATTENTION.register()
class LocalAttention(Attention):
    name = "local"
    defaults = {"window": 32}
    contiguous = False

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        blocks, b_q, _, seen = block_geometry(t_q, t_k, {**cls.defaults, **shape.options}["window"])
        return shape.heads * 4 * blocks * b_q * seen * shape.head_dim  # scores and weighted values per block

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, h, t_q, d = q.shape
        t_k = k.shape[-2]
        n, b_q, b_k, _ = block_geometry(t_q, t_k, self.options["window"])
        keep = torch.ones(b, t_k, dtype=torch.bool, device=k.device) if mask is None else mask  # (B, Tk)
        # Pad both sequences to whole blocks; padded key slots are masked like padded tokens.
        q = F.pad(q, (0, 0, 0, n * b_q - t_q)).view(b, h, n, b_q, d)  # (B, H, N, bq, D)
        k = F.pad(k, (0, 0, 0, n * b_k - t_k)).view(b, h, n, b_k, d)  # (B, H, N, bk, D)
        v = F.pad(v, (0, 0, 0, n * b_k - t_k)).view(b, h, n, b_k, d)  # (B, H, N, bk, D)
        keep = F.pad(keep, (0, n * b_k - t_k)).view(b, 1, n, b_k, 1)  # (B, 1, N, bk, 1)
        if n > 1:
            k, v, keep = with_neighbours(k), with_neighbours(v), with_neighbours(keep)  # (..., N, 3bk, .)
        k_seen = keep.shape[-2]
        keep = keep.transpose(-2, -1).expand(b, h, n, 1, k_seen)  # (B, H, N, 1, K)
        # SDPA over (batch, head x block) runs a fused kernel: no (bq, K) score matrix is kept per block.
        out = F.scaled_dot_product_attention(
            q.reshape(b, h * n, b_q, d), k.reshape(b, h * n, k_seen, d), v.reshape(b, h * n, k_seen, d),
            attn_mask=keep.reshape(b, h * n, 1, k_seen)).view(b, h, n, b_q, d)  # (B, H, N, bq, D)
        # A block whose window holds no real key (cross-attention to a short sequence) gets zero output, whatever
        # a kernel makes of a fully masked row.
        out = out.masked_fill(~keep.any(-1, keepdim=True), 0.0)
        return out.reshape(b, h, n * b_q, d)[:, :, :t_q]  # (B, H, Tq, D)
