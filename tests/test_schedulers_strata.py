"""MO-ASHA's strata rule (``mo-asha-strata``: accuracy ranked within size strata) driven by fake trials; every
expectation is worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from search.driver.halving import CONTINUE, STOP, MultiObjectiveHalving, strata_positions, trained_objective
from search.driver.moasha import MOASHAScheduler
from search.driver.schedulers import build_scheduler
from search.front.pareto import to_minimize

# (accuracy max, parameters min on log10). Stratum of a trial = those with at most 2x its parameters.
#   A (0.5, 1000):   stratum {A, B, C} (C's 1500 <= 2000)  n = 3; ahead: C                  p = 1
#   B (0.3, 1000):   stratum {A, B, C}                     n = 3; ahead: A, C               p = 2
#   C (0.6, 1500):   stratum {A, B, C} (<= 3000)           n = 3; ahead: none               p = 0
#   D (0.4, 10000):  stratum {A, B, C, D} (<= 20000)       n = 4; ahead: A, C               p = 2
#   E (0.7, 100000): stratum all five                      n = 5; ahead: none               p = 0
FIVE = {"A": (0.5, 1000), "B": (0.3, 1000), "C": (0.6, 1500), "D": (0.4, 10000), "E": (0.7, 100000)}
MODES, LOG = ["max", "min"], [False, True]


def halving(**kwargs) -> MultiObjectiveHalving:
    return MultiObjectiveHalving(MODES, max_t=9, reduction_factor=3, log=LOG, rule="strata", **kwargs)


def feed(h: MultiObjectiveHalving, points: dict[str, tuple[float, ...]]) -> dict[str, str]:
    return {tid: h.on_result(tid, 1, values) for tid, values in points.items()}


def minimized(points: dict[str, tuple[float, ...]], log=LOG) -> np.ndarray:
    return to_minimize(np.array(list(points.values()), dtype=float), MODES, log)


def test_strata_positions_by_hand():
    positions, sizes = strata_positions(minimized(FIVE), ranked=0, log=LOG)
    assert dict(zip(FIVE, zip(positions.tolist(), sizes.tolist(), strict=True), strict=True)) == {
        "A": (1, 3), "B": (2, 3), "C": (0, 3), "D": (2, 4), "E": (0, 5)}  # fmt: skip


def test_slack_on_a_linear_scale_is_relative():
    # the same factor of 2 on raw parameter counts: 1500 <= 1000 + 1 * 1000, 20000 = 10000 + 10000 ...
    linear = strata_positions(minimized(FIVE, [False, False]), ranked=0, log=[False, False])
    logged = strata_positions(minimized(FIVE), ranked=0, log=LOG)
    assert [x.tolist() for x in linear] == [x.tolist() for x in logged]
    # slack 1: a stratum is the trials no larger at all. C (1500) no longer counts for A and B:
    # A {A, B} p = 0; B {A, B} p = 1; C {A, B, C} p = 0; D {A, B, C, D} p = 2; E all, p = 0
    positions, sizes = strata_positions(minimized(FIVE), ranked=0, log=LOG, size_slack=1.0)
    assert positions.tolist() == [0, 1, 0, 2, 0] and sizes.tolist() == [2, 2, 3, 4, 5]


def test_decisions_in_arrival_order():
    # A first: alone, continues. B: {A, B}, p = 1, 1 * 3 < 2 fails. C: {A, B, C}, p = 0. D: {A, B, C, D}, p = 2,
    # 6 < 4 fails. E: all, p = 0.
    assert feed(halving(), FIVE) == {"A": CONTINUE, "B": STOP, "C": CONTINUE, "D": STOP, "E": CONTINUE}


def test_smallest_model_no_longer_passes_on_size_alone():
    # H has the fewest parameters, so the Pareto rule puts it on the rung's front with infinite crowding distance
    # (p = 0): it continues whatever its accuracy. Under strata its stratum (<= 1800) is {A, B, C, H}, n = 4, and
    # A and C are more accurate: p = 2, 2 * 3 < 4 fails.
    first = {k: FIVE[k] for k in "ABC"}
    strata, pareto = halving(), MultiObjectiveHalving(MODES, max_t=9, reduction_factor=3, log=LOG)
    feed(strata, first)
    feed(pareto, first)
    assert pareto.on_result("H", 1, (0.45, 900)) == CONTINUE
    assert strata.on_result("H", 1, (0.45, 900)) == STOP


def test_a_large_model_must_beat_the_smaller_ones():
    # L (0.55, 50000): stratum = all of A..D and L (n = 5); only C (0.6) is ahead, p = 1, 3 < 5: continues.
    # M (0.45, 50000) then: stratum A..D, L, M (n = 6); ahead: A, C, L, p = 3, 9 < 6 fails.
    h = halving()
    feed(h, {k: FIVE[k] for k in "ABCD"})
    assert h.on_result("L", 1, (0.55, 50000)) == CONTINUE
    assert h.on_result("M", 1, (0.45, 50000)) == STOP


def test_nan_result_is_behind_every_finite_trial_and_in_no_finite_stratum():
    h = halving()
    feed(h, {"A": FIVE["A"]})
    # the NaN trial becomes (inf, inf): its stratum holds A and itself (n = 2), A is ahead, 3 < 2 fails
    assert h.on_result("nan", 1, (float("nan"), 1000)) == STOP
    # B's stratum holds A only (inf parameters are over any slack): n = 2, p = 1: stops, as without the NaN
    assert h.on_result("B", 1, FIVE["B"]) == STOP
    positions, sizes = strata_positions(np.array([[np.inf, np.inf], [-0.5, 3.0]]), ranked=0, log=LOG)
    assert positions.tolist() == [1, 0] and sizes.tolist() == [2, 1]


def test_three_objectives_every_size_objective_within_slack():
    # (accuracy, parameters, flops), both sizes on log10. Q is within 2x of P in parameters but 10x in FLOPs,
    # so it is not in P's stratum: P competes with itself only and continues despite Q's better accuracy.
    h = MultiObjectiveHalving(["max", "min", "min"], max_t=9, log=[False, True, True], rule="strata")
    assert h.on_result("Q", 1, (0.9, 1000, 1e7)) == CONTINUE
    assert h.on_result("P", 1, (0.5, 1000, 1e6)) == CONTINUE
    # R has P's size and a worse accuracy: stratum {P, R} (Q's FLOPs are too many), p = 1, 3 < 2 fails
    assert h.on_result("R", 1, (0.4, 1000, 1e6)) == STOP


def test_ranked_objective_need_not_come_first():
    # objectives (parameters, accuracy): the rule ranks column 1
    h = MultiObjectiveHalving(["min", "max"], max_t=9, log=[True, False], rule="strata", ranked=1)
    decisions = feed(h, {k: (p, a) for k, (a, p) in FIVE.items()})
    assert decisions == {"A": CONTINUE, "B": STOP, "C": CONTINUE, "D": STOP, "E": CONTINUE}


def test_trained_objective_and_factory():
    assert trained_objective(["val_accuracy", "param_count", "flops"]) == 0
    assert trained_objective(["params", "flops", "val_accuracy"]) == 2  # a former name of the size still counts
    with pytest.raises(ValueError, match=r"mo-asha-strata.*\['param_count', 'flops'\]"):
        trained_objective(["param_count", "flops"])
    sched = build_scheduler("mo-asha-strata", ["param_count", "val_accuracy"], ["min", "max"], [True, False],
                            max_t=9, grace_period=1, reduction_factor=3)
    assert isinstance(sched, MOASHAScheduler)
    assert (sched.halving.rule, sched.halving.ranked, sched.halving.size_slack) == ("strata", 1, 2.0)
    assert build_scheduler("mo-asha", ["val_accuracy", "param_count"], ["max", "min"], [False, True], max_t=9,
                           grace_period=1, reduction_factor=3).halving.rule == "pareto"


@pytest.mark.parametrize(("kwargs", "field"), [({"rule": "crowd"}, "rule: 'crowd'"), ({"ranked": 2}, "ranked: 2"),
                                               ({"size_slack": 0.5}, "size_slack: 0.5")])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MultiObjectiveHalving(MODES, max_t=9, **kwargs)


def test_ray_adapter_applies_the_strata_rule():
    # the H case above through Tune's scheduler interface (fake trials: the adapter reads trial_id only)
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    sched = build_scheduler("mo-asha-strata", ["val_accuracy", "param_count"], ["max", "min"], [False, True],
                            max_t=9, grace_period=1, reduction_factor=3)
    decide = {t: sched.on_trial_result(None, SimpleNamespace(trial_id=t),
                                       {"epoch": 1, "val_accuracy": a, "param_count": p})
              for t, (a, p) in {**{k: FIVE[k] for k in "ABC"}, "H": (0.45, 900)}.items()}
    assert decide == {"A": TrialScheduler.CONTINUE, "B": TrialScheduler.STOP, "C": TrialScheduler.CONTINUE,
                      "H": TrialScheduler.STOP}
    assert "strata" in sched.debug_string()
