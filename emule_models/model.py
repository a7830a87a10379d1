"""The multimodal Transformer classifier and ``build_model``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emule_models.config import ModelConfig
from emule_models.embed import build_embed
from emule_models.fusion import FUSION


class MultimodalClassifier(nn.Module):
    """Tokenize each modality, fuse, classify.

    ``forward(inputs, valid=None)``: ``inputs`` maps modality name to a batch tensor (series (B, C, L), image
    (B, C, H, W)); ``valid`` optionally maps a series name to its (B, L) mask of real (unpadded) steps.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.ModuleDict({m.name: build_embed(cfg, m) for m in cfg.modalities})
        self.fusion = FUSION[cfg.fusion](cfg)
        self.head = nn.Linear(FUSION[cfg.fusion].out_width(cfg), cfg.num_classes)

    def forward(self, inputs: dict[str, torch.Tensor], valid: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.head(self.features(inputs, valid))  # (B, classes)

    def features(self, inputs: dict[str, torch.Tensor], valid: dict[str, torch.Tensor] | None = None
                 ) -> torch.Tensor:
        """The pooled representation the head classifies, ``(B, out_width)``: what a row looks like to the model
        (k-center coverage and gradient embeddings read it)."""
        encoded, masks = self.encode(inputs, valid)
        return self.fusion.pool(encoded, masks)  # (B, W)

    def encode(self, inputs: dict[str, torch.Tensor], valid: dict[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Each present modality's encoded tokens ``{name: (B, T, W)}``, in its tokenizer's order, and their
        ``(B, T)`` masks of real tokens: the classifier pools them; pretraining reconstructs patches from them."""
        valid = valid or {}
        tokens, masks = {}, {}
        for name, embed in self.embed.items():
            if name in inputs:  # a missing modality contributes nothing; see emule_models.fusion
                tokens[name], masks[name] = embed(inputs[name], valid.get(name))
        if not tokens:
            raise ValueError(f"inputs: none of the modalities {list(self.embed)} given")
        return self.fusion.encode(tokens, masks), masks


def build_model(config: ModelConfig | dict[str, Any]) -> MultimodalClassifier:
    """Build the model a config describes; a dict is validated like YAML (unknown keys raise).

    Raises ValueError naming the field, its value and the accepted values when the config cannot be built.
    """
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
    return MultimodalClassifier(cfg)


def example_inputs(cfg: ModelConfig, batch: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Random inputs of the shapes ``cfg``'s modalities declare, all present and unpadded (for costing)."""
    return {m.name: torch.randn(batch, m.channels, *((m.length,) if m.kind == "series" else (m.height, m.width)),
                                device=device)
            for m in cfg.modalities}
