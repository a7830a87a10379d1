"""Failing candidates with real faults: a diverging loss (NaN) and an allocation larger than the machine (out
of memory). Each is recorded as failed with its reason, kept off the front, told to Optuna as failed, and the
search goes on to the end."""

from __future__ import annotations

import io

import pytest

from search.driver.checks import parse_spec
from search.driver.runner import run_search
from search.record.tracking import Tracker

pytestmark = pytest.mark.slow


def spec_with(tmp, space: dict, trials: int, retries: int = 0):
    return parse_spec({
        "name": "faults",
        "data": {"name": "osuleaf", "cv_folds": "holdout"},  # failures, not selection: one model per trial
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e12, "log": True}],
        "space": {"depth": 1, "heads": 1, "patch_len": 16, **space},
        "training": {"epochs": 2},
        "search": {"sampler": "random", "trials": trials, "concurrency": 1, "seed": 0, "retries": retries,
                   "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "faults"},
    })


def test_diverging_and_out_of_memory_trials_fail_cleanly(ray_local, tmp_path):
    # lr 1e6 makes the loss non-finite in the first epoch; width 2**20 asks for terabytes of weights
    # seed 0 draws one of each: a diverging trial, one out of memory, one that trains (retried failures run twice)
    spec = spec_with(tmp_path, {"lr": [1e-3, 1e6], "width": [16, 2**20]}, trials=3, retries=1)
    out = io.StringIO()
    result = run_search(spec, name="faults", out=out)
    assert result.status == "complete"
    tracker = Tracker(spec.tracking.uri, "faults")
    runs = tracker.candidates(result.parent_run_id)
    failed = [r for r in runs if r.info.status == "FAILED"]
    ok = [r for r in runs if r.info.status == "FINISHED"]
    assert len(runs) == 3 and len(failed) == 2 and ok, out.getvalue()
    assert result.failed == len(failed)
    reasons = {r.data.params["lr"] + "/" + r.data.params["width"]: r.data.tags["error"] for r in failed}
    assert {key.endswith("/" + str(2**20)) for key in reasons} == {True, False}, reasons  # one of each kind
    for key, reason in reasons.items():
        lr, width = key.split("/")
        if width == str(2**20):
            assert "allocate" in reason or "memory" in reason.lower(), reason
        else:
            assert float(lr) == 1e6 and "non-finite training loss" in reason, reason
    assert all(r.data.tags.get("pareto") != "true" for r in failed)
    assert all(r.data.tags["pareto"] in ("true", "false") for r in ok)
    assert {r.run_id for r in result.front.members} <= {r.info.run_id for r in ok}
    assert "failed" in out.getvalue()


def test_trial_past_its_time_limit_fails_cleanly_and_shows_progress_meanwhile(ray_local, tmp_path):
    # image_patch 1 makes OSULeaf's silhouette 1024 tokens: measuring alone takes that candidate far longer than
    # the limit; image_patch 32 (one token) trains in seconds, with room to spare on a machine loaded by other tests
    spec = parse_spec({
        "name": "limit",
        "data": {"name": "osuleaf", "cv_folds": "holdout"},
        "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e12, "log": True}],
        "space": {"depth": 2, "width": 128, "heads": 1, "patch_len": 64, "image_patch": [1, 32]},
        "training": {"epochs": 3},
        "search": {"sampler": "random", "trials": 3, "concurrency": 2, "seed": 1, "max_trial_seconds": 30,
                   "storage": str(tmp_path / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "limit"},
    })
    out = io.StringIO()
    result = run_search(spec, name="limit", out=out, status_every=1)
    assert result.status == "complete", out.getvalue()
    runs = Tracker(spec.tracking.uri, "limit").candidates(result.parent_run_id)
    slow = [r for r in runs if r.data.params["image_patch"] == "1"]
    fast = [r for r in runs if r.data.params["image_patch"] == "32"]
    assert slow and fast, out.getvalue()
    for r in slow:  # stopped, FAILED with the reason, off the front
        assert r.info.status == "FAILED" and r.data.tags["failure"] == "timeout"
        assert r.data.tags["error"].startswith("timeout: past search.max_trial_seconds=30 after ")
        assert r.data.tags.get("pareto") != "true" and r.data.tags["budget_done"] == "false"
    assert all(r.info.status == "FINISHED" and r.data.tags["budget_done"] == "true" for r in fast)
    assert result.failed == len(slow) and result.finished == len(fast)
    text = out.getvalue()
    # the slow trial, in its first epoch for longer than the interval, shows up in status lines meanwhile
    status = [line for line in text.splitlines() if " running " in line and " epoch 0/3 " in line]
    assert status, text
    assert "failed: timeout: past search.max_trial_seconds=30" in text
