"""Tracking unreachable: refused before any training at start; mid-search the search finishes on its own
experiment state, and `emule sync` logs what is missing once a real MLflow server is back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from search.tracking import Tracker

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
       "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
TRIALS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_spec(tmp: Path, uri: str) -> Path:
    path = tmp / "outage.yaml"
    path.write_text(yaml.safe_dump({
        "name": "outage",
        "data": {"name": "osuleaf"},
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "params", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "width": [16, 32], "heads": [1, 2], "depth": 1},
        "training": {"epochs": 4},
        "search": {"sampler": "random", "trials": TRIALS, "concurrency": 1, "storage": str(tmp / "runs")},
        "tracking": {"uri": uri, "experiment": "outage"},
    }))
    return path


class MlflowServer:
    """A real `mlflow server` (one worker, job execution off) on a sqlite store, in its own process group."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.proc = folder, port, None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
               "--artifacts-destination", str(self.folder / "artifacts")]
        self.proc = subprocess.Popen(cmd, cwd=self.folder, env=ENV, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not answer /health within 90 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def test_unreachable_at_start_fails_fast_before_ray(tmp_path):
    spec = write_spec(tmp_path, f"http://127.0.0.1:{free_port()}")
    code = ("import sys; from search.cli import main; rc = main(['search', sys.argv[1]]); "
            "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(spec)], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("emule search: tracking.uri: cannot reach MLflow at 'http://127.0.0.1:")
    assert not (tmp_path / "runs").exists()  # nothing started


def test_outage_mid_search_then_sync(tmp_path):
    port = free_port()
    server = MlflowServer(tmp_path, port)
    server.start()
    try:
        spec = write_spec(tmp_path, f"http://127.0.0.1:{port}")
        proc = subprocess.Popen([sys.executable, "-m", "search.cli", "search", str(spec), "--name", "outage-1"],
                                cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if " 1/4 ended" in line:
                server.stop()  # MLflow goes away after the first candidate
                break
        lines += proc.stdout.readlines()
        assert proc.wait(600) == 0, "".join(lines)
        out = "".join(lines)
        assert "emule sync outage-1" in out

        server.start()  # back, same store
        sync = subprocess.run([sys.executable, "-m", "search.cli", "sync", "outage-1", "--storage",
                               str(tmp_path / "runs")], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                              timeout=300)
        assert sync.returncode == 0, sync.stdout + sync.stderr
        tracker = Tracker(f"http://127.0.0.1:{port}", "outage")
        [parent] = tracker.client.search_runs([tracker.experiment_id], "tags.`emule.kind` = 'search'")
        runs = tracker.candidates(parent.info.run_id)
        assert len(runs) == TRIALS and len({r.data.tags["emule.trial_id"] for r in runs}) == TRIALS
        assert all(r.info.status == "FINISHED" and r.data.tags["budget_done"] == "true" for r in runs)
        for r in runs:
            steps = [m.step for m in tracker.client.get_metric_history(r.info.run_id, "val_accuracy")]
            assert steps == [1, 2, 3, 4]  # every epoch, none twice
        assert any(r.data.tags["pareto"] == "true" for r in runs)
        assert parent.data.tags["emule.status"] == "complete"
        assert {"pareto.parquet", "pareto.png"} <= {a.path for a in tracker.client.list_artifacts(parent.info.run_id)}
    finally:
        server.stop()
