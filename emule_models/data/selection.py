"""Choosing which training rows a trial learns from: a fraction of the train split, by a named strategy."""

from __future__ import annotations

import numpy as np

STRATEGIES = ("random",)


def select(labels: np.ndarray, fraction: float, strategy: str = "random", seed: int = 0) -> np.ndarray:
    """Row indices of a training subset of about ``fraction`` of the rows, at least one per class.

    Args:
        labels: (N,) class indices of the train split.
        fraction: in (0, 1].
        strategy: ``random`` - stratified uniform sampling.
        seed: makes the choice repeatable.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data_fraction: {fraction} not accepted; accepted: a number in (0, 1]")
    if strategy not in STRATEGIES:
        raise ValueError(f"selection: {strategy!r} not accepted; accepted: {list(STRATEGIES)}")
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        n = max(1, round(fraction * len(rows)))
        chosen.append(rng.choice(rows, size=n, replace=False))
    return np.sort(np.concatenate(chosen))
