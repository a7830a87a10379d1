"""Starting Ray on a busy machine: tries made again after Ray's start-up time-out, the processes of a failed try
stopped by PID (no other), a bad setting refused before anything starts, and a start that cannot succeed told in
one line with what to try."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.driver.ray_session import TIMEOUT_ENV, RayStartError, start_timeout, start_with_retries
from search.record.tracking import Tracker

RAY_TIMED_OUT = "The current node timed out during startup. This could happen because some of the raylet failed"


def test_a_start_that_timed_out_is_tried_again_and_its_processes_stopped():
    kept = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # running before: never touched
    spawned: list[subprocess.Popen] = []

    def start() -> None:  # the first two tries start a process and time out, as Ray's node does on a busy machine
        if len(spawned) < 2:
            spawned.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
            raise Exception(RAY_TIMED_OUT)

    try:
        assert start_with_retries(start, timeout=60) == 3
        assert all(p.wait(timeout=10) is not None for p in spawned)  # stopped, by PID
        assert kept.poll() is None
    finally:
        kept.kill()


def test_a_start_that_keeps_timing_out_ends_in_one_line_that_says_what_to_try():
    tries = []

    def start() -> None:
        tries.append(1)
        raise Exception(RAY_TIMED_OUT)

    with pytest.raises(RayStartError) as info:
        start_with_retries(start, timeout=0.0)
    message = str(info.value)
    assert len(tries) == 1 and "\n" not in message
    assert "within 0 s (1 tries" in message and TIMEOUT_ENV in message and "--address" in message


def test_another_start_failure_is_not_tried_again():
    tries = []

    def start() -> None:
        tries.append(1)
        raise NotADirectoryError("[Errno 20] Not a directory: '/x/ray'")

    with pytest.raises(RayStartError, match=r"Ray could not start on this machine \(NotADirectoryError"):
        start_with_retries(start, timeout=60)
    assert len(tries) == 1


@pytest.mark.parametrize("value, expected", [("", 180.0), ("45", 45.0), ("0.5", 0.5)])
def test_the_start_up_time_is_a_setting(monkeypatch, value, expected):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    assert start_timeout() == expected


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_a_bad_start_up_time_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(RayStartError, match=rf"{TIMEOUT_ENV}: '{value}' not accepted; accepted: seconds > 0"):
        start_timeout()


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **env})


def spec_file(tmp: Path) -> Path:
    path = tmp / "tiny.yaml"
    path.write_text(f"""
name: tiny
data: {{name: gunpoint}}
baselines: []
objectives:
  - {{metric: val_accuracy, mode: max, reference: 0.0}}
  - {{metric: param_count, mode: min, reference: 1.0e+6, log: true}}
space: {{width: [16], depth: 1, heads: 1}}
training: {{epochs: 1}}
search: {{trials: 1, storage: {tmp / 'runs'}}}
tracking: {{uri: 'sqlite:///{tmp / 'mlflow.db'}'}}
""")
    return path


def test_a_bad_start_up_time_is_refused_before_anything_starts(tmp_path):
    proc = run_cli(["search", str(spec_file(tmp_path))], tmp_path, **{TIMEOUT_ENV: "soon"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"emule search: {TIMEOUT_ENV}: 'soon' not accepted; accepted: seconds > 0 "
                                   "(default 180)")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_ray_that_cannot_start_is_one_line_and_the_search_is_kept(tmp_path):
    """A real local start that fails (Ray's temp folder is a file): one line, no traceback, and the search's
    session is kept for `emule resume`."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    proc = run_cli(["search", str(spec_file(tmp_path)), "--name", "kept"], tmp_path, RAY_TMPDIR=str(blocker))
    assert proc.returncode == 2, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("emule")]  # the rest: MLflow's and Ray's logs
    assert "Traceback" not in proc.stderr, proc.stderr
    assert line.startswith("emule search: Ray could not start on this machine")
    assert line.endswith("The search is kept: continue it with `emule resume kept`")
    assert (tmp_path / "runs" / "kept").is_dir()
    # the parent run is closed as FAILED with the error, not left RUNNING; the traceback is kept in the search's folder
    [trace] = (tmp_path / "runs" / "kept").glob("traceback-*.txt")
    assert f"full traceback: {trace}" in proc.stderr.splitlines()
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "emule")
    parent = tracker.find_search("kept")
    assert tracker.run_status(parent) == "FAILED"
    assert tracker.run(parent).data.tags["error"] == line.removeprefix("emule search: ")
