"""Pareto and hypervolume math against hand-computed answers."""

import numpy as np
import pytest

from search.front.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    knee_point,
    non_dominated_mask,
    non_dominated_rank,
    to_minimize,
)


def test_to_minimize_negates_max_and_logs():
    out = to_minimize(np.array([[0.9, 1000.0]]), ["max", "min"], [False, True])
    assert out.tolist() == [[-0.9, 3.0]]


def test_to_minimize_refuses_unknown_mode():
    with pytest.raises(ValueError, match="mode: 'up'"):
        to_minimize(np.array([[1.0]]), ["up"])


def test_dominates():
    assert dominates(np.array([1, 1]), np.array([1, 2]))
    assert not dominates(np.array([1, 2]), np.array([1, 2]))
    assert not dominates(np.array([1, 3]), np.array([2, 2]))


def test_non_dominated_mask_and_rank():
    p = np.array([[1, 3], [2, 2], [3, 1], [3, 3], [4, 4], [2, 2]])
    assert non_dominated_mask(p).tolist() == [True, True, True, False, False, True]  # duplicates both kept
    assert non_dominated_rank(p).tolist() == [0, 0, 0, 1, 2, 0]


def test_hypervolume_2d_staircase():
    # union of [1,4]x[3,4], [2,4]x[2,4], [3,4]x[1,4]: 1*1 + 1*2 + 1*3
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1]]), [4, 4]) == pytest.approx(6.0)


def test_hypervolume_ignores_dominated_and_out_of_reference_points():
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]]), [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.array([[5, 5]]), [4, 4]) == 0.0
    assert hypervolume(np.zeros((0, 2)), [4, 4]) == 0.0


def test_hypervolume_3d_inclusion_exclusion():
    # boxes [0,2]^2 x [1,2] (4) and [1,2]^2 x [0,2] (2) overlap in [1,2]^3 (1)
    assert hypervolume(np.array([[0, 0, 1], [1, 1, 0]]), [2, 2, 2]) == pytest.approx(5.0)
    assert hypervolume(np.array([[1, 1, 1]]), [2, 3, 4]) == pytest.approx(6.0)


def test_hypervolume_matches_monte_carlo_in_4d():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, size=(6, 4))
    ref = np.ones(4)
    samples = rng.uniform(0, 1, size=(200_000, 4))
    covered = (samples[:, None, :] >= pts[None]).all(-1).any(-1).mean()
    assert hypervolume(pts, ref) == pytest.approx(covered, abs=5e-3)


def test_crowding_distance_boundaries_infinite():
    d = crowding_distance(np.array([[0.0, 4.0], [1.0, 2.0], [4.0, 0.0]]))
    assert np.isinf(d[0]) and np.isinf(d[2])
    assert d[1] == pytest.approx((4 - 0) / 4 + (4 - 0) / 4)


def test_knee_point_is_balanced_member():
    front = np.array([[0.0, 10.0], [1.0, 1.0], [10.0, 0.0]])
    assert knee_point(front) == 1
