"""Model configuration: frozen, validated at construction, unknown keys refused."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from emule_models.attention import ATTENTION
from emule_models.attention.base import relative_refusal
from emule_models.fusion import FUSION
from emule_models.position import POSITIONS
from emule_models.stems import STEM_FILTERS, STEMS

MODALITY_KINDS = ("series", "image")
CHANNEL_MODES = ("mixing", "independent")
SERIES_NORMS = ("none", "sample")
TOKENIZERS = ("patch", *STEMS)  # patch: each patch linearly projected; the others: a convolutional stem


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality, declared by the data.

    Args:
        name: the input key.
        kind: ``series`` (channels x time, padded to ``length``) or ``image`` (channels x height x width).
        channels: number of channels.
        length: longest series (series only).
        height, width: image size (image only).
    """

    name: str
    kind: str
    channels: int
    length: int = 0
    height: int = 0
    width: int = 0

    def __post_init__(self):
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"modalities.{self.name}.kind: {self.kind!r} not accepted; "
                             f"accepted: {list(MODALITY_KINDS)}")
        if self.channels < 1:
            raise ValueError(f"modalities.{self.name}.channels: {self.channels} must be >= 1")
        if self.kind == "series" and self.length < 1:
            raise ValueError(f"modalities.{self.name}.length: {self.length} must be >= 1 for a series")
        if self.kind == "image" and (self.height < 1 or self.width < 1):
            raise ValueError(f"modalities.{self.name}: image size {self.height}x{self.width} must be >= 1x1")


@dataclass(frozen=True)
class ModelConfig:
    """Everything ``build_model`` needs; a sampler proposes the architecture fields, the data fixes the rest.

    Args:
        modalities: the inputs, from the dataset.
        num_classes: number of labels.
        attention: a name in ``emule_models.attention.ATTENTION``.
        attention_options: options of that variant (e.g. ``{"features": 64}`` for performer).
        depth: encoder layers; 0 builds none: the tokens (a stem's features, say) are normalised and pooled straight
            into the head - the convolution-only end of the family. ``heads``, ``attention``, ``attention_options``,
            ``mlp_ratio``, ``dropout``, ``drop_path``, ``fusion_layer``, ``bottleneck_tokens`` and a ``relative``
            position then mean nothing and are not checked against each other, so a sampler may draw them
            independently.
        width: token width; must be divisible by ``heads``.
        heads: attention heads.
        mlp_ratio: hidden width of the feed-forward block over ``width``.
        dropout: dropout rate inside the encoder.
        fusion: how modalities are combined; see ``emule_models.fusion``.
        fusion_layer: for ``cross`` and ``bottleneck``, the first layer (0-based) at which modalities exchange
            information; layers before it see their own modality only. Ignored by ``early`` and ``late``, so that a
            sampler drawing every field independently never proposes an invalid config.
        bottleneck_tokens: number of shared fusion tokens of ``bottleneck``; ignored by the other fusions.
        patch_len, patch_stride: time-series patching (stride defaults to patch_len: no overlap); the series is
            zero-padded at the end so that the last patch reaches its last step.
        channel_mode: ``mixing`` (one token per patch over all channels) or ``independent`` (one per channel and patch).
        image_patch: side of the square ViT patch.
        series_norm: ``none``, or ``sample``: each series standardised per sample and channel over its real steps
            before tokenizing (offset and scale removed; what matters is the shape).
        tokenizer: ``patch`` (each patch linearly projected), or a convolutional stem over every step whose
            features' maximum over each patch is its token, so the token count is the patch tokenizer's:
            ``conv`` (one convolution and GELU), ``lite`` (LITE's multiplexed, dilated depthwise-separable stem) or
            ``disjoint`` (ConvTran's temporal-then-spatial stem); see ``emule_models.stems``. Images are always
            patch-projected.
        conv_kernel, conv_dilation: the stems' kernel length and dilation (``lite``: of its longest multiplexed
            convolution and of its first separable layer; both shrink or grow with depth there).
        stem_layers: ``lite``'s depthwise-separable layers (LITE has 2); ignored by the other tokenizers.
        stem_filters: ``lite``: ``learned`` filters only, or ``learned+fixed``: beside LITE's hand-built, untrained
            increase, decrease and peak detectors; ignored by the other tokenizers.
        position: how series tokens carry their position: ``learned`` (a trained table, the default),
            ``sinusoidal``, ``tape`` (ConvTran's sinusoids scaled to few tokens), ``relative`` (a learned bias per
            head and offset added to the scores of every self-attention layer - taken by the attention variants that
            form a score matrix, ``softmax`` and ``local``, and refused with the others) or ``none``; image tokens
            keep a learned table. See ``emule_models.position``.
        drop_path: stochastic depth - each block's residual branches are dropped per sample with this probability
            while training.
    """

    modalities: tuple[ModalitySpec, ...]
    num_classes: int
    attention: str = "softmax"
    attention_options: dict[str, Any] = field(default_factory=dict)
    depth: int = 2
    width: int = 64
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    fusion: str = "early"
    fusion_layer: int = 0
    bottleneck_tokens: int = 4
    patch_len: int = 16
    patch_stride: int = 0
    channel_mode: str = "mixing"
    image_patch: int = 8
    series_norm: str = "none"
    tokenizer: str = "patch"
    conv_kernel: int = 7
    conv_dilation: int = 1
    stem_layers: int = 2
    stem_filters: str = "learned+fixed"
    position: str = "learned"
    drop_path: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "modalities", tuple(
            m if isinstance(m, ModalitySpec) else ModalitySpec(**m) for m in self.modalities))
        object.__setattr__(self, "attention_options", dict(self.attention_options))
        if self.patch_stride == 0:
            object.__setattr__(self, "patch_stride", self.patch_len)
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every reason this config cannot be built, each naming the field, the value and what is accepted."""
        out = []
        if not self.modalities:
            out.append("modalities: empty; at least one series or image modality is needed")
        if self.num_classes < 2:
            out.append(f"num_classes: {self.num_classes} must be >= 2")
        for name, value, low in (("depth", self.depth, 0), ("width", self.width, 1), ("heads", self.heads, 1),
                                 ("patch_len", self.patch_len, 1), ("patch_stride", self.patch_stride, 1),
                                 ("image_patch", self.image_patch, 1),
                                 ("bottleneck_tokens", self.bottleneck_tokens, 1),
                                 ("conv_kernel", self.conv_kernel, 1), ("conv_dilation", self.conv_dilation, 1),
                                 ("stem_layers", self.stem_layers, 1)):
            if value < low:
                out.append(f"{name}: {value} must be >= {low}")
        if self.depth >= 1 and self.heads >= 1 and self.width % self.heads:
            divisors = [h for h in range(1, self.width + 1) if self.width % h == 0]
            out.append(f"width: {self.width} is not divisible by heads={self.heads}; heads accepted: {divisors}")
        for name, rate in (("dropout", self.dropout), ("drop_path", self.drop_path)):
            if not 0.0 <= rate < 1.0:
                out.append(f"{name}: {rate} must be in [0, 1)")
        for name, value, accepted in (("series_norm", self.series_norm, SERIES_NORMS),
                                      ("tokenizer", self.tokenizer, TOKENIZERS),
                                      ("stem_filters", self.stem_filters, STEM_FILTERS),
                                      ("position", self.position, POSITIONS)):
            if value not in accepted:
                out.append(f"{name}: {value!r} not accepted; accepted: {list(accepted)}")
        if self.mlp_ratio <= 0:
            out.append(f"mlp_ratio: {self.mlp_ratio} must be > 0")
        if self.fusion not in FUSION:
            out.append(FUSION.unknown_name(self.fusion))
        elif FUSION[self.fusion].uses_fusion_layer and self.depth >= 1 and not 0 <= self.fusion_layer < self.depth:
            out.append(f"fusion_layer: {self.fusion_layer} not accepted for fusion={self.fusion} with "
                       f"depth={self.depth}; accepted: 0..{self.depth - 1}")
        if self.channel_mode not in CHANNEL_MODES:
            out.append(f"channel_mode: {self.channel_mode!r} not accepted; accepted: {list(CHANNEL_MODES)}")
        for m in self.modalities:
            if m.kind == "series" and self.patch_len > m.length:
                out.append(f"patch_len: {self.patch_len} is longer than series {m.name!r} (length {m.length}); "
                           f"accepted: 1..{m.length}")
            if m.kind == "image" and self.image_patch > min(m.height, m.width):
                out.append(f"image_patch: {self.image_patch} is larger than image {m.name!r} "
                           f"({m.height}x{m.width}); accepted: 1..{min(m.height, m.width)}")
        if self.attention not in ATTENTION:
            out.append(ATTENTION.unknown_name(self.attention))
        elif self.depth >= 1 and self.position == "relative" and not ATTENTION[self.attention].relative_bias:
            out.append(relative_refusal(self.attention))
        elif not out:
            variant = ATTENTION[self.attention]
            for shape in FUSION[self.fusion].shapes(self):
                out.extend(f"attention={self.attention}: {r}" for r in variant.not_supported_reasons(shape))
        return list(dict.fromkeys(out))

    # --- token geometry, shared by the model and the closed-form cost ---
    def series_patches(self, m: ModalitySpec) -> int:
        """Patches of a series: enough that the last reaches the last step (the series is zero-padded at the end
        for it), and none that starts past the end (with stride > patch_len some steps fall between patches)."""
        if m.length < self.patch_len:
            return 0
        return min(-(-(m.length - self.patch_len) // self.patch_stride) + 1, -(-m.length // self.patch_stride))

    def tokens(self, m: ModalitySpec) -> int:
        if m.kind == "series":
            n = self.series_patches(m)
            return n * m.channels if self.channel_mode == "independent" else n
        return (m.height // self.image_patch) * (m.width // self.image_patch)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a plain dict (e.g. exported YAML); unknown keys raise."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model: unknown keys {unknown}; accepted: {sorted(known)}")
        d = dict(d)
        d["modalities"] = tuple(ModalitySpec(**m) if isinstance(m, dict) else m for m in d.get("modalities", ()))
        return cls(**d)

