"""Training-time augmentation, a whole batch at a time on its own device (no per-sample Python loop), seeded.

A policy is a named list of ops; ``Augmenter(policy, num_classes, seed)`` applies it to a batch and returns the
inputs, the unchanged masks and soft targets. Only the training loop calls it: evaluation never sees augmented data.

Series ops (``(B, C, L)`` with a ``(B, L)`` mask of real steps; time is warped within each sample's real length,
so the padding stays padding and masks are unchanged):

- ``scale``: multiply each sample and channel by ``N(1, 0.1)``.
- ``jitter``: add noise ``N(0, (0.03 x std)^2)`` per step, ``std`` over the sample's real steps.
- ``shift``: roll each sample circularly by up to 10% of its real length.
- ``magnitude_warp``: multiply by a smooth curve through 4 knots drawn from ``N(1, 0.2)``.
- ``time_warp``: resample along a smooth monotone warp (speeds ``exp(N(0, 0.2))`` at 4 knots).
- ``window_slice``: a random window of 90% of the real length stretched back to the whole.

Image op (``(B, C, H, W)``): ``affine`` - horizontal flip (p 0.5), zoom-in crop to 80-100% of the side, shift by
up to 10%, rotation by up to 10 degrees.

Across modalities (one partner and one ratio per sample pair, shared by every modality of the sample, and mixed
into the targets): ``mixup`` (``Beta(0.2, 0.2)``) or ``cutmix`` (a window of the series' real length / a box of
the image replaced by the partner's), one of the two per batch.

Policies: ``none``; ``light`` = scale, jitter, shift, affine; ``strong`` = light + magnitude_warp, time_warp,
window_slice (each on half the samples) + mixup/cutmix. With ``series_norm: sample`` the model standardises each
series after augmentation, which undoes ``scale``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from emule_models.embed import masked_moments
from emule_models.registry import Registry

# policy -> the operations it applies, from none to strong
POLICIES: Registry[tuple[str, ...]] = Registry("augmentation policy", field="training.augment", sort=False)
POLICIES.add("none", ())
POLICIES.add("light", ("scale", "jitter", "shift", "affine"))
POLICIES.add("strong", ("scale", "jitter", "shift", "affine", "magnitude_warp", "time_warp", "window_slice", "mix"))
HALF = ("magnitude_warp", "time_warp", "window_slice")  # applied to a random half of the batch each time


class Augmenter:
    """Applies a named policy to training batches. ``num_classes`` turns labels into (mixed) soft targets."""

    def __init__(self, policy: str, num_classes: int, seed: int = 0):
        self.ops, self.num_classes, self.seed = POLICIES.lookup(policy), num_classes, seed
        self.gen: torch.Generator | None = None
        self.beta = np.random.default_rng(seed)  # torch draws Beta only from its global generator

    def __call__(self, inputs: dict[str, torch.Tensor], valid: dict[str, torch.Tensor],
                 labels: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(augmented inputs, soft targets (B, K)); ``valid`` is read, never changed."""
        return self._apply(inputs, valid, F.one_hot(labels, self.num_classes).float())

    def with_teacher(self, inputs: dict[str, torch.Tensor], valid: dict[str, torch.Tensor], labels: torch.Tensor,
                     teacher: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """As calling it, plus a teacher's probabilities ``teacher`` (B, K) blended with the same partners and
        shares as the label targets: (inputs, targets, teacher)."""
        k = self.num_classes
        out, both = self._apply(inputs, valid, torch.cat([F.one_hot(labels, k).float(), teacher.float()], dim=1))
        return out, both[:, :k], both[:, k:]

    def _apply(self, inputs: dict[str, torch.Tensor], valid: dict[str, torch.Tensor],
               targets: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if not self.ops:
            return inputs, targets
        device = targets.device
        if self.gen is None or self.gen.device != device:
            self.gen = torch.Generator(device=device).manual_seed(self.seed)
        out = {}
        for name, x in inputs.items():
            out[name] = self._series(x, valid.get(name)) if x.dim() == 3 else self._image(x)
        if "mix" in self.ops and len(targets) > 1:
            out, targets = self._mix(out, valid, targets)
        return out, targets

    # --- helpers drawing from the policy's generator ---
    def _rand(self, *shape, device) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=device)

    def _randn(self, *shape, device) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, device=device)

    def _series(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        b, c, length = x.shape
        dev = x.device
        real = torch.ones(b, length, dtype=torch.bool, device=dev) if valid is None else valid  # (B, L)
        w = real[:, None, :].to(x.dtype)  # (B, 1, L)
        lengths = real.sum(-1).clamp_min(1).to(x.dtype)  # (B,)
        if "scale" in self.ops:
            x = x * (1 + 0.1 * self._randn(b, c, 1, device=dev))
        if "jitter" in self.ops:
            _, var = masked_moments(x, w)
            x = x + 0.03 * var.sqrt() * self._randn(b, c, length, device=dev)
        steps = torch.arange(length, device=dev, dtype=x.dtype).expand(b, length)  # (B, L) output positions
        source = steps.clone()
        last = (lengths - 1)[:, None]  # (B, 1) last real position
        along = (steps / last.clamp_min(1)).clamp(max=1)  # (B, L) position within the real length, 0..1
        if "magnitude_warp" in self.ops:
            curve = through_knots(1 + 0.2 * self._randn(b, c, 4, device=dev), along)  # (B, C, L), smooth
            x = torch.where(self._half(b, dev)[:, None, None], x * curve, x)
        if "time_warp" in self.ops:
            speed = through_knots(torch.exp(0.2 * self._randn(b, 1, 4, device=dev)), along)[:, 0]  # (B, L)
            cum = torch.cumsum(speed * real, -1) - speed[:, :1]  # monotone, 0 at the first step
            end = cum.gather(1, last.long()).clamp_min(1e-6)
            source = torch.where(self._half(b, dev)[:, None], cum / end * last, source)
        if "window_slice" in self.ops:
            start = self._rand(b, 1, device=dev) * 0.1 * last
            sliced = start + steps / last.clamp_min(1) * 0.9 * last
            source = torch.where(self._half(b, dev)[:, None], sliced, source)
        if "shift" in self.ops:
            offset = torch.floor(self._rand(b, 1, device=dev) * 0.1 * lengths[:, None])
            source = torch.remainder(source + offset, lengths[:, None])
        if not torch.equal(source, steps):
            x = _resample(x, torch.where(real, source, steps), last.long())
        return x * w  # padding stays zero

    def _half(self, b: int, device) -> torch.Tensor:
        return self._rand(b, device=device) < 0.5

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        if "affine" not in self.ops:
            return x
        b, dev = x.shape[0], x.device
        angle = (self._rand(b, device=dev) * 2 - 1) * math.radians(10)
        zoom = 0.8 + 0.2 * self._rand(b, device=dev)  # the crop's side, as a share of the image
        flip = torch.where(self._rand(b, device=dev) < 0.5, -1.0, 1.0).to(dev)
        shift = (self._rand(b, 2, device=dev) * 2 - 1) * 0.1
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], -1),
                             torch.stack([sin * flip, cos, shift[:, 1]], -1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)

    def _mix(self, inputs: dict[str, torch.Tensor], valid: dict[str, torch.Tensor],
             targets: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        b, dev = targets.shape[0], targets.device
        partner = torch.randperm(b, generator=self.gen, device=dev)
        lam = torch.as_tensor(self.beta.beta(0.2, 0.2, b), dtype=torch.float32, device=dev)  # (B,) share kept
        lam = torch.maximum(lam, 1 - lam)  # the sample stays the larger part
        out = {}
        if self._rand(1, device=dev).item() < 0.5:  # mixup
            for name, x in inputs.items():
                shape = (b,) + (1,) * (x.dim() - 1)
                mixed = lam.view(shape) * x + (1 - lam.view(shape)) * x[partner]
                if name in valid:  # keep the partner's steps only where this sample has real steps
                    mixed = mixed * valid[name][:, None, :].to(x.dtype)
                out[name] = mixed
        else:  # cutmix: the same share of every modality comes from the partner
            where = self._rand(b, 2, device=dev)  # where the window / box sits, per sample
            for name, x in inputs.items():
                out[name] = _cut(x, x[partner], 1 - lam, where, valid.get(name))
        return out, lam[:, None] * targets + (1 - lam[:, None]) * targets[partner]


def through_knots(knots: torch.Tensor, along: torch.Tensor) -> torch.Tensor:
    """A piecewise-linear curve through ``knots`` (B, C, K), spread evenly over each sample's real length, read
    at ``along`` (B, L) in [0, 1]: (B, C, L)."""
    k = knots.shape[-1]
    pos = along * (k - 1)
    lo = pos.floor().clamp(max=k - 2).long()
    frac = (pos - lo)[:, None, :]
    take = lambda idx: knots.gather(-1, idx[:, None, :].expand(-1, knots.shape[1], -1))  # noqa: E731
    return take(lo) * (1 - frac) + take(lo + 1) * frac


def _resample(x: torch.Tensor, source: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """(B, C, L) read at fractional positions ``source`` (B, L), linearly interpolated between real steps
    (``last`` (B, 1): each sample's last real position)."""
    lo = torch.minimum(source.floor().clamp_min(0), last)
    hi = torch.minimum(lo + 1, last)
    frac = (source - lo)[:, None, :]
    gather = lambda idx: x.gather(-1, idx.long()[:, None, :].expand(-1, x.shape[1], -1))  # noqa: E731
    return gather(lo) * (1 - frac) + gather(hi) * frac


def _cut(x: torch.Tensor, other: torch.Tensor, share: torch.Tensor, where: torch.Tensor,
         valid: torch.Tensor | None) -> torch.Tensor:
    """``x`` with a window (series) or box (image) holding about ``share`` of it taken from ``other``; ``where``
    (B, 2) in [0, 1) places it."""
    b, dev = x.shape[0], x.device
    if x.dim() == 3:
        length = x.shape[-1]
        real = torch.full((b,), length, device=dev) if valid is None else valid.sum(-1)
        size = (share * real).round()
        start = (where[:, 0] * (real - size)).floor()
        t = torch.arange(length, device=dev)[None, :]
        inside = (t >= start[:, None]) & (t < (start + size)[:, None])  # (B, L)
        return torch.where(inside[:, None, :], other, x) * (1.0 if valid is None else valid[:, None, :].to(x.dtype))
    h, w = x.shape[-2:]
    side = share.sqrt()
    top, left = (where[:, 0] * (1 - side) * h).floor(), (where[:, 1] * (1 - side) * w).floor()
    rows, cols = torch.arange(h, device=dev)[None, :], torch.arange(w, device=dev)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + side * h)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + side * w)[:, None])  # (B, W)
    box = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return torch.where(box[:, None], other, x)
