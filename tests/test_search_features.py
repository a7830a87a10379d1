"""Search features end to end with real Ray, Optuna and MLflow: MO-ASHA early stopping, constraints, warm start,
extending a finished search."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
import yaml

from search.delivery.export import export
from search.driver.checks import parse_spec
from search.driver.runner import run_search
from search.driver.searcher import BudgetAwareOptunaSearch
from search.record.searches import load_search
from search.record.tracking import Tracker
from search.spec.schema import SpecError
from search.spec.space import DefineByRun, build_sampler, history_trials, typed_params


def tiny(tmp, **changes) -> dict:
    raw = {
        "name": "feat",
        "data": {"name": "osuleaf"},
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 2}, "width": [16, 32, 64],
                  "heads": [1, 2], "lr": {"low": 1e-3, "high": 3e-3, "log": True}},
        "training": {"epochs": 3, "batch_size": 32},
        "search": {"sampler": "random", "trials": 6, "concurrency": 2, "seed": 3, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "feat"},
    }
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def test_searcher_tells_stopped_failed_infeasible_and_complete():
    """Unit: the outcome each kind of trial reaches Optuna with (no Ray cluster needed)."""
    spec = parse_spec(tiny(Path("/tmp"), constraints={"max_params": 10_000}))
    searcher = BudgetAwareOptunaSearch(space=DefineByRun(spec), metric=spec.metrics, mode=spec.modes,
                                       sampler=build_sampler(spec), limits=spec.constraints.limits())
    for tid in "abcde":
        searcher.suggest(tid)
    searcher.on_trial_complete("a", {"val_accuracy": 0.5, "param_count": 5000, "budget_done": True})
    searcher.on_trial_complete("b", {"val_accuracy": 0.2, "param_count": 5000, "epoch": 1})  # stopped early
    searcher.on_trial_complete("c", None, error=True)
    searcher.on_trial_complete("d", {"val_accuracy": 0.0, "param_count": 20_000, "infeasible": True})
    # past search.max_trial_seconds: its last values (here a partial accuracy) must not reach the sampler
    searcher.on_trial_complete("e", {"val_accuracy": 0.4, "param_count": 5000, "timed_out": True,
                                     "error": "timeout: ..."})
    searcher.suggest("f")
    searcher.on_trial_complete("f", {"done": True})  # stopped before its first result
    states = [t.state for t in searcher._ot_study.get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.COMPLETE,
                      optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                      optuna.trial.TrialState.PRUNED]
    trials = searcher._ot_study.get_trials()
    assert trials[0].constraints == {"param_count": pytest.approx(-0.5)}
    assert trials[3].constraints == {"param_count": pytest.approx(1.0)}
    # stopped early: its rung values reach the sampler, marked with their fidelity; a finished trial has no mark
    assert trials[1].values == [0.2, 5000] and trials[1].user_attrs == {"stopped_at_epoch": 1}
    assert "stopped_at_epoch" not in trials[0].user_attrs
    assert trials[5].values is None


def test_nsga2_forms_generations_from_stopped_trials():
    """Unit: trials stopped early count toward NSGA-II's generations (pruned ones never did), so under a scheduler
    it leaves its random first generation. Population 4 (the minimum): 4 stopped trials make generation 0 whole."""
    spec = parse_spec(tiny(Path("/tmp"), search={"sampler": "nsga2", "trials": 12}))
    searcher = BudgetAwareOptunaSearch(space=DefineByRun(spec), metric=spec.metrics, mode=spec.modes,
                                       sampler=build_sampler(spec))
    for i in range(4):
        searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), {"val_accuracy": 0.1 * i, "param_count": 1000 * (i + 1), "epoch": 1})
    searcher.suggest("next")
    generations = [t.system_attrs.get("NSGAIISampler:generation") for t in searcher._ot_study.get_trials()]
    assert generations == [0, 0, 0, 0, 1]


@pytest.mark.slow
def test_mo_asha_stops_trials_early_and_keeps_them_off_the_front(ray_local, tmp_path):
    spec = parse_spec(tiny(tmp_path, training={"epochs": 4}, search={"scheduler": "mo-asha", "trials": 8,
                                                                     "grace_period": 1, "reduction_factor": 2}))
    result = run_search(spec, name="asha", out=io.StringIO())
    assert result.stopped >= 1 and result.finished + result.stopped == 8
    tracker = Tracker(spec.tracking.uri, "feat")
    runs = tracker.candidates(result.parent_run_id)
    stopped = [r for r in runs if r.data.tags["budget_done"] == "false"]
    assert len(stopped) == result.stopped
    assert all(r.data.tags.get("pareto") != "true" for r in stopped)
    assert all(r.data.metrics["epoch"] < 4 if "epoch" in r.data.metrics else True for r in stopped)


@pytest.mark.slow
def test_cost_aware_mo_asha_reads_each_results_training_flops(ray_local, tmp_path):
    # every result reaches the scheduler with its training_compute, an infeasible candidate's (never trained) too:
    # a missing one would fail the trial
    spec = parse_spec(tiny(tmp_path, training={"epochs": 4}, constraints={"max_params": 15_000},
                           search={"scheduler": "mo-asha-hv-cost", "sampler": "nsga2", "trials": 8, "grace_period": 1,
                                   "reduction_factor": 2}))
    result = run_search(spec, name="cost", out=io.StringIO())
    assert result.failed == 0 and result.infeasible >= 1 and result.stopped >= 1
    assert result.finished + result.stopped + result.infeasible == 8


@pytest.mark.slow
def test_constraints_skip_training_and_mark_infeasible(ray_local, tmp_path):
    raw = tiny(tmp_path, constraints={"max_params": 15_000})
    del raw["search"]["sampler"]  # a spec that names no sampler runs the default one (it once failed to pickle)
    spec = parse_spec(raw)
    assert spec.search.sampler == "nsga2"
    out = io.StringIO()
    result = run_search(spec, name="cons", out=out)
    tracker = Tracker(spec.tracking.uri, "feat")
    runs = tracker.candidates(result.parent_run_id)
    infeasible = [r for r in runs if r.data.tags["feasible"] == "false"]
    assert len(infeasible) == result.infeasible >= 1
    for r in infeasible:
        assert r.data.metrics["param_count"] > 15_000
        assert "val_accuracy" not in r.data.metrics  # never trained, no stand-in logged
        assert "param_count" in r.data.tags["violations"]
    assert all(r.metrics["param_count"] <= 15_000 for r in result.front.members)


@pytest.mark.slow
def test_warm_start_then_extend_keeps_history(ray_local, tmp_path):
    first = parse_spec(tiny(tmp_path, search={"trials": 3}))
    run_search(first, name="base", out=io.StringIO())
    tracker = Tracker(first.tracking.uri, "feat")
    [knee] = export(tracker, "base", tmp_path / "exports", "knee")
    earlier = load_search(tracker, "base").front
    earlier_records = earlier.members + earlier.others

    warm = tiny(tmp_path, search={"trials": 2, "warm_start": [str(knee)]})
    spec = parse_spec(warm)
    result = run_search(spec, out=io.StringIO(), extend="base")
    record = load_search(tracker, "base")
    runs = tracker.candidates(record.parent_id)
    assert len(runs) == 5  # 3 earlier + 2 new, all under one parent
    knee_doc = yaml.safe_load(knee.read_text())
    knee_params = {"width": str(knee_doc["model"]["width"]), "lr": str(knee_doc["training"]["lr"])}
    new = [r for r in runs if r.data.tags["emule.trial_id"] not in {k.trial_id for k in earlier_records}]
    assert any({k: r.data.params[k] for k in knee_params} == knee_params for r in new)  # the warm start ran
    assert result.finished == 5  # the extended search counts its earlier candidates too


def test_warm_start_outside_space_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"width": 128, "depth": 1, "heads": 1, "attention": "linear"},
                                    "training": {"lr": 1e-3}, "data": {}}))
    with pytest.raises(SpecError, match=r"search.warm_start\[0\]: width=128 lies outside the space"):
        parse_spec(tiny(tmp_path, search={"warm_start": [str(path)]}))


def test_history_trials_roundtrip_logged_strings(tmp_path):
    spec = parse_spec(tiny(tmp_path))
    logged = {"attention": "linear", "depth": "2", "width": "32", "heads": "2", "lr": "0.002"}
    params = typed_params(spec, logged)
    assert params == {"attention": "linear", "depth": 2, "width": 32, "heads": 2, "lr": 0.002}
    [trial] = history_trials(spec, [(params, [0.5, 1234.0])])
    assert trial.params == params and trial.values == [0.5, 1234.0]


def test_scheduler_grace_period_must_leave_room(tmp_path):
    with pytest.raises(SpecError, match="search.grace_period: 3 leaves no room"):
        parse_spec(tiny(tmp_path, search={"scheduler": "mo-asha", "grace_period": 3}))


@pytest.mark.slow
def test_epoch_budget_ends_the_search(ray_local, tmp_path):
    spec = parse_spec(tiny(tmp_path, search={"trials": 50, "epoch_budget": 10}))
    result = run_search(spec, name="budget", out=io.StringIO())
    assert result.status == "complete"
    runs = Tracker(spec.tracking.uri, "feat").candidates(result.parent_run_id)
    epochs = sum(len(Tracker(spec.tracking.uri, "feat").metric_history(r.info.run_id, "val_accuracy"))
                 for r in runs)
    assert 10 <= epochs <= 10 + 2 * spec.search.concurrency  # trials in flight may finish their epoch
    assert len(runs) < 50


def test_extend_keeps_the_searchs_validation_scheme(tmp_path):
    """A search from before cross-validation (no recorded scheme) was validated on the holdout split: extending it
    with k-fold selection would mix two kinds of val_accuracy on one front, so it is refused before Ray starts."""
    spec = parse_spec(tiny(tmp_path))
    tracker = Tracker(spec.tracking.uri, spec.tracking.experiment)
    tracker.start_search("feat-old", {"data": "osuleaf"}, yaml.safe_dump(tiny(tmp_path)))
    with pytest.raises(ValueError, match=r"data.cv_folds: 5 differs from search feat-old's holdout; accepted: "
                                         r"holdout"):
        run_search(spec, extend="feat-old", out=io.StringIO())
    holdout = parse_spec(tiny(tmp_path, data={"cv_folds": "holdout"}))
    assert holdout.data.cv_folds == "holdout"  # what the refusal asks for is accepted
