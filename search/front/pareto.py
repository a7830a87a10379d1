"""Pareto math, pure NumPy: everything here works on points to be *minimized*.

``to_minimize`` is the one place where objectives become "minimize" (maximized ones are negated, log-scaled ones
take log10). The hypervolume reference point comes from the search spec, never from the data, so hypervolumes
of different runs compare.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_minimize(values: np.ndarray, modes: Sequence[str], log: Sequence[bool] | None = None) -> np.ndarray:
    """(N, M) raw objective values -> (N, M) values where smaller is better.

    Args:
        values: raw metric values, one column per objective.
        modes: ``"max"`` or ``"min"`` per objective.
        log: per objective, compare on log10 scale (sizes and FLOPs span orders of magnitude).
    """
    out = np.array(values, dtype=float, ndmin=2).copy()
    for j, mode in enumerate(modes):
        if log is not None and log[j]:
            out[:, j] = np.log10(np.maximum(out[:, j], 1e-300))
        if mode == "max":
            out[:, j] = -out[:, j]
        elif mode != "min":
            raise ValueError(f"mode: {mode!r} not accepted; accepted: ['max', 'min']")
    return out


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """a dominates b: no worse everywhere and better somewhere (minimization)."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_mask(points: np.ndarray) -> np.ndarray:
    """(N, M) -> (N,) bool, True for points no other point dominates. Duplicates are all kept."""
    points = np.asarray(points, dtype=float)
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=bool)
    le = np.all(points[:, None, :] <= points[None, :, :], axis=2)  # le[i, j]: i no worse than j everywhere
    lt = np.any(points[:, None, :] < points[None, :, :], axis=2)
    dominated_by = le & lt  # [i, j]: i dominates j
    return ~dominated_by.any(axis=0)


def non_dominated_rank(points: np.ndarray) -> np.ndarray:
    """(N, M) -> (N,) int: 0 for the front, 1 for the front of the rest, and so on."""
    points = np.asarray(points, dtype=float)
    rank = np.full(len(points), -1)
    remaining = np.arange(len(points))
    r = 0
    while len(remaining):
        front = non_dominated_mask(points[remaining])
        rank[remaining[front]] = r
        remaining = remaining[~front]
        r += 1
    return rank


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """(N, M) -> (N,) NSGA-II crowding distance within one front; boundary points get inf."""
    points = np.asarray(points, dtype=float)
    n, m = points.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        col = points[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimization). Points not strictly better
    than the reference in every objective add nothing."""
    ref = np.asarray(reference, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, len(ref))
    points = points[np.all(points < ref, axis=1)]
    if len(points) == 0:
        return 0.0
    return _hv(np.unique(points[non_dominated_mask(points)], axis=0), ref)


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    if points.shape[1] == 2:  # sweep along x; y falls along a 2-D front
        points = points[np.argsort(points[:, 0])]
        xs = np.append(points[1:, 0], ref[0])
        best_y = np.minimum.accumulate(points[:, 1])
        return float(np.sum((xs - points[:, 0]) * (ref[1] - best_y)))
    # slice along the last objective: each slab is the (M-1)-D volume of the points below it
    points = points[np.argsort(points[:, -1])]
    zs = np.append(points[1:, -1], ref[-1])
    total = 0.0
    for i in range(len(points)):
        if zs[i] > points[i, -1]:
            below = points[: i + 1, :-1]
            total += (zs[i] - points[i, -1]) * _hv(below[non_dominated_mask(below)], ref[:-1])
    return total


def knee_point(points: np.ndarray) -> int:
    """Index of the front member closest to the ideal point after scaling each objective to [0, 1] over the
    front: the balanced compromise."""
    points = np.asarray(points, dtype=float)
    lo, hi = points.min(0), points.max(0)
    scaled = (points - lo) / np.where(hi > lo, hi - lo, 1.0)
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))
