"""Nystromformer (Xiong et al., 2021): softmax attention through ``landmarks`` segment-mean queries and keys.

softmax(Q K^T) ~ softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T), with Q~, K~ the means of contiguous
segments of the real queries and keys. With as many landmarks as tokens every segment is one token and the
product is exact (up to the iterative pseudo-inverse).

Landmarks are capped at the shorter of the two sequences. Segments are cut from the padded length, so a sample
whose real tokens end early has empty segments; their landmark is the zero vector, one more point for the
Nystrom approximation that carries nothing from the padding.
"""

from __future__ import annotations

import torch

from emule_models.attention.base import ATTENTION, Attention, AttentionShape


def segment_means(x: torch.Tensor, segments: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of the real rows in each of ``segments`` contiguous, near-equal segments: (B, H, T, D) -> (B, H, S, D)."""
    t = x.shape[-2]
    segment = torch.arange(t, device=x.device) * segments // t  # (T,), sizes differ by at most one
    keep = (torch.ones(x.shape[0], t, dtype=x.dtype, device=x.device) if mask is None
            else mask.to(x.dtype))  # (B, T)
    x = x.masked_fill(keep[:, None, :, None] == 0, 0.0)  # masked_fill: padded rows may hold anything
    sums = x.new_zeros(*x.shape[:2], segments, x.shape[-1]).index_add_(2, segment, x)  # (B, H, S, D)
    counts = keep.new_zeros(keep.shape[0], segments).index_add_(1, segment, keep)  # (B, S)
    return sums / counts.clamp_min(1.0)[:, None, :, None]


def iterative_pinv(a: torch.Tensor, iters: int) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of (..., M, M) by the matmul-only iteration of Razavi et al. (2014), as in
    Nystromformer; matmuls only, so it runs fast on any device and its FLOPs are countable."""
    # softmax rows sum to 1, so 1 / (max column sum) makes the start a contraction: the iteration converges.
    z = a.transpose(-2, -1) / a.sum(-2).amax(-1)[..., None, None]  # (..., M, M)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    for _ in range(iters):
        az = torch.matmul(a, z)
        z = 0.25 * torch.matmul(z, 13 * eye - torch.matmul(az, 15 * eye - torch.matmul(az, 7 * eye - az)))
    return z


@ATTENTION.register()
class NystromAttention(Attention):
    name = "nystrom"
    defaults = {"landmarks": 32, "pinv_iters": 6}

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        options = {**cls.defaults, **shape.options}
        d, m = shape.head_dim, min(options["landmarks"], t_q, t_k)
        kernels = 2 * t_q * m * d + 2 * m * m * d + 2 * m * t_k * d  # Q K~^T, Q~ K~^T, Q~ K^T
        pinv = options["pinv_iters"] * 4 * 2 * m ** 3  # four (M, M) products per iteration
        values = 2 * m * t_k * d + 2 * m * m * d + 2 * t_q * m * d  # right to left: never a (Tq, Tk) matrix
        return shape.heads * (kernels + pinv + values)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        m = min(self.options["landmarks"], q.shape[-2], k.shape[-2])
        q = q * q.shape[-1] ** -0.5
        q_land = segment_means(q, m, q_mask)  # (B, H, M, D)
        k_land = segment_means(k, m, mask)  # (B, H, M, D)
        f1 = torch.softmax(torch.matmul(q, k_land.transpose(-2, -1)), dim=-1)  # (B, H, Tq, M)
        f2 = torch.softmax(torch.matmul(q_land, k_land.transpose(-2, -1)), dim=-1)  # (B, H, M, M)
        s3 = torch.matmul(q_land, k.transpose(-2, -1))  # (B, H, M, Tk)
        if mask is not None:
            s3 = s3.masked_fill(~mask[:, None, None, :], torch.finfo(s3.dtype).min)
        f3v = torch.matmul(torch.softmax(s3, dim=-1), v)  # (B, H, M, D)
        return torch.matmul(f1, torch.matmul(iterative_pinv(f2, self.options["pinv_iters"]), f3v))  # (B, H, Tq, D)
