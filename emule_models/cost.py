"""What a candidate costs: parameters, forward FLOPs (closed form, cross-checked), latency, peak memory,
training compute. Pure functions of the config where possible, so costs are known before training."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils import flop_counter

from emule_models.config import ModelConfig
from emule_models.fusion import FUSION


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_count(cfg: ModelConfig) -> int:
    """Parameters of the model ``cfg`` describes, without keeping it (built on the meta device: no memory)."""
    from emule_models.model import build_model

    with torch.device("meta"):
        return count_params(build_model(cfg))


def forward_flops(cfg: ModelConfig) -> int:
    """Forward matmul FLOPs for one sample at full (padded) length, in closed form."""
    embed = 0
    for m in cfg.modalities:
        tokens = cfg.tokens(m)
        if m.kind == "series":
            in_dim = cfg.patch_len if cfg.channel_mode == "independent" else cfg.patch_len * m.channels
        else:
            in_dim = m.channels * cfg.image_patch ** 2
        embed += 2 * tokens * in_dim * cfg.width
    return embed + FUSION[cfg.fusion].flops(cfg) + 2 * cfg.width * cfg.num_classes


def training_flops(cfg: ModelConfig, samples_seen: int) -> int:
    """Training compute: forward + backward taken as 3 x forward, times samples seen."""
    return 3 * forward_flops(cfg) * samples_seen


# CPU SDPA runs a flash kernel that FlopCounterMode has no formula for (it would count 0).
def _register_cpu_sdpa_formula() -> None:
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(op)
    def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def measured_flops(model: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """Forward FLOPs per sample as torch's FlopCounterMode counts them (for cross-checking the closed form)."""
    _register_cpu_sdpa_formula()
    batch = next(iter(inputs.values())).shape[0]
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False) as counter:
        model(inputs)
    return counter.get_total_flops() // batch


def latency_ms(model: nn.Module, inputs: dict[str, torch.Tensor], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of a forward pass on the inputs' device, in milliseconds (CUDA synchronised)."""
    device = next(iter(inputs.values())).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    was_training = model.training
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(inputs)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    model.train(was_training)
    return statistics.median(times)
