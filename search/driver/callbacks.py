"""Driver-side Tune callback: logs every trial to MLflow, keeps the live front, prints progress.

Runs on the driver only, so workers need no tracking credentials. Child runs are looked up by trial id first,
so a resumed driver continues the runs it made instead of duplicating them.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import ray
from ray.tune import Callback

from search.driver import stopping
from search.driver.progress import STATUS_EVERY, StatusBoard
from search.front.files import write_artifacts
from search.front.state import Record, SearchState, compute_front, extend_front
from search.front.summary import candidate_name, describe_front
from search.front.yardstick import best_by_validation
from search.record.batching import MetricBatcher
from search.record.tracking import Tracker, redact
from search.spec.results import (
    BUDGET_DONE,
    EPOCH,
    ERROR,
    FAILURE_TIMEOUT,
    FINAL,
    INFEASIBLE,
    MEASURED_WITHOUT_TRAINING,
    REPLAYED,
    STATIC,
    TIMED_OUT,
    TRIAL_ID,
    TRIAL_TAG,
    VIOLATIONS,
    ended_tags,
    error_tags,
    metrics_of,
    numbers_of,
    timed_out_tags,
)
from search.spec.schema import Spec
from search.trial.candidate import resolve
from search.trial.teacher import teacher_refs
from search.trial.validation import HOLDOUT, describe, scheme

LIVE_EVERY_S = 1.0  # the fewest seconds between two writes of the live hypervolume
NODES_EVERY_S = 30.0  # how often a search on one Ray node looks again whether nodes joined (an autoscaled cluster)


class SearchCallback(Callback):
    """Mirror Tune's trials into MLflow and keep the front current.

    Its state (trial -> run map, finished candidates, counts) is rebuilt from MLflow whenever Tune starts or
    resumes the experiment (``setup``), so a restarted driver continues the runs it made instead of duplicating
    them, and an extended search counts the candidates it already has.

    Args:
        spec: the search spec (objectives, reference point).
        tracker: MLflow access.
        parent_id: the search's parent run.
        modalities, num_classes: the dataset's shape, to log each trial's full candidate (for export).
        target: trials this search will have under its parent when done (for progress lines).
        refresh_every: rewrite the front table and plot after this many finished trials (and at the end) ...
        refresh_s: ... and at most once in this many seconds: with hundreds of trials finishing, redrawing the plot
            and retagging every 5 of them would take the driver's whole time.
        status_every: seconds between status lines on the running trials (None or 0: none).
        quiet: print neither status lines nor a line per ended trial (the search's start and end lines remain).
        dataset: the search's data (``search.record.datasets.DatasetRecord``), logged as each child run's dataset input.
        out: where its lines go (None: standard output at print time, and its MLflow warning to standard error).

    Tune pickles the callback with the experiment's state; its output stream stays out of it (a stream belongs to
    the process that prints, and most do not pickle): a callback restored from that state prints to the standard
    streams until ``use_output`` gives it the resuming run's settings.
    """

    def __init__(self, spec: Spec, tracker: Tracker, parent_id: str, name: str, modalities: tuple,
                 num_classes: int, target: int, refresh_every: int = 5, status_every: float | None = STATUS_EVERY,
                 quiet: bool = False, refresh_s: float = 10.0, dataset=None, out: IO[str] | None = None):
        self.spec, self.tracker, self.parent_id, self.name = spec, tracker, parent_id, name
        self.dataset = dataset
        self.modalities, self.num_classes, self.target = modalities, num_classes, target
        self.refresh_every, self.refresh_s = refresh_every, refresh_s
        self.status_every, self.quiet, self.out = status_every, quiet, out
        self._writer = self._new_writer()
        self._load_state()

    def use_output(self, out: IO[str] | None, status_every: float | None, quiet: bool) -> None:
        """This run's output settings (as the constructor's) for a callback restored from Tune's saved state, which
        kept those of the run that saved it (and no stream). Called before Tune's loop starts: its ``setup`` builds
        the status board from them."""
        self.out, self.status_every, self.quiet = out, status_every, quiet

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_writer", "out")}

    def __setstate__(self, state: dict) -> None:
        # a state pickled before the stream was left out carries one (sys.stdout then): ``use_output`` replaces it
        self.__dict__.update({"out": None, **state}, _writer=self._new_writer())

    def _new_writer(self) -> MetricBatcher:
        # per-epoch metrics go to MLflow from one background thread, each run's queued epochs in one write: the
        # driver takes the next result meanwhile, and a store that falls behind catches up in fewer calls
        return MetricBatcher(lambda run_id, epochs: self._mlflow(self.tracker.log_epochs, run_id, epochs))

    def _later(self, run_id: str, call, *args) -> None:
        self._writer.later(run_id, lambda: self._mlflow(call, *args))

    def _end(self, run_id: str | None, status: str, tags: dict[str, str]) -> None:
        """Close a run from the writer's thread, after its other writes; its last epochs go with its tags. The run
        ends when the trial did, not when the write is made (GPU and node occupancy are read from run times)."""
        if run_id:
            end_ms = int(time.time() * 1000)
            self._writer.end(run_id, lambda epochs: self._mlflow(self.tracker.finish_candidate, run_id, status, tags,
                                                                 epochs=epochs, end_ms=end_ms))

    def flush(self) -> None:
        """Return once every MLflow write queued so far is made."""
        self._writer.flush()

    def _log_later(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        self._writer.add(run_id, step, metrics, int(time.time() * 1000))

    def _load_state(self) -> None:
        self.start = time.monotonic()
        self._refreshed_at, self._refreshed_n = None, 0  # the last front refresh (artifacts and tags)
        self._tagged: dict[str, tuple[bool, bool]] = {}  # run id -> the (pareto, knee) marks it has
        self.offline = False
        folds = scheme(self.spec.data)
        self.board = StatusBoard(None if self.quiet else self.status_every, self.spec.training.epochs,
                                 1 if folds == HOLDOUT else int(folds), self.start)
        self.state = self._mlflow(self.tracker.search_state, self.parent_id, self.spec.objectives) or SearchState()
        self.static_logged: set[str] = set()  # runs whose static measures are in MLflow (logged once, not per epoch)
        self._nodes_seen_at: float | None = None  # when the callback last asked Ray how many nodes it has
        self._with_node = False  # several Ray nodes: a run's tags say which one ran its trial

    def _mlflow(self, call, *args, **kwargs):
        """One MLflow call. The first failure turns tracking off for the rest of this run: the search goes on,
        Tune's experiment state keeps every result, and ``emule sync`` logs what is missing later."""
        if self.offline:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as e:  # any failure of the tracking store must not stop the training
            self.offline = True
            print(f"warning: MLflow at {redact(self.tracker.uri)} failed ({type(e).__name__}: "
                  f"{redact(str(e).splitlines()[0]) if str(e) else ''}); the search goes on and keeps its results; "
                  f"log them with `emule sync {self.name}` once MLflow is back", file=self.out or sys.stderr,
                  flush=True)
            return None

    def candidate_of(self, config: dict) -> dict:
        return resolve(self.spec, config, self.modalities, self.num_classes, teacher_refs(self.spec)).to_dict()

    # --- Tune hooks ---
    def setup(self, **info) -> None:
        self._load_state()

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if self.board.due(now):
            print(self.board.line(now, now - self.start), file=self.out or sys.stdout, flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.board.started(trial.trial_id, time.monotonic())
        # Only the run's creation waits here: its params, dataset and candidate queue on the writer's thread, to be
        # written before its epochs.
        run_id = self.state.runs.get(trial.trial_id)
        cand = self.candidate_of(trial.config)
        if run_id is None:
            run_id = self._mlflow(self.tracker.start_candidate, self.parent_id, trial.trial_id,
                                  candidate_name(trial.trial_id, cand["model"], cand["data"]))
            if run_id is None:
                return
            self.state.runs[trial.trial_id] = run_id
            if getattr(self, "dataset", None) is not None:
                self._later(run_id, self.tracker.log_dataset, [run_id], self.dataset)
        else:  # resumed: the trial restarts from scratch inside the run it already has (and logs the same again)
            self._mlflow(self.tracker.reopen, run_id)
        self._later(run_id, self.tracker.log_params, run_id, _flat(trial.config))
        self._later(run_id, self.tracker.log_candidate, run_id, cand)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info) -> None:
        if trial.trial_id not in self.state.runs:
            self.on_trial_start(iteration, trials, trial)
        run_id = self.state.runs.get(trial.trial_id)
        if result.get(TIMED_OUT):  # its epochs are logged; on_trial_complete records the timeout
            return
        if not result.get(INFEASIBLE):
            self.board.epoch_ended(trial.trial_id, int(result.get(EPOCH, 0)), time.monotonic())
        if result.get(REPLAYED) or run_id is None:  # already in MLflow, or MLflow is away
            return
        metrics = metrics_of(result)
        if result.get(INFEASIBLE):  # log what was measured, not the reference-point stand-ins
            metrics = {k: v for k, v in metrics.items() if k in MEASURED_WITHOUT_TRAINING}
        # Measured once before training, they ride along in every result (schedulers rank on them); MLflow gets
        # them once, at step 0, so its charts show a value rather than a flat line per epoch.
        static = {k: metrics.pop(k) for k in STATIC if k in metrics}
        logged = getattr(self, "static_logged", set())
        if static and run_id not in logged:
            self._log_later(run_id, static, step=0)
            logged.add(run_id)
            self.static_logged = logged
        # measured once at the end (the refit, the test split): at step 0 too, where MLflow shows them as values
        final = {k: metrics.pop(k) for k in FINAL if k in metrics}
        if metrics:
            self._log_later(run_id, metrics, step=int(result.get(EPOCH, iteration)))
        if final:
            self._log_later(run_id, final, step=0)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        # The run is closed on the writer's thread, after its epochs: Tune's loop goes on at once. A driver killed
        # after Tune saved this trial as ended but before the close leaves the run open: a resume closes it from
        # Tune's record of the trial (``search.driver.resume.close_ended``).
        self.board.ended(trial.trial_id)
        result = trial.last_result or {}
        run_id = self.state.runs.get(trial.trial_id, "")
        if result.get(TIMED_OUT):
            self._timed_out(trials, trial, run_id, result)
            return
        budget_done = bool(result.get(BUDGET_DONE))
        infeasible = bool(result.get(INFEASIBLE))
        self._end(run_id, "FINISHED", ended_tags(result, self._on_several_nodes()))
        if budget_done:
            record = Record(trial.trial_id, run_id, numbers_of(result), _flat(trial.config))
            self.state.finished[trial.trial_id] = record
            self._update_front(final=False, new=record)
            event = "done"
        elif infeasible:
            self.state.infeasible += 1
            event = f"infeasible ({result.get(VIOLATIONS, '')})"
        else:
            self.state.stopped += 1
            event = f"stopped early at epoch {result.get(EPOCH, '?')}"
        self._progress(trials, trial, f"{trial.trial_id} {event}", {} if infeasible else result)

    def _timed_out(self, trials: list, trial: Any, run_id: str, result: dict) -> None:
        """A trial stopped by ``search.max_trial_seconds``: FAILED with reason timeout, never on the front."""
        self.state.failed += 1
        self._end(run_id, "FAILED", timed_out_tags(result, self._on_several_nodes()))
        self._progress(trials, trial, f"{trial.trial_id} failed: {result.get(ERROR, FAILURE_TIMEOUT)}", {})

    def _on_several_nodes(self) -> bool:
        """Whether the search's Ray instance has more than one node (asked at most every ``NODES_EVERY_S``): only
        then does a run's ``node_id`` tag say something (on one machine it is the same for every trial)."""
        now = time.monotonic()
        seen_at = getattr(self, "_nodes_seen_at", None)
        if not getattr(self, "_with_node", False) and (seen_at is None or now - seen_at >= NODES_EVERY_S):
            self._nodes_seen_at, self._with_node = now, ray_nodes() > 1
        return self._with_node

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.board.ended(trial.trial_id)
        self.state.failed += 1
        run_id = self.state.runs.get(trial.trial_id)
        error = _error_text(trial)
        self._end(run_id, "FAILED", error_tags(error))
        self._progress(trials, trial, f"{trial.trial_id} failed: {error[:200]}", {})

    def on_experiment_end(self, trials: list, **info) -> None:
        self._writer.close()
        self._update_front(final=True)
        known = {t.trial_id for t in trials}
        reason = stopping.reason() or "the search ended before the trial did"
        for run in self._mlflow(self.tracker.candidates, self.parent_id) or []:
            if run.info.status != "RUNNING":
                continue
            if run.data.tags.get(TRIAL_TAG) in known:  # did not end (a stop signal, budget stop): a resume continues it
                self._mlflow(self.tracker.stop_candidate, run.info.run_id, reason)
            else:  # started after Tune last saved its state, then the driver died: Tune ran it again under a new id
                self._mlflow(self.tracker.discard_orphan, run.info.run_id)

    def settle(self, grid) -> None:
        """After ``fit``: a trial whose last epoch spent the epoch budget is ended by Tune without
        ``on_trial_complete``; record those full-budget trials like any other, then refresh the front."""
        missed = [r for r in grid if r.metrics and r.metrics.get(BUDGET_DONE)
                  and r.metrics.get(TRIAL_ID) not in self.state.finished]
        for r in missed:
            trial = SimpleNamespace(trial_id=r.metrics[TRIAL_ID], last_result=r.metrics, config=r.config,
                                    status="TERMINATED")
            self.on_trial_complete(0, [], trial)
        if missed:
            self._update_front(final=True)
        self._writer.close()  # the record is complete before the search's end is

    # --- front and progress ---
    def _update_front(self, final: bool, new: Record | None = None) -> None:
        n = len(self.state.finished)
        # a newcomer dominated by the front leaves it as it is: no recomputation
        extended = None if final or new is None else extend_front(self.state.front, new, self.spec.objectives)
        self.state.front = extended or compute_front(list(self.state.finished.values()), self.spec.objectives)
        if n == 0 or self.offline:
            return
        now = time.monotonic()
        if final or (n - self._refreshed_n >= self.refresh_every
                     and (self._refreshed_at is None or now - self._refreshed_at >= self.refresh_s)):
            self._refreshed_at, self._refreshed_n = now, n
            front = self.state.front
            members, knee = {r.run_id for r in front.members}, front.knee and front.knee.run_id
            # only runs whose marks changed are marked again: the others' tags and last values are right already
            marks = {r.run_id: (r.run_id in members, r.run_id == knee) for r in self.state.finished.values()}
            changed = [run_id for run_id, mark in marks.items() if self._tagged.get(run_id) != mark]
            with tempfile.TemporaryDirectory(prefix="emule-front-") as tmp:
                files = write_artifacts(front, self.spec.objectives, Path(tmp), title=f"{self.name}: Pareto front")
                note = describe_front(self.name, self.tracker.experiment_id, self.parent_id, front,
                                      self.spec.objectives, best=best_by_validation(self.state.finished.values()),
                                      validation=describe(self.spec.data))
                self._mlflow(self.tracker.log_front, self.parent_id, list(members), changed, knee, files,
                             front.hypervolume, step=n, description=note)
            if not self.offline:
                self._tagged.update({run_id: marks[run_id] for run_id in changed})
        elif now - getattr(self, "_live_at", -LIVE_EVERY_S) >= LIVE_EVERY_S:
            # cheap live view: hypervolume and front size as metrics, at most once a second (with tens of trials
            # ending each second, one write per trial would cost the event loop more than the view is worth)
            self._live_at = now
            self._mlflow(self.tracker.log_search_metrics, self.parent_id, {"hypervolume": self.state.front.hypervolume,
                                                             "front_size": len(self.state.front.members)}, step=n)

    def _progress(self, trials: list, trial: Any, event: str, result: dict) -> None:
        if self.quiet:
            return
        # Tune calls the end hooks before it sets the trial's own status: the trial that ended is not running
        running = sum(1 for t in trials if t.status == "RUNNING" and t.trial_id != trial.trial_id)
        ended = self.state.ended
        shown = " ".join(f"{m}={_short(result[m])}" for m in self.spec.metrics if m in result)
        print(f"[{time.monotonic() - self.start:6.1f}s] {ended:>3}/{self.target} ended "
              f"({len(self.state.finished)} full, {self.state.stopped} stopped, {self.state.infeasible} infeasible, "
              f"{self.state.failed} failed), {running} running | front {len(self.state.front.members)}, "
              f"HV {self.state.front.hypervolume:.4g} | {event} {shown}", file=self.out or sys.stdout, flush=True)


def ray_nodes() -> int:
    """The alive nodes of the Ray instance this process is connected to (0 when it is connected to none)."""
    if not ray.is_initialized():
        return 0
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"
