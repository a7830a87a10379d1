"""Self-supervised pretraining by masked-patch reconstruction (PatchTST, Nie et al. 2023; SimMIM for images).

Each step blanks a share ``pretrain_mask_ratio`` of every sample's patches - their steps or pixels set to zero
before the model tokenizes them - and trains the tokenizers and the encoder to give back, from the encoded token
of each blanked patch, that patch's values standardised per sample and channel (so scale does not dominate; what is
learnt is shape). Channel-independent series blank each channel's patches apart, as PatchTST does. Labels are never
read, so the rows may be unlabelled. The reconstruction heads are thrown away afterwards: what carries over into
supervised training is the tokenizers and the encoder; the classifier head starts fresh.

``pretrained_state`` caches the result by everything that decides it (architecture, pretraining settings, seed,
the rows' content), so candidates of one architecture - and retrains of a candidate - pretrain once. Dropout and
stochastic depth are off while pretraining, so candidates that differ only in them share one pretraining.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emule_models.config import ModalitySpec, ModelConfig
from emule_models.data.dataset import Split
from emule_models.data.scoring import fingerprint
from emule_models.embed import standardize
from emule_models.model import MultimodalClassifier, build_model
from emule_models.train import TrainConfig, adamw, check_time_limit, step, use_bf16

VERSION = 1  # bump when what pretraining computes changes, so cached weights are not reused


class Reconstruction(nn.Module):
    """Per modality, a linear map from an encoded token back to its patch's values."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = nn.ModuleDict({m.name: nn.Linear(cfg.width, patch_values(cfg, m)) for m in cfg.modalities})

    def forward(self, name: str, tokens: torch.Tensor) -> torch.Tensor:
        return self.heads[name](tokens)


def patch_values(cfg: ModelConfig, m: ModalitySpec) -> int:
    """Values one token reconstructs: a patch of one channel (channel-independent series), of all channels, or an
    image patch of all channels."""
    if m.kind == "image":
        return m.channels * cfg.image_patch ** 2
    return cfg.patch_len * (1 if cfg.channel_mode == "independent" else m.channels)


def pretrain(model: MultimodalClassifier, rows: Split, cfg: TrainConfig, device: str = "cpu") -> int:
    """Train ``model``'s tokenizers and encoder in place to reconstruct masked patches of ``rows`` for
    ``cfg.pretrain_epochs`` epochs (AdamW at ``cfg.lr``, cosine schedule, ``cfg.batch_size``). Returns the samples
    seen. Raises FloatingPointError on a non-finite loss."""
    if len(rows) == 0 or cfg.pretrain_epochs == 0:
        return 0
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    masks = torch.Generator(device=device).manual_seed(cfg.seed)
    heads = Reconstruction(model.cfg).to(device)
    model.to(device).train()
    params = [*model.embed.parameters(), *model.fusion.parameters(), *heads.parameters()]
    # pretraining anneals on a cosine whatever the supervised schedule: its loss is another task's
    opt, sched = adamw(params, cfg, cfg.pretrain_epochs * math.ceil(len(rows) / cfg.batch_size), schedule="cosine")
    amp, seen = use_bf16(device), 0
    for epoch in range(1, cfg.pretrain_epochs + 1):
        order = rng.permutation(len(rows))
        for s in range(0, len(rows), cfg.batch_size):
            check_time_limit()
            inputs, valid, _ = rows.batch(order[s:s + cfg.batch_size], device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = reconstruction_loss(model, heads, inputs, valid, cfg.pretrain_mask_ratio, masks)
            step(loss, opt, sched, f"pretraining loss at epoch {epoch}")
            seen += len(inputs[next(iter(inputs))])
    return seen


def reconstruction_loss(model: MultimodalClassifier, heads: Reconstruction, inputs: dict[str, torch.Tensor],
                        valid: dict[str, torch.Tensor], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Mean squared error over the blanked real patch values, averaged over the modalities."""
    specs = {m.name: m for m in model.cfg.modalities}
    blanked, targets, weights = {}, {}, {}
    for name, x in inputs.items():
        embed = model.embed[name]
        if specs[name].kind == "series":
            blanked[name], targets[name], weights[name] = _mask_series(embed, x, valid.get(name), ratio, generator)
        else:
            blanked[name], targets[name], weights[name] = _mask_image(embed.p, x, ratio, generator)
    encoded, _ = model.encode(blanked, valid)
    losses = []
    for name, tokens in encoded.items():
        pred = heads(name, tokens).reshape(targets[name].shape)
        w = weights[name]
        losses.append(((pred - targets[name]) ** 2 * w).sum() / w.sum().clamp_min(1.0))
    return torch.stack(losses).mean()


def _mask_series(embed, x: torch.Tensor, valid: torch.Tensor | None, ratio: float, generator: torch.Generator):
    """(B, C, L) -> the input with blanked patches zeroed, the standardised patch targets and the loss weights,
    both laid out as the tokens are: (B, N, C*P) for channel-mixing tokens, (B, C*N, P) for channel-independent."""
    b, c, length = x.shape
    n, p, stride = embed.patches, embed.patch_len, embed.stride
    per_channel = embed.mode == "independent"
    blank = torch.rand(b, c if per_channel else 1, n, generator=generator, device=x.device) < ratio  # (B, C|1, N)
    starts = torch.arange(n, device=x.device)[:, None] * stride
    steps = torch.arange(length, device=x.device)[None, :]
    cover = ((steps >= starts) & (steps < starts + p)).to(x.dtype)  # (N, L): the steps of each patch
    blank_steps = (blank.to(x.dtype) @ cover) > 0  # (B, C|1, L)
    real = torch.ones(b, length, dtype=torch.bool, device=x.device) if valid is None else valid
    target = standardize(x, valid)  # zero on padding
    unfold = lambda t: F.pad(t, (0, embed.tail)).unfold(-1, p, stride)[..., :n, :]  # noqa: E731  (.., L) -> (.., N, P)
    target, real_values = unfold(target), unfold(real[:, None, :].to(x.dtype))  # (B, C, N, P), (B, 1, N, P)
    weight = (blank[..., None] & (real_values > 0)).expand(b, c, n, p).to(x.dtype)  # (B, C, N, P)
    if per_channel:
        target, weight = target.reshape(b, c * n, p), weight.reshape(b, c * n, p)
    else:
        target = target.permute(0, 2, 1, 3).reshape(b, n, c * p)
        weight = weight.permute(0, 2, 1, 3).reshape(b, n, c * p)
    return x.masked_fill(blank_steps, 0.0), target, weight


def _mask_image(p: int, x: torch.Tensor, ratio: float, generator: torch.Generator):
    """(B, C, H, W) -> the image with blanked patches zeroed, the standardised patch targets (B, T, C*p*p) in the
    tokenizer's order and the loss weights."""
    b, c, h, w = x.shape
    gh, gw = h // p, w // p
    blank = torch.rand(b, gh, gw, generator=generator, device=x.device) < ratio  # (B, gh, gw)
    pixels = F.pad(blank.repeat_interleave(p, 1).repeat_interleave(p, 2), (0, w - gw * p, 0, h - gh * p))  # (B, H, W)
    flat = x.reshape(b, c, h * w)
    target = standardize(flat, None).reshape(b, c, h, w)
    target = target.unfold(2, p, p).unfold(3, p, p)[:, :, :gh, :gw]  # (B, C, gh, gw, p, p)
    target = target.permute(0, 2, 3, 1, 4, 5).reshape(b, gh * gw, c * p * p)
    weight = blank.reshape(b, gh * gw, 1).expand_as(target).to(x.dtype)
    return x.masked_fill(pixels[:, None], 0.0), target, weight


def pretrained_state(cfg: ModelConfig, rows: Split, training: TrainConfig, device: str = "cpu",
                     cache_dir: str | Path | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """The tokenizer and encoder weights of a model of ``cfg`` (initialised from ``training.seed``, as a
    candidate's model is) after pretraining on ``rows``, and the samples that pretraining saw. Read from
    ``cache_dir`` when the same pretraining ran before; the samples are counted either way (they are the recipe's
    cost, whoever paid it first)."""
    bare = dataclasses.replace(cfg, dropout=0.0, drop_path=0.0)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_key(bare, rows, training)}.pt"
        if path.exists():
            saved = torch.load(path, map_location=device, weights_only=True)
            return saved["state"], int(saved["samples"])
    torch.manual_seed(training.seed)
    model = build_model(bare)
    samples = pretrain(model, rows, training, device)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("head.")}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"state": state, "samples": samples}, tmp)
        os.replace(tmp, path)  # atomic: a trial reading it concurrently sees all or nothing
    return state, samples


def load_pretrained(model: MultimodalClassifier, state: dict[str, torch.Tensor]) -> None:
    """Put pretrained tokenizer and encoder weights into ``model``, keeping its own classifier head."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape mismatch
        raise ValueError(f"pretrained weights do not fit the model: {str(e).splitlines()[1].strip()}") from None
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ValueError(f"pretrained weights do not fit the model: missing {missing}, unexpected {unexpected}")


def _key(cfg: ModelConfig, rows: Split, training: TrainConfig) -> str:
    settings = {"version": VERSION, "torch": torch.__version__, "model": cfg.to_dict(),
                "training": {k: getattr(training, k) for k in ("pretrain_epochs", "pretrain_mask_ratio", "lr",
                                                                "weight_decay", "batch_size", "seed")}}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(fingerprint(rows).encode())
    return h.hexdigest()[:32]
