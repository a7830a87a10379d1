"""Tracking unreachable: refused before any training at start; mid-search the search finishes on its own
experiment state, and `emule sync` logs what is missing once a real MLflow server is back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from servers import ENV, MlflowServer, free_port

from search.record.tracking import Tracker

pytestmark = pytest.mark.slow

TRIALS = 4


def write_spec(tmp: Path, uri: str) -> Path:
    path = tmp / "outage.yaml"
    path.write_text(yaml.safe_dump({
        "name": "outage",
        "data": {"name": "osuleaf", "cv_folds": "holdout"},  # the outage, not selection: one model per trial
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "width": [16, 32], "heads": [1, 2], "depth": 1},
        "training": {"epochs": 4},
        "search": {"sampler": "random", "trials": TRIALS, "concurrency": 1, "storage": str(tmp / "runs")},
        "tracking": {"uri": uri, "experiment": "outage"},
    }))
    return path


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
        [parent] = tracker.runs("tags.`emule.kind` = 'search'")
        runs = tracker.candidates(parent.info.run_id)
        assert len(runs) == TRIALS and len({r.data.tags["emule.trial_id"] for r in runs}) == TRIALS
        assert all(r.info.status == "FINISHED" and r.data.tags["budget_done"] == "true" for r in runs)
        for r in runs:
            steps = [m.step for m in tracker.metric_history(r.info.run_id, "val_accuracy")]
            assert steps == [1, 2, 3, 4]  # every epoch, none twice
        assert any(r.data.tags["pareto"] == "true" for r in runs)
        assert parent.data.tags["emule.status"] == "complete"
        assert {"pareto.parquet", "pareto.png"} <= set(tracker.artifact_paths(parent.info.run_id))
    finally:
        server.stop()
