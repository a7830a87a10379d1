"""How modalities are combined, one categorical name each, registered in ``FUSION``.

A fusion takes per-modality tokens ``{name: (B, T, W)}`` with masks ``{name: (B, T)}``; ``encode`` returns the
encoded, normalised tokens of each present modality (same shapes: what masked-patch pretraining reconstructs from)
and ``forward`` pools them into one ``(B, out_width)`` vector per sample. Each also states, in closed form, where
attention is used (for the variants' ``not_supported_reasons``) and its forward FLOPs.

- ``early``: all modalities' tokens, each with a learned modality embedding, go through one encoder.
  A missing modality simply contributes no tokens.
- ``late``: one encoder per modality; each is pooled and the pooled vectors are concatenated
  (``out_width = width x modalities``). A missing modality's slot is zeros.
- ``cross``: one encoder per modality; from ``fusion_layer`` on, every layer adds a cross-attention block in which
  each modality's tokens attend to the tokens of all the other modalities. The pooled vectors are averaged.
  A missing modality is left out of the others' context and of the average; alone, a modality skips the
  cross-attention blocks.
- ``bottleneck``: one encoder per modality; from ``fusion_layer`` on, ``bottleneck_tokens`` shared tokens join each
  modality's sequence and the modalities exchange information only through them: after each layer the
  bottleneck tokens are averaged over the modalities (Nagrani et al., 2021, "Attention Bottlenecks for Multimodal
  Fusion"). The pooled modality vectors are averaged. A missing modality is left out of both averages.

With ``depth: 0`` no fusion builds an attention layer: each modality's tokens are normalised and pooled as above -
all together (``early``), side by side (``late``) or per modality and averaged (``cross``, ``bottleneck``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from emule_models.attention import AttentionShape
from emule_models.layers import Block
from emule_models.registry import Registry

if TYPE_CHECKING:  # config validates fusion names against FUSION, so it imports this module, not the reverse
    from emule_models.config import ModelConfig

# fusions add themselves with ``@FUSION.register()`` (under their ``name``); ``FUSION.lookup(name)`` finds one
FUSION: Registry[type[Fusion]] = Registry("fusion")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: (B, T, W), (B, T) -> (B, W)."""
    w = mask.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class Fusion(nn.Module):
    name: ClassVar[str] = ""
    uses_fusion_layer: ClassVar[bool] = False  # whether ``cfg.fusion_layer`` means anything to it

    @classmethod
    def shapes(cls, cfg: ModelConfig) -> list[AttentionShape]:
        """Every attention shape the fusion builds, so each can be checked against the variant."""
        raise NotImplementedError

    @classmethod
    def flops(cls, cfg: ModelConfig) -> int:
        """Forward matmul FLOPs for one sample with every modality present."""
        raise NotImplementedError

    @classmethod
    def self_attention_lengths(cls, cfg: ModelConfig) -> list[int]:
        """The most tokens each self-attention layer it builds attends over, one entry per layer (what a
        relative position bias is sized by)."""
        raise NotImplementedError

    @classmethod
    def onnx_reasons(cls, cfg: ModelConfig) -> list[str]:
        """Why this fusion cannot be written as an ONNX graph; empty when it can (every fusion so far can)."""
        return []

    @classmethod
    def out_width(cls, cfg: ModelConfig) -> int:
        """Width of the pooled vector handed to the classifier head."""
        return cfg.width

    def encode(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoded, normalised tokens of each present modality: ``{name: (B, T, W)}``."""
        raise NotImplementedError

    def pool(self, encoded: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """Average over the present modalities of their mask-pooled tokens -> (B, W)."""
        return torch.stack([masked_mean(x, masks[n]) for n, x in encoded.items()]).mean(0)

    def forward(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pool(self.encode(tokens, masks), masks)


def self_shape(cfg: ModelConfig, tokens: int) -> AttentionShape:
    """Self-attention over ``tokens``: the only kind that takes a relative position bias (``position: relative``);
    between modalities an offset means nothing."""
    return AttentionShape(heads=cfg.heads, head_dim=cfg.width // cfg.heads, max_q=tokens, max_k=tokens,
                          options=cfg.attention_options, relative=cfg.position == "relative")


def cross_shape(cfg: ModelConfig, queries: int, keys: int) -> AttentionShape:
    return AttentionShape(heads=cfg.heads, head_dim=cfg.width // cfg.heads, max_q=queries, max_k=keys,
                          options=cfg.attention_options)


def block(cfg: ModelConfig, shape: AttentionShape, cross: bool = False) -> Block:
    return Block(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.attention, shape, cross=cross,
                 drop_path=cfg.drop_path)


def block_flops(cfg: ModelConfig, t_q: int, t_k: int) -> int:
    return Block.flops(cfg.width, cfg.mlp_ratio, cfg.attention, cross_shape(cfg, t_q, t_k), t_q, t_k)


def fused_layers(cfg: ModelConfig) -> int:
    """Layers from ``fusion_layer`` on, where ``cross`` and ``bottleneck`` exchange between modalities (none at
    depth 0, whatever ``fusion_layer`` says: it is ignored there)."""
    return max(0, cfg.depth - cfg.fusion_layer)


@FUSION.register()
class EarlyFusion(Fusion):
    name = "early"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.names = [m.name for m in cfg.modalities]
        self.modality = nn.ParameterDict({n: nn.Parameter(torch.zeros(cfg.width)) for n in self.names})
        shape = self_shape(cfg, self.total_tokens(cfg))
        self.blocks = nn.ModuleList(block(cfg, shape) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)

    @staticmethod
    def total_tokens(cfg: ModelConfig) -> int:
        return sum(cfg.tokens(m) for m in cfg.modalities)

    @classmethod
    def shapes(cls, cfg: ModelConfig) -> list[AttentionShape]:
        return [self_shape(cfg, cls.total_tokens(cfg))] if cfg.depth else []

    @classmethod
    def flops(cls, cfg: ModelConfig) -> int:
        t = cls.total_tokens(cfg)
        return cfg.depth * block_flops(cfg, t, t)

    @classmethod
    def self_attention_lengths(cls, cfg: ModelConfig) -> list[int]:
        return [cls.total_tokens(cfg)] * cfg.depth

    def encode(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        present = [n for n in self.names if n in tokens]
        x = torch.cat([tokens[n] + self.modality[n] for n in present], dim=1)  # (B, T, W)
        mask = torch.cat([masks[n] for n in present], dim=1)  # (B, T)
        for b in self.blocks:
            x = b(x, mask=mask)
        return dict(zip(present, self.norm(x).split([tokens[n].shape[1] for n in present], dim=1)))

    def pool(self, encoded: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """One mean over the real tokens of all modalities together -> (B, W)."""
        return masked_mean(torch.cat(list(encoded.values()), dim=1), torch.cat([masks[n] for n in encoded], dim=1))


@FUSION.register()
class LateFusion(Fusion):
    name = "late"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.names = [m.name for m in cfg.modalities]
        self.width = cfg.width
        self.encoders = nn.ModuleDict({
            m.name: nn.ModuleList(block(cfg, self_shape(cfg, cfg.tokens(m))) for _ in range(cfg.depth))
            for m in cfg.modalities})
        self.norms = nn.ModuleDict({n: nn.LayerNorm(cfg.width) for n in self.names})

    @classmethod
    def shapes(cls, cfg: ModelConfig) -> list[AttentionShape]:
        return [self_shape(cfg, cfg.tokens(m)) for m in cfg.modalities] if cfg.depth else []

    @classmethod
    def flops(cls, cfg: ModelConfig) -> int:
        return sum(cfg.depth * block_flops(cfg, cfg.tokens(m), cfg.tokens(m)) for m in cfg.modalities)

    @classmethod
    def self_attention_lengths(cls, cfg: ModelConfig) -> list[int]:
        return [cfg.tokens(m) for m in cfg.modalities for _ in range(cfg.depth)]

    @classmethod
    def out_width(cls, cfg: ModelConfig) -> int:
        return cfg.width * len(cfg.modalities)

    def encode(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for n in self.names:
            if n in tokens:
                x = tokens[n]
                for b in self.encoders[n]:
                    x = b(x, mask=masks[n])
                out[n] = self.norms[n](x)
        return out

    def pool(self, encoded: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """The modalities' pooled vectors side by side -> (B, W * modalities)."""
        some = next(iter(encoded.values()))
        # fixed slots keep the head's input layout; an absent modality's slot is zeros
        empty = some.new_zeros(some.shape[0], self.width)
        return torch.cat([masked_mean(encoded[n], masks[n]) if n in encoded else empty for n in self.names], dim=-1)


@FUSION.register()
class CrossFusion(Fusion):
    name = "cross"
    uses_fusion_layer = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.depth, self.fusion_layer = cfg.depth, cfg.fusion_layer
        self.encoders = nn.ModuleDict({
            m.name: nn.ModuleList(block(cfg, self_shape(cfg, cfg.tokens(m))) for _ in range(cfg.depth))
            for m in cfg.modalities})
        # Only with something to attend to: a single modality gets no cross blocks.
        self.cross = nn.ModuleDict({
            m.name: nn.ModuleList(block(cfg, cross_shape(cfg, cfg.tokens(m), self.context_tokens(cfg, m.name)),
                                        cross=True) for _ in range(fused_layers(cfg)))
            for m in cfg.modalities} if len(cfg.modalities) > 1 else {})
        self.norms = nn.ModuleDict({m.name: nn.LayerNorm(cfg.width) for m in cfg.modalities})

    @staticmethod
    def context_tokens(cfg: ModelConfig, name: str) -> int:
        return sum(cfg.tokens(m) for m in cfg.modalities if m.name != name)

    @classmethod
    def shapes(cls, cfg: ModelConfig) -> list[AttentionShape]:
        shapes = [self_shape(cfg, cfg.tokens(m)) for m in cfg.modalities] if cfg.depth else []
        if len(cfg.modalities) > 1 and fused_layers(cfg):
            shapes += [cross_shape(cfg, cfg.tokens(m), cls.context_tokens(cfg, m.name)) for m in cfg.modalities]
        return shapes

    @classmethod
    def flops(cls, cfg: ModelConfig) -> int:
        total = 0
        for m in cfg.modalities:
            t = cfg.tokens(m)
            total += cfg.depth * block_flops(cfg, t, t)
            if len(cfg.modalities) > 1:
                total += fused_layers(cfg) * block_flops(cfg, t, cls.context_tokens(cfg, m.name))
        return total

    @classmethod
    def self_attention_lengths(cls, cfg: ModelConfig) -> list[int]:
        return [cfg.tokens(m) for m in cfg.modalities for _ in range(cfg.depth)]  # the cross blocks take no bias

    def encode(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        xs = {n: tokens[n] for n in self.encoders if n in tokens}
        for layer in range(self.depth):
            xs = {n: self.encoders[n][layer](x, mask=masks[n]) for n, x in xs.items()}
            if layer < self.fusion_layer or len(xs) < 2:
                continue
            # every modality reads the others' tokens of this same layer, so the order of modalities is irrelevant
            xs = {n: self.cross[n][layer - self.fusion_layer](
                x, mask=masks[n], context=torch.cat([xs[o] for o in xs if o != n], dim=1),  # (B, Tk, W)
                context_mask=torch.cat([masks[o] for o in xs if o != n], dim=1))  # (B, Tk)
                for n, x in xs.items()}
        return {n: self.norms[n](x) for n, x in xs.items()}


@FUSION.register()
class BottleneckFusion(Fusion):
    name = "bottleneck"
    uses_fusion_layer = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.depth, self.fusion_layer = cfg.depth, cfg.fusion_layer
        self.bottleneck = None  # no layer to share it in at depth 0
        if fused_layers(cfg):
            self.bottleneck = nn.Parameter(torch.zeros(cfg.bottleneck_tokens, cfg.width))
            nn.init.trunc_normal_(self.bottleneck, std=0.02)
        self.encoders = nn.ModuleDict({
            m.name: nn.ModuleList(
                block(cfg, self_shape(cfg, cfg.tokens(m) + (cfg.bottleneck_tokens if layer >= cfg.fusion_layer else 0)))
                for layer in range(cfg.depth))
            for m in cfg.modalities})
        self.norms = nn.ModuleDict({m.name: nn.LayerNorm(cfg.width) for m in cfg.modalities})

    @classmethod
    def shapes(cls, cfg: ModelConfig) -> list[AttentionShape]:
        shapes = [self_shape(cfg, cfg.tokens(m) + cfg.bottleneck_tokens) for m in cfg.modalities] \
            if fused_layers(cfg) else []
        if cfg.depth - fused_layers(cfg):
            shapes += [self_shape(cfg, cfg.tokens(m)) for m in cfg.modalities]
        return shapes

    @classmethod
    def flops(cls, cfg: ModelConfig) -> int:
        total = 0
        for m in cfg.modalities:
            t, fused = cfg.tokens(m), cfg.tokens(m) + cfg.bottleneck_tokens
            fusing = fused_layers(cfg)
            total += (cfg.depth - fusing) * block_flops(cfg, t, t) + fusing * block_flops(cfg, fused, fused)
        return total

    @classmethod
    def self_attention_lengths(cls, cfg: ModelConfig) -> list[int]:
        return [cfg.tokens(m) + (cfg.bottleneck_tokens if layer >= cfg.fusion_layer else 0)
                for m in cfg.modalities for layer in range(cfg.depth)]

    def encode(self, tokens: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        xs = {n: tokens[n] for n in self.encoders if n in tokens}
        if self.bottleneck is None:
            return {n: self.norms[n](x) for n, x in xs.items()}
        b = next(iter(xs.values())).shape[0]
        z = self.bottleneck.expand(b, -1, -1)  # (B, Z, W)
        z_mask = torch.ones(b, z.shape[1], dtype=torch.bool, device=z.device)  # (B, Z)
        for layer in range(self.depth):
            if layer < self.fusion_layer:
                xs = {n: self.encoders[n][layer](x, mask=masks[n]) for n, x in xs.items()}
                continue
            joint = {n: self.encoders[n][layer](torch.cat([x, z], dim=1),  # (B, T + Z, W)
                                                mask=torch.cat([masks[n], z_mask], dim=1))
                     for n, x in xs.items()}
            xs = {n: h[:, : xs[n].shape[1]] for n, h in joint.items()}  # (B, T, W) each
            # the averaged bottleneck tokens are the only path between modalities
            z = torch.stack([h[:, -z.shape[1]:] for h in joint.values()]).mean(0)  # (B, Z, W)
        return {n: self.norms[n](x) for n, x in xs.items()}
