"""Compression on export: int8 dynamic quantization of every ``nn.Linear``, with torchao.

Weights are stored as int8 with one scale per output row; activations are quantized per token on the fly at
each call, so no calibration data is needed. Attention is built from ``nn.Linear`` (``emule_models.layers``), so
projections, feed-forward blocks, tokenizers, Linformer's length projections and the head are all covered;
position embeddings, LayerNorms and Performer's random features stay float32. The quantized model runs on CPU.

torchao (``Int8DynamicActivationInt8WeightConfig``) is the maintained successor of the deprecated
``torch.ao.quantization.quantize_dynamic``; it is part of the ``deploy`` extra and imported only here. Its
quantized weights are tensor subclasses inside ordinary ``nn.Linear`` modules, so a quantized ``state_dict``
saves and loads with ``torch.load(weights_only=True)``. In eager mode on CPU its int8 matmuls are slower than
float32 ones (it is built for ``torch.compile``): this path buys size, not speed.
"""

from __future__ import annotations

import copy
import io
import logging
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
    quantize_, config = _torchao()
    quantized = copy.deepcopy(model).cpu().eval()
    quantize_(quantized, config(), filter_fn=lambda module, _: isinstance(module, nn.Linear))
    return quantized, Compression(state_dict_bytes(model), state_dict_bytes(quantized))


def is_quantized(linear: nn.Linear) -> bool:
    """Whether ``linear`` holds torchao int8 weights."""
    return type(linear.weight).__name__ == "Int8Tensor"


def _torchao():
    # Importing torchao logs warnings that say nothing about this use: its CUDA kernels cannot load on a CPU-only
    # torch (one line per file), and torch notes a deprecated call in torchao's own code.
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        raise ImportError("int8 quantization needs torchao, not installed here; install the deploy extra: "
                          "pip install -e '.[deploy]'") from None
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return quantize_, Int8DynamicActivationInt8WeightConfig
