"""Choosing which training rows a trial learns from: a fraction of the train split, by a named strategy.

Every strategy works within each class with the same quota, ``max(1, round(fraction * class size))`` (raised to a
floor on tiny data), so all strategies keep the class balance of the data and at least one row per class; they
differ only in *which* rows.

- ``random``: uniform within each class.
- ``el2n``: the hardest rows by EL2N score, ``||softmax(f(x)) - onehot(y)||_2`` of a small proxy model early in
  training, averaged over seeds (Paul et al. 2021, "Deep learning on a data diet").
- ``kcenter``: greedy k-center on proxy embeddings - each pick is the row farthest from those picked so far, so the
  subset covers the embedding space (Sener & Savarese 2018, "Active learning ... a core-set approach").
- ``ccs``: coverage-centric (Zheng et al. 2023, "Coverage-centric coreset selection for high pruning rates"): drop
  the hardest ``beta`` share (likely mislabelled or ambiguous), split the score range into equal-width bins and
  spend the budget evenly over them, smallest bins first, sampling uniformly inside each.

Scores and embeddings come from ``emule_models.data.scoring.proxy_scores``, computed once per search; selecting
with them is cheap, so it happens per trial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emule_models.registry import Registry

# picks k rows of one class: (its rows, k, seeded generator, what it needs (or None), ccs's beta, ccs's bins)
Pick = Callable[[np.ndarray, int, np.random.Generator, np.ndarray | None, float, int], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    """A selection strategy: how it picks one class's rows, and which proxy output it reads (``scores``,
    ``embeddings`` or None)."""

    name: str
    pick: Pick
    needs: str | None = None


STRATEGIES: Registry[Strategy] = Registry("selection strategy", field="selection")


def selection_strategy(name: str, needs: str | None = None) -> Callable[[Pick], Pick]:
    """Register the decorated function as the strategy ``name``, reading ``needs`` from the proxy model."""

    def wrap(pick: Pick) -> Pick:
        STRATEGIES.add(name, Strategy(name, pick, needs))
        return pick

    return wrap


def needs_scores(strategy: str) -> bool:
    """Whether ``strategy`` needs the proxy model's output (so the search computes it once, up front)."""
    return strategy in STRATEGIES and STRATEGIES[strategy].needs is not None


def select(labels: np.ndarray, fraction: float, strategy: str = "random", seed: int = 0,
           scores: np.ndarray | None = None, embeddings: np.ndarray | None = None, beta: float | None = None,
           bins: int = 50, min_per_class: int = 1) -> np.ndarray:
    """Sorted row indices of a training subset of about ``fraction`` of the rows, at least ``min_per_class`` of
    each class (all of a class's rows where it has fewer).

    Args:
        labels: (N,) class indices of the train split.
        fraction: in (0, 1]; 1 keeps every row whatever the strategy.
        strategy: a name in ``STRATEGIES`` (``random``, ``el2n``, ``kcenter``, ``ccs``).
        seed: makes the choice repeatable (random draws, tie-breaking, the first k-center).
        scores: (N,) EL2N scores, higher = harder; needed by ``el2n`` and ``ccs``.
        embeddings: (N, d) proxy embeddings; needed by ``kcenter``.
        beta: ``ccs`` only: hardest share dropped first; default ``min(0.1, 1 - fraction)``.
        bins: ``ccs`` only: equal-width score bins.
        min_per_class: the fewest rows of a class the subset keeps, whatever the fraction (tiny data: see
            ``search.trial.validation.class_floor``).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data_fraction: {fraction} not accepted; accepted: a number in (0, 1]")
    chosen_strategy = STRATEGIES.lookup(strategy)
    labels = np.asarray(labels)
    need = chosen_strategy.needs
    given = {"scores": scores, "embeddings": embeddings}[need] if need else None
    if need and given is None:
        raise ValueError(f"selection: {strategy!r} needs {need} from a proxy model; accepted: pass {need}= from "
                         "emule_models.data.scoring.proxy_scores(dataset), or selection: random")
    if need and len(given) != len(labels):
        raise ValueError(f"selection: {need} has {len(given)} rows but the train split {len(labels)}; accepted: "
                         "scores computed on this dataset's train split")
    if beta is not None and not 0.0 <= beta < 1.0:
        raise ValueError(f"selection.beta: {beta} not accepted; accepted: a number in [0, 1)")
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    beta = min(0.1, 1.0 - fraction) if beta is None else beta
    chosen = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        k = min(len(rows), max(1, min_per_class, round(fraction * len(rows))))
        chosen.append(chosen_strategy.pick(rows, k, rng, given, beta, bins))
    return np.sort(np.concatenate(chosen))


@selection_strategy("random")
def _random(rows: np.ndarray, k: int, rng: np.random.Generator, _: None, beta: float, bins: int) -> np.ndarray:
    return rng.choice(rows, size=k, replace=False)


@selection_strategy("el2n", needs="scores")
def _hardest(rows: np.ndarray, k: int, rng: np.random.Generator, scores: np.ndarray, beta: float,
             bins: int) -> np.ndarray:
    shuffled = rng.permutation(rows)  # ties broken by the seed, not by row order
    return shuffled[np.argsort(-np.asarray(scores)[shuffled], kind="stable")[:k]]


@selection_strategy("kcenter", needs="embeddings")
def _k_center(rows: np.ndarray, k: int, rng: np.random.Generator, embeddings: np.ndarray, beta: float,
              bins: int) -> np.ndarray:
    return rows[k_center(np.asarray(embeddings, np.float64)[rows], k, rng)]


@selection_strategy("ccs", needs="scores")
def _coverage_centric(rows: np.ndarray, k: int, rng: np.random.Generator, scores: np.ndarray, beta: float,
                      bins: int) -> np.ndarray:
    return rows[coverage_centric(np.asarray(scores, np.float64)[rows], k, beta, bins, rng)]


def k_center(x: np.ndarray, k: int, rng: np.random.Generator, covered: np.ndarray | None = None) -> np.ndarray:
    """Greedy k-center: positions of ``k`` rows of ``x`` (n, d), each the farthest from those chosen before.

    The first is drawn at random - or, with ``covered`` (m, d), rows already held (a labelled pool), it is the row
    farthest from them, and every pick stays far from them too; see ``k_center_radii``.
    """
    if covered is None:
        first = int(rng.integers(len(x)))
        return k_center_radii(x, k, ((x - x[first]) ** 2).sum(1), first=first)[0]
    return k_center_radii(x, k, nearest_distances(x, covered))[0]


def k_center_radii(x: np.ndarray, k: int, nearest: np.ndarray, first: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center from ``nearest`` (n,), each row's squared distance to what is covered already: positions of
    ``min(k, n)`` rows of ``x`` (``first`` first, when given), each the farthest from all covered before it, and
    that distance (not squared) at its pick - the radius it closes.

    Each step updates every row's distance to its nearest pick in one vectorised pass, O(n * d) per pick: about a
    second for a class of 5,000 rows at half, minutes at 100,000. A picked row is never picked again, even where
    rows repeat.
    """
    nearest = np.asarray(nearest, np.float64).copy()
    picks, radii = [], []
    for _ in range(min(k, len(x))):
        far = int(np.argmax(nearest)) if first is None or picks else first
        picks.append(far)
        radii.append(np.sqrt(max(nearest[far], 0.0)))
        nearest = np.minimum(nearest, ((x - x[far]) ** 2).sum(1))
        nearest[picks] = -1.0  # below any distance: never again
    return np.asarray(picks, np.int64), np.asarray(radii)


def nearest_distances(x: np.ndarray, centres: np.ndarray, block: int = 1024) -> np.ndarray:
    """Each row of ``x`` (n, d): its squared distance to the nearest row of ``centres`` (m, d); ``block`` centres at
    a time, so memory stays at n x block."""
    x, centres = np.asarray(x, np.float64), np.asarray(centres, np.float64)
    out = np.full(len(x), np.inf)
    sq = (x ** 2).sum(1)
    for start in range(0, len(centres), block):
        c = centres[start:start + block]
        d = sq[:, None] + (c ** 2).sum(1)[None] - 2 * x @ c.T  # (n, block)
        out = np.minimum(out, d.min(1))
    return np.maximum(out, 0.0)


def coverage_centric(scores: np.ndarray, k: int, beta: float, bins: int, rng: np.random.Generator) -> np.ndarray:
    """Zheng et al. 2023, Algorithm 1, on one class: positions of ``k`` rows of ``scores`` (n,).

    Drops the hardest ``beta`` share (never so many that fewer than ``k`` rows remain), then allocates the budget
    over ``bins`` equal-width score bins, smallest bin first, each taking ``min(size, budget left / bins left)``.
    """
    n = len(scores)
    order = np.argsort(scores, kind="stable")  # easiest first
    keep = order[: max(k, n - int(np.floor(beta * n)))]
    s = scores[keep]
    edges = np.linspace(s.min(), s.max(), bins + 1)
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)  # bin of each kept row
    members = [keep[which == b] for b in range(bins)]
    picks, budget = [], k
    for left, b in zip(range(bins, 0, -1), np.argsort([len(m) for m in members], kind="stable"), strict=True):
        take = min(len(members[b]), budget // left)
        picks.append(rng.choice(members[b], size=take, replace=False))
        budget -= take
    return np.concatenate(picks)
