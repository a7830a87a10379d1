"""search.driver.callbacks.SearchCallback driven by hand-made Tune events against a fake Tracker: which runs are
created, ended or marked, with which tags and metrics, for every way a trial can end. The callback's MLflow side is the
fake's log; what the real Tracker writes is tested against a real store (test_tracking.py, test_e2e.py)."""

from __future__ import annotations

import io
import sys

import pytest
from fake_tracker import PARENT, STATIC, WHERE, FakeTracker, callback, data_shape, trial, unit_spec

from search.driver.callbacks import SearchCallback


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return unit_spec(tmp_path_factory.mktemp("callbacks"))


@pytest.fixture(scope="module")
def shape(spec):
    return data_shape(spec)


TUNE = {"done": False, "training_iteration": 1, "time_total_s": 1.5, "pid": 42, "date": "2026-11-28",
        "config": {"width": 16}}  # what Tune adds to every result


def epoch(n: int, trial_id: str, acc: float, **extra) -> dict:
    return {**STATIC, **WHERE, **TUNE, "trial_id": trial_id, "epoch": n, "val_accuracy": acc,
            "train_loss": 1.0 / n, "samples_seen": 100 * n, "training_compute": 3e6 * n, **extra}


def run_trial(cb: SearchCallback, t, results: list[dict]) -> None:
    cb.on_trial_start(0, [t], t)
    for r in results:
        cb.on_trial_result(0, [t], t, r)
    t.last_result, t.status = results[-1], "TERMINATED"
    cb.on_trial_complete(0, [t], t)
    cb.flush()  # the run is closed on the writer's thread


def test_full_budget_trial_gets_one_run_its_epochs_and_a_place_on_the_front(spec, shape):
    tracker = FakeTracker()
    cb = callback(spec, shape, tracker)
    t = trial("t1")
    last = epoch(2, "t1", 0.8, budget_done=True, test_accuracy=0.75, train_samples=400, work_time_s=3.0)
    run_trial(cb, t, [epoch(1, "t1", 0.6), last])

    [(parent, trial_id, name, _)] = tracker.called("start_candidate")
    assert (parent, trial_id) == (PARENT, "t1")
    assert name == "t1 softmax d1 w16"  # the trial id, then what the candidate is
    # params and candidate.json are written off the event loop, before the run's epochs and its end
    assert tracker.called("log_params") == [("run-t1", {"depth": 1, "width": 16})]
    assert tracker.called("log_candidate") == [("run-t1",)]
    first_epoch = next(i for i, c in enumerate(tracker.calls) if c[0] == "log_epochs")
    assert max(tracker.calls.index(("log_params", "run-t1", {"depth": 1, "width": 16})),
               tracker.calls.index(("log_candidate", "run-t1"))) < first_epoch
    # static measures once at step 0; per-epoch metrics at their epoch; the end's measures (refit, test split) at
    # step 0 too, where MLflow's charts show a value rather than a lone dot; no bookkeeping or Tune keys
    logged = [e for _, epochs in tracker.called("log_epochs") for e in epochs]
    assert logged == [
        (0, STATIC),
        (1, {"val_accuracy": 0.6, "train_loss": 1.0, "samples_seen": 100, "training_compute": 3e6}),
        (2, {"val_accuracy": 0.8, "train_loss": 0.5, "samples_seen": 200, "training_compute": 6e6}),
        (0, {"test_accuracy": 0.75, "train_samples": 400, "work_time_s": 3.0}),
    ]
    # the run is closed after its epochs are written, with the outcome tags (no empty ones; the Ray node only on a
    # cluster of several nodes) and the candidate
    assert tracker.calls.index(("finish_candidate", "run-t1", "FINISHED", {
        "budget_done": "true", "feasible": "true", "device": "cpu"}, False)) \
        > max(i for i, c in enumerate(tracker.calls) if c[0] == "log_epochs")
    record = cb.state.finished["t1"]
    assert record.run_id == "run-t1" and record.params == {"depth": 1, "width": 16}
    assert record.metrics["val_accuracy"] == 0.8 and record.metrics["param_count"] == 1500
    assert not {"epoch", "trial_id", "training_iteration", "pid", "budget_done"} & set(record.metrics)
    assert [r.trial_id for r in cb.state.front.members] == ["t1"]
    assert cb.state.ended == 1 and "t1 done" in cb.out.getvalue()


def test_runs_name_their_ray_node_only_on_a_cluster_of_several(spec, shape, monkeypatch):
    import search.driver.callbacks

    monkeypatch.setattr(search.driver.callbacks, "ray_nodes", lambda: 2)
    tracker = FakeTracker()
    cb = callback(spec, shape, tracker)
    run_trial(cb, trial("t7"), [epoch(1, "t7", 0.4, gpu_ids="0,1")])
    assert tracker.called("finish_candidate") == [("run-t7", "FINISHED", {
        "budget_done": "false", "feasible": "true", "device": "cpu", "gpu_ids": "0,1", "node_id": "node-a"}, False)]


def test_stopped_early_trial_is_finished_but_not_on_the_front(spec, shape):
    tracker = FakeTracker()
    cb = callback(spec, shape, tracker)
    run_trial(cb, trial("t2"), [epoch(1, "t2", 0.4)])
    assert tracker.called("finish_candidate") == [("run-t2", "FINISHED", {
        "budget_done": "false", "feasible": "true", "device": "cpu"}, False)]
    assert cb.state.stopped == 1 and not cb.state.finished and not cb.state.front.members
    assert "t2 stopped early at epoch 1" in cb.out.getvalue()


def test_infeasible_trial_logs_what_it_measured_and_its_violations(spec, shape):
    tracker = FakeTracker()
    cb = callback(spec, shape, tracker)
    # never trained: the training objective stands at the reference point, which must not reach MLflow
    result = {**STATIC, **WHERE, **TUNE, "trial_id": "t3", "infeasible": True, "epoch": 0, "val_accuracy": 0.0,
              "violations": "param_count 1500 > 1000", "samples_seen": 0, "work_time_s": 0.2}
    run_trial(cb, trial("t3"), [result])
    logged = [e for _, epochs in tracker.called("log_epochs") for e in epochs]
    assert logged == [(0, STATIC), (0, {"work_time_s": 0.2})]
    assert tracker.called("finish_candidate") == [("run-t3", "FINISHED", {
        "budget_done": "false", "feasible": "false", "device": "cpu", "violations": "param_count 1500 > 1000"},
        False)]
    assert cb.state.infeasible == 1 and not cb.state.finished
    assert "t3 infeasible (param_count 1500 > 1000)" in cb.out.getvalue()


def test_timed_out_trial_keeps_its_epochs_and_fails_with_the_reason(spec, shape):
    tracker = FakeTracker()
    cb = callback(spec, shape, tracker)
    why = "timeout: past search.max_trial_seconds=5 after 5.1 s, 1 of 2 epochs done"
    last = {**epoch(1, "t4", 0.5), "timed_out": True, "error": why, "work_time_s": 5.1}
    run_trial(cb, trial("t4"), [epoch(1, "t4", 0.5), last])
    steps = [step for _, epochs in tracker.called("log_epochs") for step, _ in epochs]
    assert steps == [0, 1]  # the timed-out result itself is not an epoch
    assert tracker.called("finish_candidate") == [("run-t4", "FAILED", {
        "budget_done": "false", "feasible": "true", "failure": "timeout", "error": why, "device": "cpu"}, False)]
    assert cb.state.failed == 1 and not cb.state.finished
    assert f"t4 failed: {why}" in cb.out.getvalue()


def test_errored_trial_fails_with_the_last_line_of_its_traceback(spec, shape, tmp_path):
    tracker = FakeTracker()
    cb = callback(spec, shape, tracker)
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: boom\n\n")
    t = trial("t5", error_file=str(error_file))
    cb.on_trial_start(0, [t], t)
    cb.on_trial_result(0, [t], t, epoch(1, "t5", 0.5))
    t.status = "ERROR"
    cb.on_trial_error(0, [t], t)
    cb.flush()
    assert tracker.called("finish_candidate") == [
        ("run-t5", "FAILED", {"budget_done": "false", "failure": "error", "error": "RuntimeError: boom"}, False)]
    assert cb.state.failed == 1 and "t5 failed: RuntimeError: boom" in cb.out.getvalue()


def test_replayed_result_is_not_logged_again_but_counts_on_the_front(spec, shape):
    tracker = FakeTracker()
    run_id = tracker.add_run("t6", status="RUNNING", epochs=2)  # the crash fell between its last epoch and its end
    cb = callback(spec, shape, tracker)
    replayed = {**STATIC, "val_accuracy": 0.9, "epoch": 2, "budget_done": True, "replayed": True, "trial_id": "t6"}
    run_trial(cb, trial("t6"), [replayed])
    assert tracker.called("start_candidate") == [] and tracker.called("reopen") == [(run_id,)]
    assert tracker.called("log_epochs") == []
    assert tracker.called("finish_candidate")[0][:3] == (run_id, "FINISHED", {
        "budget_done": "true", "feasible": "true"})
    assert [r.trial_id for r in cb.state.front.members] == ["t6"]


def test_experiment_end_marks_unended_runs_killed_and_discards_orphans(spec, shape):
    tracker = FakeTracker()
    done = tracker.add_run("old", status="FINISHED", epochs=2)
    cut = tracker.add_run("cut", status="RUNNING", epochs=1)  # Tune knows it: a resume continues it
    orphan = tracker.add_run("lost", status="RUNNING", epochs=1)  # Tune's saved state lost its trial
    cb = callback(spec, shape, tracker)
    cb.on_experiment_end([trial("old", "TERMINATED"), trial("cut", "PENDING")])
    assert tracker.called("stop_candidate") == [(cut, "the search ended before the trial did")]
    assert tracker.called("discard_orphan") == [(orphan,)]
    assert tracker.runs[done]["status"] == "FINISHED"


def test_a_failing_store_turns_tracking_off_and_the_search_goes_on(spec, shape):
    tracker = FakeTracker(fail={"start_candidate"})
    cb = callback(spec, shape, tracker)
    run_trial(cb, trial("t7"), [epoch(1, "t7", 0.6), epoch(2, "t7", 0.7, budget_done=True)])
    assert cb.offline and "emule sync cb-1" in cb.out.getvalue()
    # after the first failure nothing more is asked of the store; the callback's own state still counts the trial
    assert [c[0] for c in tracker.calls] == ["search_state", "start_candidate"]
    assert "t7" in cb.state.finished


def test_closing_runs_at_the_end_goes_through_the_failure_guard(spec, shape):
    tracker = FakeTracker(fail={"stop_candidate"})
    tracker.add_run("cut", status="RUNNING", epochs=1)
    cb = callback(spec, shape, tracker)
    cb.on_experiment_end([trial("cut", "PENDING")])  # the store fails while closing: noted, not raised
    assert cb.offline and "emule sync cb-1" in cb.out.getvalue()


def test_live_hypervolume_is_written_at_most_once_a_second_and_the_final_front_always(spec, shape, monkeypatch):
    import search.driver.callbacks as callbacks

    clock = [100.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])
    tracker = FakeTracker()
    cb = callback(spec, shape, tracker)
    cb.refresh_every = 100  # no artifact refresh in between: only the live metric
    for i, at in enumerate((100.0, 100.4, 100.9, 101.2)):
        clock[0] = at
        run_trial(cb, trial(f"t{i}"), [epoch(2, f"t{i}", 0.5 + 0.1 * i, budget_done=True)])
    # the finishes at 100.0 and 101.2 write; 100.4 and 100.9 fall within a second of the one before
    assert [step for _, _, step in tracker.called("log_search_metrics")] == [1, 4]
    cb.on_experiment_end([])
    assert tracker.called("log_front")  # the final front is written whatever the clock says


def test_a_progress_line_does_not_count_the_trial_that_just_ended_as_running(spec, shape):
    # Tune calls on_trial_complete while the trial's own status is still RUNNING
    cb = callback(spec, shape, FakeTracker())
    first, second = trial("t1"), trial("t2")
    for t in (first, second):
        t.status = "RUNNING"
        cb.on_trial_start(0, [first, second], t)
    first.last_result = epoch(1, "t1", 0.5, budget_done=True)
    cb.on_trial_complete(0, [first, second], first)
    assert "1/" in cb.out.getvalue() and "1 running" in cb.out.getvalue()
    second.last_result = epoch(1, "t2", 0.6, budget_done=True)
    first.status = "TERMINATED"
    cb.on_trial_complete(0, [first, second], second)
    assert cb.out.getvalue().splitlines()[-1].count("0 running") == 1
    cb.flush()


def test_a_pickled_callback_leaves_its_stream_behind_and_takes_the_resuming_runs(spec, shape, tmp_path):
    """Tune pickles the callback with the experiment's state: the stream it prints to stays out (a file open for
    writing would not pickle), and a callback restored from that state prints where ``use_output`` says, with that
    run's status settings - a state pickled while the stream was still in it too."""
    from ray import cloudpickle  # as Tune pickles it

    with open(tmp_path / "lines.txt", "w") as first:
        cb = SearchCallback(spec, FakeTracker(), PARENT, "cb-1", *shape, target=4, status_every=None, out=first)
        restored = cloudpickle.loads(cloudpickle.dumps(cb))
    assert restored.out is None and restored.status_every is None
    lines = io.StringIO()
    restored.use_output(lines, 30.0, quiet=True)
    restored.setup()  # Tune's, as its loop starts
    assert (restored.out, restored.status_every, restored.quiet) == (lines, 30.0, True)
    assert restored.board.every == 0.0  # quiet: no status lines
    restored.use_output(lines, 30.0, quiet=False)
    restored.setup()
    assert restored.board.every == 30.0
    t = trial("t1")
    run_trial(restored, t, [epoch(1, "t1", 0.6, budget_done=True)])
    assert "t1 done" in lines.getvalue()

    older = SearchCallback.__new__(SearchCallback)
    older.__setstate__({**cb.__getstate__(), "out": sys.stdout})  # pickled before the stream was left out
    assert older.out is sys.stdout and older.flush() is None  # its writer made again
    older.use_output(lines, None, quiet=False)
    assert older.out is lines
