"""Tokenizers: time-series patches (channel-mixing or channel-independent; linear or through a convolutional
stem, ``emule_models.stems``) and ViT-style image patches.

Each turns one modality's batch into ``(B, T, W)`` tokens with a ``(B, T)`` mask of tokens that hold real data;
a data set may declare any number of modalities, each a series or an image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emule_models.config import ModalitySpec, ModelConfig
from emule_models.position import absolute_params, absolute_position
from emule_models.stems import STEMS

# Stems skip the padding after a batch's longest series (exact: see ``real_extent``); a switch for benchmarks only
TRIM_PADDING = True


class SeriesEmbed(nn.Module):
    """(B, C, L) series, padded to L, -> (B, T, W) patch tokens and a (B, T) mask of patches holding real data.

    ``mixing``: one token per patch over all channels (T = patches). ``independent``: one token per channel and
    patch with a shared patch projection plus a channel embedding (T = channels x patches), as in PatchTST.

    A stem tokenizer (``conv``, ``lite``, ``disjoint``): the stem's ``W`` features at every step, then the maximum
    of each feature over each patch's real steps (as ROCKET keeps a kernel's maximum) - the same patches, so the
    same token count and mask. Channel-independent, one stem serves every channel alone.

    Variable lengths: ``valid`` (B, L) marks the real steps. Padded steps are zeroed before patching, so what the
    padding holds never reaches a real token, and a patch is real when its first step is. ``series_norm: sample``
    standardises each sample and channel over its real steps first.
    """

    def __init__(self, cfg: ModelConfig, m: ModalitySpec):
        super().__init__()
        self.patch_len, self.stride, self.mode = cfg.patch_len, cfg.patch_stride, cfg.channel_mode
        self.patches = cfg.series_patches(m)
        # zeros appended so that the last patch covers the last step (patches x stride need not meet L exactly)
        self.tail = max(0, (self.patches - 1) * self.stride + self.patch_len - m.length)
        self.norm = cfg.series_norm
        if cfg.tokenizer in STEMS:
            self.stem = STEMS[cfg.tokenizer](cfg, stem_channels(cfg, m))
            self.proj = None
        else:
            self.stem = None
            self.proj = nn.Linear(series_patch_dim(cfg, m), cfg.width)
        pos = absolute_position(cfg.position, self.patches, cfg.width)  # (N, W), or None: nothing added
        if isinstance(pos, nn.Parameter):
            self.pos = pos
        else:  # a fixed table is rebuilt from the config, not saved
            self.register_buffer("pos", pos, persistent=False)
        self.channel = nn.Parameter(torch.zeros(m.channels, 1, cfg.width)) if self.mode == "independent" else None
        if self.channel is not None:
            nn.init.trunc_normal_(self.channel, std=0.02)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, _ = x.shape
        if valid is None:
            mask = torch.ones(b, self.patches, dtype=torch.bool, device=x.device)  # (B, N)
        else:
            x = x.masked_fill(~valid[:, None, :], 0.0)  # masked_fill: padding may hold NaN
            mask = valid[:, :: self.stride][:, : self.patches]  # (B, N), each patch's first step
        if self.norm == "sample":
            x = standardize(x, valid)
        if self.stem is not None:
            return self._stem_tokens(x, valid, mask)
        patches = F.pad(x, (0, self.tail)).unfold(-1, self.patch_len, self.stride)[:, :, : self.patches]  # (B, C, N, P)
        if self.mode == "independent":
            tokens = self._placed(self.proj(patches)) + self.channel  # (B, C, N, W)
            return tokens.reshape(b, c * self.patches, -1), mask.repeat(1, c)  # (B, C*N, W), (B, C*N)
        tokens = self.proj(patches.permute(0, 2, 1, 3).reshape(b, self.patches, -1))  # (B, N, W)
        return self._placed(tokens), mask

    def _placed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., N, W) tokens with their absolute position added, if the config gives them one."""
        return tokens if self.pos is None else tokens + self.pos

    def _stem_tokens(self, x: torch.Tensor, valid: torch.Tensor | None,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, length = x.shape
        real = valid
        if self.mode == "independent":
            x = x.reshape(b * c, 1, length)  # (B*C, 1, L): one stem shared by the channels
            real = None if valid is None else valid.repeat_interleave(c, 0)  # (B*C, L)
        steps = real_extent(real, length)
        # the stem runs up to the batch's last real step only: its features at real steps never see beyond them
        # (``emule_models.stems``), so the padding after it is skipped, not computed and masked
        h = self.stem(x[..., :steps], None if real is None else real[:, :steps])  # (B', W, steps)
        if real is not None:  # padded steps must not win a real patch's maximum
            h = h.masked_fill(~real[:, None, :steps], float("-inf"))
        h = F.pad(h, (0, length - steps + self.tail), value=float("-inf"))  # (B', W, L + tail)
        tokens = F.max_pool1d(h, self.patch_len, self.stride)
        tokens = tokens[..., : self.patches]  # (B', W, N)
        tokens = tokens.masked_fill(torch.isinf(tokens), 0.0)  # a patch without real steps (masked downstream)
        tokens = self._placed(tokens.transpose(1, 2))  # (B', N, W)
        if self.mode == "independent":
            tokens = tokens.reshape(b, c, self.patches, -1) + self.channel  # (B, C, N, W)
            return tokens.reshape(b, c * self.patches, -1), mask.repeat(1, c)
        return tokens, mask


def real_extent(real: torch.Tensor | None, length: int) -> int:
    """Steps up to and including the batch's last real one (``length`` when every step is real or under export,
    where the traced graph must not depend on one example's lengths). ``TRIM_PADDING`` off: always ``length``."""
    if real is None or not TRIM_PADDING or torch.compiler.is_compiling():
        return length
    seen = real.any(0).nonzero()  # (S, 1): the steps real in some row
    return int(seen[-1, 0]) + 1 if len(seen) else length


class ImageEmbed(nn.Module):
    """(B, C, H, W) image -> (B, T, W) tokens, one per non-overlapping square patch (edge pixels beyond the last
    whole patch are dropped). Images have no padding: every token is real."""

    def __init__(self, cfg: ModelConfig, m: ModalitySpec):
        super().__init__()
        self.p = cfg.image_patch
        self.patches = cfg.tokens(m)
        self.proj = nn.Linear(m.channels * self.p * self.p, cfg.width)
        self.pos = nn.Parameter(torch.zeros(self.patches, cfg.width))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c = x.shape[:2]
        p = self.p
        x = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, H/p, W/p, p, p)
        x = x.permute(0, 2, 3, 1, 4, 5).reshape(b, self.patches, c * p * p)  # (B, T, C*p*p)
        mask = torch.ones(b, self.patches, dtype=torch.bool, device=x.device)
        return self.proj(x) + self.pos, mask


def masked_moments(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of (B, C, L) series per sample and channel over the steps where ``w`` (B, 1, L) is 1:
    (B, C, 1) each."""
    n = w.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (x * w).sum(-1, keepdim=True) / n
    return mean, ((x - mean) ** 2 * w).sum(-1, keepdim=True) / n


def standardize(x: torch.Tensor, valid: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """(B, C, L) series z-normalised per sample and channel over the real steps; padded steps stay zero."""
    w = torch.ones_like(x[:, :1]) if valid is None else valid[:, None, :].to(x.dtype)  # (B, 1, L)
    mean, var = masked_moments(x, w)
    return (x - mean) / (var + eps).sqrt() * w


def series_patch_dim(cfg: ModelConfig, m: ModalitySpec) -> int:
    """Input width of one series token: a patch of one channel, or of all channels together."""
    return cfg.patch_len if cfg.channel_mode == "independent" else cfg.patch_len * m.channels


def stem_channels(cfg: ModelConfig, m: ModalitySpec) -> int:
    """Channels one stem call sees: all of the series', or one (channel-independent: one call per channel)."""
    return 1 if cfg.channel_mode == "independent" else m.channels


def embed_flops(cfg: ModelConfig, m: ModalitySpec) -> int:
    """Forward matmul FLOPs of one modality's tokenizer for one sample (a stem: at every step, once per channel
    when channel-independent; the patch maxima are not matmuls)."""
    if m.kind == "series" and cfg.tokenizer in STEMS:
        calls = m.channels // stem_channels(cfg, m)
        return calls * STEMS[cfg.tokenizer].flops(cfg, stem_channels(cfg, m), m.length)
    in_dim = series_patch_dim(cfg, m) if m.kind == "series" else m.channels * cfg.image_patch ** 2
    return 2 * cfg.tokens(m) * in_dim * cfg.width


def embed_params(cfg: ModelConfig, m: ModalitySpec) -> int:
    """Parameters of one modality's tokenizer: its stem or patch projection, position table and channel table."""
    if m.kind == "image":
        return (m.channels * cfg.image_patch ** 2 + 1) * cfg.width + cfg.tokens(m) * cfg.width
    front = (STEMS[cfg.tokenizer].params(cfg, stem_channels(cfg, m)) if cfg.tokenizer in STEMS
             else (series_patch_dim(cfg, m) + 1) * cfg.width)
    channel = m.channels * cfg.width if cfg.channel_mode == "independent" else 0
    return front + absolute_params(cfg.position, cfg.series_patches(m), cfg.width) + channel


def build_embed(cfg: ModelConfig, m: ModalitySpec) -> nn.Module:
    return SeriesEmbed(cfg, m) if m.kind == "series" else ImageEmbed(cfg, m)
