"""Honest accuracy, end to end (real Ray, Optuna, MLflow, GunPoint): selection by cross-validation, test accuracy
from a refit on every training row - or from the fold models averaged (``final: fold_ensemble``) -, classical
baselines and the selection gap on the parent run, and the same final model behind `emule train` and ONNX."""

from __future__ import annotations

import io
import json
import os

import pytest
import torch
import yaml

import search
from emule_models import build_model
from emule_models.cost import count_parameters, forward_flops, training_flops
from emule_models.data import load_builtin
from emule_models.ensemble import MeanEnsemble
from search.cli import main
from search.delivery.export import export, retrain
from search.driver.checks import parse_spec
from search.driver.runner import run_search
from search.record.tracking import Tracker
from search.trial.candidate import Candidate, load_weights
from search.trial.validation import selection_folds

pytestmark = pytest.mark.slow

EPOCHS, FOLDS = 3, 3


@pytest.fixture(scope="module")
def searched(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accuracy")
    home = os.getcwd()
    os.chdir(tmp)  # the baselines' cache (.emule/baselines) lands here, not in the checkout
    spec = parse_spec({
        "name": "honest",
        "data": {"name": "gunpoint", "cv_folds": FOLDS},
        "baselines": ["nn_euclidean", "nn_dtw"],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"depth": 1, "width": [16, 32], "heads": 2, "patch_len": [15, 30]},
        "training": {"epochs": EPOCHS, "batch_size": 16},
        "search": {"sampler": "random", "trials": 3, "concurrency": 2, "seed": 0, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "honest"},
    })
    out = io.StringIO()
    try:
        result = run_search(spec, name="honest-run", out=out)
    finally:
        os.chdir(home)
    assert list((tmp / ".emule" / "baselines").glob("gunpoint-*.json"))  # cached by the search
    return spec, result, Tracker(spec.tracking.uri, "honest"), out.getvalue()


def test_trials_report_the_fold_mean_and_count_every_fold(searched):
    spec, result, tracker, _ = searched
    assert result.status == "complete" and result.finished == 3
    data = load_builtin("gunpoint")
    fold_rows = sum(len(fit) for fit, _ in selection_folds(spec.data, data))
    for run in tracker.candidates(result.parent_run_id):
        m = run.data.metrics
        history = tracker.metric_history(run.info.run_id, "val_accuracy_std")
        assert [h.step for h in history] == list(range(1, EPOCHS + 1))  # every epoch, across the folds
        assert m["samples_seen"] == EPOCHS * fold_rows  # one model per fold, all counted
        cand = Candidate.from_dict(tracker.candidate(run.info.run_id))
        assert m["training_compute"] == pytest.approx(training_flops(cand.model, EPOCHS * fold_rows))
        assert m["train_samples"] == len(data.pool)  # the refit learns from every training row
        assert m["param_count"] == count_parameters(build_model(cand.model))
        assert m["refit_compute"] == pytest.approx(training_flops(cand.model, EPOCHS * len(data.pool)))
        assert 0 <= m["test_accuracy"] <= 1


def test_parent_run_holds_baselines_and_selection_gap(searched, tmp_path):
    spec, result, tracker, out = searched
    parent = tracker.run(result.parent_run_id)
    m = parent.data.metrics
    for name in ("nn_euclidean", "nn_dtw"):
        for key in ("val_accuracy", "test_accuracy", "fit_seconds"):
            assert f"baseline_{name}_{key}" in m
    assert m["baseline_nn_euclidean_test_accuracy"] == pytest.approx(0.913, abs=0.001)  # published 1-NN ED
    assert parent.data.tags["baseline.nn_dtw"] == "1-NN DTW"
    best = max(result.front.members, key=lambda r: r.metrics["val_accuracy"])
    assert m["selection_gap"] == pytest.approx(best.metrics["val_accuracy"] - best.metrics["test_accuracy"])
    recorded = json.loads(open(tracker.download_artifact(result.parent_run_id, "baselines.json",
                                                                 str(tmp_path))).read())
    assert set(recorded) == {"nn_euclidean", "nn_dtw"}
    assert "pareto.png" in set(tracker.artifact_paths(result.parent_run_id))
    tail = out.splitlines()[-8:]  # the final lines: the best candidate beside the baselines, the store, the UI's links
    assert tail[0].startswith("best by validation:") and "3-fold cross-validation" in tail[0]
    assert tail[1].startswith("  baseline 1-NN Euclidean: val_accuracy") and "1-NN DTW" in tail[2]
    assert tail[3] == f"MLflow store: {tracker.uri}"  # named by the spec
    assert tail[4].startswith("look at it in MLflow: mlflow ui --backend-store-uri sqlite:///")


def test_export_records_the_refit_and_train_repeats_it(searched, tmp_path):
    spec, result, tracker, _ = searched
    [path] = export(tracker, "honest-run", tmp_path, "knee")
    doc = yaml.safe_load(path.read_text())
    assert doc["source"]["fit"].startswith("refit on the 50 training rows (train + validation; all of them)")
    assert "3-fold cross-validation" in doc["source"]["fit"]
    torch.set_num_threads(1)  # as in the trial
    again = retrain(path, tmp_path / "w.pt", log=lambda _: None)
    assert again["train_samples"] == 50
    assert again["test_accuracy"] == pytest.approx(doc["source"]["metrics"]["test_accuracy"], abs=0.02)


@pytest.fixture(scope="module")
def ensembled(ray_local, tmp_path_factory):
    """A search whose candidates deploy their fold models (``final: fold_ensemble``), with a baseline over its
    time bound."""
    tmp = tmp_path_factory.mktemp("ensemble")
    home = os.getcwd()
    os.chdir(tmp)
    spec = parse_spec({
        "name": "skip", "data": {"name": "gunpoint", "cv_folds": 2}, "baselines": ["nn_dtw"],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
        "space": {"depth": 1, "width": 16, "heads": 2, "patch_len": 30},
        "training": {"epochs": 2, "final": "fold_ensemble"},
        "data_curve": {"fractions": [0.3, 0.6], "seeds": 1},  # once the search completes
        "search": {"trials": 1, "concurrency": 1, "baseline_seconds": 1e-6, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "skip"},
    })
    out = io.StringIO()
    try:  # through the Python API, which runs the spec's data curve once the search completes (as the CLI does)
        result = search.run_search(spec, name="skip-run", out=out)
    finally:
        os.chdir(home)
    return spec, result, Tracker(spec.tracking.uri, "skip"), out.getvalue()


def test_a_skipped_baseline_does_not_stop_the_search(ensembled):
    spec, result, tracker, out = ensembled
    assert result.status == "complete" and len(result.candidates) == 1
    tags = tracker.run(result.parent_run_id).data.tags
    assert tags["baseline.nn_dtw"].startswith("skipped: 1-NN DTW estimated")
    assert "1-NN DTW (10% window) estimated" in tags["baseline.nn_dtw"]
    assert "  baseline 1-NN DTW: skipped - 1-NN DTW estimated" in out
    assert "selection_gap" in tracker.run(result.parent_run_id).data.metrics


def test_a_fold_ensemble_reports_what_it_serves(ensembled):
    """k models to serve (parameters, FLOPs), no refit to train, the union of the folds' rows learned from."""
    spec, result, tracker, _ = ensembled
    [run] = tracker.candidates(result.parent_run_id)
    m = run.data.metrics
    cand = Candidate.from_dict(tracker.candidate(run.info.run_id))
    assert cand.training.final == "fold_ensemble" and cand.data["cv_folds"] == 2
    assert m["param_count"] == 2 * count_parameters(build_model(cand.model))
    assert m["flops"] == 2 * forward_flops(cand.model)
    assert m["refit_compute"] == 0 and m["train_samples"] == len(load_builtin("gunpoint").pool)
    assert 0 <= m["test_accuracy"] <= 1


def test_a_fold_ensemble_is_exported_trained_and_written_as_onnx(ensembled, tmp_path, capsys):
    """`emule train` trains the k fold models again, as selection did; the weights load back as one ensemble; ONNX
    Runtime matches it."""
    spec, result, tracker, _ = ensembled
    [path] = export(tracker, "skip-run", tmp_path, "knee")
    doc = yaml.safe_load(path.read_text())
    assert doc["source"]["fit"].startswith("the 2 fold models of 2-fold cross-validation, probabilities averaged "
                                           "(no refit)")
    torch.set_num_threads(1)  # as in the trial
    assert main(["train", str(path)]) == 0
    model = load_weights(path.with_suffix(".pt"))
    assert isinstance(model, MeanEnsemble) and len(model.members) == 2
    assert count_parameters(model) == doc["source"]["metrics"]["param_count"]
    again = retrain(path, tmp_path / "w.pt", log=lambda _: None)
    assert again["test_accuracy"] == pytest.approx(doc["source"]["metrics"]["test_accuracy"], abs=0.02)
    capsys.readouterr()
    assert main(["export", str(path), "--format", "onnx"]) == 0
    assert "ONNX Runtime matches torch" in capsys.readouterr().out


@pytest.fixture(scope="module")
def seed_ensembled(ray_local, tmp_path_factory):
    """A search whose candidate deploys two refits from consecutive seeds (``final: seed_ensemble``)."""
    tmp = tmp_path_factory.mktemp("seeds")
    home = os.getcwd()
    os.chdir(tmp)
    spec = parse_spec({
        "name": "seeds", "data": {"name": "gunpoint", "cv_folds": "holdout"}, "baselines": ["nn_euclidean"],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
        "space": {"tokenizer": "lite", "depth": 0, "width": 8, "patch_len": 30},
        "training": {"epochs": 2, "final": "seed_ensemble", "ensemble_seeds": 2},
        "search": {"trials": 1, "concurrency": 1, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "seeds"},
    })
    try:
        result = run_search(spec, name="seeds-run", out=io.StringIO())
    finally:
        os.chdir(home)
    return spec, result, Tracker(spec.tracking.uri, "seeds")


def test_a_seed_ensemble_reports_what_it_serves_and_what_its_refits_cost(seed_ensembled):
    """2 models to serve (parameters, FLOPs); 2 refits on every training row paid and counted."""
    spec, result, tracker = seed_ensembled
    assert result.status == "complete"
    [run] = tracker.candidates(result.parent_run_id)
    m = run.data.metrics
    cand = Candidate.from_dict(tracker.candidate(run.info.run_id))
    assert cand.training.final == "seed_ensemble" and cand.training.ensemble_seeds == 2
    assert m["param_count"] == 2 * count_parameters(build_model(cand.model))
    assert m["flops"] == 2 * forward_flops(cand.model)
    pool = len(load_builtin("gunpoint").pool)
    assert m["train_samples"] == pool and m["refit_compute"] == training_flops(cand.model, 2 * 2 * pool)


def test_a_seed_ensemble_is_exported_trained_and_written_as_onnx(seed_ensembled, tmp_path, capsys):
    spec, result, tracker = seed_ensembled
    [path] = export(tracker, "seeds-run", tmp_path, "knee")
    doc = yaml.safe_load(path.read_text())
    assert doc["source"]["fit"].startswith("2 refits from seeds 0 to 1, probabilities averaged: each on the ")
    torch.set_num_threads(1)  # as in the trial
    assert main(["train", str(path)]) == 0
    model = load_weights(path.with_suffix(".pt"))
    assert isinstance(model, MeanEnsemble) and len(model.members) == 2
    assert count_parameters(model) == doc["source"]["metrics"]["param_count"]
    again = retrain(path, tmp_path / "w.pt", log=lambda _: None)  # the same seeds: the same ensemble
    assert again["test_accuracy"] == pytest.approx(doc["source"]["metrics"]["test_accuracy"], abs=0.02)
    capsys.readouterr()
    assert main(["export", str(path), "--format", "onnx"]) == 0
    assert "ONNX Runtime matches torch" in capsys.readouterr().out


def test_data_curve_runs_on_a_finished_search_and_is_logged_beside_it(ensembled, capsys, monkeypatch, tmp_path):
    """`emule data-curve`: its cost first, then the curve, as a child run of the search that is no candidate."""
    spec, result, tracker, search_out = ensembled
    curves = lambda: [r for r in tracker.runs() if r.data.tags.get("emule.kind") == "data_curve"]  # noqa: E731
    assert len(curves()) == 1 and "smallest fraction within 1 point" in search_out  # the spec's, at the end
    monkeypatch.chdir(tmp_path)  # nothing is written where the command runs
    store = ["--tracking-uri", spec.tracking.uri, "--experiment", "skip"]
    assert main(["data-curve", "skip-run", "--fractions", "0.3", "0.6", "--seeds", "1", "--threads", "1",
                 "--dry-run", *store]) == 0
    out = capsys.readouterr().out
    assert "data curve: 6 trainings (2 fold(s) x 3 fractions x 1 seed(s)) of 2 epochs" in out
    assert len(curves()) == 1  # a dry run trains nothing
    assert main(["data-curve", "skip-run", "--fractions", "0.3", "0.6", "--seeds", "1", "--threads", "1",
                 *store]) == 0
    out = capsys.readouterr().out
    assert "6/6: seed 0 fold 1 fraction 1" in out and "smallest fraction within 1 point of all the rows" in out
    run = max(curves(), key=lambda r: r.info.start_time)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert {"data_curve.png", "data_curve.html", "data_curve.parquet", "data_curve.csv"} <= set(
        tracker.artifact_paths(run.info.run_id))
    assert run.data.metrics["training_compute"] > 0 and 0 <= run.data.metrics["data_curve_full_accuracy"] <= 1
    parent = tracker.run(result.parent_run_id).data.tags
    assert "**data_curve**: " in parent["mlflow.note.content"] and parent["emule.data_curve"]
    assert len(tracker.candidates(result.parent_run_id)) == 1  # the analysis is no candidate
    assert list(tmp_path.iterdir()) == []
