"""search.record.tracking against a real MLflow SQLite store in a temp dir: the front's marks, the description, dataset
inputs, the experiment's kind, description and views, records made before the size metric's rename, and which
store a command opens when none is named (MLflow's MLFLOW_TRACKING_URI first)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.cli import main
from search.front.state import compute_front
from search.front.summary import experiment_note, front_view, searches_view
from search.record.datasets import describe
from search.record.tracking import URI_VARIABLES, Tracker, resolve_uri, store_line, uri_and_source
from search.spec.schema import DataSection, Objective
from search.trial.candidate import load_section

OBJECTIVES = [Objective(metric="val_accuracy", mode="max", reference=0.0),
              Objective(metric="param_count", mode="min", reference=1e6, log=True)]


def tracker(tmp_path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")


def finished(t: Tracker, parent: str, trial: str, metrics: dict) -> str:
    run = t.start_candidate(parent, trial, trial, {})
    t.log_metrics(run, metrics, step=1)
    t.finish_candidate(run, "FINISHED", {"budget_done": "true"})
    return run


def test_front_marks_are_tags_and_metrics_and_latest_wins(tmp_path):
    t = tracker(tmp_path)
    parent = t.start_search("s-1", {}, "name: s\n")
    a = finished(t, parent, "a", {"val_accuracy": 0.9, "param_count": 5000})
    b = finished(t, parent, "b", {"val_accuracy": 0.5, "param_count": 1000})
    t.log_front(parent, [a], [a, b], a, [], 0.5, step=2, description="## front\n")
    t.log_front(parent, [a, b], [a, b], b, [], 0.7, step=3)  # the next refresh: b joined and is the knee
    runs = {r.info.run_id: r.data for r in t.candidates(parent)}
    assert {k: (d.metrics["pareto"], d.metrics["knee"], d.tags["pareto"], d.tags["knee"]) for k, d in runs.items()} \
        == {a: (1.0, 0.0, "true", "false"), b: (1.0, 1.0, "true", "true")}
    assert t.run(parent).data.tags["mlflow.note.content"] == "## front\n"
    # the marks at step 0 (MLflow shows one step-0 value as a value, not a lone dot), the newest one latest
    assert [(m.step, m.value) for m in t.metric_history(a, "knee")] == [(0, 1.0), (0, 0.0)]
    history = t.metric_history(b, "knee")
    assert [m.step for m in history] == [0, 0] and history[0].timestamp < history[1].timestamp
    assert [(m.step, m.value) for m in t.metric_history(parent, "hypervolume")] == [(2, 0.5), (3, 0.7)]


def test_runs_from_before_the_rename_still_count(tmp_path):
    t = tracker(tmp_path)
    parent = t.start_search("old-1", {}, "name: old\n")
    finished(t, parent, "a", {"val_accuracy": 0.9, "params": 5000})  # what searches logged before param_count
    state = t.search_state(parent, OBJECTIVES)
    assert state.finished["a"].metrics["param_count"] == 5000
    assert compute_front(list(state.finished.values()), OBJECTIVES).members[0].trial_id == "a"


def test_experiment_says_what_it_holds_and_where_its_searches_are(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("made-elsewhere", artifact_location=(tmp_path / "a").as_uri())
    mine = client.create_experiment("described", artifact_location=(tmp_path / "b").as_uri())
    client.set_experiment_tag(mine, "mlflow.note.content", "my own notes")
    for name in ("new", "made-elsewhere", "described"):
        t = Tracker(uri, name)
        tags = t.experiment_tags()
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        assert json.loads(tags["mlflow.sharedViewState.emule-searches"]) == searches_view()
        assert tags["mlflow.note.content"] == (experiment_note(t.experiment_id) if name != "described"
                                               else "my own notes")  # someone's own description stays
    # a tracker on a described experiment writes nothing
    t = Tracker(uri, "new")
    calls = []
    t._client.set_experiment_tag = lambda *a: calls.append(a)
    t._describe_experiment(t.experiment_tags())
    assert calls == []


def test_front_view_is_saved_on_the_experiment(tmp_path):
    t = tracker(tmp_path)
    parent = t.start_search("s-1", {}, "name: s\n")
    t.save_front_view(parent, OBJECTIVES, ["width"])
    view = json.loads(t.experiment_tags()[f"mlflow.sharedViewState.emule-front-{parent}"])
    assert view == front_view(parent, OBJECTIVES, ["width"])


def test_dataset_input_names_digest_source_and_schema(tmp_path):
    section = DataSection(name="gunpoint")
    dataset = load_section(section)
    record = describe(dataset, section)
    assert record == describe(load_section(DataSection(name="gunpoint")), section)  # same data, same digest
    t = tracker(tmp_path)
    parent = t.start_search("s-1", {}, "name: s\n")
    t.log_dataset([parent], record)
    (item,) = t.run(parent).inputs.dataset_inputs
    assert (item.dataset.name, item.dataset.digest, item.dataset.source_type) == ("gunpoint", record.digest, "code")
    assert item.tags[0].key == "mlflow.data.context" and item.tags[0].value == "training"
    schema = json.loads(item.dataset.schema)["mlflow_colspec"]
    assert [(c["name"], c["tensor-spec"]["shape"]) for c in schema] == [
        ("position", [-1, 1, 150]), ("label", [-1])]
    assert json.loads(item.dataset.profile)["test"] == len(dataset.test)


def test_reads_go_through_the_tracker_against_the_real_store(tmp_path):
    t = tracker(tmp_path)
    parent = t.start_search("s-1", {"search.trials": 2}, "name: s\n")
    a = finished(t, parent, "a", {"val_accuracy": 0.9, "param_count": 5000})
    t.log_metrics(a, {"val_accuracy": 0.95}, step=2)
    t.stop_candidate(b := t.start_candidate(parent, "b", "b", {}), "SIGTERM")
    assert not hasattr(t, "client")  # MLflow is reached through the Tracker's methods only
    assert [r.info.run_id for r in t.searches()] == [parent]
    assert {r.info.run_id for r in t.runs("tags.`emule.trial_id` = 'a'")} == {a}
    assert len(t.runs()) == 3  # the parent and its two candidates
    assert (t.run_status(a), t.run_status(b)) == ("FINISHED", "KILLED")
    assert t.run(b).data.tags["emule.stop_reason"] == "SIGTERM"
    assert [(m.step, m.value) for m in t.metric_history(a, "val_accuracy")] == [(1, 0.9), (2, 0.95)]
    assert t.epochs_logged(a) == 2 and t.search_param(parent, "search.trials") == "2"
    assert t.artifact_paths(parent) == ["spec.yaml"]
    assert t.download_artifact(parent, "spec.yaml", tmp_path / "dl").read_text() == "name: s\n"
    assert t.spec_text(parent) == "name: s\n"


def test_a_tracker_pickled_before_its_client_became_private_still_works(tmp_path):
    # Tune pickles the search callback, Tracker included, into its experiment state; a search started by an
    # earlier version resumes with the Tracker it saved then
    t = tracker(tmp_path)
    parent = t.start_search("s-1", {}, "name: s\n")
    state = dict(t.__dict__)
    state["client"] = state.pop("_client")
    old = Tracker.__new__(Tracker)
    old.__setstate__(state)
    assert old.run_status(parent) == "RUNNING" and not hasattr(old, "client")
    assert pickle.loads(pickle.dumps(old)).search_name(parent) == "s-1"


def test_finish_candidate_writes_the_last_epochs_with_the_tags_in_one_call(tmp_path):
    t = tracker(tmp_path)
    parent = t.start_search("s-1", {}, "name: s\n")
    run = t.start_candidate(parent, "a", "a", {})
    calls = []
    log_batch = t._client.log_batch
    t._client.log_batch = lambda *a, **k: calls.append(k) or log_batch(*a, **k)
    # 1200 metrics, more than one batch holds: the tags ride in the last (in MLflow, they say the record is whole)
    epochs = [(step, {f"m{i}": float(step) for i in range(12)}, 1000 * step) for step in range(1, 101)]
    t.finish_candidate(run, "FINISHED", {"budget_done": "true"}, {"model": {}}, epochs)
    assert [(len(c["metrics"]), len(c.get("tags", []))) for c in calls] == [(1000, 0), (200, 1)]
    data = t.run(run)
    assert data.info.status == "FINISHED" and data.data.tags["budget_done"] == "true"
    assert [m.step for m in t.metric_history(run, "m0")] == list(range(1, 101))
    assert t.candidate(run) == {"model": {}}


@pytest.fixture
def no_store_variables(monkeypatch):
    for variable in URI_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def test_the_store_named_first_wins_mlflow_variable_before_ours(tmp_path, monkeypatch, no_store_variables):
    monkeypatch.chdir(tmp_path)
    default = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    assert uri_and_source(None) == (default, "default")
    monkeypatch.setenv("EMULE_TRACKING_URI", "sqlite:////ours/mlflow.db")
    assert uri_and_source(None) == ("sqlite:////ours/mlflow.db", "EMULE_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert uri_and_source(None) == ("http://mlflow:5000", "MLFLOW_TRACKING_URI")  # MLflow's own convention first
    assert uri_and_source("sqlite:////given.db") == ("sqlite:////given.db", "given")  # a spec's or a flag's above all
    assert resolve_uri(None) == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # set but empty: as if unset, as MLflow reads it
    assert resolve_uri(None) == "sqlite:////ours/mlflow.db"
    assert store_line("http://mlflow:5000", "MLFLOW_TRACKING_URI") == \
        "MLflow store: http://mlflow:5000 (from MLFLOW_TRACKING_URI)"
    assert store_line("sqlite:////given.db", "given") == "MLflow store: sqlite:////given.db"
    line = store_line(default, "default")
    assert line.startswith(f"MLflow store: {default} (the default") and "MLFLOW_TRACKING_URI" in line


SPEC = """name: env
data: {name: gunpoint, cv_folds: holdout}
objectives:
  - {metric: val_accuracy, mode: max, reference: 0.0}
  - {metric: param_count, mode: min, reference: 1.0e+6, log: true}
space: {width: [16]}
"""


def test_commands_open_the_store_mlflow_tracking_uri_names(tmp_path, monkeypatch, capsys, no_store_variables):
    """`emule pareto` with no --tracking-uri, run from a folder that holds no store: MLFLOW_TRACKING_URI names the
    store it reads (before EMULE_TRACKING_URI), and nothing is created where it runs."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    t = Tracker(uri, "emule")
    parent = t.start_search("env-1", {"data.cv_folds": "holdout"}, SPEC)
    finished(t, parent, "a", {"val_accuracy": 0.9, "param_count": 5000})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("EMULE_TRACKING_URI", f"sqlite:///{tmp_path / 'ours.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["pareto", "env-1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("search env-1: 1 on the Pareto front") and f"--backend-store-uri {uri}" in out
    assert not any(elsewhere.iterdir()) and not (tmp_path / "ours.db").exists()
