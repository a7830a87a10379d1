"""int8 export with torchao: every Linear is quantized, the original is untouched, sizes are measured, outputs close."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from emule_models import ModelConfig, build_model
from emule_models.attention import ATTENTION
from emule_models.compress import is_quantized, quantize_int8, state_dict_bytes
from emule_models.model import example_inputs

torch.set_num_threads(1)

MODALITIES = ({"name": "outline", "kind": "series", "channels": 1, "length": 64},
              {"name": "silhouette", "kind": "image", "channels": 1, "height": 16, "width": 16})


def config(attention: str, fusion: str = "early") -> ModelConfig:
    # width 64: at smaller widths the fixed per-tensor bytes of the file format dominate the size
    return ModelConfig(modalities=MODALITIES, num_classes=4, attention=attention, depth=2, width=64, heads=4,
                       fusion=fusion, patch_len=8, image_patch=4,
                       attention_options={"linformer": {"proj_len": 8}, "nystrom": {"landmarks": 4},
                                          "local": {"window": 4}, "performer": {"features": 16}}.get(attention, {}))


@pytest.mark.parametrize("attention", sorted(ATTENTION))
def test_every_linear_is_quantized_and_outputs_stay_close(attention):
    torch.manual_seed(0)
    cfg = config(attention)
    model = build_model(cfg).eval()
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    quantized, sizes = quantize_int8(model)
    assert sum(isinstance(m, nn.Linear) and is_quantized(m) for m in quantized.modules()) == linears
    assert sum(isinstance(m, nn.Linear) for m in quantized.modules()) == linears
    assert not any(isinstance(m, nn.Linear) and is_quantized(m) for m in model.modules())  # the original is as it was
    inputs = example_inputs(cfg, 4)
    with torch.no_grad():
        expected, got = model(inputs), quantized(inputs)
    assert (got - expected).abs().max() < 0.1 * expected.abs().max()
    assert sizes.int8_bytes < sizes.float_bytes


def test_sizes_are_the_serialised_state_dicts():
    torch.manual_seed(0)
    model = build_model(config("softmax", "late"))
    quantized, sizes = quantize_int8(model)
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)
    assert sizes.int8_bytes == buffer.tell() == state_dict_bytes(quantized)
    assert sizes.float_bytes == state_dict_bytes(model)
    assert sizes.ratio == sizes.float_bytes / sizes.int8_bytes > 2.5


def test_quantized_model_reloads_from_its_state_dict():
    torch.manual_seed(0)
    cfg = config("linformer")
    quantized, _ = quantize_int8(build_model(cfg))
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)
    torch.manual_seed(1)  # a differently initialised float model, quantized the same way, then loaded
    fresh, _ = quantize_int8(build_model(cfg))
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    inputs = example_inputs(cfg, 2)
    with torch.no_grad():
        torch.testing.assert_close(fresh(inputs), quantized(inputs))
