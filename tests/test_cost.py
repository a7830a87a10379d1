"""Costs: closed forms against what torch counts, and the measured costs' contracts (no timed assertions)."""

from __future__ import annotations

import itertools

import pytest
import torch

from emule_models import ModelConfig, build_model
from emule_models.attention import ATTENTION
from emule_models.config import TOKENIZERS
from emule_models.cost import (
    count_parameters,
    forward_flops,
    front_end_params,
    measure,
    measured_flops,
    param_count,
    peak_memory_bytes,
    position_params,
    training_flops,
)
from emule_models.fusion import FUSION
from emule_models.model import example_inputs
from emule_models.position import POSITIONS

torch.set_num_threads(1)

MODALITIES = ({"name": "outline", "kind": "series", "channels": 2, "length": 30},
              {"name": "silhouette", "kind": "image", "channels": 1, "height": 8, "width": 8})
TINY = {"performer": {"features": 8}, "nystrom": {"landmarks": 4}, "linformer": {"proj_len": 4},
        "local": {"window": 3}}


def config(attention: str = "softmax", fusion: str = "early", **overrides) -> ModelConfig:
    fields = dict(modalities=MODALITIES, num_classes=3, attention=attention, attention_options=TINY.get(attention, {}),
                  depth=2, width=16, heads=2, fusion=fusion, fusion_layer=1, patch_len=4, image_patch=4)
    return ModelConfig(**{**fields, **overrides})


@pytest.mark.parametrize("attention,fusion", list(itertools.product(sorted(ATTENTION), sorted(FUSION))))
def test_closed_form_forward_flops_match_flop_counter(attention, fusion):
    torch.manual_seed(0)
    cfg = config(attention, fusion)
    measured = measured_flops(build_model(cfg), example_inputs(cfg, 2))
    assert forward_flops(cfg) == pytest.approx(measured, rel=0.05)


@pytest.mark.parametrize("overrides", [dict(channel_mode="independent"), dict(patch_len=8, patch_stride=3),
                                       dict(tokenizer="conv", conv_kernel=5, conv_dilation=2),
                                       dict(tokenizer="conv", channel_mode="independent", series_norm="sample"),
                                       dict(mlp_ratio=1.5, heads=4), dict(fusion="bottleneck", bottleneck_tokens=1,
                                                                          fusion_layer=0)])
def test_closed_form_follows_the_tokenizer_and_layer_fields(overrides):
    torch.manual_seed(0)
    cfg = config("nystrom", **{"fusion": "cross", **overrides})
    measured = measured_flops(build_model(cfg), example_inputs(cfg, 2))
    assert forward_flops(cfg) == pytest.approx(measured, rel=0.05)


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize("options", [dict(channel_mode="mixing"), dict(channel_mode="independent"),
                                     dict(stem_filters="learned", stem_layers=1, conv_kernel=4),
                                     dict(stem_layers=3, conv_kernel=13, conv_dilation=2)])
def test_every_tokenizer_has_closed_form_params_and_flops(tokenizer, options):
    torch.manual_seed(0)
    cfg = config("softmax", tokenizer=tokenizer, **options)
    model = build_model(cfg)
    assert front_end_params(cfg) == sum(count_parameters(e) for e in model.embed.values())
    assert forward_flops(cfg) == pytest.approx(measured_flops(model, example_inputs(cfg, 2)), rel=1e-6)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention,fusion", [("softmax", f) for f in sorted(FUSION)] + [("local", "bottleneck")])
def test_every_position_has_closed_form_params_and_flops(position, attention, fusion):
    torch.manual_seed(0)
    cfg = config(attention, fusion, position=position, channel_mode="independent")
    model = build_model(cfg)
    held = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".pos") or ".relative." in n)
    assert position_params(cfg) == held
    assert front_end_params(cfg) == sum(count_parameters(e) for e in model.embed.values())
    assert forward_flops(cfg) == pytest.approx(measured_flops(model, example_inputs(cfg, 2)), rel=0.05)


@pytest.mark.parametrize("fusion", sorted(FUSION))
@pytest.mark.parametrize("tokenizer", ["patch", "lite"])
def test_closed_forms_hold_at_depth_zero(fusion, tokenizer):
    torch.manual_seed(0)
    cfg = config("linear", fusion, depth=0, heads=3, fusion_layer=5, tokenizer=tokenizer)
    model = build_model(cfg)
    assert param_count(cfg) == count_parameters(model)
    assert forward_flops(cfg) == measured_flops(model, example_inputs(cfg, 2))
    assert FUSION[fusion].flops(cfg) == 0 and FUSION[fusion].self_attention_lengths(cfg) == []


@pytest.mark.parametrize("fusion", sorted(FUSION))
def test_closed_form_holds_for_three_modalities(fusion):
    torch.manual_seed(0)
    third = {"name": "pressure", "kind": "series", "channels": 3, "length": 13}
    cfg = config("local", fusion, modalities=(*MODALITIES, third), channel_mode="independent")
    measured = measured_flops(build_model(cfg), example_inputs(cfg, 2))
    assert forward_flops(cfg) == pytest.approx(measured, rel=0.05)


@pytest.mark.parametrize("attention,fusion", list(itertools.product(sorted(ATTENTION), sorted(FUSION))))
def test_param_count_without_building_matches_the_model(attention, fusion):
    cfg = config(attention, fusion)
    assert param_count(cfg) == count_parameters(build_model(cfg))


def test_training_compute_is_three_forwards_per_sample_seen():
    cfg = config()
    assert training_flops(cfg, 1000) == 3 * forward_flops(cfg) * 1000


def test_softmax_flops_grow_quadratically_and_linear_variants_linearly():
    def attention_flops(attention: str, length: int) -> int:
        series = {"name": "s", "kind": "series", "channels": 1, "length": length}
        cfg = config(attention, modalities=(series,), patch_len=1, attention_options={})
        return FUSION["early"].flops(cfg)

    assert attention_flops("softmax", 4096) / attention_flops("softmax", 1024) > 8
    for name, cls in ATTENTION.items():
        if cls.complexity == "linear":
            assert attention_flops(name, 4096) / attention_flops(name, 1024) < 4.5, name


def test_peak_memory_on_cpu_sees_tensors_alive_at_once():
    mib = 1 << 20

    def two_alive() -> None:
        a = torch.ones(mib // 4)  # 1 MiB of float32
        b = torch.ones(mib // 4)
        del a, b

    def one_at_a_time() -> None:
        for _ in range(2):
            a = torch.ones(mib // 4)
            del a

    assert 2 * mib <= peak_memory_bytes(two_alive) < 2 * mib + 4096
    assert mib <= peak_memory_bytes(one_at_a_time) < mib + 4096


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_peak_memory_on_cuda_sees_tensors_alive_at_once():
    mib = 1 << 20

    def two_alive() -> None:
        a = torch.ones(mib // 4, device="cuda")
        b = torch.ones(mib // 4, device="cuda")
        del a, b

    assert 2 * mib <= peak_memory_bytes(two_alive, "cuda") < 2 * mib + 4096


def test_peak_memory_names_the_accepted_devices():
    with pytest.raises(ValueError, match=r"device: 'meta' .*accepted: \['cpu', 'cuda'\]"):
        peak_memory_bytes(lambda: None, "meta")


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))])
def test_measure_reports_latency_at_both_batches_and_peak_memory(device):
    torch.manual_seed(0)
    cfg = config("performer", "cross")
    model = build_model(cfg)
    costs = measure(model, cfg, train_batch=8, device=device, repeats=2)
    assert set(costs) == {"latency_ms_batch1", "latency_ms_train_batch", "peak_memory_bytes_batch1",
                          "peak_memory_bytes_train_step"}
    assert all(v > 0 for v in costs.values())
    # a training step at batch 8 keeps activations for backward; serving one sample does not
    assert costs["peak_memory_bytes_train_step"] > costs["peak_memory_bytes_batch1"]
    assert model.training and all(p.grad is None for p in model.parameters())
