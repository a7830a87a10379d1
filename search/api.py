"""EMuLe's search from Python: load a spec, run or resume a search, open a finished one, export and train its
candidates. ``search/__init__.py`` re-exports what is here; the rooms below (``search.spec``, ``search.trial``,
``search.front``, ``search.record``, ``search.driver``, ``search.delivery``) are internal.

A search's outcome is a ``Search``: read back from MLflow, so the one a search returns and the one ``open_search``
returns later, from any folder, are the same.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from search.delivery import data_curve
from search.delivery.export import export as export_front
from search.delivery.export import retrain
from search.driver import resume, runner
from search.driver.checks import load_spec as load_spec_file
from search.driver.checks import parse_spec
from search.driver.progress import STATUS_EVERY
from search.front import yardstick
from search.front.state import Record
from search.front.summary import front_view_key, run_link, ui_address, view_link
from search.record.searches import load_search
from search.record.tracking import Tracker, redact
from search.spec.results import FRONT_MARK, KNEE_MARK
from search.spec.schema import DEFAULT_EXPERIMENT, Spec, SpecError
from search.spec.space import typed_params

__all__ = ["Search", "SpecError", "export", "load_spec", "open_search", "resume_search", "run_search", "train"]


def load_spec(source: str | Path | Mapping[str, Any], base_dir: str | Path | None = None) -> Spec:
    """A spec, fully checked (fields, names, the space against the data) before any compute.

    Args:
        source: a YAML file (``spaces/quickstart.yaml``) or the same as a dict.
        base_dir: the folder relative paths in a dict are read from (a file's own folder for a file).

    Raises:
        search.spec.schema.SpecError: one line naming the field, the value and what is accepted.
    """
    if isinstance(source, Mapping):
        return parse_spec(dict(source), base_dir=Path(base_dir) if base_dir is not None else None)
    return load_spec_file(source)


@dataclass(frozen=True)
class Search:
    """A search as MLflow records it: every finished candidate, its front, its baselines and where to look.

    Attributes:
        name: the search's name (``emule pareto NAME``, ``open_search(NAME)``).
        status: ``complete``, ``interrupted``, ``failed`` or ``running``.
        candidates: one row per candidate that trained to its full budget: ``trial_id``, ``run_id``, ``on_front``,
            ``knee``, every metric it reported, and its parameters as ``param.<name>`` columns.
        baselines: classical baselines on the same folds (``{"rocket": {"test_accuracy": ..., ...}}``).
        spec: the spec as the search ran it.
        parent_run_id: the search's MLflow parent run; each candidate's ``run_id`` is a child of it.
        tracking_uri: the MLflow store, as given (with any credentials: it is left out of ``repr``), and
            ``experiment`` its experiment.
        mlflow_url: the search's page in MLflow's UI (after ``mlflow ui --backend-store-uri`` for a local store);
            ``front_url`` its front in MLflow's runs table.
        stop_reason: the stop signal that interrupted it (``SIGINT``, ``SIGTERM``), if one did.
    """

    name: str
    status: str
    candidates: pd.DataFrame = field(repr=False)
    baselines: dict[str, dict] = field(repr=False)
    spec: Spec = field(repr=False)
    parent_run_id: str
    tracking_uri: str = field(repr=False)
    experiment: str
    mlflow_url: str
    front_url: str = field(repr=False)
    stop_reason: str | None = None

    @property
    def front(self) -> pd.DataFrame:
        """The Pareto front's members, best first on the first objective."""
        first = self.spec.objectives[0]
        front = self.candidates[self.candidates["on_front"]]
        return front.sort_values(first.metric, ascending=first.mode == "min", kind="stable")

    @property
    def best(self) -> pd.Series | None:
        """The candidate with the best validation accuracy (fewer parameters break ties), None before any."""
        return self._row(yardstick.best_by_validation(self._records()))

    @property
    def knee(self) -> pd.Series | None:
        """The front's balanced compromise (the member farthest from the line between its extremes)."""
        knee = self.candidates[self.candidates["knee"]]
        return None if knee.empty else knee.iloc[0]

    def _records(self) -> list[Record]:
        metrics = [c for c in self.candidates.columns if c not in _FIXED and not c.startswith("param.")]
        return [Record(row.trial_id, row.run_id, {m: getattr(row, m) for m in metrics if pd.notna(getattr(row, m))})
                for row in self.candidates.itertuples(index=False)]

    def _row(self, record: Record | None) -> pd.Series | None:
        if record is None:
            return None
        return self.candidates[self.candidates["trial_id"] == record.trial_id].iloc[0]


_FIXED = ("trial_id", "run_id", "on_front", "knee")


def open_search(name: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> Search:
    """A finished (or stopped) search, read from MLflow: from any folder, after its data moved.

    Args:
        name: the search's name, or its spec's name for the newest search of that spec.
        tracking_uri: the MLflow store; default as the CLI: ``MLFLOW_TRACKING_URI``, ``EMULE_TRACKING_URI``, then
            ``./mlflow.db``.
        experiment: the MLflow experiment (the spec's ``tracking.experiment``).
    """
    return _read(Tracker(tracking_uri, experiment), name)


def run_search(spec: Spec | str | Path | Mapping[str, Any], *, name: str | None = None, extend: str | None = None,
               num_cpus: int | None = None, ray_address: str | None = None, out: IO[str] | None = None,
               quiet: bool = False, status_every: float | None = STATUS_EVERY) -> Search:
    """Run a search to its end on Ray (a local instance unless ``ray_address``), record it in MLflow, and return
    it. A spec's ``data_curve:`` section runs once the search completes.

    Args:
        spec: a ``Spec`` (``load_spec``), a YAML file or a dict.
        name: the search's name (default: the spec's name and the time).
        extend: a finished search to add the spec's ``search.trials`` more candidates to (one front).
        num_cpus: CPUs of the local Ray instance (default: all).
        ray_address: a running Ray cluster's address, e.g. ``ray://head:10001`` or ``auto``.
        out: where progress lines go (default: standard output); ``quiet`` keeps only the start and end lines.
        status_every: seconds between status lines on the running trials (None: none).

    A stop signal (Ctrl-C, SIGTERM) ends it early, every finished candidate kept: ``resume_search`` continues it.
    """
    text = Path(spec).read_text() if isinstance(spec, (str, Path)) else None
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    out = out or sys.stdout
    ended = runner.run_search(spec, spec_text=text, name=name, out=out, ray_address=ray_address, num_cpus=num_cpus,
                              extend=extend, status_every=status_every, quiet=quiet)
    if spec.data_curve is not None and ended.status == "complete":
        data_curve.after_search(spec, ended.name, out)
    return _read(Tracker(spec.tracking.uri, spec.tracking.experiment), ended.name)


def resume_search(name: str, *, storage: str | None = None, num_cpus: int | None = None,
                  ray_address: str | None = None, out: IO[str] | None = None, quiet: bool = False,
                  status_every: float | None = STATUS_EVERY) -> Search:
    """Continue a search whose driver stopped (killed, crashed, interrupted): finished candidates are kept, the
    rest run. ``storage``: where the search keeps its state, when not the spec's default (``emule_runs``)."""
    ended = resume.resume_search(name, storage=storage, out=out or sys.stdout, ray_address=ray_address,
                                 num_cpus=num_cpus, status_every=status_every, quiet=quiet)
    return _read(Tracker(ended.tracking_uri, ended.experiment_name), ended.name)


def export(search: Search | str, out: str | Path, how: str = "front", limits: Mapping[str, float] | None = None,
           tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> list[Path]:
    """Write chosen candidates as YAML files (model, data and training, and where each came from) into ``out``.

    Args:
        search: a ``Search`` or a search's name (then ``tracking_uri`` / ``experiment`` say where it is).
        how: ``front`` (every member), ``knee``, or ``budget``: the best member by the first objective within
            ``limits`` (metric name -> the most it may be, e.g. param_count -> 1e5; ``emule export --select
            budget --max-params``).
    """
    if isinstance(search, Search):
        tracking_uri, experiment, search = search.tracking_uri, search.experiment, search.name
    return export_front(Tracker(tracking_uri, experiment), search, Path(out), how,
                        dict(limits) if limits is not None else None)


def train(candidate: str | Path, weights: str | Path, device: str = "cpu",
          out: IO[str] | None = None) -> dict[str, float]:
    """Train an exported candidate (``export``) again from scratch, as the search fit it; save its weights to
    ``weights`` (``search.trial.candidate.load_weights`` or ``emule_models`` load them) and return its size, training
    rows and test accuracy. ``out``: where its progress lines go (default: standard output)."""
    out = out or sys.stdout
    return retrain(Path(candidate), Path(weights), device=device, log=lambda line: print(line, file=out, flush=True))


def _read(tracker: Tracker, name: str) -> Search:
    record = load_search(tracker, name)
    front = record.front
    members = {r.trial_id for r in front.members}
    rows = []
    for r in front.members + front.others:
        row: dict[str, Any] = {"trial_id": r.trial_id, "run_id": r.run_id, "on_front": r.trial_id in members,
                               "knee": front.knee is not None and r.trial_id == front.knee.trial_id}
        row.update({k: v for k, v in r.metrics.items() if k not in (FRONT_MARK, KNEE_MARK)})
        row.update({f"param.{k}": v for k, v in sorted(typed_params(record.spec, r.params).items())})
        rows.append(row)
    candidates = pd.DataFrame(rows, columns=None if rows else list(_FIXED))
    # a parameter only some candidates have (an option of one attention variant) stays an integer where it is one
    params = [c for c in candidates.columns if c.startswith("param.")]
    candidates[params] = candidates[params].convert_dtypes()
    address, experiment_id = ui_address(redact(tracker.uri)), tracker.experiment_id
    status, stop_reason = tracker.search_end(record.parent_id)
    return Search(record.name, status, candidates, tracker.baselines(record.parent_id), record.spec,
                  record.parent_id, tracker.uri, tracker.experiment,
                  address + run_link(experiment_id, record.parent_id),
                  address + view_link(experiment_id, front_view_key(record.parent_id)), stop_reason)
