"""Attention variants: one contract, tested over the whole registry, plus each approximation's own check."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from emule_models.attention import ATTENTION, AttentionShape
from emule_models.attention.base import Attention
from emule_models.cost import counted_flops

torch.set_num_threads(1)

B, H, D = 2, 2, 8
# Small enough that every approximation is exercised (landmarks, projections and windows below the length).
TINY = {"performer": {"features": 16}, "nystrom": {"landmarks": 4}, "linformer": {"proj_len": 4},
        "local": {"window": 4}}
VARIANTS = sorted(ATTENTION)
LENGTHS = [(12, 12), (5, 12), (12, 7)]  # self-attention, and cross-attention both ways


def build(name: str, t_q: int, t_k: int, **options) -> Attention:
    shape = AttentionShape(heads=H, head_dim=D, max_q=t_q, max_k=t_k, options={**TINY.get(name, {}), **options})
    return ATTENTION.lookup(name)(shape)


def qkv(t_q: int, t_k: int, seed: int = 0, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, t_q, D, generator=g) * scale  # (B, H, Tq, D)
    k = torch.randn(B, H, t_k, D, generator=g) * scale  # (B, H, Tk, D)
    return q, k, torch.randn(B, H, t_k, D, generator=g)


def lengths_mask(t: int, real: list[int]) -> torch.Tensor:
    return torch.arange(t)[None, :] < torch.tensor(real)[:, None]  # (B, T)


def test_registry_holds_every_variant_of_the_issue():
    assert {"softmax", "linear", "performer", "nystrom", "linformer", "local", "cosformer"} <= set(ATTENTION)


def test_registry_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="registered twice"):
        ATTENTION.register()(type("Again", (Attention,), {"name": "softmax"}))


def test_unknown_variant_names_the_accepted_ones():
    with pytest.raises(ValueError, match=r"attention: 'nope'.*accepted: \['cosformer'"):
        ATTENTION.lookup("nope")


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_declares_its_contract(name):
    cls = ATTENTION[name]
    assert cls.complexity in ("linear", "quadratic")
    assert isinstance(cls.defaults, dict)
    default = AttentionShape(heads=H, head_dim=D, max_q=16, max_k=16, options={})
    assert cls.not_supported_reasons(default) == []


@pytest.mark.parametrize("name", VARIANTS)
def test_unknown_option_is_refused(name):
    shape = AttentionShape(heads=H, head_dim=D, max_q=8, max_k=8, options={"nonsense": 1})
    reasons = ATTENTION[name].not_supported_reasons(shape)
    assert any("nonsense" in r and "accepted" in r for r in reasons)
    with pytest.raises(ValueError, match="nonsense"):
        ATTENTION[name](shape)


@pytest.mark.parametrize("name,option,value", [
    ("performer", "features", 0), ("nystrom", "landmarks", 0), ("nystrom", "pinv_iters", 1.5),
    ("linformer", "proj_len", -1), ("local", "window", 0), ("linear", "eps", 0), ("cosformer", "eps", -1.0)])
def test_bad_option_value_is_named_with_what_is_accepted(name, option, value):
    shape = AttentionShape(heads=H, head_dim=D, max_q=8, max_k=8, options={option: value})
    reasons = ATTENTION[name].not_supported_reasons(shape)
    assert len(reasons) == 1 and f"attention_options.{option}: {value!r}" in reasons[0] and "accepted" in reasons[0]


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("t_q,t_k", LENGTHS)
def test_output_has_query_shape_and_is_finite(name, t_q, t_k):
    torch.manual_seed(0)
    out = build(name, t_q, t_k)(*qkv(t_q, t_k))
    assert out.shape == (B, H, t_q, D)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("t_q,t_k", LENGTHS)
def test_padded_tokens_change_no_output_of_real_tokens(name, t_q, t_k):
    torch.manual_seed(0)
    attend = build(name, t_q, t_k)
    q, k, v = qkv(t_q, t_k)
    k_mask = lengths_mask(t_k, [t_k, t_k - 4])  # (B, Tk)
    q_mask = k_mask if t_q == t_k else lengths_mask(t_q, [t_q, t_q - 2])  # self-attention: one mask for both
    noise_q, noise_k, noise_v = qkv(t_q, t_k, seed=1, scale=10.0)
    q2 = torch.where(q_mask[:, None, :, None], q, noise_q)  # padding replaced by large, unrelated values
    k2 = torch.where(k_mask[:, None, :, None], k, noise_k)
    v2 = torch.where(k_mask[:, None, :, None], v, noise_v * 10)
    out = attend(q, k, v, mask=k_mask, q_mask=q_mask)  # (B, H, Tq, D)
    out2 = attend(q2, k2, v2, mask=k_mask, q_mask=q_mask)
    real = q_mask[:, None, :, None].expand_as(out)
    assert torch.isfinite(out2).all()
    torch.testing.assert_close(out[real], out2[real], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("t_q,t_k", LENGTHS)
def test_closed_form_flops_match_flop_counter(name, t_q, t_k):
    torch.manual_seed(0)
    attend = build(name, t_q, t_k)
    q, k, v = qkv(t_q, t_k)
    measured = counted_flops(lambda: attend(q, k, v)) / B
    closed = type(attend).flops(t_q, t_k, attend.shape)
    assert measured > 0
    assert closed == pytest.approx(measured, rel=0.05)


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_queries_keys_and_values(name):
    torch.manual_seed(0)
    q, k, v = (t.requires_grad_() for t in qkv(12, 12))
    build(name, 12, 12)(q, k, v, mask=lengths_mask(12, [12, 9])).square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


@pytest.mark.parametrize("window", [12, 13, 40])
@pytest.mark.parametrize("t_q", [12, 5])
def test_local_with_window_at_least_length_equals_softmax(window, t_q):
    q, k, v = qkv(t_q, 12)
    mask = lengths_mask(12, [12, 8])
    out = build("local", t_q, 12, window=window)(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :]))


def test_local_attends_only_to_neighbouring_blocks():
    q, k, v = qkv(16, 16)
    attend = build("local", 16, 16, window=4)  # blocks of 4: query 0 sees keys 0..7 only
    k2, v2 = k.clone(), v.clone()
    k2[..., 8:, :] += 5.0
    v2[..., 8:, :] += 5.0
    out, out2 = attend(q, k, v), attend(q, k2, v2)
    torch.testing.assert_close(out[..., :4, :], out2[..., :4, :])
    assert not torch.allclose(out[..., 12:, :], out2[..., 12:, :])


def test_performer_error_against_softmax_falls_as_features_grow():
    q, k, v = qkv(16, 16, scale=0.5)
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = []
    for features in (16, 64, 256, 1024):
        draws = []
        for seed in range(4):  # the estimate is random: average over independent feature draws
            torch.manual_seed(seed)
            draws.append((build("performer", 16, 16, features=features)(q, k, v) - exact).abs().mean().item())
        errors.append(sum(draws) / len(draws))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 3, errors


def test_nystrom_with_landmarks_equal_to_length_matches_softmax():
    q, k, v = qkv(16, 16, scale=2.0)
    # with as many landmarks as tokens the approximation is exact but for the iterative pseudo-inverse
    out = build("nystrom", 16, 16, landmarks=16, pinv_iters=20)(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=0, atol=1e-3)


def test_nystrom_with_few_landmarks_is_a_rough_approximation():
    q, k, v = qkv(16, 16, scale=0.5)
    exact = F.scaled_dot_product_attention(q, k, v)
    error = (build("nystrom", 16, 16, landmarks=4)(q, k, v) - exact).abs().mean()
    assert error < exact.abs().mean()


def quadratic_linear_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, weight: torch.Tensor,
                               mask: torch.Tensor) -> torch.Tensor:
    """The O(T^2) form the linear-time variants reorder: scores phi(q_i) . phi(k_j) w_ij, normalised by row."""
    scores = torch.matmul(phi_q, phi_k.transpose(-2, -1)) * weight * mask[:, None, None, :]  # (B, H, Tq, Tk)
    return torch.matmul(scores, v) / scores.sum(-1, keepdim=True)


@pytest.mark.parametrize("t_q,t_k", LENGTHS)
def test_linear_matches_its_quadratic_form(t_q, t_k):
    q, k, v = qkv(t_q, t_k)
    mask = lengths_mask(t_k, [t_k, t_k - 3])
    expected = quadratic_linear_attention(F.elu(q) + 1, F.elu(k) + 1, v, torch.ones(t_q, t_k), mask)
    torch.testing.assert_close(build("linear", t_q, t_k)(q, k, v, mask=mask), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("t_q,t_k", LENGTHS)
def test_cosformer_matches_its_quadratic_form(t_q, t_k):
    q, k, v = qkv(t_q, t_k)
    q, k = q.abs(), k.abs()  # all-positive features: no query is left without overlap
    mask = lengths_mask(t_k, [t_k, t_k - 3])
    i, j = torch.arange(t_q)[:, None], torch.arange(t_k)[None, :]
    weight = torch.cos(math.pi / 2 * (i - j) / max(t_q, t_k))  # (Tq, Tk)
    expected = quadratic_linear_attention(q, k, v, weight, mask)
    torch.testing.assert_close(build("cosformer", t_q, t_k)(q, k, v, mask=mask), expected, rtol=1e-4, atol=1e-5)


def test_linformer_with_identity_projections_is_softmax():
    q, k, v = qkv(12, 12)
    attend = build("linformer", 12, 12, proj_len=12)
    with torch.no_grad():
        attend.proj_k.weight.copy_(torch.eye(12))
        attend.proj_v.weight.copy_(torch.eye(12))
    torch.testing.assert_close(attend(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_linformer_serves_shorter_sequences_and_refuses_longer_ones():
    attend = build("linformer", 12, 12)
    q, k, v = qkv(12, 9)
    assert attend(q, k, v).shape == (B, H, 12, D)
    q, k, v = qkv(12, 13)
    with pytest.raises(ValueError, match="max_k=12"):
        attend(q, k, v)


def test_linformer_without_a_length_bound_is_refused():
    shape = AttentionShape(heads=H, head_dim=D, max_q=8, max_k=0, options={})
    (reason,) = ATTENTION["linformer"].not_supported_reasons(shape)
    assert "max_k: 0" in reason and "length bound" in reason and "accepted" in reason
    with pytest.raises(ValueError, match="length bound"):
        ATTENTION["linformer"](shape)


RELATIVE = [name for name in VARIANTS if ATTENTION[name].relative_bias]


def with_relative(name: str, t: int, **options) -> Attention:
    """A self-attention variant with a random relative bias table (it starts at zero)."""
    shape = AttentionShape(heads=H, head_dim=D, max_q=t, max_k=t, options={**TINY.get(name, {}), **options},
                           relative=True)
    attend = ATTENTION.lookup(name)(shape)
    with torch.no_grad():
        attend.relative.table.normal_(generator=torch.Generator().manual_seed(3))
    return attend


def biased_softmax(q, k, v, table: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Dense reference: scores + table[h, j - i], keys outside ``allowed`` (B, 1, Tq, Tk) left out."""
    t = q.shape[-2]
    offsets = torch.arange(t)[None, :] - torch.arange(t)[:, None]  # (T, T)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + table[:, offsets + t - 1]  # (B, H, T, T)
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ v


def test_relative_bias_is_declared_by_the_variants_with_a_score_matrix():
    assert RELATIVE == ["local", "softmax"]


@pytest.mark.parametrize("name,window", [("softmax", None), ("local", 12), ("local", 4), ("local", 5)])
def test_relative_bias_is_added_to_the_scores_by_offset(name, window):
    t = 12
    q, k, v = qkv(t, t)
    mask = lengths_mask(t, [12, 9])
    attend = with_relative(name, t, **({} if window is None else {"window": window}))
    allowed = mask[:, None, None, :].expand(B, 1, t, t)
    if window is not None and window < t:  # local: the query's block and its two neighbours
        blocks = math.ceil(t / window)
        block = torch.arange(t) // math.ceil(t / blocks)
        allowed = allowed & ((block[None, :] - block[:, None]).abs() <= 1)
    out = attend(q, k, v, mask=mask)
    torch.testing.assert_close(out, biased_softmax(q, k, v, attend.relative.table.detach(), allowed))


@pytest.mark.parametrize("name", RELATIVE)
def test_relative_bias_leaves_padded_keys_out(name):
    q, k, v = qkv(12, 12)
    mask = lengths_mask(12, [12, 7])
    attend = with_relative(name, 12)
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 7:] = 100.0
    v2[1, :, 7:] = 100.0
    torch.testing.assert_close(attend(q, k, v, mask=mask)[1, :, :7], attend(q, k2, v2, mask=mask)[1, :, :7])


@pytest.mark.parametrize("name", sorted(set(VARIANTS) - set(RELATIVE)))
def test_a_variant_without_scores_refuses_a_relative_bias(name):
    shape = AttentionShape(heads=H, head_dim=D, max_q=12, max_k=12, options=TINY.get(name, {}), relative=True)
    with pytest.raises(ValueError, match=rf"position: 'relative' not accepted with attention={name}, .*"
                                         r"accepted: attention in \['local', 'softmax'\]"):
        ATTENTION[name](shape)
