"""Convolutional front ends (stems) of the series tokenizer, one categorical name each, registered in ``STEMS``.

A stem turns every step of a ``(B, C, L)`` series into ``width`` features, ``(B, W, L)``; the tokenizer
(``emule_models.embed``) keeps each feature's maximum over a patch as that patch's token, so every stem gives the
patch tokenizer's token count and mask.

- ``conv``: one convolution (``conv_kernel`` taps, ``conv_dilation`` apart) and GELU.
- ``lite``: the stem of LITE (Ismail-Fawaz et al. 2023, ``classifiers/lite.py`` of MSD-IRIMAS/LITE), which reaches
  InceptionTime's accuracy at 2% of its size: multiplexed convolutions of three lengths (``conv_kernel``, half,
  a quarter, rounded down to odd) side by side - with ``stem_filters: learned+fixed`` beside LITE's 17 hand-built
  filters that detect increases, decreases and peaks and are never trained - then batch norm and ReLU, then
  ``stem_layers`` depthwise-separable convolutions (layer i: kernel ``conv_kernel / 2^(i+1)``, dilation
  ``conv_dilation^(i+1)``), each with batch norm and ReLU; from the second on each adds to its input (a residual
  path, so a deeper stem starts as the shallower one).
- ``disjoint``: ConvTran's disjoint embedding (Foumani et al. 2023): a temporal convolution of every channel
  apart (``4 x width`` filters, ``conv_kernel`` taps), batch norm, GELU, then a spatial convolution across all
  channels at each step, batch norm, GELU.

Variable lengths: ``real`` (B, L) marks the real steps; the series arrives zero beyond them. Every layer that mixes
steps gets its input zero beyond the real steps - what it would see at the end of an unpadded series under
'same' zero padding - and batch norm takes its statistics over real steps only, so whatever a padded step holds
reaches no real step's feature, in training as in evaluation.

Each stem states its parameters and its matmul FLOPs (2 per multiply-add, as ``torch.utils.flop_counter``
counts convolutions) as pure functions of the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from emule_models.registry import Registry

if TYPE_CHECKING:  # config validates tokenizer names against STEMS, so it imports this module, not the reverse
    from emule_models.config import ModelConfig

# stems add themselves with ``@STEMS.register()`` (under their ``name``, a value of ``ModelConfig.tokenizer``)
STEMS: Registry[type[Stem]] = Registry("stem", field="tokenizer", sort=False)
STEM_FILTERS = ("learned", "learned+fixed")  # lite: its learned filters alone, or beside LITE's fixed ones


class Stem(nn.Module):
    """Base class: ``forward(x, real)`` maps ``(B, C, L)`` to ``(B, W, L)``; ``params``/``flops`` are its costs
    for one series of ``in_channels`` channels and ``length`` steps."""

    name: ClassVar[str] = ""

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def params(cls, cfg: ModelConfig, in_channels: int) -> int:
        raise NotImplementedError

    @classmethod
    def flops(cls, cfg: ModelConfig, in_channels: int, length: int) -> int:
        raise NotImplementedError


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm of ``(N, F, L)`` whose training statistics cover the real steps only (``real`` (N, L)); the
    running statistics it keeps are those of real steps, so evaluation - a fixed affine map - is plain batch norm."""

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or real is None:
            return super().forward(x)
        x = x.float()  # statistics in float32, as autocast runs batch norm (the running ones are float32)
        w = real[:, None, :].to(x.dtype)  # (N, 1, L)
        n = w.sum()
        mean = (x * w).sum((0, 2)) / n.clamp_min(1.0)  # (F,)
        var = ((x - mean[:, None]) ** 2 * w).sum((0, 2)) / n.clamp_min(1.0)  # (F,), biased: what normalises
        with torch.no_grad():  # as nn.BatchNorm1d keeps them: unbiased variance, exponential average
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1).clamp_min(1.0), self.momentum)
        out = (x - mean[:, None]) * torch.rsqrt(var[:, None] + self.eps)  # (N, F, L)
        return out * self.weight[:, None] + self.bias[:, None]


def zero_padding(h: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """(N, F, L) features set to zero beyond the real steps, so the next layer that mixes steps sees none of them."""
    return h if real is None else h * real[:, None, :].to(h.dtype)


def odd(n: int) -> int:
    """``n`` rounded down to an odd length, at least 1: 'same' padding is then symmetric."""
    return max(1, n - 1 + n % 2)


@STEMS.register()
class ConvStem(Stem):
    """One convolution and GELU. Its weights keep the names ``weight`` and ``bias`` of the single convolution it
    always was, so models saved before stems were registered load unchanged."""

    name = "conv"

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        conv = nn.Conv1d(in_channels, cfg.width, cfg.conv_kernel)  # for its initialisation
        self.weight, self.bias = conv.weight, conv.bias  # (W, C, k), (W,)
        self.dilation = cfg.conv_dilation

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return F.gelu(F.conv1d(x, self.weight, self.bias, dilation=self.dilation, padding="same"))  # (B, W, L)

    @classmethod
    def params(cls, cfg: ModelConfig, in_channels: int) -> int:
        return cfg.width * (in_channels * cfg.conv_kernel + 1)

    @classmethod
    def flops(cls, cfg: ModelConfig, in_channels: int, length: int) -> int:
        return 2 * length * in_channels * cfg.conv_kernel * cfg.width


# --- LITE ---
FIXED_LENGTHS = (2, 4, 8, 16, 32, 64)  # LITE's increase and decrease detectors; peaks from the second on


def fixed_filters() -> dict[int, torch.Tensor]:
    """LITE's hand-built filters grouped by length: ``{length: (filters, length)}``. Increase ``(-1, 1, -1, ...)``
    and decrease ``(1, -1, 1, ...)`` of each length in ``FIXED_LENGTHS``; a peak of each length k from 4 on,
    ``k + k/2`` taps of squared ramps (down, up twice as high, down), as ``hybird_layer`` builds them."""
    groups = {}
    for k in FIXED_LENGTHS:
        sign = torch.ones(k)
        sign[::2] = -1.0  # (k,)
        groups[k] = torch.stack([sign, -sign])  # (2, k): increase, decrease
    for k in FIXED_LENGTHS[1:]:
        q = k // 4
        left = torch.linspace(0.0, 1.0, q + 1)[1:] ** 2  # (q,)
        right = left.flip(0)
        groups[k + k // 2] = torch.cat([-left, -right, 2 * left, 2 * right, -left, -right])[None]  # (1, k + k/2)
    return groups


def fixed_count() -> int:
    return sum(f.shape[0] for f in fixed_filters().values())


def lite_kernels(cfg: ModelConfig) -> list[int]:
    """Lengths of the multiplexed convolutions: ``conv_kernel``, half and a quarter of it, each made odd."""
    return [odd(cfg.conv_kernel // 2 ** i) for i in range(3)]


def lite_layers(cfg: ModelConfig) -> list[tuple[int, int]]:
    """(kernel, dilation) of each depthwise-separable layer: kernels halve and dilations grow with depth, as in
    LITE (``conv_kernel / 2^(i+1)``, ``conv_dilation^(i+1)``)."""
    return [(odd(cfg.conv_kernel // 2 ** (i + 1)), cfg.conv_dilation ** (i + 1)) for i in range(cfg.stem_layers)]


class SeparableLayer(nn.Module):
    """Depthwise convolution (one filter per input feature, dilated), pointwise convolution, batch norm, ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel: int, dilation: int):
        super().__init__()
        self.depthwise = nn.Conv1d(in_features, in_features, kernel, dilation=dilation, padding="same",
                                   groups=in_features, bias=False)
        self.pointwise = nn.Conv1d(in_features, out_features, 1, bias=False)  # batch norm brings the bias
        self.norm = MaskedBatchNorm1d(out_features)

    def forward(self, h: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        h = self.pointwise(self.depthwise(zero_padding(h, real)))  # (B, out, L)
        return F.relu(self.norm(h, real))


@STEMS.register()
class LiteStem(Stem):
    name = "lite"

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        width = cfg.width
        self.branches = nn.ModuleList(nn.Conv1d(in_channels, width, k, padding="same", bias=False)
                                      for k in lite_kernels(cfg))
        self.fixed_lengths: list[int] = []
        if cfg.stem_filters == "learned+fixed":
            # buffers, not parameters: never trained, and rebuilt from this code rather than saved
            for length, filters in fixed_filters().items():
                weight = filters[:, None, :].expand(-1, in_channels, -1).contiguous()  # (F, C, length): summed over C
                self.register_buffer(f"fixed_{length}", weight, persistent=False)
                self.fixed_lengths.append(length)
        features = 3 * width + (fixed_count() if self.fixed_lengths else 0)
        self.norm = MaskedBatchNorm1d(features)
        self.layers = nn.ModuleList(SeparableLayer(features if i == 0 else width, width, k, d)
                                    for i, (k, d) in enumerate(lite_layers(cfg)))

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        h = [conv(x) for conv in self.branches]  # 3 x (B, W, L)
        for length in self.fixed_lengths:
            # even lengths: Keras' 'same' puts the extra zero at the end, as LITE's filters were built for
            padded = F.pad(x, ((length - 1) // 2, length // 2))  # (B, C, L + length - 1)
            h.append(F.relu(F.conv1d(padded, getattr(self, f"fixed_{length}"))))  # (B, filters, L)
        h = F.relu(self.norm(torch.cat(h, dim=1), real))  # (B, 3W [+ 17], L)
        for i, layer in enumerate(self.layers):
            h = layer(h, real) if i == 0 else h + layer(h, real)  # (B, W, L)
        return h

    @classmethod
    def features(cls, cfg: ModelConfig) -> int:
        """Features after the multiplexed layer: three branches of ``width``, and the fixed filters if used."""
        return 3 * cfg.width + (fixed_count() if cfg.stem_filters == "learned+fixed" else 0)

    @classmethod
    def params(cls, cfg: ModelConfig, in_channels: int) -> int:
        w, features = cfg.width, cls.features(cfg)
        total = w * in_channels * sum(lite_kernels(cfg)) + 2 * features  # branches, batch norm
        for i, (k, _) in enumerate(lite_layers(cfg)):
            c = features if i == 0 else w
            total += c * k + c * w + 2 * w  # depthwise, pointwise, batch norm
        return total

    @classmethod
    def flops(cls, cfg: ModelConfig, in_channels: int, length: int) -> int:
        w, features = cfg.width, cls.features(cfg)
        total = 2 * length * w * in_channels * sum(lite_kernels(cfg))
        if cfg.stem_filters == "learned+fixed":
            total += 2 * length * in_channels * sum(f.numel() for f in fixed_filters().values())
        for i, (k, _) in enumerate(lite_layers(cfg)):
            c = features if i == 0 else w
            total += 2 * length * (c * k + c * w)
        return total


# --- ConvTran ---
@STEMS.register()
class DisjointStem(Stem):
    name = "disjoint"
    expansion: ClassVar[int] = 4  # ConvTran's temporal filters per output feature

    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        hidden = self.expansion * cfg.width
        # Conv2d over (B, 1, C, L): kernel (1, k) convolves each channel over time with the same filters ...
        self.temporal = nn.Conv2d(1, hidden, (1, cfg.conv_kernel), dilation=(1, cfg.conv_dilation), padding="same",
                                  bias=False)
        self.temporal_norm = MaskedBatchNorm1d(hidden)
        # ... and kernel (C, 1) mixes all channels at each step
        self.spatial = nn.Conv2d(hidden, cfg.width, (in_channels, 1), bias=False)
        self.spatial_norm = MaskedBatchNorm1d(cfg.width)

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        b, c, length = x.shape
        h = self.temporal(x[:, None])  # (B, 4W, C, L)
        # statistics per filter over every channel's real steps
        h = self.temporal_norm(h.flatten(2), None if real is None else real.repeat(1, c))  # (B, 4W, C*L)
        # the spatial convolution mixes no steps: no need to zero the padded ones first
        h = self.spatial(F.gelu(h).view(b, -1, c, length)).squeeze(2)  # (B, W, L)
        return F.gelu(self.spatial_norm(h, real))

    @classmethod
    def params(cls, cfg: ModelConfig, in_channels: int) -> int:
        hidden = cls.expansion * cfg.width
        return hidden * cfg.conv_kernel + 2 * hidden + hidden * in_channels * cfg.width + 2 * cfg.width

    @classmethod
    def flops(cls, cfg: ModelConfig, in_channels: int, length: int) -> int:
        hidden = cls.expansion * cfg.width
        return 2 * length * in_channels * hidden * (cfg.conv_kernel + cfg.width)

