"""Several models of one architecture as one classifier: their class probabilities averaged, as LITETime averages
five LITEs and InceptionTime five Inception networks.

``forward`` returns the log of the mean probability, so it reads as logits everywhere a member's output does:
its softmax is the mean probability, its argmax the ensemble's class, cross-entropy on it the ensemble's loss.
Export (ONNX, the MLflow registry) sees one module with the members' inputs and ``cfg``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from emule_models.config import ModelConfig
from emule_models.model import MultimodalClassifier, build_model


class MeanEnsemble(nn.Module):
    """``members`` (at least one, all of the same config) averaged in probability."""

    def __init__(self, members: Sequence[MultimodalClassifier]):
        super().__init__()
        if not members:
            raise ValueError("members: empty; accepted: one or more models of one config")
        if any(m.cfg != members[0].cfg for m in members):
            raise ValueError("members: models of different configs; accepted: models of one config")
        self.cfg: ModelConfig = members[0].cfg
        self.members = nn.ModuleList(members)

    def forward(self, inputs: dict[str, torch.Tensor], valid: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        log_probs = torch.stack([torch.log_softmax(m(inputs, valid), dim=-1) for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def build_ensemble(cfg: ModelConfig, size: int) -> MeanEnsemble:
    """``size`` freshly initialised models of ``cfg`` as one ensemble (weights to be loaded)."""
    if size < 1:
        raise ValueError(f"size: {size}; accepted: an integer >= 1")
    return MeanEnsemble([build_model(cfg) for _ in range(size)])
