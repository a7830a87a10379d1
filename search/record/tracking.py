"""Everything EMuLe writes to or reads from MLflow. The only module that imports mlflow.

Layout: one experiment (``tracking.experiment``); one parent run per search (tag ``emule.search``); one child
run per trial (``mlflow.parentRunId`` = parent, tag ``emule.trial_id``). The trial -> run map lives in MLflow
itself (that tag), so a resumed driver finds the runs it already made instead of logging them twice.
Uses an explicit ``MlflowClient``: ``mlflow.set_experiment``/``set_tracking_uri`` leak into environment
variables that later calls silently prefer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow prints a "View run" link per run, with the tracking URI's credentials in it; our progress says enough.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# MLflow's HTTP client retries for minutes by default; a search notices an unreachable server in seconds and
# keeps going on its own experiment state (`emule sync` logs what is missing later).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from search.front.state import Record, SearchState, compute_front  # noqa: E402
from search.front.summary import (  # noqa: E402
    EXPERIMENT_NOTE_START,
    SEARCHES_VIEW,
    experiment_note,
    front_view,
    front_view_key,
    searches_view,
)
from search.spec.metrics import upgrade  # noqa: E402
from search.spec.results import (  # noqa: E402
    BUDGET_DONE_TAG,
    ERROR_TAG,
    FAILURE_TAG,
    FEASIBLE_TAG,
    FRONT_MARK,
    KNEE_MARK,
    ORPHAN_TAG,
    RUN_KIND_TAG,
    SEARCH_TAG,
    STATUS_TAG,
    STOP_REASON_TAG,
    TRIAL_TAG,
    flag,
    is_number,
)

PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"  # a run's or an experiment's description, rendered as Markdown on its page
# The experiment's kind, "model training". MLflow 3.17's UI reads it only where its GenAI / Model training toggle is
# hidden (never in the open-source UI, which opens the view named in the URL's `workflowType`, else the one the
# browser last picked, else GenAI): the links EMuLe prints and writes carry `workflowType=machine_learning`.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
# A saved runs-table view (filter, order, columns) is an experiment tag under this prefix; a link opens it with
# `viewStateShareKey=<key>` (the UI's own "share view" writes the same).
VIEW_TAG = "mlflow.sharedViewState."
SPEC_ARTIFACT, SOURCE_ARTIFACT = "spec.yaml", "spec.source.yaml"
TRACEBACK_ARTIFACT = "traceback.txt"  # a failed search's driver traceback, on its parent run
FAILED_NOTE = "**Failed:**"  # how a failed search's description begins (the rest of the line: the error)
PARAM_LIMIT = 6000  # MLflow's param value limit; longer values are cut (they are in the candidate artifact anyway)


def redact(text: str) -> str:
    """Hide the password of any ``scheme://user:password@host`` inside ``text``."""
    return re.sub(r"(\w[\w+.-]*://[^/\s:@]+):[^@\s/]+@", r"\1:***@", text)


# Where a store is named when a command or spec names none, first found first: MLflow's own variable, then ours.
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "EMULE_TRACKING_URI")
DEFAULT = "default"  # the source of a store that nothing named: ``default_uri``


def default_uri() -> str:
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def uri_and_source(uri: str | None) -> tuple[str, str]:
    """The tracking store and what named it: ``uri`` itself (a spec's ``tracking.uri`` or a ``--tracking-uri``;
    source ``given``), else the first of ``URI_VARIABLES`` set (source: the variable's name), else the default
    (source ``default``: ``mlflow.db`` in the working directory, as MLflow's own default)."""
    if uri:
        return uri, "given"
    for variable in URI_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable], variable
    return default_uri(), DEFAULT


def resolve_uri(uri: str | None) -> str:
    """The tracking store of a command or spec that names ``uri`` (None: none); see ``uri_and_source``."""
    return uri_and_source(uri)[0]


def store_line(uri: str, source: str) -> str:
    """Which MLflow store a command used, for the terminal (``uri`` without credentials)."""
    if source == DEFAULT:
        return (f"MLflow store: {uri} (the default: mlflow.db in the folder the command ran in; from another folder "
                "pass --tracking-uri or set MLFLOW_TRACKING_URI)")
    return f"MLflow store: {uri}" + (f" (from {source})" if source in URI_VARIABLES else "")


def artifacts_beside(uri: str) -> str | None:
    """For a SQLite store, the artifact folder of a new experiment: ``mlruns`` beside the database file (MLflow's
    own default is ``./mlruns`` under whatever folder the process runs in, which scatters a store's artifacts);
    None - MLflow's default - for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).parent.resolve() / "mlruns").as_uri()


class Tracker:
    """MLflow records of searches and their candidates. Its MLflow client is its own (``_client``): callers ask
    for what they need through its methods."""

    def __init__(self, uri: str | None, experiment: str):
        self.uri, self.uri_source = uri_and_source(uri)
        self.experiment = experiment
        self._client = MlflowClient(tracking_uri=self.uri)
        try:
            exp = self._client.get_experiment_by_name(experiment)
        except Exception as e:  # unreachable server, bad URI, locked file: say so before any training
            raise ConnectionError(f"tracking.uri: cannot reach MLflow at {redact(self.uri)!r} ({type(e).__name__}: "
                                  f"{redact(str(e).splitlines()[0]) if str(e) else ''})") from None
        self.experiment_id = exp.experiment_id if exp else self._client.create_experiment(
            experiment, artifact_location=artifacts_beside(self.uri), tags={KIND_TAG: KIND})
        with contextlib.suppress(Exception):  # a reader without write access still reads
            self._describe_experiment(exp.tags if exp is not None else {KIND_TAG: KIND})

    def _describe_experiment(self, tags: dict[str, str]) -> None:
        """The experiment's kind, description and view of its searches, where they are missing or were written
        by an older EMuLe (a description someone else wrote is left alone). Nothing is written when they stand."""
        note = experiment_note(self.experiment_id)
        wanted = {KIND_TAG: KIND, VIEW_TAG + SEARCHES_VIEW: json.dumps(searches_view())}
        if tags.get(NOTE_TAG, EXPERIMENT_NOTE_START).startswith(EXPERIMENT_NOTE_START):
            wanted[NOTE_TAG] = note
        for key, value in wanted.items():
            if tags.get(key) != value:
                self._client.set_experiment_tag(self.experiment_id, key, value)

    def __setstate__(self, state: dict) -> None:
        # a Tracker pickled (inside Tune's experiment state) before the client became private names it "client"
        if "client" in state:
            state["_client"] = state.pop("client")
        state.setdefault("uri_source", "given")  # pickled before the source was kept: its URI is resolved
        self.__dict__.update(state)

    def store_line(self) -> str:
        """Which store this is and what named it, one line for the terminal."""
        return store_line(redact(self.uri), self.uri_source)

    # --- searches ---
    def start_search(self, name: str, params: dict[str, Any], spec_text: str, source_text: str | None = None) -> str:
        """A search's parent run: its settings as ``params``, ``spec_text`` as ``spec.yaml`` (the spec as it runs:
        what reopening the search reads) and, where it differs, the spec file as the user wrote it as
        ``spec.source.yaml`` (its comments, its relative paths)."""
        run = self._client.create_run(self.experiment_id, run_name=name,
                                      tags={SEARCH_TAG: name, RUN_KIND_TAG: "search"})
        self.log_params(run.info.run_id, params)
        self._client.log_text(run.info.run_id, redact(spec_text), SPEC_ARTIFACT)  # no credentials in the record
        if source_text is not None and source_text != spec_text:
            self._client.log_text(run.info.run_id, redact(source_text), SOURCE_ARTIFACT)
        return run.info.run_id

    def find_search(self, name: str) -> str | None:
        """The parent run of the search ``name``; a spec name alone picks its newest search."""
        for flt in (f"tags.`{SEARCH_TAG}` = '{name}' and tags.`{RUN_KIND_TAG}` = 'search'",
                    f"tags.`{SEARCH_TAG}` LIKE '{name}-%' and tags.`{RUN_KIND_TAG}` = 'search'"):
            runs = self._client.search_runs([self.experiment_id], flt, order_by=["attributes.start_time DESC"],
                                           max_results=1)
            if runs:
                return runs[0].info.run_id
        return None

    def search_name(self, parent_id: str) -> str:
        # asked at every trial's start; a search's name never changes, so the store is asked once (setdefault:
        # a Tracker restored from an older pickled experiment has no cache yet)
        names = self.__dict__.setdefault("_names", {})
        if parent_id not in names:
            names[parent_id] = self._client.get_run(parent_id).data.tags[SEARCH_TAG]
        return names[parent_id]

    def save_front_view(self, parent_id: str, objectives: Sequence, params: Sequence[str] = ()) -> None:
        """The runs-table view of a search's front (``search.front.summary.front_view``) saved on the experiment, where
        the search's links open it."""
        self._client.set_experiment_tag(self.experiment_id, VIEW_TAG + front_view_key(parent_id),
                                        json.dumps(front_view(parent_id, objectives, params)))

    def finish_search(self, parent_id: str, status: str, reason: str | None = None) -> None:
        """Close the parent run: FINISHED when ``status`` is complete, else KILLED; ``reason`` (what stopped it,
        e.g. ``SIGTERM``) goes into the tag ``emule.stop_reason``."""
        tags = [RunTag(STATUS_TAG, status)]
        if reason:
            tags.append(RunTag(STOP_REASON_TAG, reason))
        self._client.log_batch(parent_id, tags=tags)
        self._client.set_terminated(parent_id, "FINISHED" if status == "complete" else "KILLED")

    def tag_search(self, parent_id: str, tags: dict[str, str]) -> None:
        """Tags on a search's parent run (e.g. which search a distilled one learnt from)."""
        self._client.log_batch(parent_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def reopen(self, run_id: str) -> None:
        """A resumed search or trial runs again inside its run: RUNNING, the old stop reason and outcome gone (an
        open run with an outcome is one whose close was cut short: ``close_whole``)."""
        tags = self._client.get_run(run_id).data.tags
        for stale in (STOP_REASON_TAG, BUDGET_DONE_TAG):
            if stale in tags:
                self._client.delete_tag(run_id, stale)
        self._client.update_run(run_id, status="RUNNING")

    def reopen_search(self, parent_id: str) -> None:
        self.reopen(parent_id)
        tags = self._client.get_run(parent_id).data.tags
        if ERROR_TAG in tags:  # it failed before: the error was that run's, not this one's
            self._client.delete_tag(parent_id, ERROR_TAG)
        note = tags.get(NOTE_TAG, "")
        if note.startswith(FAILED_NOTE):
            self._client.set_tag(parent_id, NOTE_TAG, note.split("\n\n", 1)[1] if "\n\n" in note else "")
        self._client.set_tag(parent_id, STATUS_TAG, "running")

    def fail_search(self, parent_id: str, error: str, traceback_text: str, trace_path: str | None = None) -> None:
        """Close the parent run of a search whose driver failed: FAILED, ``emule.status=failed``, the one-line
        ``error`` as the tag ``error`` and as the first line of the run's description, the full traceback as the
        artifact ``traceback.txt`` (``trace_path``: where it was written on the driver's machine too)."""
        where = f" (also in {trace_path} on the machine that ran it)" if trace_path else ""
        line = f"{FAILED_NOTE} {error} - full traceback in the artifact `{TRACEBACK_ARTIFACT}`{where}."
        note = self._client.get_run(parent_id).data.tags.get(NOTE_TAG, "")
        if note.startswith(FAILED_NOTE):  # failed before, was resumed, failed again: one failure line, the latest
            note = note.split("\n\n", 1)[1] if "\n\n" in note else ""
        self._client.log_batch(parent_id, tags=[RunTag(STATUS_TAG, "failed"), RunTag(ERROR_TAG, error[:5000]),
                                                RunTag(NOTE_TAG, f"{line}\n\n{note}" if note else line)])
        with contextlib.suppress(Exception):  # the record of the failure stands without its artifact
            self._client.log_text(parent_id, traceback_text, TRACEBACK_ARTIFACT)
        self._client.set_terminated(parent_id, "FAILED")

    def stop_candidate(self, run_id: str, reason: str) -> None:
        """A trial the search stopped before it ended (a stop signal, the epoch budget): KILLED, with the reason;
        a resume continues it inside this run."""
        self._client.set_tag(run_id, STOP_REASON_TAG, reason)
        self._client.set_terminated(run_id, "KILLED")

    def log_search_metrics(self, parent_id: str, metrics: dict[str, float], step: int) -> None:
        self._client.log_batch(parent_id, metrics=[Metric(k, float(v), _now(), step) for k, v in metrics.items()])

    def log_baselines(self, parent_id: str, results: dict[str, dict], metrics: dict[str, float]) -> None:
        """The classical baselines: metrics for charts and comparisons, ``baselines.json`` with the labels and
        skip reasons, a tag per baseline saying what ran."""
        tags = [RunTag(f"baseline.{name}", (f"skipped: {r['skipped']}" if "skipped" in r else r["method"])[:5000])
                for name, r in results.items()]
        self._client.log_batch(parent_id, metrics=[Metric(k, v, _now(), 0) for k, v in metrics.items()], tags=tags)
        self._client.log_dict(parent_id, results, "baselines.json")

    def baselines(self, parent_id: str) -> dict[str, dict]:
        """What ``log_baselines`` recorded for a search ({} when it logged none)."""
        try:
            path = self._client.download_artifacts(parent_id, "baselines.json", tempfile.mkdtemp(prefix="emule-"))
        except Exception:  # no baselines logged (turned off, or the search ended before they did)
            return {}
        return json.loads(Path(path).read_text())

    # --- candidates ---
    def start_candidate(self, parent_id: str, trial_id: str, name: str, params: dict[str, Any] | None = None) -> str:
        """A candidate's run, with its ``params`` unless they are None (``log_params`` logs them later)."""
        run = self._client.create_run(self.experiment_id, run_name=name, tags={
            PARENT_TAG: parent_id, TRIAL_TAG: trial_id, SEARCH_TAG: self.search_name(parent_id),
            RUN_KIND_TAG: "candidate"})
        if params is not None:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_candidate(self, run_id: str, candidate: dict) -> None:
        """The candidate a run trains (``candidate.json``: what export and retraining read)."""
        self._client.log_dict(run_id, candidate, "candidate.json")

    def discard_orphan(self, run_id: str) -> None:
        """A partial run whose trial the experiment state lost: soft-deleted (``mlflow runs restore`` brings it
        back), tagged ``emule.orphan``, so the search shows one run per trial."""
        self._client.set_tag(run_id, ORPHAN_TAG, flag(True))
        self._client.set_terminated(run_id, "KILLED")
        self._client.delete_run(run_id)

    def close_whole(self, parent_id: str) -> int:
        """Child runs still RUNNING whose outcome tags are in MLflow - the driver stopped between a run's closing
        write and its status (runs close on a writer thread) - closed as their tags say: FAILED for a failure,
        FINISHED otherwise, ended at their last epoch. The tags ride in the closing write's last batch, so such a
        run's record is whole. Returns how many."""
        closed = 0
        for run in self.candidates(parent_id):
            tags = run.data.tags
            if run.info.status != "RUNNING" or BUDGET_DONE_TAG not in tags:
                continue
            last = self.metric_history(run.info.run_id, "val_accuracy")
            self._client.set_terminated(run.info.run_id, "FAILED" if FAILURE_TAG in tags else "FINISHED",
                                        end_time=max((m.timestamp for m in last), default=None))
            closed += 1
        return closed

    def stop_running(self, parent_id: str, reason: str) -> None:
        """Close every child run of a search still RUNNING as KILLED with ``reason``."""
        for run in self.candidates(parent_id):
            if run.info.status == "RUNNING":
                self.stop_candidate(run.info.run_id, reason)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        rows = [Metric(k, float(v), _now(), step) for k, v in metrics.items() if is_number(v)]
        if rows:
            self._client.log_batch(run_id, metrics=rows)

    def log_epochs(self, run_id: str, epochs: Sequence[tuple[int, dict[str, Any], int]]) -> None:
        """Several epochs of one run, each ``(step, metrics, timestamp_ms)``, in as few writes as MLflow takes
        (at most 1000 metrics per batch)."""
        self._log_batches(run_id, _metric_rows(epochs))

    def finish_candidate(self, run_id: str, status: str, tags: dict[str, str], candidate: dict | None = None,
                         epochs: Sequence[tuple[int, dict[str, Any], int]] = (), end_ms: int | None = None) -> None:
        """Close a candidate's run: its last ``epochs`` (as ``log_epochs`` takes them) and its outcome ``tags`` in
        one write where they fit, then ``candidate.json``, then the status, ended at ``end_ms`` (default: now)."""
        self._log_batches(run_id, _metric_rows(epochs), [RunTag(k, str(v)) for k, v in tags.items()])
        if candidate is not None:
            self.log_candidate(run_id, candidate)
        self._client.set_terminated(run_id, status, end_time=end_ms)

    def candidate(self, run_id: str) -> dict:
        path = self._client.download_artifacts(run_id, "candidate.json", tempfile.mkdtemp(prefix="emule-"))
        return json.loads(Path(path).read_text())

    def spec_text(self, parent_id: str) -> str:
        """The spec a search ran, as its parent run recorded it."""
        path = self._client.download_artifacts(parent_id, SPEC_ARTIFACT, tempfile.mkdtemp(prefix="emule-"))
        return Path(path).read_text()

    def search_dataset(self, parent_id: str) -> dict[str, Any] | None:
        """The data a search recorded as its parent run's dataset input (``log_dataset``): ``source`` (a Parquet
        file's resolved ``uri``, or a built-in's tags) and ``profile`` (rows per split, classes ...); None for a
        search that recorded none."""
        inputs = self._client.get_run(parent_id).inputs
        for entry in (inputs.dataset_inputs if inputs is not None else []):
            try:
                return {"source": json.loads(entry.dataset.source or "{}"),
                        "profile": json.loads(entry.dataset.profile or "{}")}
            except ValueError:
                continue
        return None

    def search_param(self, parent_id: str, key: str, default: str | None = None) -> str | None:
        return self._client.get_run(parent_id).data.params.get(key, default)

    def search_end(self, parent_id: str) -> tuple[str, str | None]:
        """How a search's driver left it - complete, interrupted, failed, or running (still, or killed) - and the
        stop signal that interrupted it, if one did."""
        tags = self._client.get_run(parent_id).data.tags
        return tags.get(STATUS_TAG, "running"), tags.get(STOP_REASON_TAG)

    def run_status(self, run_id: str) -> str:
        """MLflow's status of a run: RUNNING, FINISHED, FAILED, KILLED ..."""
        return self._client.get_run(run_id).info.status

    def epochs_logged(self, run_id: str, metric: str = "val_accuracy") -> int:
        """How many per-epoch values of ``metric`` a run holds."""
        return len(self._client.get_metric_history(run_id, metric))

    def metric_history(self, run_id: str, metric: str) -> list:
        """Every logged value of ``metric`` in a run (mlflow Metric objects: ``step``, ``value``, ``timestamp``)."""
        return self._client.get_metric_history(run_id, metric)

    def run(self, run_id: str):
        """One run (an mlflow Run: ``info`` with status and times, ``data`` with params, metrics and tags)."""
        return self._client.get_run(run_id)

    def runs(self, filter_string: str = "") -> list:
        """The runs of this experiment that match an MLflow filter (all of them for ""), newest first."""
        return self._client.search_runs([self.experiment_id], filter_string, max_results=50000)

    def searches(self) -> list:
        """The parent runs of every search in this experiment, newest first."""
        return self.runs(f"tags.`{RUN_KIND_TAG}` = 'search'")

    def artifact_paths(self, run_id: str, path: str | None = None) -> list[str]:
        """The paths of a run's artifacts (under ``path``, or at its top level)."""
        return [a.path for a in self._client.list_artifacts(run_id, path)]

    def download_artifact(self, run_id: str, path: str, dst: str | Path) -> Path:
        """A run's artifact (a file, or a folder with "" for all of them) copied under the folder ``dst``."""
        return Path(self._client.download_artifacts(run_id, path, str(dst)))

    def experiment_tags(self) -> dict[str, str]:
        return dict(self._client.get_experiment(self.experiment_id).tags)

    def model_version(self, name: str, version: int | str):
        """One version of a registered model (an mlflow ModelVersion: ``run_id``, ``tags`` ...)."""
        return self._client.get_model_version(name, str(version))

    def candidates(self, parent_id: str) -> list:
        """The candidate runs of a search (mlflow Run objects), oldest first: its child runs but the analyses."""
        runs = self._client.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'",
                                        max_results=50000, order_by=["attributes.start_time ASC"])
        return [r for r in runs if r.data.tags.get(RUN_KIND_TAG, "candidate") == "candidate"]

    # --- analyses of a finished search (a learning curve, label suggestions): child runs that are no candidate ---
    def start_analysis(self, parent_id: str, kind: str, name: str, params: dict[str, Any]) -> str:
        run = self._client.create_run(self.experiment_id, run_name=name, tags={
            PARENT_TAG: parent_id, SEARCH_TAG: self.search_name(parent_id), RUN_KIND_TAG: kind})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def finish_analysis(self, run_id: str, parent_id: str, metrics: dict[str, float], artifacts: Sequence[Path],
                        line: str) -> None:
        """The analysis's metrics (one value each, at step 0) and files; ``line`` - what it found, in one line -
        becomes its description and is added to the search's (once per kind: a newer one replaces it)."""
        kind = self.run(run_id).data.tags[RUN_KIND_TAG]
        self._client.log_batch(run_id, metrics=[Metric(k, float(v), int(time.time() * 1000), 0)
                                                for k, v in metrics.items()])
        for path in artifacts:
            self._client.log_artifact(run_id, str(path))
        self._client.set_tag(run_id, NOTE_TAG, line)
        note = self.run(parent_id).data.tags.get(NOTE_TAG, "")
        marker = f"**{kind}**"
        # the description ends in a newline: a row after it starts with one (older notes kept it)
        kept = [row for row in note.rstrip("\n").split("\n\n") if not row.lstrip("\n").startswith(marker)]
        self._client.set_tag(parent_id, NOTE_TAG, "\n\n".join([*kept, f"{marker}: {line}"]))
        self._client.set_tag(parent_id, f"emule.{kind}", line[:PARAM_LIMIT])
        self._client.set_terminated(run_id, "FINISHED")

    def fail_analysis(self, run_id: str, reason: str) -> None:
        self._client.set_tag(run_id, NOTE_TAG, f"failed: {reason}")
        self._client.set_terminated(run_id, "FAILED")

    def search_state(self, parent_id: str, objectives: Sequence) -> SearchState:
        """The search's candidates as MLflow holds them; the front among those that finished their budget."""
        state = SearchState()
        for run in self.candidates(parent_id):
            tags, trial_id = run.data.tags, run.data.tags.get(TRIAL_TAG)
            state.runs[trial_id] = run.info.run_id
            metrics = upgrade(run.data.metrics)  # runs from before a metric's rename read under its new name
            if tags.get(BUDGET_DONE_TAG) == flag(True) and all(o.metric in metrics for o in objectives):
                state.finished[trial_id] = Record(trial_id, run.info.run_id, metrics, dict(run.data.params))
            elif tags.get(FEASIBLE_TAG) == flag(False):
                state.infeasible += 1
            elif run.info.status == "FAILED":
                state.failed += 1
            elif run.info.status == "FINISHED":
                state.stopped += 1
        state.front = compute_front(list(state.finished.values()), objectives)
        return state

    # --- the front ---
    def log_front(self, parent_id: str, front_run_ids: Sequence[str], marked_run_ids: Sequence[str],
                  knee_run_id: str | None, artifacts: Sequence[Path], hypervolume: float, step: int,
                  description: str | None = None) -> None:
        """Mark the finished candidates ``marked_run_ids`` (those whose marks changed) on or off the front and the
        knee - as tags (``pareto``, ``knee``: true/false, for filters) and as 0/1 metrics (MLflow's charts colour and
        filter by metrics, not tags) - then attach the front's files and the description to the parent run, and
        log its hypervolume and front size at ``step`` (finished candidates).

        The marks are logged at step 0, each mark later than the one before: MLflow's latest value of a metric is
        the one with the highest step, then the latest time, and its charts show a single step-0 value as a bar
        with its value (at step ``step`` it would be a lone dot)."""
        front = set(front_run_ids)
        # two refreshes in one millisecond must still leave the second's marks as the latest
        now = max(_now(), self.__dict__.get("_marked_at", 0) + 1)
        self._marked_at = now
        for run_id in marked_run_ids:
            marks = {FRONT_MARK: run_id in front, KNEE_MARK: run_id == knee_run_id}
            self._client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in marks.items()],
                                  tags=[RunTag(k, str(v).lower()) for k, v in marks.items()])
        self.log_front_artifacts(parent_id, artifacts, description)
        self.log_search_metrics(parent_id, {"hypervolume": hypervolume, "front_size": len(front)}, step)

    def log_front_artifacts(self, parent_id: str, artifacts: Sequence[Path], description: str | None = None) -> None:
        """The front's files on the parent run (replacing earlier ones), and its Markdown description."""
        for path in artifacts:
            self._client.log_artifact(parent_id, str(path))
        if description is not None:
            self._client.set_tag(parent_id, NOTE_TAG, description)

    def log_dataset(self, run_ids: Sequence[str], record, context: str = "training") -> None:
        """The search's data (a ``search.record.datasets.DatasetRecord``) as an MLflow dataset input of each run: the
        runs table's Dataset column and each run page say what it trained on."""
        import numpy as np
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.types import Schema, TensorSpec

        schema = Schema([TensorSpec(np.dtype(dtype), shape, name) for name, dtype, shape in record.columns])
        entity = Dataset(record.name, record.digest, record.source_type, json.dumps(record.source),
                         json.dumps({"mlflow_colspec": schema.to_dict()}), json.dumps(record.profile))
        for run_id in run_ids:
            self._client.log_inputs(run_id, datasets=[DatasetInput(entity, [InputTag("mlflow.data.context", context)])])

    # --- the model registry ---
    def register_model(self, module, name: str, input_example, output_example, version_tags: dict[str, str],
                       metadata: dict[str, Any], run_name: str, metrics: dict[str, float]) -> tuple[int, str]:
        """Log ``module`` (one tensor in, one out) as an MLflow PyTorch model in a run of its own (tag
        ``emule.kind=model``, outside any search) and register it as a new version of ``name``, tagged with
        ``version_tags``. Returns (version, run id).

        The flavour's ``pt2`` format stores a ``torch.export`` graph with a dynamic batch axis, so loading it needs
        torch but none of this package's code. MLflow's model logging works through its fluent API, which reads
        the tracking URI from process-wide state; that state is set for this call only and put back after.
        """
        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        signature = infer_signature(input_example, output_example)
        tags = {RUN_KIND_TAG: "model", "emule.registered_model": name,
                **{k: v for k, v in version_tags.items() if k in (SEARCH_TAG, TRIAL_TAG)}}
        with _fluent_uri(self.uri):
            with mlflow.start_run(experiment_id=self.experiment_id, run_name=run_name, tags=tags) as run:
                info = mlflow.pytorch.log_model(
                    module, name="model", signature=signature, input_example=input_example,
                    registered_model_name=name, serialization_format="pt2", metadata=metadata,
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
                mlflow.log_metrics(metrics)
        version = int(info.registered_model_version)
        for key, value in version_tags.items():
            self._client.set_model_version_tag(name, str(version), key, str(value)[:5000])
        return version, run.info.run_id

    def _log_batches(self, run_id: str, metrics: list, tags: Sequence = ()) -> None:
        """Metrics and tags in as few ``log_batch`` calls as MLflow takes (1000 entities, 100 tags each). The tags
        ride in the last calls: a run whose outcome tags are in MLflow has every metric written with them there too
        (a resume reads the tags as "this run's record is whole")."""
        metrics, tags = list(metrics), list(tags)
        while len(metrics) + min(len(tags), 100) > 1000:
            head, metrics = metrics[:1000], metrics[1000:]
            self._client.log_batch(run_id, metrics=head)
        while metrics or tags:
            head_tags, tags = tags[:100], tags[100:]
            room = 1000 - len(head_tags)
            head, metrics = metrics[:room], metrics[room:]
            self._client.log_batch(run_id, metrics=head, tags=head_tags)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(k, str(v)[:PARAM_LIMIT]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._client.log_batch(run_id, params=items[i:i + 100])


def _metric_rows(epochs: Sequence[tuple[int, dict[str, Any], int]]) -> list:
    return [Metric(k, float(v), ts, step) for step, metrics, ts in epochs for k, v in metrics.items() if is_number(v)]


@contextlib.contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API pointed at ``uri`` for the duration, then back where it was (``set_tracking_uri`` also
    sets ``MLFLOW_TRACKING_URI``, which later calls in this process would silently prefer)."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None: unset again


def _now() -> int:
    import time

    return int(time.time() * 1000)

