"""Training-subset selection: every strategy honours the fraction, keeps each class, repeats with its seed."""

from __future__ import annotations

import numpy as np
import pytest

from emule_models.data.selection import STRATEGIES, coverage_centric, k_center, needs_scores, select

RNG = np.random.default_rng(0)
LABELS = np.repeat(np.arange(4), [50, 30, 15, 5])  # imbalanced, one small class
SCORES = RNG.random(len(LABELS))
EMBEDDINGS = RNG.normal(size=(len(LABELS), 6))
GIVEN = {"scores": SCORES, "embeddings": EMBEDDINGS}


def _select(strategy: str, fraction: float, seed: int = 0, **kw) -> np.ndarray:
    return select(LABELS, fraction, strategy, seed, **GIVEN, **kw)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 0.5, 0.9])
def test_fraction_honoured_and_every_class_kept(strategy, fraction):
    idx = _select(strategy, fraction)
    counts = np.bincount(LABELS[idx], minlength=4)
    quota = [max(1, round(fraction * n)) for n in np.bincount(LABELS)]
    np.testing.assert_array_equal(counts, quota)
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deterministic_given_seed(strategy):
    np.testing.assert_array_equal(_select(strategy, 0.3, seed=5), _select(strategy, 0.3, seed=5))
    if strategy != "el2n":  # el2n is a ranking: the seed only breaks ties
        assert not np.array_equal(_select(strategy, 0.3, seed=5), _select(strategy, 0.3, seed=6))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_full_fraction_keeps_everything(strategy):
    np.testing.assert_array_equal(_select(strategy, 1.0), np.arange(len(LABELS)))


def test_random_unchanged_for_existing_callers():
    """The original positional call still works and gives the same rows as before the new strategies."""
    idx = select(LABELS, 0.5, "random", 3)
    rng = np.random.default_rng(3)
    expected = np.sort(np.concatenate([rng.choice(np.flatnonzero(LABELS == c), size=max(1, round(0.5 * n)),
                                                  replace=False) for c, n in enumerate(np.bincount(LABELS))]))
    np.testing.assert_array_equal(idx, expected)


def test_el2n_keeps_the_hardest_of_each_class():
    idx = _select("el2n", 0.2)
    for c in range(4):
        rows = np.flatnonzero(LABELS == c)
        picked = np.intersect1d(idx, rows)
        assert SCORES[picked].min() >= SCORES[np.setdiff1d(rows, picked)].max()


def test_ccs_drops_the_hardest_tail():
    for fraction in (0.1, 0.3, 0.5):
        idx = _select("ccs", fraction, beta=0.2)
        for c in range(3):  # classes large enough for the tail to be dropped
            rows = np.flatnonzero(LABELS == c)
            tail = rows[np.argsort(SCORES[rows])[len(rows) - int(0.2 * len(rows)):]]
            assert not np.intersect1d(idx, tail).size


def test_ccs_covers_the_score_range():
    """Uniform budget over equal-width bins: the kept scores spread over the range instead of clustering."""
    scores = np.concatenate([np.random.default_rng(1).normal(0, 0.05, 900), np.linspace(0.5, 1, 100)])
    pick = coverage_centric(scores, 100, beta=0.0, bins=10, rng=np.random.default_rng(0))
    assert len(pick) == 100 and len(np.unique(pick)) == 100
    assert (scores[pick] > 0.4).mean() > 0.3  # random sampling would give about 0.1


def test_ccs_budget_spent_exactly_when_bins_are_uneven():
    scores = np.r_[np.zeros(3), np.ones(50)]
    for k in (1, 4, 10, 53):
        assert len(coverage_centric(scores, k, 0.0, 7, np.random.default_rng(0))) == k


def test_kcenter_covers():
    """Greedy k-center reaches every well-separated cluster, which a small random draw often misses."""
    centres = np.eye(5) * 100
    x = np.concatenate([centres[i] + np.random.default_rng(i).normal(size=(40 if i == 0 else 2, 5))
                        for i in range(5)])
    pick = k_center(x, 5, np.random.default_rng(0))
    assert sorted({int(np.argmax(x[p])) for p in pick}) == [0, 1, 2, 3, 4]
    # the covering radius shrinks as k grows
    radius = [np.sqrt(((x[:, None] - x[k_center(x, k, np.random.default_rng(0))][None]) ** 2).sum(-1)).min(1).max()
              for k in (5, 10, 20)]
    assert radius[0] >= radius[1] >= radius[2]


def test_kcenter_from_covered_rows_and_repeated_rows():
    """With rows already covered (a labelled pool) the first pick is the row farthest from them, not a random one;
    a row is never picked twice, even where rows repeat."""
    x = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    covered = np.array([[0.0, 0.0]])
    assert k_center(x, 2, np.random.default_rng(0), covered).tolist() == [2, 4]
    picks = k_center(x, 5, np.random.default_rng(0), covered)
    assert sorted(picks.tolist()) == [0, 1, 2, 3, 4]
    assert sorted(k_center(np.zeros((4, 3)), 4, np.random.default_rng(1)).tolist()) == [0, 1, 2, 3]


def test_missing_or_mismatched_inputs_rejected():
    for strategy in STRATEGIES:
        assert needs_scores(strategy) == (STRATEGIES[strategy].needs is not None)
    with pytest.raises(ValueError, match=r"^selection: 'el2n' needs scores"):
        select(LABELS, 0.5, "el2n")
    with pytest.raises(ValueError, match=r"^selection: 'kcenter' needs embeddings"):
        select(LABELS, 0.5, "kcenter", scores=SCORES)
    with pytest.raises(ValueError, match=r"^selection: scores has 3 rows"):
        select(LABELS, 0.5, "ccs", scores=SCORES[:3])
    with pytest.raises(ValueError, match=r"^selection: 'best' not accepted"):
        select(LABELS, 0.5, "best")
    with pytest.raises(ValueError, match=r"^data_fraction: 0 not accepted"):
        select(LABELS, 0, "random")


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_floor_per_class_holds_whatever_the_fraction(strategy):
    labels = np.repeat([0, 1, 2], [12, 3, 40])
    rng = np.random.default_rng(0)
    rows = select(labels, 0.1, strategy, seed=0, scores=rng.random(len(labels)),
                  embeddings=rng.random((len(labels), 4)), min_per_class=5)
    counts = np.bincount(labels[rows], minlength=3)
    assert counts.tolist() == [5, 3, 5]  # 10% of 12 and of 40 raised to 5; a class of 3 keeps all it has
    assert len(set(rows)) == len(rows)
