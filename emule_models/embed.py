"""Tokenizers: time-series patches (channel-mixing or channel-independent) and ViT-style image patches."""

from __future__ import annotations

import torch
from torch import nn

from emule_models.config import ModalitySpec, ModelConfig


class SeriesEmbed(nn.Module):
    """(B, C, L) series, padded to L, -> (B, T, W) patch tokens and a (B, T) mask of patches holding real data.

    ``mixing``: one token per patch over all channels (T = patches). ``independent``: one token per channel and
    patch with a shared patch projection plus a channel embedding (T = channels x patches), as in PatchTST.
    """

    def __init__(self, cfg: ModelConfig, m: ModalitySpec):
        super().__init__()
        self.patch_len, self.stride, self.mode = cfg.patch_len, cfg.patch_stride, cfg.channel_mode
        self.patches = cfg.series_patches(m)
        in_dim = cfg.patch_len if self.mode == "independent" else cfg.patch_len * m.channels
        self.proj = nn.Linear(in_dim, cfg.width)
        self.pos = nn.Parameter(torch.zeros(self.patches, cfg.width))
        self.channel = nn.Parameter(torch.zeros(m.channels, 1, cfg.width)) if self.mode == "independent" else None
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, _ = x.shape
        patches = x.unfold(-1, self.patch_len, self.stride)[:, :, : self.patches]  # (B, C, N, P)
        if valid is None:
            mask = torch.ones(b, self.patches, dtype=torch.bool, device=x.device)
        else:  # a patch is real when its first step is real
            mask = valid.unfold(-1, self.patch_len, self.stride)[:, : self.patches, 0]  # (B, N)
        if self.mode == "independent":
            tokens = self.proj(patches) + self.pos + self.channel  # (B, C, N, W)
            return tokens.reshape(b, c * self.patches, -1), mask.repeat(1, c)  # (B, C*N, W), (B, C*N)
        tokens = self.proj(patches.permute(0, 2, 1, 3).reshape(b, self.patches, -1))  # (B, N, W)
        return tokens + self.pos, mask

    def flops(self) -> int:
        tokens = self.patches * (self.channel.shape[0] if self.channel is not None else 1)
        return 2 * tokens * self.proj.in_features * self.proj.out_features


class ImageEmbed(nn.Module):
    """(B, C, H, W) image -> (B, T, W) tokens, one per non-overlapping square patch."""

    def __init__(self, cfg: ModelConfig, m: ModalitySpec):
        super().__init__()
        self.p = cfg.image_patch
        self.patches = (m.height // self.p) * (m.width // self.p)
        self.proj = nn.Linear(m.channels * self.p * self.p, cfg.width)
        self.pos = nn.Parameter(torch.zeros(self.patches, cfg.width))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c = x.shape[:2]
        p = self.p
        x = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, H/p, W/p, p, p)
        x = x.permute(0, 2, 3, 1, 4, 5).reshape(b, self.patches, c * p * p)  # (B, T, C*p*p)
        mask = torch.ones(b, self.patches, dtype=torch.bool, device=x.device)
        return self.proj(x) + self.pos, mask

    def flops(self) -> int:
        return 2 * self.patches * self.proj.in_features * self.proj.out_features


def build_embed(cfg: ModelConfig, m: ModalitySpec) -> nn.Module:
    return SeriesEmbed(cfg, m) if m.kind == "series" else ImageEmbed(cfg, m)
