"""Starts a search (or extends a finished one) on Ray Tune, and the steps a resumed search shares with it:
Ray start-up, the trial function, the baselines task, the Tune loop and the closing record (``search.driver.resume``
continues a stopped search with them).

Order matters: the spec is validated and MLflow is reached before Ray starts, so a typo or a dead tracking
server costs nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import optuna
import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.stopper import Stopper

from emule_models.train import share_at
from search.driver import stopping
from search.driver.callbacks import SearchCallback
from search.driver.concurrency import SearchSync, SyncedSearch
from search.driver.crash import SearchFailed, record_failure
from search.driver.plan import proportion_warning
from search.driver.progress import STATUS_EVERY
from search.driver.ray_session import RayStartError, init_ray, shutdown_ray
from search.driver.schedulers import build_scheduler
from search.driver.searcher import BudgetAwareOptunaSearch
from search.driver.teacher_search import resolve_search_teacher
from search.front import yardstick
from search.front.files import write_artifacts
from search.front.state import Front, SearchState
from search.front.summary import describe_front, ui_lines
from search.record.datasets import describe as describe_data
from search.record.searches import load_search, spec_yaml
from search.record.tracking import Tracker, redact
from search.spec import storage as store
from search.spec.fidelity import search_schedule
from search.spec.results import BUDGET_DONE, DONE, EPOCH, INFEASIBLE, TIMED_OUT
from search.spec.schema import Spec
from search.spec.space import DefineByRun, build_sampler, history_trials, searched, typed_params, warm_start_points
from search.trial.baselines import CACHE as BASELINES_CACHE
from search.trial.baselines import METHODS, run_baselines
from search.trial.candidate import quality_scores, spec_dataset
from search.trial.teacher import SOFT_LABELS_CACHE, read_teachers, soft_labels
from search.trial.trainable import train_candidate
from search.trial.validation import HOLDOUT, PRETRAIN_CACHE, describe, scheme, selection_folds, tiny_data_note


def set_up_environment() -> None:
    """Ray, Tune and Optuna as a search runs them; called as a search starts or resumes, before Ray does (importing
    this module changes nothing). A variable the user set is kept."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Our own progress lines replace Tune's periodic status tables.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Save experiment state every second (Tune's default adapts to >= 10 s): a killed driver loses seconds, not
    # trials.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # Tune's default per-result loggers (JSON, CSV, TensorBoard) cost about 7 ms per epoch on the driver while the
    # trial waits; only the JSON log is kept (added in `launch`): `emule sync` reads it.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, dropped in RAY_HINTS.items():
        log = logging.getLogger(name)
        if not any(isinstance(f, DropLines) for f in log.filters):
            log.addFilter(DropLines(dropped))


# Lines Ray prints on the driver that are not for an EMuLe user, by the logger that prints them (Ray 2.60):
RAY_HINTS = {
    # "Experiment has been interrupted ... Resume experiment with: Tuner.restore(...)": an API the user never
    # calls, beside EMuLe's own line that says how to continue (`emule resume NAME`)
    "ray.tune.tune": "Tuner.restore(",
    # "Token authentication is enabled for this Ray cluster ...": on every start of a local instance, which Ray
    # starts with token authentication on (its default, kept). Naming the mode in RAY_AUTH_MODE would silence it
    # too, but only when set before `import ray` (Ray caches its config then; set later, the driver cannot reach
    # the instance it started), so it is filtered instead. RAY_AUTH_MODE=disabled still turns the mode off.
    "ray._private.authentication.authentication_token_setup": "Token authentication is enabled",
}


class DropLines(logging.Filter):
    """Drops a logger's records that contain ``text``; lets every other record through."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class EpochBudget(Stopper):
    """Ends the whole search once the trials together have trained ``budget`` epochs. Trials still running are
    stopped early, so they stay off the front. Under ``search.data_fidelity`` (``schedule``) an epoch on a share of
    the rows counts as that share of an epoch: the budget is in epochs of every row."""

    def __init__(self, budget: int | None, schedule: tuple[tuple[int, float], ...] = ()):
        self.budget, self.schedule, self.spent = budget, schedule, 0.0

    def __call__(self, trial_id: str, result: dict) -> bool:
        epoch = result.get(EPOCH, 0)
        if epoch > 0 and not result.get(DONE) and not result.get(TIMED_OUT):
            self.spent += share_at(getattr(self, "schedule", ()), epoch)  # a state saved before has none
        return False

    def stop_all(self) -> bool:
        return self.budget is not None and self.spent >= self.budget


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
    storage: str  # the experiment's folder or URI
    stop_reason: str | None = None  # the stop signal that interrupted it (SIGINT, SIGTERM, SIGHUP)
    tracking_uri: str | None = None  # the MLflow store it is recorded in (with any credentials) ...
    experiment_name: str | None = None  # ... and the experiment


def search_params(spec: Spec) -> dict[str, object]:
    """Search settings logged as parent-run params."""
    out = {f"search.{k}": v for k, v in spec.search.model_dump().items()}
    out.update({f"training.{k}": v for k, v in spec.training.model_dump().items()})
    if spec.distill is not None:
        out.update({f"distill.{k}": v for k, v in spec.distill.model_dump().items()})
    out.update({"data": spec.data_label, "data.cv_folds": spec.data.cv_folds,
                "objectives": ",".join(f"{o.metric}:{o.mode}" for o in spec.objectives),
                "reference_point": ",".join(f"{o.reference:g}" for o in spec.objectives)})
    return out


SESSION_FILE = "emule_search.json"  # beside Tune's own state: what `emule resume` needs to continue


def run_search(spec: Spec, spec_text: str | None = None, name: str | None = None, out=sys.stdout,
               ray_address: str | None = None, num_cpus: int | None = None, callbacks: list | None = None,
               extend: str | None = None, status_every: float | None = STATUS_EVERY,
               quiet: bool = False, custom_trainable=None) -> SearchResult:
    """Run ``spec`` to the end on a Ray instance (local unless ``ray_address``) and log it to MLflow.

    A stop signal (Ctrl-C, SIGTERM, SIGHUP; see ``search.driver.stopping``) ends it early: Tune's state is saved, open
    runs are closed as KILLED with the signal as the reason, the result says ``interrupted``, and
    ``resume_search`` continues it.

    Args:
        extend: name of a finished search to add ``spec.search.trials`` more trials to: they log under its parent
            run, the sampler learns from its finished candidates, and its front counts them.
        status_every: seconds between status lines on the running trials (None or 0: none).
        quiet: no status lines and no line per ended trial.
        custom_trainable: a Tune trainable (with its resources) to run instead of training candidates - for benchmarks
            of the driver, whose every other part (searcher, scheduler, callbacks, MLflow) stays as in a search.
            It must report what the spec's objectives need, ``epoch``, and ``budget_done`` on its last result.
    """
    set_up_environment()
    with stopping.handled():
        result = _run_search(spec, spec_text, name, extend, out=out, ray_address=ray_address, num_cpus=num_cpus,
                             status_every=status_every, quiet=quiet, callbacks=tuple(callbacks or ()),
                             custom_trainable=custom_trainable)
    return result


def _run_search(spec: Spec, spec_text: str | None, name: str | None, extend: str | None, **options) -> SearchResult:
    """A new search (or an extension of ``extend``) made into a ``SearchRun`` and started; ``options`` are the
    run's output and Ray settings (``SearchRun``'s fields from ``out`` on)."""
    tracker = Tracker(spec.tracking.uri, spec.tracking.experiment)  # fails fast when unreachable
    spec, teacher_tags = resolve_search_teacher(spec, tracker)  # {search: NAME} -> that search's best, as YAML
    points = warm_start_points(spec)
    history, target = [], spec.search.trials
    if extend:
        record = load_search(tracker, extend)
        parent_id, earlier = record.parent_id, record.front.members + record.front.others
        # searches from before cross-validation recorded no scheme: they were validated on the holdout split
        theirs = tracker.search_param(parent_id, "data.cv_folds", HOLDOUT)
        if str(spec.data.cv_folds) != theirs:
            raise ValueError(f"data.cv_folds: {spec.data.cv_folds} differs from search {record.name}'s "
                             f"{theirs}; accepted: {theirs}, so that one front compares like with like")
        history = finished_history(spec, earlier)
        target += len(tracker.candidates(parent_id))
        name = name or f"{record.name}.more-{time.strftime('%Y%m%d-%H%M%S')}"
    else:
        name = name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        parent_id = tracker.start_search(name, search_params(spec), spec_yaml(spec), spec_text)
        if teacher_tags:
            tracker.tag_search(parent_id, teacher_tags)
    tracker.save_front_view(parent_id, spec.objectives, searched(spec))  # where the description's link leads
    # a local folder, a shared path or a URI (s3://, gs://)
    run = SearchRun(spec, tracker, parent_id, name, store.join(spec.storage_uri(), name), target, **options)
    try:
        return run.start(points, history, extend)
    except KeyboardInterrupt:
        return run.stopped_early()
    except Exception as e:  # the parent run exists: it is closed as FAILED, not left RUNNING
        raise run.failed(e) from e


@dataclass(frozen=True)
class SearchRun:
    """One run of a search's driver - a new search, an extension, or a resume - with what its steps share, fixed
    once its parent run exists. Its steps: ``start`` (the session file and first lines) then ``launch`` (a Tuner for
    a new or never-saved experiment), or a Tuner restored by ``search.driver.resume``; then ``fit`` (Tune's loop),
    which ends in ``close`` (the end in MLflow, the summary); ``stopped_early`` when a stop signal came before Tune's
    loop ran, ``failed`` when the driver raised. A step that runs on another spec (a resume's remaining trials) runs
    on a copy: ``dataclasses.replace(run, spec=...)``.

    Attributes:
        spec, tracker: the search's spec and its MLflow access.
        parent_id, name: its parent run and its name.
        experiment: its folder or URI (Tune's state and the session file).
        target: the trials it will have under its parent run when done (an extension's include the earlier ones).
        out: where its lines go.
        ray_address, num_cpus: the Ray instance (a local one with ``num_cpus`` unless an address).
        status_every, quiet, custom_trainable: as ``run_search``'s.
        callbacks: Tune callbacks beside the search's own.
    """

    spec: Spec
    tracker: Tracker
    parent_id: str
    name: str
    experiment: str
    target: int
    out: IO[str]
    ray_address: str | None = None
    num_cpus: int | None = None
    status_every: float | None = STATUS_EVERY
    quiet: bool = False
    callbacks: tuple = ()
    custom_trainable: Any = None

    def start(self, points: list, history: list, extend: str | None = None) -> SearchResult:
        """Write the session file, print the search's first lines, and ``launch`` it (``history``: the finished
        candidates of the search it extends, ``extend``)."""
        spec, tracker = self.spec, self.tracker
        dataset = spec_dataset(spec)
        # the session file first: from the start line on, a stopped driver can be resumed
        store.write_text(store.join(self.experiment, SESSION_FILE), json.dumps({
            "spec": spec.model_dump(mode="json"), "parent_run_id": self.parent_id, "tracking_uri": tracker.uri,
            "experiment": spec.tracking.experiment, "target": self.target}))
        rows = (f"{len(dataset.train)} train / {len(dataset.val)} val" if scheme(spec.data) == HOLDOUT
                else f"{len(dataset.train) + len(dataset.val)} training rows, {describe(spec.data)}")
        self.say(f"search {self.name}: {spec.search.trials} trials on {spec.data_label} "
                 f"({rows} / {len(dataset.test)} test), sampler "
                 f"{spec.search.sampler}, scheduler {spec.search.scheduler}, {spec.search.concurrency} at a time"
                 f"{f', extending {extend} ({len(history)} finished)' if extend else ''}; "
                 f"MLflow: {redact(tracker.uri)}")
        for line in (tiny_data_note(dataset.pool.labels), proportion_warning(spec, dataset)):
            if line:
                self.say(line)
        return self.launch(dataset, points, history)

    def launch(self, dataset, points: list, history: list) -> SearchResult:
        """Build the Tuner for a new (or never-saved) experiment and run it (``points``: warm-start configurations,
        ``history``: finished candidates the sampler learns from)."""
        spec, tracker = self.spec, self.tracker
        record = describe_data(dataset, spec.data)
        tracker.log_dataset([self.parent_id], record)  # the parent run's Dataset column; each child run gets it too
        callback = SearchCallback(spec, tracker, self.parent_id, self.name, dataset.modalities, len(dataset.classes),
                                  self.target, status_every=self.status_every, quiet=self.quiet, dataset=record,
                                  out=self.out)
        search_alg, scheduler = search_algorithm(spec, points, history), spec_scheduler(spec)
        started_ray = self.start_ray()
        try:
            baselines = start_baselines(spec, dataset, self.out)
            tuner = tune.Tuner(
                self.custom_trainable or trainable(spec, dataset, out=self.out),
                # metric/mode stay off TuneConfig: there they would make the search single-objective.
                tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                            num_samples=spec.search.trials, reuse_actors=True),
                run_config=tune.RunConfig(name=self.name, storage_path=spec.storage_uri(),
                                          callbacks=[callback, SearchSync(search_alg), JsonLoggerCallback(),
                                                     *self.callbacks],
                                          stop=EpochBudget(spec.search.epoch_budget,
                                                           search_schedule(spec.search, spec.training.epochs)),
                                          failure_config=tune.FailureConfig(max_failures=spec.search.retries),
                                          verbose=0),
            )
        except BaseException:  # a stop signal while the proxy scores ran, say: Ray goes down with the driver
            shutdown_ray(started_ray)
            raise
        return self.fit(tuner, started_ray, baselines, callback)

    def start_ray(self) -> bool:
        """``init_ray`` for this search, whose failure says how to continue the search once Ray starts (its session
        file and MLflow run are written by then). Returns whether it started a local instance."""
        try:
            return init_ray(self.ray_address, self.num_cpus)
        except RayStartError as e:
            raise RayStartError(f"{e}. The search is kept: continue it with `emule resume {self.name}`") from None

    def fit(self, tuner, started_ray: bool, baselines=None, callback: SearchCallback | None = None) -> SearchResult:
        """Run Tune's loop of ``tuner`` to its end (or a stop signal), collect the baselines' task, shut down the
        Ray instance this run started, and ``close``."""
        stops = stopping.current()
        status, results = "interrupted", {}
        try:
            with stops.tune_loop():  # a stop signal ends Tune's loop in order: state saved, runs closed with the reason
                grid = tuner.fit()
            if callback is not None:
                callback.settle(grid)
            status = "complete" if all_done(grid, self.spec) else "interrupted"
            if status == "complete":
                results = self._collect_baselines(baselines)
            elif baselines is not None:  # a resume starts them again (or finds them cached)
                ray.cancel(baselines, force=True)
        except KeyboardInterrupt:
            if baselines is not None:
                ray.cancel(baselines, force=True)
        except Exception:  # the driver failed (``failed`` closes the records): the writes queued so far land
            if callback is not None:
                try:
                    callback.flush()
                except Exception:  # the writer itself is what failed: Tune's saved state holds the results
                    pass
            raise
        finally:
            if started_ray:
                ray.shutdown()
        with stops.closing():  # closing the records takes seconds: a first signal now waits for it
            return self.close(status, stops.received, results, callback)

    def _collect_baselines(self, job) -> dict[str, dict]:
        """The baselines' results; waits for them after the last trial (saying so), since they are part of the
        search's record - at most twice their time bounds, then they are cancelled."""
        if job is None:
            return {}
        ready, _ = ray.wait([job], timeout=0)
        limit = 2 * self.spec.search.baseline_seconds * len(self.spec.baseline_names) + 60
        if not ready:
            self.say(f"waiting for the classical baselines to finish (at most {limit:.0f} s) ...")
        try:
            return ray.get(job, timeout=limit)
        except Exception as e:  # overran, or the task died (node lost ...): the search result stands without them
            ray.cancel(job, force=True)
            self.say(f"warning: classical baselines did not finish ({type(e).__name__}); the search result stands "
                     "without them")
            return {}

    def close(self, status: str, reason: str | None, results: dict, callback: SearchCallback | None) -> SearchResult:
        """Record the search's end in MLflow and print its summary (``reason``: the stop signal that ended Tune's
        loop; ``results``: the baselines')."""
        spec, tracker, parent_id, name = self.spec, self.tracker, self.parent_id, self.name
        reason = reason if status != "complete" else None
        accuracy = []
        try:
            if callback is not None:  # the runs' closing writes still queued on the callback's thread go first
                callback.flush()
            if status != "complete":  # Tune's loop cut short (a second signal): its callbacks closed nothing
                tracker.stop_running(parent_id, reason or "the search ended before the trial did")
            tracker.finish_search(parent_id, status, reason)
            summary = tracker.search_state(parent_id, spec.objectives)  # the record as MLflow now holds it
            tracker.save_front_view(parent_id, spec.objectives, searched(spec))  # a resumed older search has none yet
        except Exception as e:  # tracking went away: the experiment state still holds every result
            self.say(f"warning: MLflow unreachable at the end ({type(e).__name__}); after it is back: "
                     f"emule sync {name}")
            summary = callback.state if callback is not None else SearchState()
        else:
            try:
                accuracy = record_accuracy(spec, tracker, parent_id, summary, results)
            except Exception as e:  # the candidates are all logged; only the yardstick is missing
                self.say(f"warning: logging the baselines and selection gap failed ({type(e).__name__}: {e}); the "
                         "search's results stand")
        front = summary.front
        self.say(f"search {name} {status}{f' by {reason}' if reason else ''}: {len(summary.finished)} finished, "
                 f"{summary.stopped} stopped early, "
                 f"{summary.infeasible} infeasible, {summary.failed} failed; Pareto front {len(front.members)} "
                 f"candidates, hypervolume {front.hypervolume:.4g}")
        for line in accuracy:
            self.say(line)
        self.say(tracker.store_line())
        if summary.finished:
            for line in ui_lines(redact(tracker.uri), tracker.experiment_id, parent_id, spec.objectives):
                self.say(line)
        if status != "complete":
            self.say(f"continue it with: emule resume {name}")
        return SearchResult(name, parent_id, front, len(summary.finished), summary.failed, summary.stopped,
                            summary.infeasible, status, str(self.experiment), reason, tracker.uri,
                            spec.tracking.experiment)

    def stopped_early(self) -> SearchResult:
        """A stop signal before Tune's loop ran (data, proxy scores, Ray starting): the search is recorded
        interrupted, with the signal as the reason."""
        stops = stopping.current()
        with stops.closing():
            try:
                self.tracker.finish_search(self.parent_id, "interrupted", stops.received or "SIGINT")
                summary = self.tracker.search_state(self.parent_id, self.spec.objectives)
            except Exception as e:  # tracking went away as well
                self.say(f"warning: MLflow unreachable at the end ({type(e).__name__})")
                summary = SearchState()
            self.say(f"search {self.name} interrupted by {stops.received or 'SIGINT'} before its trials ran; continue "
                     f"it with: emule resume {self.name}")
        return SearchResult(self.name, self.parent_id, summary.front, len(summary.finished), summary.failed,
                            summary.stopped, summary.infeasible, "interrupted", str(self.experiment),
                            stops.received or "SIGINT", self.tracker.uri, self.tracker.experiment)

    def failed(self, error: BaseException) -> SearchFailed:
        """The driver raised ``error`` after the parent run existed: the records closed (``record_failure``);
        returns the ``SearchFailed`` to raise."""
        return record_failure(self.tracker, self.parent_id, self.name, self.experiment, error, SESSION_FILE, self.out)

    def say(self, line: str) -> None:
        """One line on this run's output, at once."""
        print(line, file=self.out, flush=True)


def search_algorithm(spec: Spec, points: list | None = None, history: list | None = None) -> SyncedSearch:
    """The spec's Tune search algorithm: Optuna through ``BudgetAwareOptunaSearch``, at most ``concurrency`` trials
    at once. Tune pickles it (and the scheduler) with the experiment: neither may hold what does not pickle."""
    searcher = BudgetAwareOptunaSearch(space=DefineByRun(spec), metric=spec.metrics, mode=spec.modes,
                                       sampler=build_sampler(spec), points_to_evaluate=points or None,
                                       limits=spec.constraints.limits(), history=history)
    return SyncedSearch(searcher, max_concurrent=spec.search.concurrency)


def spec_scheduler(spec: Spec):
    """The spec's Tune scheduler (None: every trial runs to the end)."""
    return build_scheduler(spec.search.scheduler, spec.metrics, spec.modes, [o.log for o in spec.objectives],
                           max_t=spec.training.epochs, grace_period=spec.search.grace_period,
                           reduction_factor=spec.search.reduction_factor,
                           reference=[o.reference for o in spec.objectives])


def finished_history(spec: Spec, records) -> list:
    """Finished candidates as Optuna trials, for a sampler to learn from without training them again."""
    return history_trials(spec, [(typed_params(spec, r.params), [r.metrics[m] for m in spec.metrics])
                                 for r in records])


def trainable(spec: Spec, dataset, replay: dict | None = None, out=sys.stdout):
    """The trial function with the data (and the quality scores, computed once here when the space's selection
    strategies need them) placed in the object store once for all trials."""
    scores = None
    if spec.needs_scores():
        scores = quality_scores(dataset, spec.proxy.model_dump(), log=lambda m: print(m, file=out, flush=True))
    # where the driver runs (as the proxy scores and baselines), not in a trial's own folder
    cache = str(PRETRAIN_CACHE.resolve())
    soft = _soft_labels(spec, dataset, out)
    # with_parameters puts each argument into the object store once; every trial reads the same copy
    return tune.with_resources(tune.with_parameters(train_candidate, spec=spec, dataset=dataset, replay=replay,
                                                    scores=scores, pretrain_cache=cache, soft=soft),
                               {"cpu": spec.search.cpus_per_trial, "gpu": spec.search.gpus_per_trial})


def _soft_labels(spec: Spec, dataset, out):
    """The distillation teacher's soft labels for every fold and the refit, made here once for all trials."""
    if spec.distill is None:
        return None
    say = lambda m: print(m, file=out, flush=True)  # noqa: E731
    teachers = read_teachers(spec.distill.teacher)
    folds = selection_folds(spec.data, dataset)
    k = spec.distill.cross_fit
    soft = soft_labels(teachers, dataset, folds, cache_dir=SOFT_LABELS_CACHE.resolve(), log=say, cross_fit=k)
    made = len(teachers) * (len(folds) + 1) * k
    say(f"teacher soft labels: {len(teachers)} teacher(s) x ({len(folds)} folds + refit)"
        f"{f' x {k} cross-fitted parts' if k > 1 else ''}, {soft.trained} of {made} teacher models trained now, the "
        f"rest from {SOFT_LABELS_CACHE}; shared with every trial")
    return soft


def start_baselines(spec: Spec, dataset, out):
    """The classical baselines as one Ray task beside the trials (a cached result returns at once). It asks for
    no CPU, so it starts while trials hold them all and never delays the first candidate."""
    names = spec.baseline_names
    if not names:
        return None
    print(f"classical baselines ({', '.join(METHODS[n].label for n in names)}) run beside the trials on the same "
          f"folds; each skipped past an estimated {spec.search.baseline_seconds:g} s", file=out, flush=True)
    return ray.remote(num_cpus=0, max_retries=0)(run_baselines).remote(*baseline_inputs(spec, dataset))


def baseline_inputs(spec: Spec, dataset) -> tuple:
    """``run_baselines``' arguments for a search: its folds, names, seed, bound, and the cache where the driver
    runs (as the proxy scores'), not in whatever folder a Ray worker starts in."""
    return (dataset, selection_folds(spec.data, dataset), spec.baseline_names, spec.search.seed,
            spec.search.baseline_seconds, str(BASELINES_CACHE.resolve()))


def record_accuracy(spec: Spec, tracker: Tracker, parent_id: str, summary: SearchState,
                     baselines: dict[str, dict]) -> list[str]:
    """Baselines and the selection gap on the parent run, the front plot redrawn with the baseline lines; returns
    the same as lines for the terminal."""
    best = yardstick.best_by_validation(summary.finished.values())
    if baselines:
        tracker.log_baselines(parent_id, baselines, yardstick.baseline_metrics(baselines))
    if summary.finished:  # the same front, now with the baselines and the selection gap
        name = tracker.search_name(parent_id)
        note = describe_front(name, tracker.experiment_id, parent_id, summary.front, spec.objectives, baselines, best,
                              describe(spec.data))
        with tempfile.TemporaryDirectory(prefix="emule-front-") as tmp:
            tracker.log_front_artifacts(parent_id, write_artifacts(summary.front, spec.objectives, Path(tmp),
                                                                   baselines, f"{name}: Pareto front"), note)
    if best is not None:
        # once, at step 0: MLflow shows a single step-0 value as a bar with its value
        tracker.log_search_metrics(parent_id, {"selection_gap": yardstick.selection_gap(best)}, step=0)
    return yardstick.lines(best, baselines, describe(spec.data))


ENDED = (DONE, BUDGET_DONE, INFEASIBLE, TIMED_OUT)  # result keys that mark a trial's last result


def all_done(grid, spec: Spec) -> bool:
    """The epoch budget ended the search, or every trial was started and ended: Tune marks a trial's last result
    ``done`` when it finished or a scheduler stopped it, never when a stop signal interrupted it. A trial's own
    last result says it ended too (its full budget, infeasible, timed out): a driver killed between that result
    and Tune's ``done`` leaves the saved state without the flag."""
    spent = sum(int((r.metrics or {}).get(EPOCH, 0)) for r in grid)
    if spec.search.epoch_budget is not None and spent >= spec.search.epoch_budget:
        return True
    ended = all(r.error is not None or any((r.metrics or {}).get(k) for k in ENDED) for r in grid)
    return ended and len(grid) >= spec.search.trials
