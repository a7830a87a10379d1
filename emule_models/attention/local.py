"""Blocked local attention: exact softmax attention inside a window of neighbouring blocks.

The keys are cut into blocks of ``window`` tokens and the queries into as many blocks; query block ``c`` attends
to key blocks ``c - 1``, ``c`` and ``c + 1``. Each query thus sees at least ``window`` keys on either side of its
own block, in time linear in the length. When the keys fit in one block (``window >= Tk``) this is full softmax
attention. Queries and keys of different lengths (cross-attention) are aligned by relative position: query
block ``c`` covers the same fraction of its sequence as key block ``c``.

With ``position: relative`` (self-attention: query and key blocks of one size) a learned bias per head and offset
is added to the scores of each block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from emule_models.attention.base import ATTENTION, Attention, AttentionShape
from emule_models.position import RelativeBias


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
    relative_bias = True

    def __init__(self, shape: AttentionShape):
        super().__init__(shape)
        self.relative = RelativeBias(shape.heads, shape.max_k) if shape.relative else None

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
        attn_mask = keep.reshape(b, h * n, 1, k_seen)
        if self.relative is not None:
            attn_mask = self._relative_mask(keep, n, b_q, b_k, q.dtype).reshape(b, h * n, b_q, k_seen)
        # SDPA over (batch, head x block) runs a fused kernel: no (bq, K) score matrix is kept per block.
        out = F.scaled_dot_product_attention(
            q.reshape(b, h * n, b_q, d), k.reshape(b, h * n, k_seen, d), v.reshape(b, h * n, k_seen, d),
            attn_mask=attn_mask).view(b, h, n, b_q, d)  # (B, H, N, bq, D)
        # A block whose window holds no real key (cross-attention to a short sequence) gets zero output, whatever
        # a kernel makes of a fully masked row.
        out = out.masked_fill(~keep.any(-1, keepdim=True), 0.0)
        return out.reshape(b, h, n * b_q, d)[:, :, :t_q]  # (B, H, Tq, D)

    def _relative_mask(self, keep: torch.Tensor, n: int, b_q: int, b_k: int, dtype: torch.dtype) -> torch.Tensor:
        """(B, H, N, bq, K) additive mask: the relative bias of each query and key slot, lowest where ``keep``
        (B, H, N, 1, K) is False. Self-attention blocks are of one size, so the offset of key slot j from query i
        is the same in every block: j - i, less a block when the window starts at the previous block."""
        slots = torch.arange(keep.shape[-1], device=keep.device) - (b_k if n > 1 else 0)  # (K,)
        offsets = slots[None, :] - torch.arange(b_q, device=keep.device)[:, None]  # (bq, K)
        bias = self.relative(offsets).to(dtype)[None, :, None]  # (1, H, 1, bq, K)
        return bias.masked_fill(~keep, torch.finfo(dtype).min)
