"""What Tune pickles survives pickling: the search algorithm (with its Optuna sampler) and the scheduler, for every
registered sampler x every scheduler, through Ray's cloudpickle as ``tune.Tuner`` does - before the first trial
and again mid-search, as Tune's experiment state saves them - and the unpickled search goes on suggesting."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
from ray import cloudpickle

from search.driver.checks import parse_spec
from search.driver.concurrency import SearchSync
from search.driver.runner import search_algorithm, spec_scheduler
from search.driver.schedulers import SCHEDULERS
from search.spec.space import SAMPLERS, SpecSampler, build_sampler


def spec_for(tmp: Path, sampler: str | None, scheduler: str = "none"):
    raw = {
        "name": "pickling",
        "data": {"name": "gunpoint"},
        "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True},
                       {"metric": "training_compute", "mode": "min", "reference": 1e15, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 2}, "width": [16, 32],
                  "lr": {"low": 1e-3, "high": 3e-3, "log": True}},
        "training": {"epochs": 4},
        "search": {"trials": 12, "concurrency": 2, "scheduler": scheduler, "grace_period": 1,
                   "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    }
    if sampler is not None:
        raw["search"]["sampler"] = sampler
    return parse_spec(raw)


def run_trials(search, first: int, count: int) -> None:
    """``count`` trials suggested and ended with full-budget results, as Tune's loop would."""
    for i in range(first, first + count):
        trial_id = f"t{i}"
        config = search.searcher.suggest(trial_id)
        assert config, f"no suggestion for {trial_id}"
        search.searcher.on_trial_complete(trial_id, {"val_accuracy": 0.1 * (i % 7), "param_count": 1000.0 + i,
                                                     "training_compute": 1e9 * (i + 1), "budget_done": True})


@pytest.mark.parametrize("scheduler", SCHEDULERS.names())
@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_sampler_and_scheduler_survive_tunes_pickling(tmp_path, sampler, scheduler):
    spec = spec_for(tmp_path, sampler, scheduler)
    search, sched = search_algorithm(spec), spec_scheduler(spec)
    # tune.Tuner pickles the search algorithm, the scheduler and the run config's callbacks when it is made
    search, sched, sync = cloudpickle.loads(cloudpickle.dumps((search, sched, SearchSync(search))))
    assert sync.search is search
    run_trials(search, 0, 6)  # the sampler is built and used now: past NSGA's first generation, TPE's start-up
    # mid-search, as Tune's experiment state saves the searcher and a resumed driver restores it
    checkpoint = tmp_path / "searcher.pkl"
    search.searcher.save(str(checkpoint))
    restored = search_algorithm(spec)
    restored.searcher.restore(str(checkpoint))
    sched_again = pickle.loads(cloudpickle.dumps(sched))
    assert type(sched_again) is type(sched)
    run_trials(restored, 6, 3)
    assert len(restored.searcher.searcher._ot_study.trials) == 9


def test_a_pickled_sampler_is_its_recipe_and_a_rebuilt_one_draws_anew():
    sampler = SpecSampler("nsga2", 7, 4, 2)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(5):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, [x, x * x])
    assert pickle.loads(pickle.dumps(sampler)).__dict__ == {"recipe": ("nsga2", 7, 4, 2), "_sampler": None}
    again = pickle.loads(pickle.dumps(study))
    resumed = [again.ask().suggest_float("x", 0.0, 1.0) for _ in range(2)]
    assert again.trials[-1].system_attrs["NSGAIISampler:generation"] == 1  # it went on from the study's trials
    # a fresh study with the same seed draws what the first run drew; the resumed one does not repeat it
    fresh = optuna.create_study(directions=["maximize", "minimize"], sampler=SpecSampler("nsga2", 7, 4, 2))
    first = [fresh.ask().suggest_float("x", 0.0, 1.0) for _ in range(2)]
    assert first == [t.params["x"] for t in study.trials[:2]]
    assert resumed != first


def test_the_default_sampler_is_nsga2_and_its_size_follows_the_budget(tmp_path):
    sampler = build_sampler(spec_for(tmp_path, None))
    assert sampler.recipe[0] == "nsga2" and isinstance(sampler.sampler, optuna.samplers.NSGAIISampler)
    assert sampler.sampler._population_size == 4  # 12 trials // 3


def test_an_unknown_sampler_is_refused_by_name(tmp_path):
    from search.spec.schema import SpecError

    with pytest.raises(SpecError, match=r"search.sampler.*'annealing'"):
        spec_for(tmp_path, "annealing")
