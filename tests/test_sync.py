"""`emule sync`'s repair (search.driver.resume.repair, trial_rows): what Tune recorded while MLflow was away, replayed
through the search's own callback into a fake Tracker. Which runs are created, which epochs logged, which runs
ended, stopped or discarded, and when the search is marked complete. The whole command against a real store and a
real S3 API runs in test_tracking_outage.py and test_resume.py."""

from __future__ import annotations

import pandas as pd
import pytest
from fake_tracker import PARENT, STATIC, WHERE, FakeTracker, callback, data_shape, trial, unit_spec

from search.driver.resume import repair, trial_rows


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return unit_spec(tmp_path_factory.mktemp("sync"))


@pytest.fixture(scope="module")
def shape(spec):
    return data_shape(spec)


def row(trial_id: str, n: int, acc: float, **extra) -> dict:
    """One result as Tune's per-trial table holds it (config flattened into ``config/...`` columns)."""
    return {**STATIC, **WHERE, "trial_id": trial_id, "epoch": n,
            "val_accuracy": acc, "done": False, "training_iteration": n, "config/width": 16, **extra}


def steps_logged(tracker: FakeTracker, run_id: str) -> list[int]:
    return [step for rid, epochs in tracker.called("log_epochs") if rid == run_id for step, _ in epochs]


def test_repair_logs_what_mlflow_missed_and_leaves_complete_runs_alone(spec, shape, tmp_path):
    tracker = FakeTracker()
    a = tracker.add_run("a", status="FINISHED", epochs=2)  # logged completely before the outage
    c = tracker.add_run("c", status="RUNNING", epochs=1)  # the outage began after its first epoch
    e = tracker.add_run("e", status="RUNNING", epochs=1)  # still running when the driver died
    orphan = tracker.add_run("z", status="RUNNING", epochs=1)  # a trial Tune's saved state never held
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\nValueError: diverged\n")
    trials = [trial("a", "TERMINATED"), trial("b", "TERMINATED"), trial("c", "TERMINATED"),
              trial("d", "ERROR", error_file=str(error_file)), trial("e", "RUNNING")]
    rows = {"a": [row("a", 1, 0.5), row("a", 2, 0.6, budget_done=True)],
            "b": [row("b", 1, 0.5), row("b", 2, 0.7, budget_done=True)],
            "c": [row("c", 1, 0.4), row("c", 2, 0.8, budget_done=True)],
            "d": [row("d", 1, 0.3)],
            "e": [row("e", 1, 0.2), row("e", 2, 0.3)]}
    for t in trials:
        t.last_result = rows[t.trial_id][-1]
    cb = callback(spec, shape, tracker)

    assert repair(cb, trials, rows, planned=5) == 4  # a was complete already

    # a: asked for its status, nothing else
    assert [call[0] for call in tracker.calls if a in call[1:]] == ["run_status"]
    # b had no run: one is made, both epochs logged (static measures once, at step 0), ended on the front
    assert [call[1] for call in tracker.called("start_candidate")] == ["b", "d"]
    assert steps_logged(tracker, "run-b") == [0, 1, 2]
    # c: only the epoch MLflow lacks; its static measures came with its first epoch and are not logged twice
    assert steps_logged(tracker, c) == [2]
    assert tracker.steps(c, "val_accuracy") == [1, 2]
    # e: its missing epoch is logged, and it stays open until the end: then KILLED, for a resume to continue
    assert steps_logged(tracker, e) == [2]
    ended = {run_id: (status, tags) for run_id, status, tags, _ in tracker.called("finish_candidate")}
    assert ended == {
        "run-b": ("FINISHED", {"budget_done": "true", "feasible": "true", "device": "cpu"}),
        c: ("FINISHED", {"budget_done": "true", "feasible": "true", "device": "cpu"}),
        "run-d": ("FAILED", {"budget_done": "false", "failure": "error", "error": "ValueError: diverged"}),
    }
    assert tracker.called("stop_candidate") == [(e, "the search ended before the trial did")]
    assert tracker.called("discard_orphan") == [(orphan,)]
    assert tracker.called("finish_search") == []  # a trial is still running: the search is not complete
    assert sorted(cb.state.finished) == ["b", "c"] and cb.state.failed == 1
    # the front is written once, at the end: c (0.8, 1500 parameters) dominates b (0.7, 1500)
    assert tracker.called("log_front") == [(PARENT, [c], c)]


@pytest.mark.parametrize("planned, marked", [(2, True), (3, False)])
def test_search_is_marked_complete_once_every_planned_trial_ended(spec, shape, planned, marked):
    tracker = FakeTracker()
    trials = [trial("a", "TERMINATED"), trial("b", "ERROR")]
    rows = {"a": [row("a", 1, 0.5, budget_done=True)], "b": []}
    trials[0].last_result = rows["a"][-1]
    repair(callback(spec, shape, tracker), trials, rows, planned)
    assert tracker.called("finish_search") == ([(PARENT, "complete", None)] if marked else [])


def test_tune_tables_become_the_results_the_trial_reported(spec, shape):
    # Tune reads a trial's result.json with pandas.json_normalize: a key missing from one result is NaN there
    reported = [row("t", 1, 0.5), {**row("t", 1, 0.5), "timed_out": True, "error": "timeout: past 5 s"}]
    rows = trial_rows({"t": pd.json_normalize(reported, sep="/"), "never-reported": None})
    assert rows == {"t": reported}
    # so a timed-out trial's epochs are synced (a NaN ``timed_out`` would read as true and skip them) and its end
    # recorded as the timeout
    tracker = FakeTracker()
    t = trial("t", "TERMINATED", last_result=rows["t"][-1])
    repair(callback(spec, shape, tracker), [t], rows, planned=1)
    assert steps_logged(tracker, "run-t") == [0, 1]
    [(_, status, tags, _)] = tracker.called("finish_candidate")
    assert status == "FAILED" and tags["failure"] == "timeout" and tags["error"] == "timeout: past 5 s"
