"""Image views derived from series. A derived view re-encodes the series: it adds no new information, only a
different inductive bias for the image tokenizer (and more tokens to pay for).

Views work on padded series with per-row real lengths, resampling each real part to a fixed size first, so
variable-length data (PLAID) gets images of one size. All are vectorised over the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from emule_models.config import ModalitySpec
from emule_models.data.dataset import SPLITS, Dataset, Split
from emule_models.registry import Registry

# a view: (N, C, L) padded series, (N,) real lengths or None, image side -> (N, C', side, side) images
View = Callable[[np.ndarray, np.ndarray | None, int], np.ndarray]
VIEWS: Registry[View] = Registry("view", field="data.view")


def polar_silhouette(radius: np.ndarray, size: int = 32) -> np.ndarray:
    """Filled shape whose boundary lies at ``radius[i]`` for angle ``2*pi*i/L``: (N, L) -> (N, 1, size, size).

    Radii are min-max scaled per sample into [0.2, 1] of the half-width, so z-normalised outlines render.
    """
    n, length = radius.shape
    lo, hi = radius.min(1, keepdims=True), radius.max(1, keepdims=True)
    r = 0.2 + 0.8 * (radius - lo) / np.maximum(hi - lo, 1e-8)  # (N, L)
    axis = (np.arange(size) + 0.5) / size * 2 - 1
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    rho = np.hypot(xx, yy)  # (S, S)
    step = ((np.arctan2(yy, xx) % (2 * np.pi)) / (2 * np.pi) * length).astype(int) % length  # (S, S)
    image = rho[None] <= r[:, step]  # (N, S, S)
    return image[:, None].astype(np.float32)


def resample(x: np.ndarray, steps: np.ndarray | None, points: int) -> np.ndarray:
    """Linear resampling of each row's real part to ``points`` steps: (N, C, L), (N,) lengths -> (N, C, points).

    Vectorised: one gather for the left and right neighbours of every target position.
    """
    n, c, length = x.shape
    steps = np.full(n, length) if steps is None else np.asarray(steps)
    pos = (steps[:, None] - 1) * np.linspace(0.0, 1.0, points)[None]  # (N, P) positions in each real part
    left = np.floor(pos).astype(np.int64)
    right = np.minimum(left + 1, steps[:, None] - 1)
    frac = (pos - left).astype(np.float32)[:, None]  # (N, 1, P)
    lo = np.take_along_axis(x, np.broadcast_to(left[:, None], (n, c, points)), axis=2)
    hi = np.take_along_axis(x, np.broadcast_to(right[:, None], (n, c, points)), axis=2)
    return lo + (hi - lo) * frac  # (N, C, P)


@VIEWS.register("gaf")
def gramian_angular_field(x: np.ndarray, steps: np.ndarray | None = None, size: int = 32) -> np.ndarray:
    """Gramian angular summation field (Wang & Oates 2015): (N, C, L) -> (N, C, size, size).

    Each channel's real part is resampled to ``size`` steps, min-max scaled to [-1, 1] per sample and channel,
    read as the cosine of an angle phi; the image is cos(phi_i + phi_j).
    """
    r = resample(x, steps, size)  # (N, C, S)
    lo, hi = r.min(-1, keepdims=True), r.max(-1, keepdims=True)
    u = np.clip(2 * (r - lo) / np.maximum(hi - lo, 1e-8) - 1, -1, 1)  # (N, C, S) = cos(phi)
    s = np.sqrt(1 - u**2)  # sin(phi)
    # cos(a + b) = cos a cos b - sin a sin b
    return (u[..., :, None] * u[..., None, :] - s[..., :, None] * s[..., None, :]).astype(np.float32)  # (N, C, S, S)


@VIEWS.register("spectrogram")
def spectrogram(x: np.ndarray, steps: np.ndarray | None = None, size: int = 32) -> np.ndarray:
    """Log-magnitude short-time Fourier transform: (N, C, L) -> (N, C, size, size), frequency x time.

    The real part is resampled to ``4 * size`` steps, cut into ``size`` Hann-windowed frames of ``2 * size - 2``
    steps (giving ``size`` frequency bins), and log1p(|STFT|) is standardised per sample and channel.
    """
    n_fft = 2 * size - 2
    r = resample(x, steps, 4 * size)  # (N, C, 4S)
    hop = max(1, (r.shape[-1] - n_fft) // max(1, size - 1))
    frames = np.lib.stride_tricks.sliding_window_view(r, n_fft, axis=-1)[..., ::hop, :][..., :size, :]  # (N, C, S, F)
    spec = np.log1p(np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)))  # (N, C, S time, S freq)
    spec = spec.swapaxes(-1, -2)  # (N, C, freq, time)
    mu, sd = spec.mean((-1, -2), keepdims=True), spec.std((-1, -2), keepdims=True)
    return ((spec - mu) / np.maximum(sd, 1e-8)).astype(np.float32)


@VIEWS.register("silhouette")
def silhouette(x: np.ndarray, steps: np.ndarray | None = None, size: int = 32) -> np.ndarray:
    """``polar_silhouette`` of the first channel, read as a radius per angle (for outlines such as OSULeaf)."""
    radius = x[:, 0] if steps is None else resample(x[:, :1], steps, x.shape[-1])[:, 0]  # (N, L)
    return polar_silhouette(radius, size)


def with_view(dataset: Dataset, view: str, size: int = 32, source: str | None = None,
              name: str | None = None) -> Dataset:
    """The dataset with an image modality derived from a series modality added to every split.

    Args:
        view: a name in ``VIEWS``.
        size: side of the square image.
        source: the series modality (default: every series modality gets its own view).
        name: the new modality's name (default ``<source>_<view>``; only with one source).
    """
    make = VIEWS.lookup(view)
    series = [m for m in dataset.modalities if m.kind == "series"]
    if source is not None:
        series = [m for m in series if m.name == source]
    if not series:
        raise ValueError(f"data.view: {view!r} needs a series modality{f' named {source!r}' if source else ''}; "
                         f"accepted: one of {[m.name for m in dataset.modalities if m.kind == 'series']}")
    if name is not None and len(series) > 1:
        raise ValueError("data.view: a name for the view needs one source series; accepted: source=<series name>")
    names = {m.name: name or f"{m.name}_{view}" for m in series}
    taken = {m.name for m in dataset.modalities} & set(names.values())
    if taken:
        raise ValueError(f"data.view: modality {sorted(taken)} exists already; accepted: another view or name")
    def viewed(part: Split) -> Split:
        inputs = dict(part.inputs)
        for src, dst in names.items():
            steps = part.valid[src].sum(1) if src in part.valid else None
            inputs[dst] = make(part.inputs[src], steps, size)
        return Split(inputs, part.labels, part.valid)

    splits = {s: viewed(dataset.split(s)) for s in SPLITS}
    if dataset.unlabelled is not None:
        splits["unlabelled"] = viewed(dataset.unlabelled)
    added = tuple(ModalitySpec(dst, "image", m.channels if view != "silhouette" else 1, height=size, width=size)
                  for m in series for dst in [names[m.name]])
    return replace(dataset, modalities=dataset.modalities + added, **splits)
