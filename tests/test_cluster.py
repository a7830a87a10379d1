"""A search submitted with `emule submit` to a real 2-node Ray cluster on 127.0.0.1 (head + worker, token auth),
started by cluster/local_cluster.py with a temp dir of its own and stopped by PID - never `ray stop`.

The cluster is separate from the session's local Ray (``ray_local``): the test talks to it only through
subprocesses (`emule submit/status/logs/stop`) and its dashboard, and the job's driver attaches to it
(`--address auto` reads the RAY_ADDRESS that Ray sets for a job).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cluster_scripts
import pytest
import yaml

from search.record.tracking import PARENT_TAG, SEARCH_TAG, Tracker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 4


local_cluster = cluster_scripts.load("local_cluster")


@pytest.fixture(scope="module")
def cluster():
    if not Path(local_cluster._ray_cli()).exists() and shutil.which("ray") is None:
        pytest.skip("the `ray` command is not installed (pip install 'ray[default]')")
    # short: Ray's socket paths under it must stay within the 107-byte Unix socket limit
    root = Path(tempfile.mkdtemp(prefix="emule-rt-", dir="/tmp"))
    try:
        yield local_cluster.start(root, workers=1, cpus=1)  # head + 1 worker, 1 CPU each
    finally:
        local_cluster.stop(root)
        left = local_cluster._pids_under(root)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the test cluster survived stop(): {left}"


def emule(cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], env=cluster.client_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def write_spec(path: Path, tmp: Path, trials: int, epochs: int, storage: str) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "cluster-tiny",
        "data": {"name": "osuleaf"},
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": 1, "width": [16, 32], "heads": 1,
                  "patch_len": [16, 32], "data_fraction": {"low": 0.3, "high": 0.6}},
        "training": {"epochs": epochs, "batch_size": 32},
        # one trial per node at a time: concurrency 2 on two 1-CPU nodes
        "search": {"sampler": "random", "trials": trials, "concurrency": 2, "seed": 0, "cpus_per_trial": 1,
                   "storage": storage},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "cluster"},
    }))
    return path


def test_submitted_search_runs_on_both_nodes(cluster, tmp_path):
    # a file:// URI exercises the URI storage path (pyarrow.fs) on every node
    spec = write_spec(tmp_path / "spec.yaml", tmp_path, TRIALS, 2, f"file://{tmp_path / 'runs'}")
    sub = emule(cluster, "submit", str(spec), "--address", cluster.dashboard_url, "--name", "on-two-nodes")
    assert sub.returncode == 0, sub.stderr
    ids = [ln for ln in sub.stdout.splitlines() if re.fullmatch(r"raysubmit_\w+", ln.strip())]
    assert len(ids) == 1, sub.stdout
    job = ids[0].strip()

    done = emule(cluster, "status", job, "--address", cluster.dashboard_url, "--wait", "--timeout", "150",
                 timeout=170)
    logs = emule(cluster, "logs", job, "--address", cluster.dashboard_url)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n--- job output ---\n{logs.stdout[-4000:]}"
    assert f"{job} SUCCEEDED" in done.stdout
    assert "search on-two-nodes complete: 4 finished" in logs.stdout

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "cluster")
    parent = tracker.find_search("on-two-nodes")
    assert parent is not None
    runs = tracker.runs(f"tags.`{PARENT_TAG}` = '{parent}'")
    assert len(runs) == TRIALS and all(r.info.status == "FINISHED" for r in runs)
    nodes = {r.data.tags["node_id"] for r in runs}
    # both nodes of this cluster: the driver attached to it rather than starting a Ray of its own
    assert nodes == set(cluster.node_ids()), "trials should have run on both the head and the worker"
    # the front exists: tagged on the candidates, attached to the parent run
    assert any(r.data.tags["pareto"] == "true" for r in runs)
    assert {r.data.tags["pareto"] for r in runs} <= {"true", "false"}
    artifacts = set(tracker.artifact_paths(parent))
    assert {"spec.yaml", "pareto.parquet", "pareto.png"} <= artifacts
    assert tracker.run(parent).data.tags[SEARCH_TAG] == "on-two-nodes"
    assert (tmp_path / "runs" / "on-two-nodes").is_dir()  # Tune's state went to the file:// storage


def test_stop_ends_a_running_search_in_order_and_resume_completes_it(cluster, tmp_path):
    """`emule stop` sends SIGTERM (as `timeout`, systemd and Kubernetes do; handled as Ctrl-C is): the driver ends
    Tune's loop in order within the job's grace period, so MLflow holds no RUNNING run, the runs it stopped say why,
    and the search says interrupted; `emule resume` (here, on a local Ray) completes it with no duplicate child
    runs and nothing left marked stopped. The status lines are in `emule logs` meanwhile."""
    spec = write_spec(tmp_path / "spec.yaml", tmp_path, 3, 8, str(tmp_path / "runs"))
    sub = emule(cluster, "submit", str(spec), "--address", cluster.dashboard_url, "--job-id", "emule-test-stop",
                "--name", "stopped", "--status-every", "1")
    assert sub.returncode == 0, sub.stderr
    assert "emule-test-stop" in sub.stdout.splitlines()
    deadline = time.monotonic() + 120
    while " running " not in (logs := emule(cluster, "logs", "emule-test-stop", "--address",
                                           cluster.dashboard_url).stdout):  # a status line: trials are training
        assert time.monotonic() < deadline, f"no status line: {logs}"
        time.sleep(1)
    stopped = emule(cluster, "stop", "emule-test-stop", "--address", cluster.dashboard_url)
    assert stopped.returncode == 0 and "stop requested" in stopped.stdout
    done = emule(cluster, "status", "emule-test-stop", "--address", cluster.dashboard_url, "--wait", "--timeout",
                 "90", timeout=110)
    assert done.returncode == 1 and "STOPPED" in done.stdout
    logs = emule(cluster, "logs", "emule-test-stop", "--address", cluster.dashboard_url).stdout
    assert re.search(r"running \d: \w+ epoch \d/8 ", logs), logs
    assert "search stopped interrupted by SIGTERM" in logs, logs

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "cluster")
    parent = tracker.run(tracker.find_search("stopped"))
    assert parent.info.status == "KILLED" and parent.data.tags["emule.status"] == "interrupted"
    assert parent.data.tags["emule.stop_reason"] == "SIGTERM"
    runs = tracker.candidates(parent.info.run_id)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    assert all(r.data.tags["emule.stop_reason"] == "SIGTERM" for r in runs if r.info.status == "KILLED")

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    resumed = subprocess.run([sys.executable, "-m", "search.cli", "resume", "stopped", "--storage",
                              str(tmp_path / "runs"), "--num-cpus", "2"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    runs = tracker.candidates(parent.info.run_id)
    trial_ids = [r.data.tags["emule.trial_id"] for r in runs]
    assert len(runs) == 3 and len(set(trial_ids)) == 3  # no duplicate child runs
    assert all(r.info.status == "FINISHED" for r in runs)
    assert tracker.run(parent.info.run_id).data.tags["emule.status"] == "complete"
    assert not [r for r in tracker.runs("") if "emule.stop_reason" in r.data.tags]  # the resume ended what stopped


def test_cli_errors_are_one_line(cluster, tmp_path):
    unknown = emule(cluster, "status", "no-such-job", "--address", cluster.dashboard_url)
    assert unknown.returncode == 2 and "'no-such-job' is not a job of the cluster" in unknown.stderr
    env = {k: v for k, v in cluster.client_env().items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    no_token = subprocess.run([sys.executable, "-m", "search.cli", "status", "x", "--address", cluster.dashboard_url],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert no_token.returncode == 2 and "RAY_AUTH_MODE=token" in no_token.stderr, no_token.stderr
    relative = write_spec(tmp_path / "rel.yaml", tmp_path, 2, 1, "emule_runs")
    refused = emule(cluster, "submit", str(relative), "--address", cluster.dashboard_url)
    assert refused.returncode == 2 and "search.storage: 'emule_runs' is relative" in refused.stderr
