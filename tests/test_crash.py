"""A search whose driver fails after its parent run exists (search.driver.crash): the parent run is closed as FAILED
with the error, the open child runs as KILLED, the traceback is kept in a file and in MLflow, the terminal gets one
line, and `emule resume` continues the search. (Candidates that fail inside a trial: tests/test_failures.py.)"""

from __future__ import annotations

import time
from pathlib import Path

from cli_runner import cli
from waves import waves_spec, write_waves

from search.driver import runner
from search.driver.crash import SearchFailed, error_line, record_failure, write_trace
from search.driver.runner import SESSION_FILE
from search.record.tracking import Tracker
from search.spec.results import BUDGET_DONE_TAG


def failed_now(tracker: Tracker, parent: str, experiment: Path, error: Exception) -> SearchFailed:
    try:
        raise error
    except Exception as e:  # raised, so that it has a traceback
        return record_failure(tracker, parent, experiment.name, str(experiment), e, SESSION_FILE)


def test_a_failed_driver_closes_the_record_and_a_resume_reopens_it(tmp_path):
    t = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    parent = t.start_search("s-1", {}, "name: s\n")
    done = t.start_candidate(parent, "a", "a", {})
    t.finish_candidate(done, "FINISHED", {BUDGET_DONE_TAG: "true"})
    running = t.start_candidate(parent, "b", "b", {})
    t.log_front_artifacts(parent, [], "## front\n")
    experiment = tmp_path / "runs" / "s-1"
    failed = failed_now(t, parent, experiment, RuntimeError("boom\nand a second line"))
    assert str(failed) == "RuntimeError: boom" and failed.name == "s-1"
    trace = failed.trace.read_text()
    assert failed.trace.parent == experiment and trace.startswith("Traceback") and "boom" in trace
    assert not failed.resumable and failed.trace_line() == f"full traceback: {failed.trace}"
    run = t.run(parent)
    assert run.info.status == "FAILED"
    assert (run.data.tags["emule.status"], run.data.tags["error"]) == ("failed", "RuntimeError: boom")
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**Failed:** RuntimeError: boom - full traceback in the artifact `traceback.txt`")
    assert note.endswith("\n\n## front\n")  # the front's description stays below the failure
    assert t.download_artifact(parent, "traceback.txt", tmp_path / "dl").read_text() == trace
    assert t.run_status(done) == "FINISHED"  # a finished candidate is kept as it is
    assert t.run_status(running) == "KILLED"  # resume continues it inside its run
    assert t.run(running).data.tags["emule.stop_reason"] == "the search's driver failed: RuntimeError: boom"

    t.reopen_search(parent)  # what `emule resume` does first
    tags = t.run(parent).data.tags
    assert t.run_status(parent) == "RUNNING" and tags["emule.status"] == "running"
    assert "error" not in tags and tags["mlflow.note.content"] == "## front\n"


def test_the_line_is_the_message_a_user_error_carries_and_resume_is_offered_once_the_session_exists(tmp_path):
    assert error_line(ValueError("data.path: 'x' does not exist")) == "data.path: 'x' does not exist"
    assert error_line(KeyError("k")) == "'k'"  # a LookupError: its message as it is
    assert error_line(RuntimeError()) == "RuntimeError"
    t = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    parent = t.start_search("s-2", {}, "name: s\n")
    experiment = tmp_path / "runs" / "s-2"
    experiment.mkdir(parents=True)
    (experiment / SESSION_FILE).write_text("{}")
    failed = failed_now(t, parent, experiment, OSError("disk full at http://user:secret@mlflow.example"))
    assert failed.resumable and str(failed) == "OSError: disk full at http://user:***@mlflow.example"
    assert "secret" not in failed.trace.read_text() + t.run(parent).data.tags["error"]  # no credentials kept
    assert failed.trace_line() == f"full traceback: {failed.trace}; the search is kept: continue it with " \
                                  "`emule resume s-2`"


def test_the_traceback_is_kept_when_mlflow_and_the_storage_are_out_of_reach(tmp_path):
    class Unreachable:
        def stop_running(self, *args):
            raise ConnectionError("MLflow is down")

    out = []
    failed = record_failure(Unreachable(), "p", "s-3", "s3://bucket/runs/s-3", RuntimeError("boom"), SESSION_FILE,
                            out=type("Out", (), {"write": lambda self, s: out.append(s), "flush": lambda self: 0})())
    assert failed.trace.is_file() and failed.trace.name.startswith("traceback-")  # an object store: a temp folder
    assert "s-3" in failed.trace.parent.name and not failed.resumable
    assert "MLflow unreachable while recording the failure" in "".join(out)
    assert write_trace("x", "s-4", str(tmp_path / "runs" / "s-4")).parent == tmp_path / "runs" / "s-4"


def test_a_driver_that_fails_after_its_trials_ran_is_failed_and_resumes(ray_local, tmp_path, monkeypatch):
    """A real search (Ray, Optuna, MLflow, Parquet data) whose driver raises after Tune's loop ran its trial to the
    end: exit 1, the error in one line and where its traceback is, no traceback printed; the parent run FAILED,
    the finished candidate kept; `emule resume` then completes the search without training it again."""
    write_waves(tmp_path / "waves.parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = waves_spec(tmp_path, uri, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)  # the caches (.emule/) land here

    def boom(grid, spec):
        raise RuntimeError("boom: the driver's own bug")

    all_done = runner.all_done
    monkeypatch.setattr(runner, "all_done", boom)
    started = time.monotonic()
    code, _, err = cli("search", str(spec), "--name", "w-1", "--quiet")
    assert code == 1, err
    [trace] = (tmp_path / "runs" / "w-1").glob("traceback-*.txt")
    assert [ln for ln in err.splitlines() if ln.startswith(("emule", "full traceback"))] == [
        "emule search: RuntimeError: boom: the driver's own bug",
        f"full traceback: {trace}; the search is kept: continue it with `emule resume w-1`"]
    assert "Traceback" not in err and "boom: the driver's own bug" in trace.read_text()
    tracker = Tracker(uri, "waves")
    parent = tracker.find_search("w-1")
    assert tracker.run_status(parent) == "FAILED"
    assert tracker.run(parent).data.tags["error"] == "RuntimeError: boom: the driver's own bug"
    assert "traceback.txt" in tracker.artifact_paths(parent)
    [run] = tracker.candidates(parent)
    assert run.info.status == "FINISHED" and run.data.tags[BUDGET_DONE_TAG] == "true"  # the trial's work is kept

    monkeypatch.setattr(runner, "all_done", all_done)
    code, out, err = cli("resume", "w-1", "--storage", str(tmp_path / "runs"), "--quiet")
    assert code == 0, err
    assert "resuming search w-1" in out and "search w-1 complete: 1 finished" in out
    assert tracker.run_status(parent) == "FINISHED" and "error" not in tracker.run(parent).data.tags
    assert [r.info.run_id for r in tracker.candidates(parent)] == [run.info.run_id]  # not trained nor logged again
    print(f"failed and resumed in {time.monotonic() - started:.0f} s")
