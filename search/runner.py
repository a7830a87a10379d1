"""Runs a search: the one module that talks to Ray Tune's Tuner.

Order matters: the spec is validated and MLflow is reached before Ray starts, so a typo or a dead tracking
server costs nothing.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from search.callbacks import SearchCallback
from search.candidate import resolve, spec_dataset
from search.export import load_search
from search.front import Front, Record
from search.schedulers import build_scheduler
from search.searcher import BudgetAwareOptunaSearch
from search.space import DefineByRun, build_sampler, history_trials, typed_params, warm_start_points
from search.spec import Spec
from search.tracking import Tracker

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Our own progress lines replace Tune's periodic status tables.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class SearchResult:
    name: str
    parent_run_id: str
    front: Front
    finished: int
    failed: int
    stopped: int
    infeasible: int
    status: str  # complete | interrupted
    storage: Path


def search_params(spec: Spec) -> dict[str, object]:
    """Search settings logged as parent-run params."""
    out = {f"search.{k}": v for k, v in spec.search.model_dump().items()}
    out.update({f"training.{k}": v for k, v in spec.training.model_dump().items()})
    out.update({"data.name": spec.data.name, "objectives": ",".join(f"{o.metric}:{o.mode}" for o in spec.objectives),
                "reference_point": ",".join(f"{o.reference:g}" for o in spec.objectives)})
    return out


def run_search(spec: Spec, spec_text: str | None = None, name: str | None = None, out=sys.stdout,
               ray_address: str | None = None, num_cpus: int | None = None, callbacks: list | None = None,
               extend: str | None = None) -> SearchResult:
    """Run ``spec`` to the end on a Ray instance (local unless ``ray_address``) and log it to MLflow.

    Args:
        extend: name of a finished search to add ``spec.search.trials`` more trials to: they log under its parent
            run, the sampler learns from its finished candidates, and its front counts them.
    """
    import ray
    from ray import tune

    from search.trainable import train_candidate

    tracker = Tracker(spec.tracking.uri, spec.tracking.experiment)  # fails fast when unreachable
    points = warm_start_points(spec)
    earlier: list[Record] = []
    history = []
    if extend:
        record = load_search(tracker, extend)
        parent_id, base = record.parent_id, record.name
        earlier = record.front.members + record.front.others
        history = history_trials(spec, [(typed_params(spec, r.params), [r.metrics[m] for m in spec.metrics])
                                        for r in earlier])
        name = name or f"{base}.more-{time.strftime('%Y%m%d-%H%M%S')}"
    else:
        name = name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dataset = spec_dataset(spec)
    print(f"search {name}: {spec.search.trials} trials on {spec.data.name} "
          f"({len(dataset.train)} train / {len(dataset.val)} val / {len(dataset.test)} test), sampler "
          f"{spec.search.sampler}, scheduler {spec.search.scheduler}, {spec.search.concurrency} at a time"
          f"{f', extending {extend} ({len(earlier)} finished)' if extend else ''}; MLflow: {tracker.uri}",
          file=out, flush=True)
    if not extend:
        parent_id = tracker.start_search(name, search_params(spec),
                                         spec_text if spec_text is not None else yaml.safe_dump(spec.model_dump()))

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=ray_address, num_cpus=num_cpus if ray_address is None else None, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=True)

    def candidate_of(config: dict) -> dict:
        return resolve(spec, config, dataset.modalities, len(dataset.classes)).to_dict()

    callback = SearchCallback(spec, tracker, parent_id, candidate_of, out=out, earlier=earlier)
    searcher = BudgetAwareOptunaSearch(space=DefineByRun(spec), metric=spec.metrics, mode=spec.modes,
                                       sampler=build_sampler(spec), points_to_evaluate=points or None,
                                       limits=spec.constraints.limits(), history=history)
    scheduler = build_scheduler(spec.search.scheduler, spec.metrics, spec.modes, [o.log for o in spec.objectives],
                                max_t=spec.training.epochs, grace_period=spec.search.grace_period,
                                reduction_factor=spec.search.reduction_factor)
    trainable = tune.with_resources(tune.with_parameters(train_candidate, spec=spec, dataset=dataset),
                                    {"cpu": spec.search.cpus_per_trial})
    storage = spec.storage_path()
    tuner = tune.Tuner(
        trainable,
        # metric/mode stay off TuneConfig: there they would make the search single-objective.
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=spec.search.trials,
                                    max_concurrent_trials=spec.search.concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=[callback, *(callbacks or [])],
                                  verbose=0),
    )
    status = "complete"
    try:
        grid = tuner.fit()
        if len(grid) < spec.search.trials:
            status = "interrupted"
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        tracker.finish_search(parent_id, status)
        if started_ray:
            ray.shutdown()
    front = callback.front
    finished = len(callback.finished) - callback.preloaded
    print(f"search {name} {status}: {finished} finished, {callback.stopped} stopped early, {callback.infeasible} "
          f"infeasible, {callback.failed} failed; Pareto front {len(front.members)} candidates, hypervolume "
          f"{front.hypervolume:.4g}", file=out, flush=True)
    return SearchResult(name, parent_id, front, finished, callback.failed, callback.stopped, callback.infeasible,
                        status, storage / name)
