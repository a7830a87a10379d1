"""MO-ASHA's hypervolume-contribution rule (``mo-asha-hv``) driven by fake trials; every expectation is worked out
by hand in the comments."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from search.driver.halving import (
    CONTINUE,
    STOP,
    MultiObjectiveHalving,
    contribution_positions,
    rung_positions,
)
from search.driver.schedulers import build_scheduler
from search.front.pareto import to_minimize

# (accuracy max, parameters min on log10), reference (0, 1e6): minimized (-accuracy, log10 parameters), ref (0, 6).
#   A (0.5, 1000)   -> (-0.5, 3)    rank 0
#   B (0.3, 100)    -> (-0.3, 2)    rank 0: the smallest, the least accurate
#   C (0.7, 10000)  -> (-0.7, 4)    rank 0
#   D (0.4, 10000)  -> (-0.4, 4)    rank 1 (A and C dominate it)
#   E (0.6, 100000) -> (-0.6, 5)    rank 1 (C dominates it)
# Rank 0's hypervolume: 0.2 x 2 + 0.2 x 3 + 0.3 x 4 = 2.2. What each member alone covers (its exclusive box):
#   C: x in [-0.7, -0.5], y in [4, 6] -> 0.4;  B: x in [-0.3, 0], y in [2, 3] -> 0.3;
#   A: x in [-0.5, -0.3], y in [3, 4] -> 0.2
# Rank 1 (1.0): D: x in [-0.4, 0], y in [4, 5] -> 0.4;  E: x in [-0.6, -0.4], y in [5, 6] -> 0.2
# Positions: C 0, B 1, A 2 (rank 0 by contribution), D 3, E 4. Under crowding distance B and C (the extremes) tie
# at 0 and A is 2.
FIVE = {"A": (0.5, 1000), "B": (0.3, 100), "C": (0.7, 10000), "D": (0.4, 10000), "E": (0.6, 100000)}
MODES, LOG, REFERENCE = ["max", "min"], [False, True], [0.0, 1e6]


def minimized(points: dict[str, tuple[float, ...]]) -> np.ndarray:
    return to_minimize(np.array(list(points.values()), dtype=float), MODES, LOG)


def reference() -> np.ndarray:
    return to_minimize(np.array([REFERENCE]), MODES, LOG)[0]


def halving(rule: str = "hv") -> MultiObjectiveHalving:
    return MultiObjectiveHalving(MODES, max_t=9, reduction_factor=3, log=LOG, rule=rule, reference=REFERENCE)


def test_contribution_positions_by_hand():
    assert contribution_positions(minimized(FIVE), reference()).tolist() == [2, 1, 0, 3, 4]
    assert rung_positions(minimized(FIVE)).tolist() == [2, 0, 0, 3, 3]  # the extremes tie first under crowding


def test_the_smallest_model_goes_on_for_what_it_adds_not_for_being_smallest():
    # C first: alone, continues. A: rank 0 with C; C covers x [-0.7, -0.5] y [4, 6] = 0.4, A covers x [-0.5, 0]
    # y [3, 4] = 0.5: p = 0, continues. B (the smallest, the least accurate): positions C 0, B 1, A 2 as above;
    # p = 1, 1 x 3 < 3 fails: stops. Under crowding distance B is an extreme (infinite distance), p = 0: continues.
    order = {k: FIVE[k] for k in "CAB"}
    hv, pareto = halving(), halving("pareto")
    assert [hv.on_result(t, 1, v) for t, v in order.items()] == [CONTINUE, CONTINUE, STOP]
    assert [pareto.on_result(t, 1, v) for t, v in order.items()] == [CONTINUE, CONTINUE, CONTINUE]
    # a small model that adds much: F (0.65, 100) -> (-0.65, 2) dominates A and B; rank 0 is {C, F}:
    # C covers x [-0.7, -0.65] y [4, 6] = 0.1, F covers x [-0.65, 0] y [2, 4] = 1.3: F first, p = 0, continues
    assert hv.on_result("F", 1, (0.65, 100)) == CONTINUE


def test_a_point_outside_the_reference_adds_nothing_and_ties_with_duplicates():
    # G (0.9, 1e7) -> (-0.9, 7) has more parameters than the reference (1e7 > 1e6): on the front (the most
    # accurate), it covers nothing. C covers x [-0.7, -0.5] y [4, 6] = 0.4, A x [-0.5, 0] y [3, 4] = 0.5:
    # A 0, C 1, G 2. Two copies of one point cover nothing alone: they tie.
    points = minimized({"G": (0.9, 1e7), "C": (0.7, 10000), "A": (0.5, 1000)})
    assert contribution_positions(points, reference()).tolist() == [2, 1, 0]
    twins = minimized({"X": (0.5, 1000), "Y": (0.5, 1000)})
    assert contribution_positions(twins, reference()).tolist() == [0, 0]


def test_a_diverged_trial_is_behind_every_finite_one():
    h = halving()
    assert h.on_result("nan", 1, (float("nan"), 100)) == CONTINUE  # the first at a rung always goes on
    assert h.on_result("A", 1, FIVE["A"]) == CONTINUE
    assert h.on_result("nan2", 1, (float("nan"), 100)) == STOP


def test_the_rule_needs_a_reference_per_objective():
    with pytest.raises(ValueError, match=r"reference: None not accepted; rule 'hv' needs one reference value per "
                                         r"objective \(2\)"):
        MultiObjectiveHalving(MODES, max_t=9, rule="hv")
    with pytest.raises(ValueError, match=r"reference: \[0.0\]"):
        MultiObjectiveHalving(MODES, max_t=9, rule="hv", reference=[0.0])


def test_ray_adapter_applies_the_hv_rule():
    # the C, A, B case above through Tune's scheduler interface (fake trials: the adapter reads trial_id only)
    sched = build_scheduler("mo-asha-hv", ["val_accuracy", "param_count"], ["max", "min"], LOG, max_t=9,
                            grace_period=1, reduction_factor=3, reference=REFERENCE)
    assert sched.halving.rule == "hv" and sched.halving.reference.tolist() == [0.0, 6.0]
    decide = [sched.on_trial_result(None, SimpleNamespace(trial_id=t),
                                    {"epoch": 1, "val_accuracy": a, "param_count": p})
              for t, (a, p) in {k: FIVE[k] for k in "CAB"}.items()]
    assert decide == [TrialScheduler.CONTINUE, TrialScheduler.CONTINUE, TrialScheduler.STOP]
    assert "hv" in sched.debug_string()


# --- rule 6''': hypervolume contribution per unit of relative cost (``mo-asha-hv-cost``) ---
# Costs (training FLOPs so far, any unit): A 1, B 1, C 4, D 1, E 1; mean 8 / 5 = 1.6, so the weights (cost / mean)
# are A, B, D, E 0.625 and C 2.5. Scores = the exclusive contributions above / weight:
#   rank 0: A 0.2 / 0.625 = 0.32, B 0.3 / 0.625 = 0.48, C 0.4 / 2.5 = 0.16 -> B 0, A 1, C 2
#   rank 1: D 0.4 / 0.625 = 0.64, E 0.2 / 0.625 = 0.32 -> D 3, E 4
COSTS = {"A": 1.0, "B": 1.0, "C": 4.0, "D": 1.0, "E": 1.0}


def test_contribution_per_cost_positions_by_hand():
    costs = np.array(list(COSTS.values()))
    assert contribution_positions(minimized(FIVE), reference(), costs).tolist() == [1, 0, 2, 3, 4]
    # equal costs: the plain contribution order (rule 6''); rank still comes first however cheap a dominated point
    assert contribution_positions(minimized(FIVE), reference(), np.full(5, 7.0)).tolist() == [2, 1, 0, 3, 4]
    cheap_d = np.array([1.0, 1.0, 1.0, 1e-6, 1.0])
    assert contribution_positions(minimized(FIVE), reference(), cheap_d).tolist()[3] == 3


def test_the_most_accurate_trial_stops_when_it_costs_four_times_the_others():
    # Arrivals A, B, C at rung 1. A: alone, continues. B: rank 0 with A; A alone covers x [-0.5, -0.3] y [3, 6] =
    # 0.6, B x [-0.3, 0] y [2, 3] = 0.3; equal costs: p = 1, 1 x 3 < 2 fails: stops (under both rules). C: rank 0
    # {A, B, C}, contributions C 0.4, B 0.3, A 0.2. Rule 6'': C first, continues. Rule 6''': mean cost (1 + 1 + 4) / 3
    # = 2, weights 0.5, 0.5, 2: A 0.4, B 0.6, C 0.2 -> C p = 2, 2 x 3 < 3 fails: stops.
    hv, per_cost = halving(), halving("hv-cost")
    assert [hv.on_result(t, 1, FIVE[t]) for t in "ABC"] == [CONTINUE, STOP, CONTINUE]
    assert [per_cost.on_result(t, 1, FIVE[t], COSTS[t]) for t in "ABC"] == [CONTINUE, STOP, STOP]
    # the cost of a trial recorded without a decision counts too
    late = halving("hv-cost")
    late.record("A", 1, FIVE["A"], 1.0)
    late.record("B", 1, FIVE["B"], 1.0)
    assert late.on_result("C", 1, FIVE["C"], 4.0) == STOP


def test_the_cost_rule_refuses_a_result_without_its_cost():
    h = halving("hv-cost")
    with pytest.raises(ValueError, match=r"cost: None not accepted for trial A; rule 'hv-cost' needs each result's "
                                         r"cost so far, a number >= 0"):
        h.on_result("A", 1, FIVE["A"])
    with pytest.raises(ValueError, match=r"cost: nan not accepted"):
        h.on_result("B", 1, FIVE["B"], float("nan"))
    assert h.recorded(1) == {}  # a refused result leaves the rung as it was: the next one is the first there
    assert h.on_result("C", 1, FIVE["C"], 4.0) == CONTINUE
    assert halving().on_result("A", 1, FIVE["A"]) == CONTINUE  # the other rules never read it


def test_ray_adapter_reads_the_cost_from_training_compute():
    sched = build_scheduler("mo-asha-hv-cost", ["val_accuracy", "param_count"], ["max", "min"], LOG, max_t=9,
                            grace_period=1, reduction_factor=3, reference=REFERENCE)
    assert sched.halving.rule == "hv-cost"
    decide = [sched.on_trial_result(None, SimpleNamespace(trial_id=t), {"epoch": 1, "val_accuracy": FIVE[t][0],
                                                                         "param_count": FIVE[t][1],
                                                                         "training_compute": 1e9 * COSTS[t]})
              for t in "ABC"]
    assert decide == [TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.STOP]
    with pytest.raises(ValueError, match=r"trial D reported a result without 'training_compute' .*cost_attr "
                                         r"'training_compute'"):
        sched.on_trial_result(None, SimpleNamespace(trial_id="D"), {"epoch": 1, "val_accuracy": 0.4,
                                                                    "param_count": 10000})
    # a stopper-ended trial's last result without its cost is not recorded, and raises nothing
    sched.on_trial_complete(None, SimpleNamespace(trial_id="E"), {"epoch": 1, "val_accuracy": 0.6,
                                                                  "param_count": 100000})
    assert "E" not in sched.halving.recorded(1)
