"""Image views derived from series. A derived view re-encodes the series: it adds no new information, only a
different inductive bias for the image tokenizer."""

from __future__ import annotations

import numpy as np


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
