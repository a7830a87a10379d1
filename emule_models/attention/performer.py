"""Performer's FAVOR+ (Choromanski et al., 2021): softmax attention approximated with positive orthogonal
random features, in time linear in the sequence length.

exp(q . k) = E_w[phi(q) . phi(k)] with phi(x) = exp(w . x - |x|^2 / 2), w ~ N(0, I). Drawing the ``features``
projections as orthogonal blocks (rows rescaled to Gaussian norms) keeps the estimate unbiased and lowers its
variance; positive features keep the normaliser positive, which trigonometric features do not.
"""

from __future__ import annotations

import math

import torch

from emule_models.attention.base import ATTENTION, Attention, AttentionShape


def orthogonal_gaussian(features: int, dim: int) -> torch.Tensor:
    """(features, dim) rows that are orthogonal within each block of ``dim`` and have chi(dim)-distributed norms,
    so every row is marginally N(0, I)."""
    blocks = []
    for _ in range(math.ceil(features / dim)):
        q, _ = torch.linalg.qr(torch.randn(dim, dim))  # (D, D), orthonormal columns
        blocks.append(q.T)
    directions = torch.cat(blocks)[:features]  # (M, D)
    norms = torch.randn(features, dim).norm(dim=1, keepdim=True)  # (M, 1)
    return directions * norms


@ATTENTION.register()
class PerformerAttention(Attention):
    name = "performer"
    defaults = {"features": 64}

    def __init__(self, shape: AttentionShape):
        super().__init__(shape)
        # A buffer, not a parameter: fixed at construction, saved with the model so a reload reproduces it.
        self.register_buffer("projection", orthogonal_gaussian(self.options["features"], shape.head_dim))  # (M, D)

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        d, m = shape.head_dim, {**cls.defaults, **shape.options}["features"]
        # random projections of q and k; phi(k)^T v; phi(q) (phi(k)^T v); normaliser phi(q) . sum phi(k)
        return shape.heads * (2 * (t_q + t_k) * d * m + 2 * t_k * m * d + 2 * t_q * m * d + 2 * t_q * m)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        scale = q.shape[-1] ** -0.25  # splits softmax's 1/sqrt(D) between q and k
        q, k = q * scale, k * scale
        # log phi(x) = w . x - |x|^2 / 2, built in place: each step would otherwise hold another (B, H, T, M) copy.
        # (In place is safe for autograd: a matmul keeps its inputs, not its output.)
        log_q = torch.matmul(q, self.projection.T).sub_((q * q).sum(-1, keepdim=True) / 2)  # (B, H, Tq, M)
        log_k = torch.matmul(k, self.projection.T).sub_((k * k).sum(-1, keepdim=True) / 2)  # (B, H, Tk, M)
        if mask is not None:
            log_k.masked_fill_(~mask[:, None, :, None], float("-inf"))  # exp gives exactly 0: padded keys add nothing
        # Shifts cancel in the ratio, so they are constants to autograd: one per query, and one per (batch, head)
        # for the keys, over real keys only. Each makes the largest feature exactly 1, so nothing that matters
        # underflows.
        phi_q = log_q.sub_(log_q.detach().amax(-1, keepdim=True)).exp_()  # (B, H, Tq, M)
        k_shift = log_k.detach().amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(log_k.dtype).min)
        phi_k = log_k.sub_(k_shift).exp_()  # (B, H, Tk, M)
        kv = torch.matmul(phi_k.transpose(-2, -1), v)  # (B, H, M, D)
        k_sum = phi_k.sum(dim=-2, keepdim=True)  # (B, H, 1, M)
        norm = torch.matmul(phi_q, k_sum.transpose(-2, -1))  # (B, H, Tq, 1)
        return torch.matmul(phi_q, kv) / norm.clamp_min(torch.finfo(norm.dtype).tiny)  # (B, H, Tq, D)
