"""A small in-memory stand-in for ``search.record.tracking.Tracker``, for unit tests of the driver's own logic (the
search callback, sync's repair): it keeps runs as plain dicts and logs every call, so a test states exactly which
runs were created, ended or marked and with which tags. The real Tracker is tested against a real MLflow store
(test_tracking.py, the end-to-end tests)."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from search.driver.callbacks import SearchCallback
from search.driver.checks import parse_spec
from search.front.state import SearchState
from search.spec.results import TRIAL_TAG
from search.spec.schema import Spec
from search.trial.candidate import spec_dataset

PARENT = "parent-run"
# what every trial measures before training (rides along in every result) and where it ran
STATIC = {"param_count": 1500, "flops": 2.0e4, "latency_ms": 0.3, "latency_train_batch_ms": 1.2,
          "peak_memory_bytes": 4096, "serve_memory_bytes": 1024}
WHERE = {"node_id": "node-a", "device": "cpu", "gpu_ids": ""}


def data_shape(spec: Spec) -> tuple[tuple, int]:
    """The spec's data as the search callback takes it: its modalities and its number of classes."""
    dataset = spec_dataset(spec)
    return dataset.modalities, len(dataset.classes)


def callback(spec: Spec, shape: tuple[tuple, int], tracker: FakeTracker) -> SearchCallback:
    """The search's real callback on the fake tracker, printing into a buffer."""
    return SearchCallback(spec, tracker, PARENT, "cb-1", *shape, target=4, status_every=None, out=io.StringIO())


def unit_spec(tmp) -> Spec:
    """A small spec (OSULeaf, holdout, 2 epochs, 4 trials) whose stores would lie under ``tmp``."""
    return parse_spec({
        "name": "cb",
        "data": {"name": "osuleaf", "cv_folds": "holdout"},
        "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"depth": 1, "heads": 1, "patch_len": 16, "width": [16, 32]},
        "training": {"epochs": 2},
        "search": {"sampler": "random", "trials": 4, "concurrency": 1, "seed": 0, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "cb"},
    })


def trial(trial_id: str, status: str = "RUNNING", last_result: dict | None = None, error_file: str = ""):
    """What the callback reads of a Tune trial."""
    return SimpleNamespace(trial_id=trial_id, config={"depth": 1, "width": 16}, status=status,
                           last_result=last_result, error_file=error_file)


class FakeTracker:
    uri = "sqlite:///fake/mlflow.db"
    experiment_id = "1"

    def __init__(self, fail: set[str] | None = None):
        self.runs: dict[str, dict[str, Any]] = {}  # run id -> trial, status, tags, metrics {key: [(step, value)]}
        self.calls: list[tuple] = []  # (method, *arguments) in call order
        self.fail = set(fail or ())  # methods that raise, as an unreachable store would

    # --- test helpers ---
    def add_run(self, trial_id: str, status: str = "RUNNING", epochs: int = 0) -> str:
        """A run as an earlier driver left it, with ``epochs`` values of val_accuracy logged."""
        run_id = f"run-{trial_id}"
        self.runs[run_id] = {"trial": trial_id, "status": status, "tags": {TRIAL_TAG: trial_id},
                             "metrics": {"val_accuracy": [(e, 0.5) for e in range(1, epochs + 1)]}}
        return run_id

    def called(self, method: str) -> list[tuple]:
        return [c[1:] for c in self.calls if c[0] == method]

    def steps(self, run_id: str, metric: str) -> list[int]:
        return [step for step, _ in self.runs[run_id]["metrics"].get(metric, [])]

    def _call(self, method: str, *args) -> None:
        self.calls.append((method, *args))
        if method in self.fail:
            raise ConnectionError(f"{method}: MLflow unreachable")

    # --- the Tracker methods the callback and sync use ---
    def search_state(self, parent_id: str, objectives) -> SearchState:
        self._call("search_state", parent_id)
        return SearchState(runs={r["trial"]: run_id for run_id, r in self.runs.items()})

    def start_candidate(self, parent_id: str, trial_id: str, name: str, params: dict | None = None) -> str:
        self._call("start_candidate", parent_id, trial_id, name, params)
        run_id = f"run-{trial_id}"
        self.runs[run_id] = {"trial": trial_id, "status": "RUNNING", "tags": {TRIAL_TAG: trial_id}, "metrics": {}}
        return run_id

    def log_params(self, run_id: str, params: dict) -> None:
        self._call("log_params", run_id, dict(params))

    def log_candidate(self, run_id: str, candidate: dict) -> None:
        self._call("log_candidate", run_id)

    def log_dataset(self, run_ids, record, context: str = "training") -> None:
        self._call("log_dataset", list(run_ids))

    def reopen(self, run_id: str) -> None:
        self._call("reopen", run_id)
        self.runs[run_id]["status"] = "RUNNING"

    def log_epochs(self, run_id: str, epochs) -> None:
        self._call("log_epochs", run_id, [(step, dict(metrics)) for step, metrics, _ in epochs])
        for step, metrics, _ in epochs:
            for key, value in metrics.items():
                self.runs[run_id]["metrics"].setdefault(key, []).append((step, value))

    def finish_candidate(self, run_id: str, status: str, tags: dict, candidate: dict | None = None,
                         epochs=(), end_ms=None) -> None:
        if epochs:  # written with the closing call: recorded as the epochs they are
            self.log_epochs(run_id, epochs)
        self._call("finish_candidate", run_id, status, dict(tags), candidate is not None)
        self.runs[run_id]["status"] = status
        self.runs[run_id]["tags"].update(tags)

    def stop_candidate(self, run_id: str, reason: str) -> None:
        self._call("stop_candidate", run_id, reason)
        self.runs[run_id]["status"] = "KILLED"

    def discard_orphan(self, run_id: str) -> None:
        self._call("discard_orphan", run_id)
        self.runs[run_id]["status"] = "DELETED"

    def candidates(self, parent_id: str) -> list:
        self._call("candidates", parent_id)
        return [SimpleNamespace(info=SimpleNamespace(run_id=run_id, status=r["status"]),
                                data=SimpleNamespace(tags=dict(r["tags"])))
                for run_id, r in self.runs.items() if r["status"] != "DELETED"]

    def run_status(self, run_id: str) -> str:
        self._call("run_status", run_id)
        return self.runs[run_id]["status"]

    def epochs_logged(self, run_id: str, metric: str = "val_accuracy") -> int:
        self._call("epochs_logged", run_id)
        return len(self.runs[run_id]["metrics"].get(metric, []))

    def log_front(self, parent_id, front_run_ids, marked_run_ids, knee_run_id, artifacts, hypervolume, step,
                  description=None) -> None:
        self._call("log_front", parent_id, sorted(front_run_ids), knee_run_id)

    def log_search_metrics(self, parent_id: str, metrics: dict, step: int) -> None:
        self._call("log_search_metrics", parent_id, dict(metrics), step)

    def finish_search(self, parent_id: str, status: str, reason: str | None = None) -> None:
        self._call("finish_search", parent_id, status, reason)
