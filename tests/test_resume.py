"""Fault injection on the driver: SIGKILL at several points and Ctrl-C, then `emule resume` (SIGTERM, as `emule
stop` sends it, is tests/test_cluster.py's).

Each case runs the real CLI in a subprocess (its own local Ray, a real MLflow store in a temp dir), kills it at a
chosen moment, resumes, and checks: every trial ends exactly once in MLflow (no duplicate child runs), trials
finished before the kill are not run again, nothing is left RUNNING, and the front is the non-dominated set.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from ray import cloudpickle
from servers import epochs_logged

from search.driver.checks import load_spec
from search.front.pareto import dominates, to_minimize
from search.record.tracking import Tracker

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 4, 6
# PYTHONFAULTHANDLER: a driver sent SIGABRT prints every thread's stack (how a hung resume is reported)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONFAULTHANDLER": "1"}


def write_spec(tmp: Path, storage: str | None = None) -> Path:
    spec = {
        "name": "crash",
        "data": {"name": "osuleaf", "cv_folds": "holdout"},  # driver faults, not selection: one model per trial
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 2}, "width": [16, 32],
                  "heads": [1, 2], "lr": {"low": 1e-3, "high": 3e-3, "log": True}},
        "training": {"epochs": EPOCHS},
        "search": {"sampler": "random", "trials": TRIALS, "concurrency": 1, "seed": 5,
                   "storage": storage or str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "crash"},
    }
    path = tmp / "crash.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def emule(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid``, from /proc."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, ppid in parent_of.items() if ppid == current]
        found += children
        frontier += children
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_when(proc: subprocess.Popen, ready, sig=signal.SIGKILL, timeout: float = 240) -> str:
    """Read the driver's output until ``ready(lines)`` holds, then send ``sig``; SIGKILL leaves Ray's processes
    behind, so those (children of the driver, by PID) are stopped too."""
    lines: list[str] = []
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready(lines):
        chunk = proc.stdout.readline()
        if chunk:
            lines.append(chunk)
        elif proc.poll() is not None:
            raise AssertionError("driver ended before the kill point:\n" + "".join(lines))
        else:
            time.sleep(0.05)
    children = descendants(proc.pid)
    proc.send_signal(sig)
    if sig == signal.SIGKILL:
        proc.wait(30)
        kill_all(children)  # the driver's own Ray instance, orphaned by the kill
    else:
        proc.wait(120)
    return "".join(lines) + proc.stdout.read()


def check_record(tmp: Path, spec_path: Path, finished_before: dict[str, int]) -> None:
    spec = load_spec(spec_path)
    tracker = Tracker(spec.tracking.uri, "crash")
    [parent] = tracker.runs("tags.`emule.kind` = 'search'")
    assert parent.data.tags["emule.status"] == "complete"
    runs = tracker.candidates(parent.info.run_id)
    trial_ids = [r.data.tags["emule.trial_id"] for r in runs]
    assert len(runs) == TRIALS and len(set(trial_ids)) == TRIALS  # no duplicate child runs
    assert all(r.info.status == "FINISHED" and r.data.tags["budget_done"] == "true" for r in runs)
    for r in runs:
        history = tracker.metric_history(r.info.run_id, "val_accuracy")
        tid = r.data.tags["emule.trial_id"]
        if tid in finished_before:  # finished before the kill: not trained again
            assert len(history) == finished_before[tid] == EPOCHS, [(m.step, m.value, m.timestamp) for m in history]
    points = {r.info.run_id: to_minimize(np.array([[r.data.metrics[m] for m in spec.metrics]]), spec.modes,
                                         [o.log for o in spec.objectives])[0] for r in runs}
    for r in runs:
        dominated = any(dominates(points[o], points[r.info.run_id]) for o in points)
        assert (r.data.tags["pareto"] == "true") == (not dominated)


def finished_trials(tmp: Path) -> dict[str, int]:
    db = tmp / "mlflow.db"
    if not db.exists():
        return {}
    # read-write, though it only reads: the driver is dead by now, and one killed inside a write leaves a hot
    # journal that only a writable connection rolls back (read-only, SQLite says "attempt to write a readonly
    # database"); MLflow's next connection would roll it back the same way
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "select t.value, count(m.key) from tags t join runs r on r.run_uuid = t.run_uuid "
            "join tags b on b.run_uuid = t.run_uuid and b.key = 'budget_done' and b.value = 'true' "
            "left join metrics m on m.run_uuid = t.run_uuid and m.key = 'val_accuracy' "
            "where t.key = 'emule.trial_id' group by t.value").fetchall()
    return dict(rows)


def finished_in_store(tmp: Path) -> int:
    """Trials the store holds as finished, read while the driver writes (0 while the database is locked)."""
    try:
        return len(finished_trials(tmp))
    except sqlite3.OperationalError:
        return 0


def first_finished_in_store(tmp: Path):
    """A kill point: the store holds a finished trial (checked twice a second, not to crowd the driver's writes)."""
    due = [0.0]

    def ready(lines) -> bool:
        if time.monotonic() < due[0]:
            return False
        due[0] = time.monotonic() + 0.5
        return finished_in_store(tmp) >= 1

    return ready


KILL_POINTS = {
    "before-first-result": lambda lines: any(line.startswith("search crash-") for line in lines),
    "between-trials": lambda lines: any(" 1/4 ended" in line for line in lines),
    "while-logging-front": lambda lines: any(" 4/4 ended" in line for line in lines),
}
# a SIGKILL between trials resumes from Tune's saved state on S3 (test_a_search_kept_on_s3_resumes_and_syncs) and
# from a cut one (test_resume_when_the_kill_cut_tunes_saved_state); the saved state of a Ctrl-C between trials is made
# to look as a kill between Tune's state files leaves it (test_ctrl_c_records_interrupted_then_resume_completes)
SIGKILL_POINTS = ["before-first-result", "while-logging-front"]


def resume(tmp: Path, storage: str | None = None, env: dict | None = None, command: str = "resume") -> str:
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", command, "crash", "--storage",
                             storage or str(tmp / "runs")], cwd=tmp, env=env or ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=480)
    except subprocess.TimeoutExpired:  # hung: fail with where every thread of the driver waits
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=60)
        kill_all(children)
        raise AssertionError(f"`emule {command}` hung; its output:\n{out}\nits stacks:\n{err[-20000:]}") from None
    assert proc.returncode == 0, out + err
    return out


def count_a_trial_tune_never_ran(tmp: Path) -> None:
    """What a driver stopped between Tune's state files can leave: the search's saved counts hold one trial more,
    made and running, than Tune's trial list (with one trial at a time, a resume used to wait for it forever)."""
    [path] = (tmp / "runs").rglob("search_gen_state-*.json")
    state = cloudpickle.loads(path.read_bytes())
    state["counter"] += 1
    [limiter] = [v for k, v in state.items() if k.startswith("name:") and "live_trials" in v]
    limiter["live_trials"].add("0a1b2c3d")
    path.write_bytes(cloudpickle.dumps(state))


@pytest.mark.parametrize("point", SIGKILL_POINTS)
def test_sigkill_then_resume(tmp_path, point):
    spec = write_spec(tmp_path)
    kill_when(emule("search", str(spec), cwd=tmp_path), KILL_POINTS[point])
    before = finished_trials(tmp_path)
    resume(tmp_path)
    check_record(tmp_path, spec, before)


def test_resume_when_the_kill_cut_tunes_saved_state(tmp_path):
    """A driver killed while Tune wrote its experiment state leaves the file empty: the remaining trials start again
    from what MLflow holds, with no duplicate child runs."""
    spec = write_spec(tmp_path)
    kill_when(emule("search", str(spec), cwd=tmp_path), KILL_POINTS["between-trials"])
    states = list((tmp_path / "runs").rglob("experiment_state-*.json"))
    assert states
    for state in states:
        state.write_text("")
    before = finished_trials(tmp_path)
    resume(tmp_path)
    check_record(tmp_path, spec, before)


def test_sigkill_mid_trial_then_resume(tmp_path):
    spec = write_spec(tmp_path)
    db = tmp_path / "mlflow.db"
    kill_when(emule("search", str(spec), cwd=tmp_path), lambda lines: epochs_logged(db) >= EPOCHS + 2)
    before = finished_trials(tmp_path)
    assert 1 <= len(before) < TRIALS
    resume(tmp_path)
    check_record(tmp_path, spec, before)


def test_ctrl_c_records_interrupted_then_resume_completes(tmp_path):
    spec = write_spec(tmp_path)
    proc = emule("search", str(spec), cwd=tmp_path)
    out = kill_when(proc, KILL_POINTS["between-trials"], sig=signal.SIGINT)
    assert proc.returncode == 130, out
    assert "interrupted" in out and "emule resume" in out
    # Ray's own hints are not EMuLe's user's: Tune's Tuner.restore(...) beside `emule resume`, and the token-auth
    # warning of every local start
    assert "Tuner.restore" not in out and "Token authentication" not in out, out
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "crash")
    [parent] = tracker.runs("tags.`emule.kind` = 'search'")
    assert parent.data.tags["emule.status"] == "interrupted"
    count_a_trial_tune_never_ran(tmp_path)
    before = finished_trials(tmp_path)
    resume(tmp_path)
    check_record(tmp_path, spec, before)


def test_a_search_kept_on_s3_resumes_and_syncs(tmp_path, s3_server):
    """Tune's state and the session file on a real S3 API (127.0.0.1): a driver killed between trials resumes from
    there, and `emule sync` reads the finished experiment back from there."""
    runs, env = s3_server.uri("runs"), {**ENV, **s3_server.env}
    spec = write_spec(tmp_path, storage=runs)
    # between trials, once the first one's run is closed (runs close on the driver's writer thread, just after
    # the progress line)
    kill_when(emule("search", str(spec), cwd=tmp_path, env=env), first_finished_in_store(tmp_path))
    before = finished_trials(tmp_path)
    assert 1 <= len(before) < TRIALS
    out = resume(tmp_path, runs, env)
    assert "resuming search crash-" in out
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}" in out  # the search's own store
    check_record(tmp_path, spec, before)
    assert f"; {TRIALS} finished" in resume(tmp_path, runs, env, command="sync")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crash.yaml", "mlflow.db", "mlruns"]  # nothing local


def test_runs_left_open_by_a_kill_inside_their_close_are_closed_on_resume(tmp_path):
    """Runs close on the driver's writer thread - outcome tags with the last epochs, then the status - so a kill
    can leave a run open in two ways. Tags written, status not: the record is whole, and the resume closes it as
    it is. Neither written, after Tune saved the trial as ended: the resume closes it from Tune's record, without
    training it again; with Tune's state cut by the kill, its trial is trained anew in a run of its own and the
    open one set aside. (Tune's state reaches the storage path in periodic syncs, so a kill rarely falls there:
    the state is made by hand from a finished search - once with Tune's state saved, then, on two other runs of
    the resumed search, with it cut.)"""
    spec = write_spec(tmp_path)
    done = subprocess.run([sys.executable, "-m", "search.cli", "search", str(spec)], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "crash")
    [parent] = tracker.runs("tags.`emule.kind` = 'search'")
    runs = tracker.candidates(parent.info.run_id)
    for tune_state, (untagged, tagged) in (("saved", runs[:2]), ("cut", runs[2:4])):
        tracker.reopen(untagged.info.run_id)  # a kill before the closing write
        MlflowClient(tracker.uri).update_run(tagged.info.run_id, status="RUNNING")  # a kill before the status
        if tune_state == "cut":
            for state in (tmp_path / "runs").rglob("experiment_state-*.json"):
                state.write_text("")
        before = finished_trials(tmp_path)
        assert untagged.data.tags["emule.trial_id"] not in before and len(before) == TRIALS - 1
        out = resume(tmp_path)
        assert "closed 1 MLflow runs whose outcome was written before the driver stopped" in out
        check_record(tmp_path, spec, before)
        closed = tracker.run(tagged.info.run_id).info
        assert closed.end_time == tracker.metric_history(tagged.info.run_id, "val_accuracy")[-1].timestamp
        if tune_state == "saved":
            assert "closed 1 MLflow runs of trials that Tune recorded as ended" in out
            assert len(tracker.metric_history(untagged.info.run_id, "val_accuracy")) == EPOCHS  # not trained again
        else:
            assert tracker.run(untagged.info.run_id).info.lifecycle_stage == "deleted"
