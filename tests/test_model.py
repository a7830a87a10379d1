"""The model family: tokenizers, fusions, every variant x fusion end to end, and configs refused at the boundary."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F

from emule_models import ModalitySpec, ModelConfig, build_model
from emule_models.attention import ATTENTION
from emule_models.embed import ImageEmbed, SeriesEmbed, real_extent
from emule_models.fusion import FUSION
from emule_models.layers import MultiHeadAttention
from emule_models.model import example_inputs
from emule_models.position import POSITIONS, sinusoid
from emule_models.stems import STEMS, fixed_filters

torch.set_num_threads(1)

SERIES = {"name": "outline", "kind": "series", "channels": 2, "length": 22}
IMAGE = {"name": "silhouette", "kind": "image", "channels": 1, "height": 8, "width": 8}
TINY = {"performer": {"features": 8}, "nystrom": {"landmarks": 4}, "linformer": {"proj_len": 4},
        "local": {"window": 3}}
COMBOS = list(itertools.product(sorted(ATTENTION), sorted(FUSION)))
# CUDA runs only where there is a GPU: the same checks then cover the kernels SDPA picks there.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def config(attention: str = "softmax", fusion: str = "early", modalities=(SERIES, IMAGE), **overrides) -> ModelConfig:
    fields = dict(modalities=modalities, num_classes=3, attention=attention, attention_options=TINY.get(attention, {}),
                  depth=2, width=16, heads=2, fusion=fusion, fusion_layer=1, patch_len=4, patch_stride=3,
                  image_patch=4)
    return ModelConfig(**{**fields, **overrides})


def valid_steps(batch: int, length: int, real: list[int]) -> torch.Tensor:
    return torch.arange(length)[None, :] < torch.tensor(real)[:, None]  # (B, L)


@pytest.mark.parametrize("fusion", sorted(FUSION))
def test_features_are_what_the_head_classifies(fusion):
    """``features``: the pooled (B, out_width) vector the head reads, for every fusion (label suggestions read it)."""
    torch.manual_seed(0)
    cfg = config(fusion=fusion)
    model = build_model(cfg).eval()
    inputs = example_inputs(cfg, 3)
    features = model.features(inputs)
    assert features.shape == (3, FUSION[fusion].out_width(cfg))
    torch.testing.assert_close(model.head(features), model(inputs))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attention,fusion", COMBOS)
def test_every_variant_and_fusion_builds_and_trains_a_step(attention, fusion, device):
    torch.manual_seed(0)
    cfg = config(attention, fusion)
    model = build_model(cfg).to(device)
    inputs = example_inputs(cfg, 4, device)
    valid = {"outline": valid_steps(4, 22, [22, 15, 9, 22]).to(device)}
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = F.cross_entropy(model(inputs, valid), torch.tensor([0, 1, 2, 0], device=device))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed > len(before) // 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attention,fusion", COMBOS)
def test_padded_steps_change_no_output(attention, fusion, device):
    torch.manual_seed(0)
    cfg = config(attention, fusion)
    model = build_model(cfg).to(device).eval()
    inputs = example_inputs(cfg, 3, device)
    valid = {"outline": valid_steps(3, 22, [22, 14, 7]).to(device)}
    garbage = dict(inputs, outline=torch.where(valid["outline"][:, None, :], inputs["outline"], 100.0))
    garbage["outline"][2, :, -1] = float("nan")  # padding may hold anything
    with torch.no_grad():
        torch.testing.assert_close(model(inputs, valid), model(garbage, valid), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fusion", sorted(FUSION))
@pytest.mark.parametrize("present", ["outline", "silhouette"])
def test_a_missing_modality_is_served(fusion, present):
    torch.manual_seed(0)
    cfg = config("softmax", fusion)
    model = build_model(cfg).eval()
    inputs = example_inputs(cfg, 2)
    with torch.no_grad():
        logits = model({present: inputs[present]})
        pooled = model.fusion(*embedded(model, {present: inputs[present]}))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    if fusion == "late":  # fixed slots: the absent modality's is zeros
        slot = [m.name for m in cfg.modalities].index(present)
        absent = pooled.view(2, len(cfg.modalities), cfg.width)[:, 1 - slot]
        assert torch.equal(absent, torch.zeros_like(absent))


def embedded(model, inputs):
    tokens, masks = {}, {}
    for name, x in inputs.items():
        tokens[name], masks[name] = model.embed[name](x)
    return tokens, masks


def test_no_modality_at_all_is_an_error():
    with pytest.raises(ValueError, match="none of the modalities"):
        build_model(config())({})


@pytest.mark.parametrize("fusion", sorted(FUSION))
def test_any_number_of_modalities(fusion):
    torch.manual_seed(0)
    third = {"name": "pressure", "kind": "series", "channels": 3, "length": 10}
    for modalities in [(SERIES,), (SERIES, IMAGE, third)]:
        cfg = config("softmax", fusion, modalities=modalities)
        out = build_model(cfg)(example_inputs(cfg, 2))
        assert out.shape == (2, 3)


def test_cross_fusion_alone_builds_no_cross_blocks():
    assert len(build_model(config("softmax", "cross", modalities=(SERIES,))).fusion.cross) == 0


@pytest.mark.parametrize("fusion,exchanges", [("early", True), ("late", False), ("cross", True),
                                               ("bottleneck", True)])
def test_modalities_exchange_information_only_from_fusion_layer_on(fusion, exchanges):
    torch.manual_seed(0)
    cfg = config("softmax", fusion, depth=3, fusion_layer=1)
    model = build_model(cfg).eval()
    inputs = example_inputs(cfg, 2)
    other = dict(inputs, silhouette=torch.randn_like(inputs["silhouette"]))
    seen = []
    if fusion == "early":
        seen_at = [model.fusion.blocks[0], model.fusion.norm]  # one joint stream: exchange from the first layer
    else:
        seen_at = [model.fusion.encoders["outline"][0], model.fusion.norms["outline"]]  # the series' own stream
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out)) for m in seen_at]
    with torch.no_grad():
        model(inputs)
        model(other)
    for h in hooks:
        h.remove()
    (first, last), (first2, last2) = seen[:2], seen[2:]
    if fusion != "early":  # layer 0 is before fusion_layer: the series stream cannot have seen the image yet
        torch.testing.assert_close(first, first2)
    assert (not torch.allclose(last, last2)) == exchanges


def test_series_patching_with_stride_covers_every_step():
    cfg = config(modalities=({"name": "s", "kind": "series", "channels": 2, "length": 21},), patch_len=8,
                 patch_stride=4)
    embed = SeriesEmbed(cfg, cfg.modalities[0])
    assert cfg.series_patches(cfg.modalities[0]) == embed.patches == 5  # starts 0, 4, 8, 12, 16; last padded by 3
    x = torch.randn(1, 2, 21)
    x2 = x.clone()
    x2[..., -1] += 1.0
    tokens, mask = embed(x)
    tokens2, _ = embed(x2)
    assert tokens.shape == (1, 5, cfg.width) and mask.all()
    changed = (tokens - tokens2).abs().sum(-1)[0] > 0
    assert changed.tolist() == [False, False, False, False, True]


def test_stride_longer_than_patch_starts_no_patch_past_the_end():
    cfg = config(modalities=({"name": "s", "kind": "series", "channels": 1, "length": 10},), patch_len=2,
                 patch_stride=5)
    assert cfg.series_patches(cfg.modalities[0]) == 2  # starts 0 and 5


@pytest.mark.parametrize("mode,tokens", [("mixing", 5), ("independent", 10)])
def test_channel_mixing_and_channel_independent_tokens(mode, tokens):
    cfg = config(modalities=({"name": "s", "kind": "series", "channels": 2, "length": 20},), patch_len=4,
                 patch_stride=4, channel_mode=mode)
    embed = SeriesEmbed(cfg, cfg.modalities[0])
    x = torch.randn(3, 2, 20)
    out, mask = embed(x, valid_steps(3, 20, [20, 9, 4]))
    assert out.shape == (3, tokens, cfg.width) and cfg.tokens(cfg.modalities[0]) == tokens
    per_channel = [True, True, True, False, False]  # real length 9: patches starting at 0, 4, 8
    expected = per_channel if mode == "mixing" else per_channel * 2
    assert mask[1].tolist() == expected
    if mode == "independent":  # one channel's values reach only that channel's tokens
        x2 = x.clone()
        x2[:, 1] += 1.0
        changed = ((embed(x2)[0] - embed(x)[0]).abs().sum(-1) > 0)[0]
        assert changed.tolist() == [False] * 5 + [True] * 5


def test_image_patches_are_local():
    cfg = config(modalities=(IMAGE,), image_patch=4)
    embed = ImageEmbed(cfg, cfg.modalities[0])
    x = torch.randn(1, 1, 8, 8)
    x2 = x.clone()
    x2[0, 0, 5, 1] += 1.0  # row 5, column 1: the bottom-left patch, token 2 in row-major order
    changed = ((embed(x2)[0] - embed(x)[0]).abs().sum(-1) > 0)[0]
    assert changed.tolist() == [False, False, True, False]


def base_dict(**overrides) -> dict:
    d = dict(modalities=[SERIES, IMAGE], num_classes=3, width=16, heads=2, patch_len=4, image_patch=4)
    return {**d, **overrides}


@pytest.mark.parametrize("overrides,expected", [
    (dict(width=30, heads=4), r"width: 30 is not divisible by heads=4; heads accepted: \[1, 2, 3, 5, 6"),
    (dict(attention="flash"), r"attention: 'flash' is not a known variant; accepted: \['cosformer'"),
    (dict(patch_len=23), r"patch_len: 23 is longer than series 'outline' \(length 22\); accepted: 1\.\.22"),
    (dict(image_patch=9), r"image_patch: 9 .*accepted: 1\.\.8"),
    (dict(fusion="mid"), r"fusion: 'mid' not accepted; accepted: \['bottleneck', 'cross', 'early', 'late'\]"),
    (dict(fusion="bottleneck", depth=2, fusion_layer=2), r"fusion_layer: 2 .*accepted: 0\.\.1"),
    (dict(bottleneck_tokens=0), r"bottleneck_tokens: 0 must be >= 1"),
    (dict(channel_mode="both"), r"channel_mode: 'both' not accepted; accepted: \['mixing', 'independent'\]"),
    (dict(attention="performer", attention_options={"features": 0}),
     r"attention=performer: attention_options\.features: 0 not accepted; accepted: an integer >= 1"),
    (dict(attention="nystrom", attention_options={"rank": 4}),
     r"attention_options \['rank'\] not accepted by 'nystrom'; accepted: \['landmarks', 'pinv_iters'\]"),
    (dict(dropout=1.0), r"dropout: 1\.0 must be in \[0, 1\)"),
    (dict(drop_path=-0.1), r"drop_path: -0\.1 must be in \[0, 1\)"),
    (dict(tokenizer="lstm"), r"tokenizer: 'lstm' not accepted; accepted: \['patch', 'conv', 'lite', 'disjoint'\]"),
    (dict(stem_filters="fixed"), r"stem_filters: 'fixed' not accepted; accepted: \['learned', 'learned\+fixed'\]"),
    (dict(stem_layers=0), r"stem_layers: 0 must be >= 1"),
    (dict(depth=-1), r"depth: -1 must be >= 0"),
    (dict(position="rotary"),
     r"position: 'rotary' not accepted; accepted: \['learned', 'sinusoidal', 'tape', 'relative', 'none'\]"),
    (dict(position="relative", attention="linear"), r"^position: 'relative' not accepted with attention=linear, "
     r"which forms no score matrix to add the bias to; accepted: attention in \['local', 'softmax'\], or an "
     r"absolute position \(learned, sinusoidal, tape\) or none$"),
    (dict(series_norm="revin"), r"series_norm: 'revin' not accepted; accepted: \['none', 'sample'\]"),
    (dict(conv_kernel=0), r"conv_kernel: 0 must be >= 1"),
    (dict(hidden=4), r"model: unknown keys \['hidden'\]; accepted: \["),
])
def test_unbuildable_config_raises_a_value_error_naming_field_and_accepted(overrides, expected):
    with pytest.raises(ValueError, match=expected):
        build_model(base_dict(**overrides))


def test_linformer_without_a_length_bound_is_refused_at_build_model():
    # A series declares its (padded) length; without one there is no bound for linformer's projections, and the
    # data declaration is refused before any variant is consulted. The variant's own check is in test_attention.
    unbounded = dict(SERIES, length=0)
    with pytest.raises(ValueError, match=r"modalities\.outline\.length: 0 must be >= 1"):
        build_model(base_dict(attention="linformer", modalities=[unbounded]))


def test_fusion_layer_is_ignored_by_fusions_without_layers_to_choose():
    for fusion in ("early", "late"):
        assert build_model(base_dict(fusion=fusion, depth=2, fusion_layer=7)).cfg.fusion_layer == 7


def test_config_round_trips_through_a_dict():
    cfg = config("performer", "bottleneck")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert dataclasses.replace(cfg, depth=3).depth == 3


def test_modality_spec_is_declared_by_the_data():
    with pytest.raises(ValueError, match=r"modalities\.x\.kind: 'audio' not accepted; accepted: \['series', 'image'\]"):
        ModalitySpec("x", "audio", 1, length=4)


@pytest.mark.parametrize("tokenizer", sorted(STEMS))
@pytest.mark.parametrize("mode", ["mixing", "independent"])
@pytest.mark.parametrize("norm", ["none", "sample"])
def test_stem_tokens_keep_the_patch_geometry_and_ignore_padding(tokenizer, mode, norm):
    torch.manual_seed(0)
    patch = config(channel_mode=mode, series_norm=norm)
    stem = dataclasses.replace(patch, tokenizer=tokenizer, conv_kernel=5, conv_dilation=2)
    m = patch.modalities[0]
    x = torch.randn(3, 2, 22)
    valid = valid_steps(3, 22, [22, 14, 7])
    tokens, mask = SeriesEmbed(stem, m)(x, valid)
    ref_tokens, ref_mask = SeriesEmbed(patch, m)(x, valid)
    assert tokens.shape == ref_tokens.shape and torch.equal(mask, ref_mask)
    garbage = torch.where(valid[:, None, :], x, 100.0)
    model = build_model(stem).eval()
    inputs = dict(example_inputs(stem, 3), outline=x)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs, {"outline": valid}), model(dict(inputs, outline=garbage),
                                                                            {"outline": valid}), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tokenizer", sorted(STEMS))
@pytest.mark.parametrize("training", [True, False])
def test_a_stem_sees_a_padded_series_as_the_unpadded_one(tokenizer, training):
    """Every real step's features equal those of the series cut to its real length - in training too, where batch
    norm's statistics would otherwise count the padding."""
    torch.manual_seed(0)
    cfg = config(tokenizer=tokenizer, conv_kernel=9, conv_dilation=2, stem_layers=3, width=8)
    stem = STEMS[tokenizer](cfg, 2).train(training)
    x = torch.randn(1, 2, 22)
    for real in (22, 13, 5):
        valid = valid_steps(1, 22, [real])
        padded = torch.where(valid[:, None, :], x, 0.0)  # the tokenizer zeroes padding before the stem
        torch.testing.assert_close(stem(padded, valid)[..., :real], stem(x[..., :real]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tokenizer", sorted(STEMS))
@pytest.mark.parametrize("mode", ["mixing", "independent"])
@pytest.mark.parametrize("training", [True, False])
def test_skipping_a_batchs_trailing_padding_changes_no_token(tokenizer, mode, training, monkeypatch):
    """The stem runs up to the batch's last real step only (``real_extent``); the tokens, batch norm's running
    statistics and the gradients are those of the stem run over every padded step."""
    cfg = config(tokenizer=tokenizer, channel_mode=mode, conv_kernel=9, conv_dilation=2, stem_layers=2, width=8)
    x = torch.randn(3, 2, 22)
    valid = valid_steps(3, 22, [13, 9, 4])  # every row ends before the padded length
    assert real_extent(valid, 22) == 13
    runs = []
    for trim in (False, True):
        monkeypatch.setattr("emule_models.embed.TRIM_PADDING", trim)
        torch.manual_seed(0)
        embed = SeriesEmbed(cfg, cfg.modalities[0]).train(training)
        tokens, mask = embed(x, valid)
        tokens.pow(2).sum().backward()
        runs.append((tokens, mask, [p.grad for p in embed.parameters()], [b.clone() for b in embed.buffers()]))
    (padded, padded_mask, padded_grads, padded_buffers), (skipped, skipped_mask, grads, buffers) = runs
    assert torch.equal(padded_mask, skipped_mask)
    torch.testing.assert_close(skipped, padded, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads + buffers, padded_grads + padded_buffers, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # sums over more zeros: rounding only


def test_real_extent_is_the_whole_length_without_padding_or_a_real_step():
    assert real_extent(None, 22) == 22
    assert real_extent(valid_steps(2, 22, [22, 3]), 22) == 22
    assert real_extent(valid_steps(2, 22, [0, 0]), 22) == 22


@pytest.mark.parametrize("tokenizer,options", [("lite", dict(stem_filters="learned")),
                                               ("lite", dict(stem_filters="learned+fixed", stem_layers=1)),
                                               ("lite", dict(channel_mode="independent", stem_layers=3)),
                                               ("disjoint", {}), ("disjoint", dict(channel_mode="independent"))])
def test_every_stem_trains_a_step(tokenizer, options):
    torch.manual_seed(0)
    cfg = config(tokenizer=tokenizer, conv_kernel=7, conv_dilation=2, **options)
    model = build_model(cfg)
    buffers = {n: b.clone() for n, b in model.named_buffers() if "fixed" in n}
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = F.cross_entropy(model(example_inputs(cfg, 4), {"outline": valid_steps(4, 22, [22, 15, 9, 22])}),
                           torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # every parameter learns
    assert all(torch.equal(b, dict(model.named_buffers())[n]) for n, b in buffers.items())  # the fixed do not


def test_lite_fixed_filters_are_lites():
    """17 filters (LITE's ``hybird_layer``): increase and decrease at 2..64 taps, peaks of k + k/2 taps from 4."""
    filters = fixed_filters()
    assert sum(f.shape[0] for f in filters.values()) == 17
    assert filters[4].tolist() == [[-1, 1, -1, 1], [1, -1, 1, -1]]
    peak = filters[6][0].tolist()  # k = 4: one tap per segment
    assert peak == [-1.0, -1.0, 2.0, 2.0, -1.0, -1.0]
    rising = torch.arange(10.0)[None, None]  # (1, 1, 10)
    increase = F.conv1d(rising, filters[4][:1, None])  # positive on a rise, negative on a fall
    assert (increase > 0).all() and (F.conv1d(-rising, filters[4][:1, None]) < 0).all()


def test_sample_norm_removes_offset_and_scale():
    torch.manual_seed(0)
    cfg = config(series_norm="sample", modalities=(SERIES,))
    model = build_model(cfg).eval()
    x = torch.randn(2, 2, 22)
    valid = valid_steps(2, 22, [22, 13])
    moved = torch.where(valid[:, None, :], 5.0 + 3.0 * x, 0.0)
    with torch.no_grad():
        torch.testing.assert_close(model({"outline": x}, {"outline": valid}),
                                   model({"outline": moved}, {"outline": valid}), rtol=1e-3, atol=1e-4)


def test_drop_path_acts_only_in_training():
    torch.manual_seed(0)
    model = build_model(config(drop_path=0.5, modalities=(SERIES,)))
    inputs = {"outline": torch.randn(8, 2, 22)}
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(inputs), model(inputs))
        model.train()
        assert not torch.equal(model(inputs), model(inputs))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention,fusion", [("softmax", f) for f in sorted(FUSION)] + [("local", "early")])
def test_every_position_trains_a_step_and_ignores_padding(position, attention, fusion):
    torch.manual_seed(0)
    cfg = config(attention, fusion, position=position, channel_mode="independent")
    model = build_model(cfg)
    inputs = example_inputs(cfg, 3)
    valid = {"outline": valid_steps(3, 22, [22, 14, 7])}
    loss = F.cross_entropy(model(inputs, valid), torch.tensor([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    relative = [p for n, p in model.named_parameters() if ".relative." in n]
    assert bool(relative) == (position == "relative")
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in relative)
    garbage = dict(inputs, outline=torch.where(valid["outline"][:, None, :], inputs["outline"], 100.0))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(inputs, valid), model(garbage, valid), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
def test_series_positions_are_what_they_say(position):
    cfg = config(position=position, modalities=(SERIES,), patch_len=2, patch_stride=2, width=8)  # 11 tokens
    embed = SeriesEmbed(cfg, cfg.modalities[0])
    fixed = {"sinusoidal": sinusoid(11, 8), "tape": sinusoid(11, 8, scale=8 / 11)}
    if position == "learned":
        assert isinstance(embed.pos, torch.nn.Parameter) and embed.pos.shape == (11, 8)
    elif position in fixed:  # constants: neither trained nor saved
        torch.testing.assert_close(embed.pos, fixed[position])
        assert "pos" not in embed.state_dict() and not any(p is embed.pos for p in embed.parameters())
    else:
        assert embed.pos is None
    assert sinusoid(3, 4)[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    # tAPE's point: over few tokens its rows keep apart where the plain sinusoid's barely move
    near = lambda t: (t[0] - t[1]).norm() / t[0].norm()  # noqa: E731
    assert near(sinusoid(11, 64, scale=64 / 11)) > 2 * near(sinusoid(11, 64))


@pytest.mark.parametrize("fusion", sorted(FUSION))
@pytest.mark.parametrize("tokenizer", ["patch", "lite", "disjoint"])
def test_depth_zero_is_a_stem_and_a_pooled_head(fusion, tokenizer):
    """No attention at all; the attention fields are ignored (heads need not divide width, any variant, a relative
    position with a variant that could not take one, any fusion_layer), so a sampler may draw them freely."""
    torch.manual_seed(0)
    cfg = config("linear", fusion, depth=0, heads=5, fusion_layer=4, position="relative", tokenizer=tokenizer)
    model = build_model(cfg)
    assert not any(isinstance(m, MultiHeadAttention) for m in model.modules())
    inputs = example_inputs(cfg, 4)
    valid = {"outline": valid_steps(4, 22, [22, 15, 9, 22])}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = F.cross_entropy(model(inputs, valid), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())  # nothing built that is not used
    garbage = dict(inputs, outline=torch.where(valid["outline"][:, None, :], inputs["outline"], 100.0))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(inputs, valid), model(garbage, valid), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tokenizer,attention", [("lite", "softmax"), ("disjoint", "local")])
def test_stems_and_a_relative_bias_train_under_bf16_autocast(tokenizer, attention):
    """As a CUDA trial trains (emule_models.train.use_bf16); CPU autocast takes the same mixed-precision paths:
    batch norm's masked statistics in float32, the bias cast to the scores' dtype."""
    torch.manual_seed(0)
    cfg = config(attention, modalities=(SERIES,), tokenizer=tokenizer, position="relative")
    model = build_model(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(example_inputs(cfg, 3), {"outline": valid_steps(3, 22, [22, 14, 7])})
        loss = F.cross_entropy(logits, torch.tensor([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
