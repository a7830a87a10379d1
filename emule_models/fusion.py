"""How modalities are combined, one categorical name each, registered in ``FUSION``.

A fusion takes per-modality tokens ``{name: (B, T, W)}`` with masks ``{name: (B, T)}`` and returns one pooled
``(B, W)`` vector per sample. Each also states, in closed form, where attention is used (for the variants'
``not_supported_reasons``) and its forward FLOPs.

- ``early``: all modalities' tokens, each with a learned modality embedding, go through one encoder. A missing
  modality simply contributes no tokens.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from emule_models.attention import AttentionShape
from emule_models.config import ModelConfig
from emule_models.layers import Block

FUSION: dict[str, type[Fusion]] = {}


def register_fusion(cls: type[Fusion]) -> type[Fusion]:
    if cls.name in FUSION:
        raise ValueError(f"fusion {cls.name!r} registered twice")
    FUSION[cls.name] = cls
    return cls


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: (B, T, W), (B, T) -> (B, W)."""
    w = mask.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def attention_shapes(cfg: ModelConfig) -> list[AttentionShape]:
    return FUSION[cfg.fusion].shapes(cfg)


class Fusion(nn.Module):
    name: ClassVar[str] = ""

    @classmethod
    def shapes(cls, cfg: ModelConfig) -> list[AttentionShape]:
        raise NotImplementedError

    @classmethod
    def flops(cls, cfg: ModelConfig) -> int:
        raise NotImplementedError


def self_shape(cfg: ModelConfig, tokens: int) -> AttentionShape:
    return AttentionShape(heads=cfg.heads, head_dim=cfg.width // cfg.heads, max_q=tokens, max_k=tokens,
                          options=cfg.attention_options)


@register_fusion
class EarlyFusion(Fusion):
    name = "early"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.names = [m.name for m in cfg.modalities]
        self.modality = nn.ParameterDict({n: nn.Parameter(torch.zeros(cfg.width)) for n in self.names})
        shape = self_shape(cfg, self.total_tokens(cfg))
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.attention, shape)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)

    @staticmethod
    def total_tokens(cfg: ModelConfig) -> int:
        return sum(cfg.tokens(m) for m in cfg.modalities)

    @classmethod
    def shapes(cls, cfg: ModelConfig) -> list[AttentionShape]:
        return [self_shape(cfg, cls.total_tokens(cfg))]

    @classmethod
    def flops(cls, cfg: ModelConfig) -> int:
        t = cls.total_tokens(cfg)
        return cfg.depth * Block.flops(cfg.width, cfg.mlp_ratio, cfg.attention, cls.shapes(cfg)[0], t, t)

    def forward(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        present = [n for n in self.names if n in tokens]
        x = torch.cat([tokens[n] + self.modality[n] for n in present], dim=1)  # (B, T, W)
        mask = torch.cat([masks[n] for n in present], dim=1)  # (B, T)
        for block in self.blocks:
            x = block(x, mask=mask)
        return masked_mean(self.norm(x), mask)  # (B, W)
