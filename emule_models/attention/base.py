"""The contract every attention variant follows, and the registry that names them.

A variant holds only the attention math: ``forward(q, k, v, mask=None, q_mask=None) -> out`` on ``(B, H, T, D)``.
Projections and heads live in ``emule_models.layers.MultiHeadAttention``. Each variant also states, as pure
functions of its shape, why it cannot serve a config and how many FLOPs it costs, so a search space is checked
and costed before any compute is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from emule_models.registry import Registry

# variants add themselves with ``@ATTENTION.register()`` (under their ``name``); ``ATTENTION.lookup(name)`` finds one
ATTENTION: Registry[type[Attention]] = Registry("attention", unknown="is not a known variant")


@dataclass(frozen=True)
class AttentionShape:
    """What a variant needs to know about where it is used.

    Args:
        heads: number of heads.
        head_dim: width of one head.
        max_q: largest number of query tokens it will see.
        max_k: largest number of key tokens it will see; 0 when no bound is known (variants whose parameters
            depend on the length, like linformer, then refuse the shape).
        options: variant options, e.g. ``{"features": 64}`` for performer.
        relative: whether the layer adds a learned bias per relative offset to its attention scores
            (``position: relative``, self-attention only; see ``emule_models.position``).
    """

    heads: int
    head_dim: int
    max_q: int
    max_k: int
    options: dict[str, Any]
    relative: bool = False


def relative_refusal(attention: str) -> str:
    """Why ``position: relative`` cannot go with a variant that forms no score matrix, and what can."""
    takes = sorted(name for name, variant in ATTENTION.items() if variant.relative_bias)
    return (f"position: 'relative' not accepted with attention={attention}, which forms no score matrix to add the "
            f"bias to; accepted: attention in {takes}, or an absolute position (learned, sinusoidal, tape) or none")


class Attention(nn.Module):
    """Base class. Subclasses set ``name`` and ``defaults`` (their options) and implement ``forward``/``flops``.

    ``mask`` is a key padding mask ``(B, Tk)``, True for real tokens. Outputs for real query tokens must not
    depend on anything at padded key positions. ``q_mask`` ``(B, Tq)`` marks the real queries; most variants
    treat queries independently and ignore it, but one that summarises the queries (nystrom's query landmarks)
    must leave padded queries out. Self-attention passes the same mask for both.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    complexity: ClassVar[str] = "linear"  # "quadratic" or "linear" in sequence length
    # Whether the layer should hand over q, k, v as contiguous (B, H, T, D) tensors. The projections leave them
    # strided; a variant built on batched matmuls would copy them again at every use, one copy each is cheaper.
    # SDPA reads strided heads directly, so variants built on it say False.
    contiguous: ClassVar[bool] = True
    # Whether it forms a score matrix that a relative position bias can be added to (``position: relative``).
    relative_bias: ClassVar[bool] = False

    def __init__(self, shape: AttentionShape):
        super().__init__()
        self.shape = shape
        self.options = self.resolve_options(shape.options)
        reasons = self.not_supported_reasons(shape)
        if reasons:  # a variant built directly (not through ModelConfig) is checked too
            raise ValueError(f"attention={self.name}: " + "; ".join(reasons))

    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(cls.defaults)
        if unknown:
            raise ValueError(
                f"attention_options: {sorted(unknown)} not accepted by {cls.name!r}; accepted: {sorted(cls.defaults)}"
            )
        return {**cls.defaults, **options}

    @classmethod
    def not_supported_reasons(cls, shape: AttentionShape) -> list[str]:
        """Why this variant cannot serve ``shape``; empty when it can. Every option is checked against its
        default: an integer default takes an integer >= 1, a float default a number > 0."""
        reasons = []
        unknown = set(shape.options) - set(cls.defaults)
        if unknown:
            reasons.append(f"attention_options {sorted(unknown)} not accepted by {cls.name!r}; "
                           f"accepted: {sorted(cls.defaults)}")
        for name, value in shape.options.items():
            default = cls.defaults.get(name)
            if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                reasons.append(f"attention_options.{name}: {value!r} not accepted; accepted: an integer >= 1")
            elif isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                 or not value > 0):
                reasons.append(f"attention_options.{name}: {value!r} not accepted; accepted: a number > 0")
        if shape.relative and not cls.relative_bias:
            reasons.append(relative_refusal(cls.name))
        return reasons

    @classmethod
    def onnx_reasons(cls, shape: AttentionShape) -> list[str]:
        """Why this variant cannot be written as an ONNX graph for ``shape``; empty when it can. Checked before an
        ONNX export starts (``search.delivery.deploy``); every variant registered so far exports."""
        return []

    @classmethod
    def flops(cls, t_q: int, t_k: int, shape: AttentionShape) -> int:
        """Forward matmul FLOPs for one sample (all heads), counted as 2 per multiply-add."""
        raise NotImplementedError

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                q_mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError
