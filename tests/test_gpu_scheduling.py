"""GPU scheduling on a simulated GPU cluster: a real 3-node Ray cluster on 127.0.0.1 (cluster/local_cluster.py)
whose two worker nodes each declare one GPU they do not have, and searches with ``gpus_per_trial`` 1 and 0.25 (a
whole GPU per trial, and four trials sharing one) run by `emule search --address` against it.

From what the trials recorded in MLflow (the GPU ids Ray assigned, the node, the device, the run's start and end)
it checks that no GPU ever held more trials at once than its fraction allows, that every declared GPU was used,
that no trial ran without a GPU share, and that a trial given a GPU id where CUDA is absent trained on the CPU and
says so.

What this proves: Ray and our resource request pack fractional GPUs per node as the spec asks, the trial sees
the ids it was given, and the CPU fallback is recorded. What it does not prove: anything about CUDA - that a
real GPU's memory fits the packed trials, that CUDA_VISIBLE_DEVICES maps to the right device, or GPU speed
(bench/results/gpu_train.md covers one real GPU).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import cluster_scripts
import pytest
import yaml

from search.record.tracking import Tracker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
WORKERS, GPUS_PER_NODE = 2, 1

local_cluster = cluster_scripts.load("local_cluster")


@pytest.fixture(scope="module")
def gpu_cluster():
    if not Path(local_cluster._ray_cli()).exists() and shutil.which("ray") is None:
        pytest.skip("the `ray` command is not installed (pip install 'ray[default]')")
    root = Path(tempfile.mkdtemp(prefix="emule-gpu-", dir="/tmp"))  # short: Unix socket paths under it
    try:
        # the head offers no CPUs, so every trial runs on a worker node and needs its GPU share there
        yield local_cluster.start(root, workers=WORKERS, cpus=4, head_cpus=0, gpus=GPUS_PER_NODE)
    finally:
        local_cluster.stop(root)
        left = local_cluster._pids_under(root)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the test cluster survived stop(): {left}"


def write_spec(path: Path, tmp: Path, fraction: float, trials: int) -> Path:
    path.write_text(yaml.safe_dump({
        "name": f"gpu-{fraction:g}",
        "data": {"name": "gunpoint", "cv_folds": "holdout"},
        "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "params", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": "linear", "depth": 1, "width": 16, "heads": 1, "patch_len": 30,
                  "data_fraction": 0.5, "lr": {"low": 1e-3, "high": 3e-3}},
        # trials last several seconds, longer than a trial actor takes to start on a loaded machine: a 1-epoch trial
        # could end, and Tune reuse its actor for every other trial, before a second node's actor was up - leaving
        # that node's GPU unused
        "training": {"epochs": 200, "batch_size": 8},
        # one more trial than the GPUs hold at once: Tune asks for it, Ray must hold it back
        "search": {"sampler": "random", "trials": trials, "concurrency": trials, "seed": 0, "cpus_per_trial": 0.5,
                   "gpus_per_trial": fraction, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "gpu"},
    }))
    return path


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """Most intervals open at one instant (touching ends do not overlap: one run ends before the next starts)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])  # ends sort before starts
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_max_overlap():
    assert max_overlap([(0, 10), (10, 20)]) == 1
    assert max_overlap([(0, 10), (5, 20), (6, 7)]) == 3
    assert max_overlap([]) == 0


@pytest.mark.parametrize("fraction", [1.0, 0.25])
def test_fractional_gpus_are_packed_per_gpu_id(gpu_cluster, tmp_path, fraction):
    per_gpu = int(round(1 / fraction))
    capacity = WORKERS * GPUS_PER_NODE * per_gpu
    spec = write_spec(tmp_path / "spec.yaml", tmp_path, fraction, capacity + 1)
    done = subprocess.run([sys.executable, "-m", "search.cli", "search", str(spec), "--address",
                           gpu_cluster.gcs_address, "--name", "gpu", "--quiet"], env=gpu_cluster.client_env(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "gpu")
    runs = tracker.candidates(tracker.find_search("gpu"))
    assert len(runs) == capacity + 1 and all(r.info.status == "FINISHED" for r in runs)

    workers = set(gpu_cluster.node_ids()) - {n for n in gpu_cluster.node_ids() if _is_head(gpu_cluster, n)}
    by_gpu: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for run in runs:
        tags = run.data.tags
        ids = tags["gpu_ids"].split(",") if tags["gpu_ids"] else []
        assert len(ids) == 1, f"a trial asking {fraction:g} GPU got ids {ids!r}"  # never without its share
        assert tags["node_id"] in workers
        assert tags["device"] == "cpu"  # the id was given, CUDA is absent: it trained on the CPU and says so
        by_gpu[(tags["node_id"], ids[0])].append((run.info.start_time, run.info.end_time))
    declared = {(node, str(i)) for node in workers for i in range(GPUS_PER_NODE)}
    assert set(by_gpu) == declared, "every declared GPU is used, and no other id appears"
    for gpu, intervals in by_gpu.items():
        assert max_overlap(intervals) <= per_gpu, f"GPU {gpu} held more than {per_gpu} trials at once"
    # all the GPUs were full at once: the packing was exercised, not just allowed
    assert max_overlap([iv for ivs in by_gpu.values() for iv in ivs]) == capacity


def _is_head(cluster, node_id: str) -> bool:
    return any(n["node_id"] == node_id and n.get("is_head_node") for n in local_cluster._nodes(cluster))
