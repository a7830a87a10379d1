"""Scaling over nodes: the same search submitted (`emule submit`) to a local multi-node Ray cluster with one worker
node, then with two (one CPU each; the head offers no CPUs, so it runs only the driver).

Reports trials per minute over the search's trial window (first candidate start to last candidate end, from the
MLflow child runs), the whole job's wall time, the nodes the trials ran on, and the ratio two / one worker.
Target: ratio >= 1.8.

On a small shared machine the ratio depends on what else runs: each run also reports the cores the cluster's own
processes used and the cores used by everything else on the machine during the trial window (from /proc), so a
contended run shows as one. ``--repeat`` alternates the two set-ups and reports every pair.

    python bench/scaling.py --trials 12 --epochs 8 --repeat 2 --out bench/results/scaling.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from search.record.tracking import PARENT_TAG, Tracker

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def _local_cluster():
    spec = importlib.util.spec_from_file_location("emule_cluster_local_cluster", ROOT / "cluster" / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_spec(path: Path, tmp: Path, trials: int, epochs: int, concurrency: int) -> None:
    # A fixed mid-size architecture, so every trial does the same work (about 0.8 s per epoch on one core) and the
    # driver's per-epoch bookkeeping (Tune results, MLflow logging) stays small next to it: on a 2-core machine the
    # head's processes share the cores with the trials. The sampler varies only the learning rate.
    path.write_text(yaml.safe_dump({
        "name": "scaling",
        "data": {"name": "osuleaf"},
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "params", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": "softmax", "depth": 4, "width": 128, "heads": 4, "patch_len": 8, "data_fraction": 1.0,
                  "lr": {"low": 1e-3, "high": 3e-3, "log": True}},
        "training": {"epochs": epochs, "batch_size": 32},
        "search": {"sampler": "random", "trials": trials, "concurrency": concurrency, "seed": 0,
                   "cpus_per_trial": 1, "storage": str(tmp / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "scaling"},
    }))


class CpuMeter:
    """Samples, every half second, the machine's busy CPU time and the CPU time of the cluster's processes (the
    last value seen per PID, so processes that end are counted up to their last sample)."""

    def __init__(self, pids_of):
        self.pids_of, self.samples, self.per_pid = pids_of, [], {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids_of():
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    self.per_pid[pid] = (int(fields[11]) + int(fields[12])) / TICK
                except (OSError, IndexError):
                    pass
            self.samples.append((time.time(), _machine_busy_s(), sum(self.per_pid.values())))
            self._stop.wait(0.5)

    def cores(self, start: float, end: float) -> tuple[float, float]:
        """(cores used by the cluster, cores used by everything else) between two wall-clock times."""
        inside = [s for s in self.samples if start <= s[0] <= end] or self.samples
        (t0, busy0, ours0), (t1, busy1, ours1) = inside[0], inside[-1]
        span = max(t1 - t0, 1e-9)
        return (ours1 - ours0) / span, ((busy1 - busy0) - (ours1 - ours0)) / span


def _machine_busy_s() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def run(workers: int, trials: int, epochs: int, concurrency: int) -> dict:
    lc = _local_cluster()
    tmp = Path(tempfile.mkdtemp(prefix="emule-sc-", dir="/tmp"))
    spec = tmp / "spec.yaml"
    write_spec(spec, tmp, trials, epochs, concurrency)
    cluster = lc.start(tmp / "ray", workers=workers, cpus=1, head_cpus=0)
    try:
        def emule(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "search.cli", *args, "--address", cluster.dashboard_url],
                                  env=cluster.client_env(), cwd=ROOT, capture_output=True, text=True, check=False)

        with CpuMeter(lambda: lc._pids_under(tmp / "ray")) as meter:
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
    runs = tracker.runs(f"tags.`{PARENT_TAG}` = '{parent}'")
    start = min(r.info.start_time for r in runs) / 1000
    end = max(r.info.end_time for r in runs) / 1000
    ours, others = meter.cores(start, end)
    train = statistics.median(r.data.metrics.get("train_time_s", float("nan")) for r in runs)
    shutil.rmtree(tmp, ignore_errors=True)  # Ray's logs, Tune's state and the MLflow store of this run
    return {"workers": workers, "trials": len(runs), "window_s": end - start, "wall_s": wall,
            "per_min": len(runs) / (end - start) * 60, "nodes": len({r.data.tags.get("node_id") for r in runs}),
            "median_train_s": train, "ours": ours, "others": others}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8, help="per trial (about 0.8 s each on one core)")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs (1 worker, then 2)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    pairs = []
    for _ in range(args.repeat):
        pairs.append([run(w, args.trials, args.epochs, concurrency=2) for w in (1, 2)])
        one, two = pairs[-1]
        print(f"1 worker {one['per_min']:.2f}/min, 2 workers {two['per_min']:.2f}/min: ratio "
              f"{two['per_min'] / one['per_min']:.2f} (others used {one['others']:.2f} / {two['others']:.2f} cores)",
              flush=True)
    ratios = [two["per_min"] / one["per_min"] for one, two in pairs]
    per_core = [(two["per_min"] / two["ours"]) / (one["per_min"] / one["ours"]) for one, two in pairs]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
                            ).stdout.strip() or "?"
    lines = [
        "# Scaling over nodes: one worker node vs two",
        "",
        f"Command: `python bench/scaling.py --trials {args.trials} --epochs {args.epochs} --repeat {args.repeat}` "
        f"(at {commit}, {time.strftime('%Y-%m-%d %H:%M')})  ",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, shared with other "
        "work. Local multi-node Ray cluster on 127.0.0.1 (cluster/local_cluster.py: head with 0 CPUs running the "
        "driver, GCS and dashboard; worker nodes with 1 CPU each; token auth); the search submitted with "
        "`emule submit`; concurrency 2 in both set-ups; fixed architecture (width 128, depth 4), "
        f"{args.epochs} epochs per trial.",
        "",
        "Trials/min over the trial window (first candidate start to last candidate end, from MLflow). Cores: CPU "
        "time per second of the trial window, of the cluster's own processes (trials, driver, Ray daemons) and of "
        "everything else on the machine.",
        "",
        "| pair | worker nodes | trials | nodes used | trial window (s) | job wall (s) | trials/min | median "
        "train_time_s | cores: cluster | cores: others | trials/min per cluster core |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(f"| {i} | {r['workers']} | {r['trials']} | {r['nodes']} | {r['window_s']:.1f} | {r['wall_s']:.1f} | "
          f"{r['per_min']:.2f} | {r['median_train_s']:.2f} | {r['ours']:.2f} | {r['others']:.2f} | "
          f"{r['per_min'] / r['ours']:.2f} |" for i, pair in enumerate(pairs, 1) for r in pair),
        "",
        f"**Ratio (trials/min, 2 workers / 1 worker): {', '.join(f'{x:.2f}' for x in ratios)}; median "
        f"{statistics.median(ratios):.2f}** (target >= 1.8).",
        "",
        "Per core the cluster got, 2 workers / 1 worker: "
        f"{', '.join(f'{x:.2f}' for x in per_core)} "
        "(1.0 = the second node adds throughput in proportion to the CPU it gets; where other work holds part of "
        "the cores, 2 x this is the ratio to expect with both cores free - an estimate, not a measurement).",
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
