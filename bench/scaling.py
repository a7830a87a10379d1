"""Scaling over nodes: the same search submitted (`emule submit`) to a local multi-node Ray cluster with one worker
node, then with two (one CPU each; the head offers no CPUs, so it runs only the driver).

Reports trials per minute over the search's trial window (first candidate start to last candidate end, from the
MLflow child runs), the whole job's wall time, the nodes the trials ran on, and the ratio two / one worker.
Target: ratio >= 1.8. The machine's load average is recorded: other processes on the same cores distort the ratio.

    python bench/scaling.py --trials 12 --epochs 30 --out bench/results/scaling.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from search.tracking import PARENT_TAG, Tracker

ROOT = Path(__file__).resolve().parents[1]


def _local_cluster():
    spec = importlib.util.spec_from_file_location("emule_cluster_local_cluster", ROOT / "cluster" / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_spec(path: Path, tmp: Path, trials: int, epochs: int, concurrency: int) -> None:
    # fixed architecture, so every trial does about the same work; the sampler varies lr and data order only
    path.write_text(yaml.safe_dump({
        "name": "scaling",
        "data": {"name": "osuleaf"},
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "params", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": "softmax", "depth": 2, "width": 64, "heads": 2, "patch_len": 16, "data_fraction": 1.0,
                  "lr": {"low": 1e-3, "high": 3e-3, "log": True}},
        "training": {"epochs": epochs, "batch_size": 32},
        "search": {"sampler": "random", "trials": trials, "concurrency": concurrency, "seed": 0,
                   "cpus_per_trial": 1, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "scaling"},
    }))


def run(workers: int, trials: int, epochs: int, concurrency: int) -> dict:
    lc = _local_cluster()
    tmp = Path(tempfile.mkdtemp(prefix="emule-sc-", dir="/tmp"))
    spec = tmp / "spec.yaml"
    write_spec(spec, tmp, trials, epochs, concurrency)
    cluster = lc.start(tmp / "ray", workers=workers, cpus=1, head_cpus=0)
    load_before = os.getloadavg()[0]
    try:
        def emule(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "search.cli", *args, "--address", cluster.dashboard_url],
                                  env=cluster.client_env(), cwd=ROOT, capture_output=True, text=True, check=False)

        t0 = time.perf_counter()
        sub = emule("submit", str(spec), "--name", f"scaling-{workers}")
        job = next(ln for ln in sub.stdout.split() if re.fullmatch(r"raysubmit_\w+", ln))
        done = emule("status", job, "--wait")
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"job failed: {done.stdout}\n{emule('logs', job).stdout[-3000:]}")
    finally:
        lc.stop(tmp / "ray")
    tracker = Tracker(f"sqlite:///{tmp / 'mlflow.db'}", "scaling")
    parent = tracker.find_search(f"scaling-{workers}")
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`{PARENT_TAG}` = '{parent}'")
    start = min(r.info.start_time for r in runs) / 1000
    end = max(r.info.end_time for r in runs) / 1000
    train = sorted(r.data.metrics.get("train_time_s", float("nan")) for r in runs)
    return {"workers": workers, "trials": len(runs), "window_s": end - start, "wall_s": wall,
            "per_min": len(runs) / (end - start) * 60, "nodes": len({r.data.tags.get("node_id") for r in runs}),
            "median_train_s": train[len(train) // 2], "load": (load_before + os.getloadavg()[0]) / 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=30, help="per trial; enough that a trial takes seconds")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [run(w, args.trials, args.epochs, concurrency=2) for w in (1, 2)]
    ratio = rows[1]["per_min"] / rows[0]["per_min"]
    lines = [
        "# Scaling over nodes: one worker node vs two",
        "",
        f"Command: `python bench/scaling.py --trials {args.trials} --epochs {args.epochs}`  ",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; local multi-node "
        "Ray cluster on 127.0.0.1 (cluster/local_cluster.py: head with 0 CPUs running the driver, worker nodes with "
        "1 CPU each, token auth), the search submitted with `emule submit`; concurrency 2 in both runs.",
        "",
        "| worker nodes | trials | nodes used | trial window (s) | job wall (s) | trials/min | median train_time_s "
        "| load avg |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {r['workers']} | {r['trials']} | {r['nodes']} | {r['window_s']:.1f} | {r['wall_s']:.1f} | "
          f"{r['per_min']:.2f} | {r['median_train_s']:.2f} | {r['load']:.1f} |" for r in rows),
        "",
        f"**Ratio (trials/min, 2 workers / 1 worker): {ratio:.2f}** (target >= 1.8).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
