"""Compression on export: int8 dynamic quantization of every ``nn.Linear``.

Weights are stored as int8 with a per-tensor scale; activations are quantized on the fly at each call, so no
calibration data is needed. Attention is built from ``nn.Linear`` (``emule_models.layers``), so projections,
feed-forward blocks, tokenizers, Linformer's length projections and the head are all covered; position
embeddings, LayerNorms and Performer's random features stay float32. The quantized model runs on CPU only.

Uses ``torch.ao.quantization.quantize_dynamic``. torch marks it deprecated in favour of torchao, which is not a
dependency of this project; its two deprecation warnings (the module's, and the one for the quantized tensors
it creates) are silenced around that one call only.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Compression:
    """Sizes of the float and the int8 model, in bytes of their serialised ``state_dict``."""

    float_bytes: int
    int8_bytes: int

    @property
    def ratio(self) -> float:
        return self.float_bytes / self.int8_bytes


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what exporting the weights costs on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def quantize_int8(model: nn.Module) -> tuple[nn.Module, Compression]:
    """An int8 dynamically quantized copy of ``model`` (on CPU, in eval mode) and the measured sizes.

    The original model is left untouched.
    """
    float_model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor", category=UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)
    return quantized, Compression(state_dict_bytes(model), state_dict_bytes(quantized))
