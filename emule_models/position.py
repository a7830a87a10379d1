"""Position information of series tokens, one categorical name (``ModelConfig.position``):

- ``learned``: a trained ``(T, W)`` table added to the tokens (the default, and what images always get).
- ``sinusoidal``: the fixed sines and cosines of the token index (Vaswani et al. 2017).
- ``tape``: ConvTran's time Absolute Position Encoding (Foumani et al. 2023): the same sinusoids with every
  frequency scaled by ``W / T``. A series gives few tokens for its width; unscaled, most of the width then holds
  frequencies too low to tell neighbouring tokens apart, and the dot product of two encodings stops falling with
  their distance.
- ``relative``: no absolute encoding; every self-attention layer adds a learned bias per head and per offset
  between key and query token to its attention scores (ConvTran's eRPE). It needs a score matrix to add to, so only
  the variants with ``relative_bias`` take it: ``softmax`` and ``local``. It is added before the softmax (ConvTran
  adds it after): padded keys then keep exactly zero weight, and SDPA stays fused. Offsets are those of the
  sequence the layer attends over: a patch offset within one channel-mixing series; across modalities (early
  fusion) or channels (channel-independent tokens) an offset of the concatenated sequence, still learned per
  offset. Cross-attention between modalities has none.
- ``none``: no position information: the tokens are a set (the stems' features still see their neighbourhood).

Images keep their learned table whatever the setting: their tokens lie on a 2-D grid, where a 1-D encoding of the
row-major index would make vertical neighbours far apart.
"""

from __future__ import annotations

import math

import torch
from torch import nn

POSITIONS = ("learned", "sinusoidal", "tape", "relative", "none")


def sinusoid(tokens: int, width: int, scale: float = 1.0) -> torch.Tensor:
    """(T, W) table: sines in the even columns, cosines in the odd, frequencies ``10000^(-2i/W)`` times ``scale``."""
    position = torch.arange(tokens, dtype=torch.float32)[:, None]  # (T, 1)
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))  # (ceil W/2,)
    angle = position * frequency * scale  # (T, ceil W/2)
    table = torch.zeros(tokens, width)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : width // 2])
    return table


def absolute_position(position: str, tokens: int, width: int) -> nn.Parameter | torch.Tensor | None:
    """The table added to ``tokens`` tokens of ``width``: a parameter (``learned``), a constant (``sinusoidal``,
    ``tape``) or None (``relative``, ``none``: nothing is added)."""
    if position == "learned":
        table = nn.Parameter(torch.zeros(tokens, width))
        nn.init.trunc_normal_(table, std=0.02)
        return table
    if position == "sinusoidal":
        return sinusoid(tokens, width)
    if position == "tape":
        return sinusoid(tokens, width, scale=width / tokens)
    return None


def absolute_params(position: str, tokens: int, width: int) -> int:
    """Parameters of ``absolute_position``'s table."""
    return tokens * width if position == "learned" else 0


def key_offsets(t_q: int, t_k: int, device: torch.device | None = None) -> torch.Tensor:
    """(Tq, Tk) offsets ``key index - query index``."""
    return torch.arange(t_k, device=device)[None, :] - torch.arange(t_q, device=device)[:, None]


class RelativeBias(nn.Module):
    """A learned bias per head and per offset ``key - query`` in ``(-max_k, max_k)``, zero at the start (as eRPE):
    ``forward(offsets)`` maps an integer tensor of offsets to ``(H, *offsets.shape)`` biases; offsets beyond the
    table (only slots that are masked anyway) take its last entries."""

    def __init__(self, heads: int, max_k: int):
        super().__init__()
        self.max_k = max_k
        self.table = nn.Parameter(torch.zeros(heads, 2 * max_k - 1))  # (H, 2K - 1)

    @staticmethod
    def params(heads: int, max_k: int) -> int:
        return heads * (2 * max_k - 1)

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        index = offsets.clamp(1 - self.max_k, self.max_k - 1) + self.max_k - 1
        return self.table[:, index]  # (H, *offsets.shape)
