"""Continues a search whose driver stopped, and repairs the MLflow record of one that lost its tracking server.

Both start from what the search left in its storage - Tune's experiment state and the session file beside it -
read through ``search.spec.storage``, so a search kept on ``s3://`` (or any URI pyarrow opens) resumes and syncs like
one in a local folder.
"""

from __future__ import annotations

import fnmatch
import json
import math
import pickle
import sys
from dataclasses import replace
from typing import IO

from ray import tune
from ray.tune import ExperimentAnalysis
from ray.tune.callback import CallbackList
from ray.tune.execution.tune_controller import TuneController
from ray.tune.search import Searcher
from ray.tune.search.search_generator import SearchGenerator

from search.driver import runner, stopping
from search.driver.callbacks import SearchCallback
from search.driver.checks import parse_spec
from search.driver.progress import STATUS_EVERY
from search.driver.ray_session import shutdown_ray
from search.driver.runner import SESSION_FILE, SearchResult, SearchRun
from search.record.datasets import describe as describe_data
from search.record.tracking import Tracker, redact
from search.spec import storage as store
from search.spec.results import EPOCH, TRIAL_TAG
from search.spec.space import warm_start_points
from search.spec.storage import DEFAULT_STORAGE
from search.trial.baselines import run_baselines
from search.trial.candidate import spec_dataset
from search.trial.validation import HOLDOUT


def resume_search(name: str, storage: str | None = None, out=sys.stdout, ray_address: str | None = None,
                  num_cpus: int | None = None, status_every: float | None = STATUS_EVERY,
                  quiet: bool = False) -> SearchResult:
    """Continue a search whose driver stopped (killed, crashed, a stop signal): finished trials are kept and not
    run again, the Optuna study comes back from Tune's experiment state, unfinished trials start again inside their
    MLflow runs. ``name`` is the search name, or its spec name for the newest search of that spec."""
    runner.set_up_environment()
    with stopping.handled():
        run, dataset = _open(name, storage, out, ray_address=ray_address, num_cpus=num_cpus,
                             status_every=status_every, quiet=quiet)
        tracker, parent_id = run.tracker, run.parent_id
        whole = tracker.close_whole(parent_id)
        if whole:
            run.say(f"closed {whole} MLflow runs whose outcome was written before the driver stopped")
        readable = tune_state_readable(run.experiment)
        closed = close_ended(run, dataset) if readable else 0
        if closed:
            run.say(f"closed {closed} MLflow runs of trials that Tune recorded as ended before the driver stopped")
        finished = tracker.search_state(parent_id, run.spec.objectives).finished
        run.say(f"resuming search {run.name} from {run.experiment} ({len(finished)} finished); "
                f"MLflow: {redact(tracker.uri)}")
        tracker.reopen_search(parent_id)
        try:
            return _resume(run, dataset, finished, readable)
        except KeyboardInterrupt:
            return run.stopped_early()
        except Exception as e:  # the parent run is RUNNING again: it is closed as FAILED, not left so
            raise run.failed(e) from e


def _resume(run: SearchRun, dataset, finished: dict, readable: bool) -> SearchResult:
    spec, experiment = run.spec, run.experiment
    if not readable:  # stopped before Tune saved anything: start it again in place
        if store.modified(store.join(experiment, "tuner.pkl")) is not None:
            run.say("Tune's saved state is unreadable (the driver was stopped while writing it): the remaining "
                    "trials start again from what MLflow holds")
        remaining = spec.search.model_copy(update={"trials": max(0, spec.search.trials - len(finished))})
        history = runner.finished_history(spec, finished.values())
        return replace(run, spec=spec.model_copy(update={"search": remaining})).launch(
            dataset, warm_start_points(spec), history)
    # trials MLflow holds as finished but Tune's last saved state does not (the crash fell in between)
    replay = {tid: {k: v for k, v in r.metrics.items()} for tid, r in finished.items()}
    started_ray = run.start_ray()
    try:
        baselines = runner.start_baselines(spec, dataset, run.out)
        tuner = tune.Tuner.restore(experiment, trainable=runner.trainable(spec, dataset, replay, run.out),
                                   resume_unfinished=True, resume_errored=False)
    except BaseException:
        shutdown_ray(started_ray)
        raise
    callback = _search_callback(tuner)
    if callback is not None:  # restored from the experiment state, with the settings of the run that saved it
        callback.use_output(run.out, run.status_every, run.quiet)
    return run.fit(tuner, started_ray, baselines, callback)


def tune_state_readable(experiment: str) -> bool:
    """Whether Tune saved an experiment state here that reads back whole. Tune writes each part atomically in its
    staging folder, then copies them to the storage path file by file: a driver killed during that copy leaves a
    part empty or cut short, and Tune, unable to restore it, would start the experiment over."""
    entries = store.entries(experiment)
    # each part's newest file (named by the session that wrote it), matched as Tune's restore matches it
    newest = [(max(fnmatch.filter(entries, template.format("*")), default=None), load)
              for template, load in _SAVED_PARTS]
    if "tuner.pkl" not in entries or newest[0][0] is None:  # no trials saved: nothing to restore
        return False
    try:
        for name, load in newest:
            if name is not None:
                load(store.read_bytes(store.join(experiment, name)))
    except Exception:  # a cut pickle fails in many ways (EOFError, UnpicklingError, ValueError, ...)
        return False
    return True


# what Tune restores from, by its own file names: the trials (JSON) first, then the searcher's, its wrappers' and the
# callbacks' states (pickles, the wrappers' under a .json name)
_SAVED_PARTS = ((TuneController.CKPT_FILE_TMPL, json.loads), (Searcher.CKPT_FILE_TMPL, pickle.loads),
                (SearchGenerator.CKPT_FILE_TMPL, pickle.loads), (CallbackList.CKPT_FILE_TMPL, pickle.loads))


def _search_callback(tuner) -> SearchCallback | None:
    """The SearchCallback a restored Tuner brought back from its saved run config (Tune keeps the config on its
    internal tuner only)."""
    internal = getattr(tuner, "_local_tuner", None)
    run_config = internal.get_run_config() if internal is not None else None
    return next((c for c in getattr(run_config, "callbacks", None) or [] if isinstance(c, SearchCallback)), None)


def sync_search(name: str, storage: str | None = None, out=sys.stdout) -> SearchResult:
    """Log to MLflow what a search recorded while MLflow was unreachable, from Tune's experiment state: missing
    child runs, epochs and final results, then the front. Runs already complete are left as they are."""
    runner.set_up_environment()
    run, dataset = _open(name, storage, out)
    spec, tracker, parent_id = run.spec, run.tracker, run.parent_id
    callback = _record_keeper(run, dataset)
    analysis = ExperimentAnalysis(run.experiment)
    synced = repair(callback, analysis.trials, trial_rows(analysis.trial_dataframes), spec.search.trials)
    state = tracker.search_state(parent_id, spec.objectives)
    baselines = {}
    if spec.baseline_names:  # the search's own task died with its driver; cached results come back at once
        run.say("classical baselines (from the cache when the search computed them) ...")
        baselines = run_baselines(*runner.baseline_inputs(spec, dataset))
    for line in runner.record_accuracy(spec, tracker, parent_id, state, baselines):
        run.say(line)
    run.say(f"synced {synced} trials of {run.name} to {redact(tracker.uri)}; {len(state.finished)} finished, "
            f"Pareto front {len(state.front.members)}, hypervolume {state.front.hypervolume:.4g}")
    return SearchResult(run.name, parent_id, state.front, len(state.finished), state.failed, state.stopped,
                        state.infeasible, "complete", run.experiment)


def _record_keeper(run: SearchRun, dataset, quiet: bool = False) -> SearchCallback:
    """The search's callback, outside a Tune run, to bring MLflow up to what Tune recorded: it prints on the run's
    output, or (``quiet``: a resume closing the runs of ended trials) nothing but an MLflow failure, on standard
    error."""
    return SearchCallback(run.spec, run.tracker, run.parent_id, run.name, dataset.modalities, len(dataset.classes),
                          run.target, quiet=quiet, dataset=describe_data(dataset, run.spec.data),
                          out=None if quiet else run.out)


def close_ended(run: SearchRun, dataset) -> int:
    """Runs still open in MLflow whose trials Tune saved as ended - runs close on a background thread, so a driver
    killed between Tune's save and the close leaves them so - brought up to Tune's record of the trial (epochs
    missing, tags) and closed. Returns how many."""
    open_trials = {r.data.tags.get(TRIAL_TAG) for r in run.tracker.candidates(run.parent_id)
                   if r.info.status == "RUNNING"}
    if not open_trials:
        return 0
    analysis = ExperimentAnalysis(run.experiment)
    stale = [t for t in analysis.trials if t.status in ("TERMINATED", "ERROR") and t.trial_id in open_trials]
    if stale:
        callback = _record_keeper(run, dataset, quiet=True)
        frames = {t.trial_id: analysis.trial_dataframes.get(t.trial_id) for t in stale}
        bring_up(callback, stale, trial_rows(frames))
        callback.on_experiment_end(analysis.trials)
    return len(stale)


def trial_rows(frames: dict) -> dict[str, list[dict]]:
    """Each trial's results from Tune's per-trial tables (pandas), as the dicts the trial reported: a table holds
    every key any of its results had, so a key missing from one result (``budget_done`` before the last epoch, say)
    is a NaN cell there - left out here, as it was left out of the report."""
    return {trial_id: [{k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
                       for row in frame.to_dict("records")]
            for trial_id, frame in frames.items() if frame is not None}


def repair(callback: SearchCallback, trials: list, rows: dict[str, list[dict]], planned: int) -> int:
    """Bring MLflow up to what Tune recorded, through the search's own callback: each trial whose run is not
    already FINISHED or FAILED gets a run (if it has none), the epochs MLflow lacks, and its end; runs still open
    are then closed, and the search is marked complete when every one of its ``planned`` trials ended. ``rows``
    are each trial's results as Tune logged them, by trial id. Returns how many trials were synced."""
    synced = bring_up(callback, trials, rows)
    callback.on_experiment_end(trials)
    if all(t.status in ("TERMINATED", "ERROR") for t in trials) and len(trials) >= planned:
        callback.tracker.finish_search(callback.parent_id, "complete")
    return synced


def bring_up(callback: SearchCallback, trials: list, rows: dict[str, list[dict]]) -> int:
    """Each of ``trials`` whose run is not FINISHED or FAILED: a run if it has none, the epochs MLflow lacks, and
    its end if Tune recorded one. Returns how many were brought up."""
    tracker = callback.tracker
    synced = 0
    for trial in trials:
        run_id = callback.state.runs.get(trial.trial_id)
        if run_id is not None and tracker.run_status(run_id) in ("FINISHED", "FAILED"):
            continue
        logged = tracker.epochs_logged(run_id) if run_id else 0
        if logged:  # its static measures went to MLflow with its first epoch
            callback.static_logged.add(run_id)
        for row in rows.get(trial.trial_id, []):
            if row.get(EPOCH, 0) > logged:
                callback.on_trial_result(0, trials, trial, row)
        if trial.status == "ERROR":
            callback.on_trial_error(0, trials, trial)
        elif trial.status == "TERMINATED":
            callback.on_trial_complete(0, trials, trial)
        synced += 1
    return synced


def _open(name: str, storage: str | None, out: IO[str], **options) -> tuple[SearchRun, object]:
    """Search ``name``'s run as its storage recorded it (experiment folder or URI, session file: spec, parent run,
    tracker, target), printing on ``out`` with ``options`` (``SearchRun``'s Ray and output settings), and its
    dataset."""
    experiment = find_experiment(name, storage)
    session = read_session(experiment)
    # a search started before cross-validation kept its holdout split: it must not switch schemes on resume
    session["spec"]["data"].setdefault("cv_folds", HOLDOUT)
    spec = parse_spec(session["spec"])
    run = SearchRun(spec, Tracker(session["tracking_uri"], session["experiment"]), session["parent_run_id"],
                    store.name(experiment), experiment, session["target"], out, **options)
    return run, spec_dataset(spec)


def read_session(experiment: str) -> dict:
    """What a search wrote beside Tune's state when it started: its spec, parent run, tracking URI and target."""
    return json.loads(store.read_text(store.join(experiment, SESSION_FILE)))


def find_experiment(name: str, storage: str | None = None) -> str:
    """The experiment folder or URI of search ``name`` (or of the newest search of spec ``name``) under
    ``storage`` - a local folder or a URI such as ``s3://bucket/runs``."""
    root = store.absolute(str(storage or DEFAULT_STORAGE))
    exact = store.join(root, name)
    if store.modified(store.join(exact, SESSION_FILE)) is not None:
        return exact
    started = {}  # search folder -> when its session was written
    for entry in store.entries(root):
        if entry.startswith(f"{name}-"):
            when = store.modified(store.join(root, entry, SESSION_FILE))
            if when is not None:
                started[store.join(root, entry)] = when
    if not started:
        raise LookupError(f"search: no search named {name!r} under {root}; pass --storage where it ran")
    return max(started, key=started.get)
