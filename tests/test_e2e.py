"""End to end with real parts: a real local Ray, Optuna, an MLflow store in a temp dir, real OSULeaf data."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from emule_models import ModelConfig, build_model
from emule_models.cost import count_parameters
from search.delivery.export import export, retrain
from search.driver.checks import parse_spec
from search.driver.runner import run_search
from search.front.pareto import dominates, to_minimize
from search.front.summary import experiment_link, front_view_key, view_link
from search.record.searches import load_search
from search.record.tracking import PARENT_TAG, Tracker
from search.trial.candidate import load_weights

pytestmark = pytest.mark.slow

TRIALS = 6


@pytest.fixture(scope="module")
def finished_search(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    spec = parse_spec({
        "name": "tiny",
        "data": {"name": "osuleaf"},
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True},
                       {"metric": "flops", "mode": "min", "reference": 1e9, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 2}, "width": [16, 32],
                  "heads": [1, 2], "patch_len": [16, 32], "data_fraction": {"low": 0.3, "high": 1.0},
                  "lr": {"low": 1e-3, "high": 3e-3, "log": True}, "pretrain_epochs": [0, 1]},
        "training": {"epochs": 2, "batch_size": 32},
        "search": {"sampler": "random", "trials": TRIALS, "concurrency": 2, "seed": 1, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "e2e"},
    })
    out, home = io.StringIO(), os.getcwd()
    os.chdir(tmp)  # the pretrained-weights cache (.emule/pretrain) lands here, not in the checkout
    try:
        result = run_search(spec, name="tiny-run", out=out)
    finally:
        os.chdir(home)
    return spec, result, Tracker(spec.tracking.uri, "e2e"), tmp, out.getvalue()


def test_every_trial_logged_once_under_the_parent(finished_search):
    spec, result, tracker, _, _ = finished_search
    assert result.status == "complete" and result.finished == TRIALS
    runs = tracker.runs(f"tags.`{PARENT_TAG}` = '{result.parent_run_id}'")
    assert len(runs) == TRIALS
    assert len({r.data.tags["emule.trial_id"] for r in runs}) == TRIALS
    for r in runs:
        assert r.info.status == "FINISHED"
        assert {"val_accuracy", "test_accuracy", "param_count", "flops", "train_time_s",
                "latency_ms"} <= set(r.data.metrics)
        history = tracker.metric_history(r.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [1, 2]  # per-epoch validation metrics
        # measured once, logged once at step 0 (MLflow charts a single step-0 value as a bar with its value)
        for once in ("param_count", "flops", "latency_ms", "peak_memory_bytes", "test_accuracy", "refit_compute"):
            assert [m.step for m in tracker.metric_history(r.info.run_id, once)] == [0]
        assert "node_id" not in r.data.tags and r.data.tags["device"] == "cpu"  # one machine: no node, no GPUs
        trial = r.data.tags["emule.trial_id"]
        cand = tracker.candidate(r.info.run_id)["model"]
        assert r.info.run_name.startswith(f"{trial} {cand['attention']} d{cand['depth']} w{cand['width']}")


def test_front_is_exactly_the_non_dominated_set(finished_search):
    spec, result, tracker, _, _ = finished_search
    runs = tracker.candidates(result.parent_run_id)
    points = {r.info.run_id: to_minimize(np.array([[r.data.metrics[m] for m in spec.metrics]]), spec.modes,
                                         [o.log for o in spec.objectives])[0] for r in runs}
    front = [r.info.run_id for r in runs if r.data.tags["pareto"] == "true"]
    rest = [r.info.run_id for r in runs if r.data.tags["pareto"] == "false"]
    assert front and len(front) + len(rest) == TRIALS
    # the same marks as 0/1 metrics, which MLflow's charts can colour and filter by
    assert sorted(r.info.run_id for r in runs if r.data.metrics["pareto"] == 1.0) == sorted(front)
    knees = [r.info.run_id for r in runs if r.data.metrics["knee"] == 1.0]
    assert knees == [r.info.run_id for r in runs if r.data.tags["knee"] == "true"] == [result.front.knee.run_id]
    for a in front:
        assert not any(dominates(points[b], points[a]) for b in points)
    for a in rest:
        assert any(dominates(points[b], points[a]) for b in front)


def test_parent_run_has_front_artifacts_and_hypervolume(finished_search, tmp_path):
    spec, result, tracker, _, out = finished_search
    parent = tracker.run(result.parent_run_id)
    assert parent.data.tags["emule.status"] == "complete"
    assert parent.data.metrics["hypervolume"] == pytest.approx(result.front.hypervolume)
    assert parent.data.params["search.sampler"] == "random"
    names = set(tracker.artifact_paths(result.parent_run_id))
    assert {"spec.yaml", "pareto.parquet", "pareto.csv", "pareto.png", "pareto.html"} <= names
    table = pq.read_table(tracker.download_artifact(result.parent_run_id, "pareto.parquet", tmp_path))
    assert table.num_rows == len(result.front.members)
    assert set(table.column("run_id").to_pylist()) == {r.run_id for r in result.front.members}
    # trial ids are hex strings; one like "069081e4" reads as a number unless the column's type is given
    csv = pacsv.read_csv(str(tracker.download_artifact(result.parent_run_id, "pareto.csv", tmp_path)),
                         convert_options=pacsv.ConvertOptions(column_types={"trial_id": pa.string()}))
    assert csv.column("trial_id").to_pylist() == table.column("trial_id").to_pylist()
    html = tracker.download_artifact(result.parent_run_id, "pareto.html", tmp_path).read_text()
    assert all(r.trial_id in html for r in result.front.members)
    assert f"{TRIALS}/{TRIALS} ended ({TRIALS} full" in out  # progress lines


def test_parent_run_describes_the_front_and_the_end_links_to_it(finished_search):
    spec, result, tracker, _, out = finished_search
    note = tracker.run(result.parent_run_id).data.tags["mlflow.note.content"]
    exp = tracker.experiment_id
    for r in result.front.members:  # each front member's trial id, linked to its run
        assert f"[{r.trial_id}](#/experiments/{exp}/runs/{r.run_id}?workflowType=machine_learning)" in note
    assert f"`{result.front.knee.trial_id}`" in note and "reference point val_accuracy = 0" in note
    assert "Best by validation" in note  # where "honest accuracy" stands
    link = view_link(exp, front_view_key(result.parent_run_id))
    assert link in note and f"http://127.0.0.1:5000/{link}" in out.splitlines()[-1]
    assert note.startswith("Best ")  # the verdict first (no baselines in this search)
    tags = tracker.experiment_tags()
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert json.loads(tags[f"mlflow.sharedViewState.{front_view_key(result.parent_run_id)}"])["selectedColumns"][:3] \
        == [f"metrics.`{m}`" for m in spec.metrics]
    assert experiment_link(exp) in tags["mlflow.note.content"] and experiment_link(exp) in out


def test_dataset_is_an_input_of_every_run(finished_search):
    spec, result, tracker, _, _ = finished_search
    runs = [tracker.run(result.parent_run_id)] + tracker.candidates(result.parent_run_id)
    seen = {(i.dataset.name, i.dataset.digest, i.dataset.source_type) for r in runs for i in r.inputs.dataset_inputs}
    assert len(seen) == 1 and next(iter(seen))[:1] == ("osuleaf",)
    schema = json.loads(runs[0].inputs.dataset_inputs[0].dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == ["outline", "silhouette", "label"]


def test_pretraining_is_counted_and_cached(finished_search):
    from emule_models.cost import training_flops
    from search.trial.candidate import Candidate, spec_dataset

    spec, result, tracker, tmp, _ = finished_search
    state = tracker.search_state(result.parent_run_id, spec.objectives)
    dataset = spec_dataset(spec)
    pretrained = 0
    for run in state.finished.values():
        m = run.metrics
        cand = Candidate.from_dict(tracker.candidate(run.run_id))
        assert (m.get("pretrain_samples", 0) > 0) == (cand.training.pretrain_epochs > 0)
        # every fold model pretrained on its own fit rows: one epoch each, so 4/5 of the pool per fold
        if cand.training.pretrain_epochs:
            pretrained += 1
            assert m["pretrain_samples"] == (spec.data.cv_folds - 1) * len(dataset.pool)
        seen = m["samples_seen"] + m.get("pretrain_samples", 0)
        assert m["training_compute"] == pytest.approx(training_flops(cand.model, seen), rel=1e-6)
    assert pretrained and len(list((tmp / ".emule" / "pretrain").glob("*.pt"))) >= pretrained


def test_export_then_train_reproduces_the_config(finished_search, tmp_path):
    spec, result, tracker, _, _ = finished_search
    paths = export(tracker, "tiny-run", tmp_path / "exports", "knee")
    assert len(paths) == 1
    doc = yaml.safe_load(paths[0].read_text())
    cfg = ModelConfig.from_dict(doc["model"])
    assert count_parameters(build_model(cfg)) == int(doc["source"]["metrics"]["param_count"])
    logs = []
    metrics = retrain(paths[0], tmp_path / "w.pt", log=logs.append)
    assert metrics["param_count"] == int(doc["source"]["metrics"]["param_count"])
    model = load_weights(tmp_path / "w.pt")
    assert model.cfg == cfg
    assert len(logs) == 1 + doc["training"]["epochs"]


def test_pareto_lookup_by_spec_name(finished_search):
    spec, result, tracker, _, _ = finished_search
    record = load_search(tracker, "tiny")
    assert record.name == "tiny-run"
    assert {r.run_id for r in record.front.members} == {r.run_id for r in result.front.members}
