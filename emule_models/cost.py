"""What a candidate costs: parameters, forward FLOPs (closed form, cross-checked), latency, peak memory,
training compute. Pure functions of the config where possible, so costs are known before training.

FLOPs count matrix products only (2 per multiply-add), as ``torch.utils.flop_counter`` does; element-wise work
(softmax, exp, normalisation) is left out of both.

Peak memory is the most bytes held at once by tensors allocated while the measured call runs, above what was
allocated when it started (so it excludes weights and inputs). On CUDA it is read from the caching allocator's
statistics (``torch.cuda.max_memory_allocated``). The CPU allocator keeps no such statistics, so on CPU the call
runs under ``torch.profiler`` with ``profile_memory=True``: every allocation and free is then recorded as a
``[memory]`` event with its size, and the running sum of those events, in time order, peaks at the answer. It
counts what torch's allocator hands out, including buffers freed inside one kernel, and nothing that other
libraries allocate on the side (``tracemalloc`` would see none of torch's allocations; resident-set size would
see the allocator's caching instead).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter

from emule_models.config import ModelConfig
from emule_models.embed import embed_flops, embed_params
from emule_models.fusion import FUSION
from emule_models.model import build_model, example_inputs
from emule_models.position import RelativeBias, absolute_params
from emule_models.train import check_time_limit


def count_parameters(module: nn.Module) -> int:
    """Parameters of a built module, counted (``param_count`` gives the same for a config, without a model)."""
    return sum(p.numel() for p in module.parameters())


def param_count(cfg: ModelConfig) -> int:
    """Parameters of the model ``cfg`` describes - what a trial reports as ``param_count`` - without keeping it
    (built on the meta device: no memory); equal to ``count_parameters(build_model(cfg))``."""
    with torch.device("meta"):
        return count_parameters(build_model(cfg))


def front_end_params(cfg: ModelConfig) -> int:
    """Parameters of the tokenizers (stems or patch projections, position and channel tables), in closed form
    (the stems' in ``emule_models.stems``); LITE's fixed filters are buffers, not parameters."""
    return sum(embed_params(cfg, m) for m in cfg.modalities)


def position_params(cfg: ModelConfig) -> int:
    """Parameters that carry position, in closed form: learned tables (series by ``position``, images always),
    and with ``position: relative`` a bias table per self-attention layer. Fixed tables hold none."""
    tables = sum(absolute_params(cfg.position, cfg.series_patches(m), cfg.width) if m.kind == "series"
                 else absolute_params("learned", cfg.tokens(m), cfg.width) for m in cfg.modalities)
    if cfg.position != "relative":
        return tables
    return tables + sum(RelativeBias.params(cfg.heads, t) for t in FUSION[cfg.fusion].self_attention_lengths(cfg))


def forward_flops(cfg: ModelConfig) -> int:
    """Forward matmul FLOPs for one sample at full (padded) length with every modality present, in closed form."""
    embed = sum(embed_flops(cfg, m) for m in cfg.modalities)
    head = 2 * FUSION[cfg.fusion].out_width(cfg) * cfg.num_classes
    return embed + FUSION[cfg.fusion].flops(cfg) + head


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


def counted_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` as torch's FlopCounterMode counts them, without autograd."""
    _register_cpu_sdpa_formula()
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def measured_flops(model: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """Forward FLOPs per sample as torch's FlopCounterMode counts them (for cross-checking the closed form)."""
    batch = next(iter(inputs.values())).shape[0]
    return counted_flops(lambda: model(inputs)) // batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency_ms(model: nn.Module, inputs: dict[str, torch.Tensor], repeats: int = 20, warmup: int = 3) -> float:
    """Median time of a forward pass on the inputs' device, in milliseconds: wall clock on CPU, CUDA events on
    a GPU."""
    device = next(iter(inputs.values())).device
    was_training = model.training
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            check_time_limit()
            if device.type == "cuda":  # CUDA events time the GPU's own work, not the launch overhead around it
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(inputs)
                end.record()
                end.synchronize()
                elapsed = start.elapsed_time(end)
            else:
                begin = time.perf_counter()
                model(inputs)
                elapsed = (time.perf_counter() - begin) * 1e3
            if i >= warmup:
                times.append(elapsed)
    model.train(was_training)
    return statistics.median(times)


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by torch while ``fn()`` runs, above those allocated when it starts (method in the
    module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - start
    if device.type != "cpu":
        raise ValueError(f"device: {device.type!r} not accepted for peak memory; accepted: ['cpu', 'cuda']")
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    held = peak = 0
    for _, nbytes in events:  # frees are negative
        held += nbytes
        peak = max(peak, held)
    return peak


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side writes trace lines (``USDT: ... profiler_start``) straight to file descriptor 2 on
    every use; in a search that is several lines per trial. Point fd 2 at /dev/null for the profiled call only."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def measure(model: nn.Module, cfg: ModelConfig, train_batch: int, device: torch.device | str = "cpu",
            repeats: int = 20) -> dict[str, float]:
    """Measured costs of ``model`` on ``device`` (the trial's own), on random inputs of ``cfg``'s shapes.

    Returns:
        latency_ms_batch1, latency_ms_train_batch: median forward time (eval mode, no grad) at batch 1 and at
            the training batch.
        peak_memory_bytes_batch1: peak of one such forward at batch 1 (what serving one sample needs).
        peak_memory_bytes_train_step: peak of one training-mode forward and backward at the training batch
            (what a trial needs besides weights and optimiser state).
    """
    device = torch.device(device)
    model.to(device)
    one, batch = example_inputs(cfg, 1, device), example_inputs(cfg, train_batch, device)
    out = {"latency_ms_batch1": latency_ms(model, one, repeats),
           "latency_ms_train_batch": latency_ms(model, batch, repeats)}
    was_training = model.training

    def serve() -> None:
        with torch.no_grad():
            model(one)

    def train_step() -> None:
        model(batch).sum().backward()

    model.eval()
    out["peak_memory_bytes_batch1"] = peak_memory_bytes(serve, device)
    model.train()
    out["peak_memory_bytes_train_step"] = peak_memory_bytes(train_step, device)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return out
