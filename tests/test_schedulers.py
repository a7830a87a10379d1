"""MO-ASHA driven by fake trials (no Ray running); one slow end-to-end run through a real Tuner."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from search.driver.halving import CONTINUE, STOP, MultiObjectiveHalving, rung_positions
from search.driver.moasha import MOASHAScheduler
from search.driver.schedulers import SCHEDULERS, build_scheduler
from search.spec.fidelity import rung_levels

# Nine minimized 2-D points with hand-computed order (see test_rung_positions_by_hand):
#   rank 0: A, B, C   crowding: A, C boundary (inf); B = (4-1)/3 + (5-1)/4 = 2
#   rank 1: D, E, F   crowding: E, F boundary (inf); D = (5-2.5)/2.5 + (6-2)/4 = 2
#   rank 2: G, H      two points: both inf
#   rank 3: I
NINE = {
    "A": (1, 5), "B": (2, 3), "C": (4, 1),
    "D": (3, 4), "E": (5, 2), "F": (2.5, 6),
    "G": (6, 6), "H": (5, 7),
    "I": (7, 8),
}  # fmt: skip


def feed(halving: MultiObjectiveHalving, points: dict[str, tuple[float, ...]], resource: float = 1) -> dict[str, str]:
    """Trials arrive at one rung in dict order; their decisions, by id."""
    return {tid: halving.on_result(tid, resource, values) for tid, values in points.items()}


def minmin(**kwargs) -> MultiObjectiveHalving:
    return MultiObjectiveHalving(["min", "min"], max_t=kwargs.pop("max_t", 9), reduction_factor=3, **kwargs)


# --- ranking ------------------------------------------------------------------------------------------------------


def test_rung_positions_by_hand():
    pos = dict(zip(NINE, rung_positions(np.array(list(NINE.values()), dtype=float)), strict=True))
    # position = how many points are strictly ahead; the two boundary points of a front tie
    assert pos == {"A": 0, "B": 2, "C": 0, "D": 5, "E": 3, "F": 3, "G": 6, "H": 6, "I": 8}


def test_rung_positions_ties_and_infinite_points():
    assert rung_positions(np.array([[1.0, 1.0], [1.0, 1.0]])).tolist() == [0, 0]
    # an all-inf point (a NaN result) is dominated by every finite one
    assert rung_positions(np.array([[np.inf, np.inf], [5.0, 5.0], [1.0, 9.0]])).tolist() == [2, 0, 0]


def test_rung_levels():
    assert rung_levels(1, 3, 9) == (1, 3)  # max_t itself is the end, not a rung
    assert rung_levels(1, 3, 10) == (1, 3, 9)
    assert rung_levels(1, 3, 244) == (1, 3, 9, 27, 81, 243)  # no log rounding at 3**5
    assert rung_levels(2, 2, 16) == (2, 4, 8)
    assert rung_levels(5, 3, 5) == ()


# --- decisions ----------------------------------------------------------------------------------------------------


def test_nine_trials_best_first_exactly_the_top_third_continue():
    halving = minmin()
    decisions = feed(halving, NINE)
    # A, B, C form the front; each later arrival has >= 3 ahead of it, and 3 * 3 < n fails for n <= 9
    assert [t for t, d in decisions.items() if d == CONTINUE] == ["A", "B", "C"]
    assert halving.stopped_early == set("DEFGHI")


def test_nine_trials_worst_first_asynchrony_lets_early_ones_through():
    # Reversed arrival: each newcomer is on the front of those seen so far. Only D, landing in the middle of the
    # front {F, D, E} (crowding 2 vs inf), is behind two others: p = 2, n = 6, 2 * 3 < 6 fails.
    decisions = feed(minmin(), dict(reversed(NINE.items())))
    assert [t for t, d in decisions.items() if d == STOP] == ["D"]


def test_dominated_trial_stops_and_front_trial_continues():
    halving = minmin()
    feed(halving, {"a": (1, 5), "b": (5, 1), "c": (9, 9), "d": (8, 9)})
    # n = 5: a and b (the front) are ahead, p = 2, and 2 * 3 < 5 fails
    assert halving.on_result("dominated", 1, (2, 6)) == STOP
    # n = 6: a new boundary of the front has crowding inf, p = 0
    assert halving.on_result("extreme", 1, (0.5, 20)) == CONTINUE


def test_crowding_distance_breaks_ties_within_the_front():
    # The same front {P1, P2, P3, Q} and n = 7 either way; only who arrives last differs.
    # Crowding: P1, P2 inf; Q (5, 5) = 9/10 + 9/10 = 1.8; P3 (1, 9) = 5/10 + 5/10 = 1.0 -> Q at p = 2, P3 at p = 3.
    ends = {"P1": (0, 10), "P2": (10, 0)}
    fillers = {"f1": (11, 11), "f2": (12, 12), "f3": (13, 13)}
    q_last = minmin()
    feed(q_last, {**ends, "P3": (1, 9), **fillers})
    assert q_last.on_result("Q", 1, (5, 5)) == CONTINUE  # 2 * 3 < 7
    p3_last = minmin()
    feed(p3_last, {**ends, "Q": (5, 5), **fillers})
    assert p3_last.on_result("P3", 1, (1, 9)) == STOP  # 3 * 3 < 7 fails, though P3 is not dominated


def test_fewer_than_eta_trials_at_a_rung():
    halving = minmin()
    assert halving.on_result("first", 1, (5, 5)) == CONTINUE  # the first at a rung always continues
    assert halving.on_result("worse", 1, (6, 6)) == STOP  # n = 2: p = 1 and 1 * 3 < 2 fails
    assert halving.on_result("equal", 1, (5, 5)) == CONTINUE  # ties share the better position: p = 0
    assert halving.on_result("other", 1, (1, 9)) == CONTINUE  # a new boundary of the front: inf, p = 0
    # eta = 4, three trials on one front: the middle one has the least crowding, p = 2
    wide = MultiObjectiveHalving(["min", "min"], max_t=16, reduction_factor=4)
    assert feed(wide, {"x": (0, 10), "y": (10, 0), "mid": (5, 5)}) == {"x": CONTINUE, "y": CONTINUE, "mid": STOP}


def test_max_and_min_modes_mixed():
    # (accuracy, parameters): accuracy maximized, parameters minimized on log10 scale
    halving = MultiObjectiveHalving(["max", "min"], max_t=9, log=[False, True])
    assert halving.on_result("small_good", 1, (0.9, 1e6)) == CONTINUE
    assert halving.on_result("big_worse", 1, (0.8, 1e7)) == STOP  # lower accuracy AND more parameters
    assert halving.on_result("big_best", 1, (0.95, 1e8)) == CONTINUE  # best accuracy: on the front
    np.testing.assert_allclose(halving.recorded(1)["small_good"], [-0.9, 6.0])
    # the same numbers with both minimized: big_worse is no longer dominated
    both_min = MultiObjectiveHalving(["min", "min"], max_t=9)
    feed(both_min, {"small_good": (0.9, 1e6)})
    assert both_min.on_result("big_worse", 1, (0.8, 1e7)) == CONTINUE


def test_rungs_resource_and_max_t():
    halving = minmin(max_t=9)
    assert halving.rungs == (1, 3)
    assert halving.on_result("t", 0.5, (1, 1)) == CONTINUE  # before the grace period: nothing recorded
    assert halving.recorded(1) == {}
    assert halving.on_result("t", 1, (1, 1)) == CONTINUE
    assert halving.on_result("t", 2, (0, 0)) == CONTINUE  # between rungs: nothing recorded
    assert halving.on_result("t", 1, (0, 0)) == CONTINUE  # a repeated report does not replace the record
    np.testing.assert_array_equal(halving.recorded(1)["t"], [1, 1])
    assert halving.on_result("t", 3, (1, 1)) == CONTINUE
    # the top rung never promotes beyond max_t: at max_t even the best trial is done
    assert halving.on_result("t", 9, (0, 0)) == STOP
    assert halving.on_result("late", 12, (0, 0)) == STOP
    assert not halving.stopped_early  # done is not stopped early
    assert 9 not in halving.rungs


def test_jumped_rungs_are_not_back_filled():
    halving = minmin(max_t=27)
    halving.on_result("t", 4, (1, 1))  # first report past rungs 1 and 3
    assert "t" in halving.recorded(3) and "t" not in halving.recorded(1)
    halving.on_result("t", 5, (1, 1))
    assert "t" not in halving.recorded(1)  # unlike Ray's ASHA, a later result is not filed at a lower rung


def test_stopped_trial_stays_stopped_and_nan_is_worst():
    halving = minmin()
    feed(halving, {"good": (1, 1)})
    assert halving.on_result("diverged", 1, (math.nan, 0.0)) == STOP  # NaN -> inf everywhere, not "best params"
    np.testing.assert_array_equal(halving.recorded(1)["diverged"], [np.inf, np.inf])
    assert halving.on_result("diverged", 2, (0, 0)) == STOP  # e.g. a buffered or duplicate result
    assert halving.stopped_early == {"diverged"}


def test_record_counts_without_deciding():
    halving = minmin()
    halving.record("ended", 1, (1, 1))
    assert "ended" not in halving.stopped_early
    assert halving.on_result("new", 1, (2, 2)) == STOP  # n = 2, dominated by the recorded one


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"modes": ["min", "up"]}, "modes"),
        ({"modes": []}, "modes"),
        ({"log": [True]}, "log"),
        ({"grace_period": 0}, "grace_period"),
        ({"reduction_factor": 1}, "reduction_factor"),
        ({"max_t": 0.5}, "max_t"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    settings = {"modes": ["min", "max"], "max_t": 9} | kwargs
    modes = settings.pop("modes")
    with pytest.raises(ValueError, match=field):
        MultiObjectiveHalving(modes, **settings)


def test_wrong_number_of_values():
    with pytest.raises(ValueError, match="values"):
        minmin().on_result("t", 1, (1, 2, 3))


# --- Ray adapter with fake trials ---------------------------------------------------------------------------------


def trial(tid: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid)  # the adapter reads trial_id only


def make_scheduler(**kwargs) -> MOASHAScheduler:
    return MOASHAScheduler(["acc", "params"], ["max", "min"], max_t=9, **kwargs)


def test_adapter_decisions_match_the_pure_logic():
    sched = make_scheduler()
    results = {"a": (0.9, 10), "b": (0.8, 20), "c": (0.95, 30)}
    got = {
        t: sched.on_trial_result(None, trial(t), {"epoch": 1, "acc": a, "params": p}) for t, (a, p) in results.items()
    }
    assert got == {"a": TrialScheduler.CONTINUE, "b": TrialScheduler.STOP, "c": TrialScheduler.CONTINUE}
    assert sched.on_trial_result(None, trial("a"), {"epoch": 9, "acc": 0.99, "params": 10}) == TrialScheduler.STOP
    assert sched.halving.stopped_early == {"b"}
    assert "MO-ASHA" in sched.debug_string()


def test_adapter_custom_time_attr():
    sched = make_scheduler(time_attr="training_iteration")
    r = {"training_iteration": 9, "acc": 0.5, "params": 1, "epoch": 1}
    assert sched.on_trial_result(None, trial("t"), r) == TrialScheduler.STOP


def test_adapter_missing_metric_names_it_and_the_keys():
    sched = make_scheduler()
    with pytest.raises(ValueError, match=r"'params'.*keys present: \['acc', 'epoch'\]"):
        sched.on_trial_result(None, trial("t"), {"epoch": 1, "acc": 0.5})
    with pytest.raises(ValueError, match="without 'epoch'"):
        sched.on_trial_result(None, trial("t"), {"training_iteration": 1, "acc": 0.5, "params": 3})


def test_adapter_ignores_the_bare_done_result_of_a_silent_trial():
    sched = make_scheduler()
    assert sched.on_trial_result(None, trial("t"), {"done": True, "trial_id": "t"}) == TrialScheduler.CONTINUE
    sched.on_trial_complete(None, trial("t"), {"done": True})  # nothing to record, no error


def test_adapter_on_trial_complete_records():
    sched = make_scheduler()
    sched.on_trial_complete(None, trial("ended"), {"epoch": 1, "acc": 0.9, "params": 1})
    assert "ended" in sched.halving.recorded(1)
    assert sched.on_trial_result(None, trial("new"), {"epoch": 1, "acc": 0.8, "params": 2}) == TrialScheduler.STOP


def test_adapter_search_properties():
    sched = make_scheduler()
    assert sched.metric is None  # Tune's single-name metric check must skip this scheduler
    assert sched.set_search_properties(None, None) is True
    assert sched.set_search_properties(["acc", "params"], ["max", "min"], config={}) is True
    assert sched.set_search_properties("acc", "max") is False  # Tune then raises its own clear error
    assert sched.set_search_properties(["params", "acc"], None) is False


def test_adapter_save_restore(tmp_path):
    sched = make_scheduler()
    sched.on_trial_result(None, trial("a"), {"epoch": 1, "acc": 0.9, "params": 1})
    sched.save(str(tmp_path / "s.pkl"))
    fresh = make_scheduler()
    fresh.restore(str(tmp_path / "s.pkl"))
    assert "a" in fresh.halving.recorded(1)


# --- factory ------------------------------------------------------------------------------------------------------


def build(name: str, **kwargs):
    args = (
        dict(
            metrics=["acc", "params"],
            modes=["max", "min"],
            log=[False, True],
            max_t=27,
            grace_period=1,
            reduction_factor=3,
        )
        | kwargs
    )
    return build_scheduler(name, **args)


def test_build_scheduler_each_name():
    assert tuple(SCHEDULERS) == ("none", "asha", "mo-asha", "mo-asha-strata", "mo-asha-hv", "mo-asha-hv-cost")
    assert build("none") is None
    asha = build("asha", time_attr="epoch")
    assert isinstance(asha, ASHAScheduler)
    assert (asha._metric, asha._mode, asha._time_attr, asha._max_t) == ("acc", "max", "epoch", 27)  # first objective
    mo = build("mo-asha")
    assert isinstance(mo, MOASHAScheduler)
    assert mo.metrics == ("acc", "params") and mo.modes == ("max", "min")
    assert mo.halving.log == (False, True) and mo.halving.rungs == (1, 3, 9)


def test_build_scheduler_bad_name():
    accepted = r"\['none', 'asha', 'mo-asha', 'mo-asha-strata', 'mo-asha-hv', 'mo-asha-hv-cost'\]"
    with pytest.raises(ValueError, match=r"search\.scheduler: 'fifo'.*" + accepted):
        build("fifo")


def test_build_scheduler_bad_budget_and_objectives():
    with pytest.raises(ValueError, match="grace_period"):
        build("asha", grace_period=0)
    with pytest.raises(ValueError, match="max_t"):
        build("mo-asha", max_t=0)
    with pytest.raises(ValueError, match="differ in length"):
        build("mo-asha", modes=["max"])


# --- real Ray ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_tuner_stops_dominated_trials_early(ray_local, tmp_path):
    from ray import tune

    # (accuracy, parameters) per trial: "small" and "big" form the front, the others are dominated by "small"
    quality = {
        "small": (0.8, 10),
        "big": (0.9, 100),
        "d1": (0.7, 20),
        "d2": (0.6, 30),
        "d3": (0.7, 50),
        "d4": (0.5, 40),
    }

    def trainable(config):
        acc, params = quality[config["name"]]
        for epoch in range(1, 10):
            tune.report({"epoch": epoch, "acc": acc * (1 - 0.5 / epoch), "params": params})

    sched = MOASHAScheduler(["acc", "params"], ["max", "min"], max_t=9, grace_period=1, reduction_factor=3)
    tuner = tune.Tuner(
        trainable,
        param_space={"name": tune.grid_search(list(quality))},
        # one at a time: the rung decisions then follow the grid's order, as the assertions below assume
        tune_config=tune.TuneConfig(scheduler=sched, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="moasha", verbose=0),
    )
    grid = tuner.fit()
    last_epoch = {r.config["name"]: r.metrics["epoch"] for r in grid}
    assert not grid.errors
    assert last_epoch["small"] == 9 and last_epoch["big"] == 9
    assert all(last_epoch[name] < 9 for name in ("d1", "d2", "d3", "d4")), last_epoch
