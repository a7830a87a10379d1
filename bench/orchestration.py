"""Orchestration at scale, simulated: EMuLe's real driver (runner, Optuna searcher, scheduler, SearchCallback with
its MLflow logging and live front) running hundreds of lightweight trials at once on virtual nodes.

A trial here sleeps ``--epoch-s`` per epoch and reports a synthetic learning curve with as many metrics as a real
trial (no torch), so the driver - not the trials - is what is measured. The virtual nodes are worker nodes of a
local Ray cluster (cluster/local_cluster.py) that declare a custom resource ``trial_slot``; a trial asks for one
slot and no CPU, so hundreds fit on two cores as long as their worker processes fit in memory.

Per run (one concurrency, one MLflow store):
- results per second the driver handled, and how late it took them (driver receive time - trial send time);
- orchestration efficiency: sum of trial time (epochs run x epoch time) / (wall x concurrency), over the whole
  trial window (first trial start to last trial end, ramp-up included), over the steady window (all slots first
  busy to the last trial's start, when work was always waiting) and over the warm window (every actor process
  started to the last trial's start);
- how much longer a trial took than its sleeps (its report stalls);
- the driver's CPU (cores) and peak memory, the cluster's memory (all its processes) and per-actor memory;
- the CPU of every process, by kind (the driver, trial actors, other Ray workers, each Ray daemon), over the whole
  run and over the warm window - which process saturates;
- MLflow write latency: every ``MlflowClient.log_batch`` / ``set_tag`` / ``create_run`` / ``set_terminated`` /
  ``log_artifact`` call the driver made, timed.

    python bench/orchestration.py --concurrency 8 64 --store sqlite postgres --out bench/results/orchestration.jsonl

``--ray-ceiling`` measures Ray alone on the same cluster (as many plain actors, a result each per epoch);
``--capacity`` the driver's own work without Ray; ``--front-cost`` keeping the front current.

Memory guard: the run stops (as Ctrl-C stops a search) when the machine's available memory falls under
``--min-free-gib``, and the result says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.spec.metrics import SIZE  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SLOT = "trial_slot"
TRIAL_ACTORS = "trial actors"  # the kind of process a trial runs in (see _kind)


def _script(name: str):
    """cluster/<name>.py as a module (cluster/ holds scripts, not a package)."""
    if str(ROOT / "cluster") not in sys.path:
        sys.path.insert(0, str(ROOT / "cluster"))
    module_name = f"emule_cluster_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "cluster" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# --- the lightweight trial (runs on a Ray worker: imports neither torch nor the search's own modules but one) ---
def synthetic_trial(config: dict, epochs: int, epoch_s: float, blocking: bool) -> None:
    """Sleep ``epoch_s`` per epoch and report a learning curve shaped by the sampled width and depth."""
    import math
    import random

    import ray
    from ray import tune

    from search.trial.reporting import Reporter

    t_start = time.time()
    width, depth = int(config.get("width", 32)), int(config.get("depth", 2))
    rng = random.Random(hash((width, depth, float(config.get("lr", 1e-3)))))
    ceiling = 0.6 + 0.3 * (1 - math.exp(-width * depth / 64))
    params = depth * 12 * width * width + 200 * width
    static = {SIZE: params, "flops": 40 * params, "latency_ms": 0.01 * depth, "latency_train_batch_ms": 0.2,
              "peak_memory_bytes": 1000 * params, "serve_memory_bytes": 100 * params,
              "node_id": ray.get_runtime_context().get_node_id(), "device": "cpu", "gpu_ids": ""}
    with Reporter(tune.report, blocking=blocking) as reporter:
        for epoch in range(1, epochs + 1):
            time.sleep(epoch_s)
            acc = ceiling * (1 - math.exp(-epoch / 3)) + rng.gauss(0, 0.01)
            row = {**static, "epoch": epoch, "val_accuracy": acc, "val_loss": 1 - acc, "train_loss": 0.9 - acc,
                   "val_accuracy_std": 0.01, "samples_seen": 50 * epoch, "training_compute": 3 * 40 * params * 50
                   * epoch, "t_start": t_start, "t_sent": time.time(), "slept_s": epoch * epoch_s}
            if epoch == epochs:
                row.update(budget_done=True, test_accuracy=acc, test_loss=1 - acc, train_samples=50,
                           refit_compute=1.0, work_time_s=time.time() - t_start)
            reporter.report(row)


# --- driver-side probes ---
class Probe:
    """Times every MLflow client call the driver makes, records every result the driver takes, and samples memory
    and CPU once a second."""

    CALLS = ("log_batch", "set_tag", "create_run", "set_terminated", "log_artifact", "log_dict", "search_runs")

    def __init__(self, cluster_root: str, min_free_gib: float, max_run_s: float | None = None):
        self.writes: dict[str, list[float]] = defaultdict(list)
        self.results: list[tuple[float, str, dict]] = []
        self.cluster_root, self.min_free_gib = Path(cluster_root), min_free_gib
        self.peak_cluster_rss, self.min_free, self.actors_peak = 0, float("inf"), 0
        self.stopped_for_memory = self.stopped_for_time = False
        self.max_run_s = max_run_s
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}  # the cluster's processes: kind, CPU seconds last seen
        self.cpu_series: list[tuple[float, dict[str, float]]] = []  # (time, CPU seconds by kind since the start)
        self._stop = threading.Event()

    def patch_mlflow(self):
        from mlflow.tracking import MlflowClient

        originals = {}
        for name in self.CALLS:
            original = getattr(MlflowClient, name)
            originals[name] = original

            def timed(*args, _original=original, _name=name, **kwargs):
                t0 = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.writes[_name].append(time.perf_counter() - t0)

            setattr(MlflowClient, name, timed)
        return lambda: [setattr(MlflowClient, n, f) for n, f in originals.items()]

    def callback(self):
        from ray.tune import Callback

        class ResultProbe(Callback):  # holds only the list: Tune pickles its callbacks with the experiment
            def __init__(self, sink: list):
                self.sink = sink

            def on_trial_result(self, iteration, trials, trial, result, **info):
                self.sink.append((time.time(), trial.trial_id, {k: result.get(k) for k in (
                    "epoch", "t_start", "t_sent", "slept_s", "budget_done", "pid")}))

        return ResultProbe(self.results)

    def watch(self) -> threading.Thread:
        local_cluster = _script("local_cluster")

        started = time.monotonic()
        self.cpu_base = {pid: _proc_cpu_s(pid) or 0.0 for pid in local_cluster._pids_under(self.cluster_root)}

        def loop():
            while not self._stop.wait(2.0):  # the probe's own cost is the driver's: not more often
                if self.max_run_s and time.monotonic() - started > self.max_run_s and not self.stopped_for_time:
                    self.stopped_for_time = True
                    os.kill(os.getpid(), signal.SIGINT)
                free = _mem_available()
                self.min_free = min(self.min_free, free)
                pids = local_cluster._pids_under(self.cluster_root)
                kinds = {pid: _kind(pid) for pid in pids}  # read each time: a worker names itself once an actor
                for pid, kind in kinds.items():
                    if (cpu := _proc_cpu_s(pid)) is not None:
                        self.cpu_by_pid[pid] = (kind, cpu)
                self.cpu_series.append((time.time(), self.cpu_by_kind()))
                self.peak_cluster_rss = max(self.peak_cluster_rss, sum(_rss(p) for p in pids))
                self.actors_peak = max(self.actors_peak, sum(1 for kind in kinds.values() if kind == TRIAL_ACTORS))
                if free < self.min_free_gib * 1024**3 and not self.stopped_for_memory:
                    self.stopped_for_memory = True
                    os.kill(os.getpid(), signal.SIGINT)  # the search stops in order, as on Ctrl-C

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def sample_driver(self, every_s: float = 0.05) -> threading.Thread:
        """A sampling profile of the driver's main thread (Tune's event loop): every ``every_s``, where it is -
        the library it is in (innermost first: mlflow, optuna, matplotlib, pyarrow) and the EMuLe callback on the
        stack - so the bottleneck has a name."""
        main = threading.main_thread().ident
        self.samples: dict[str, int] = defaultdict(int)

        def loop():
            while not self._stop.wait(every_s):
                frame = sys._current_frames().get(main)
                self.samples[_where(frame)] += 1

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def cpu_by_kind(self) -> dict[str, float]:
        by_kind: dict[str, float] = defaultdict(float)
        for pid, (kind, seen) in self.cpu_by_pid.items():
            by_kind[kind] += seen - self.cpu_base.get(pid, 0.0)
        by_kind["driver"] = _cpu_s()
        return by_kind

    def cores_between(self, t0: float, t1: float) -> dict[str, float]:
        """Cores each kind of process used between two times (the nearest samples of the series)."""
        inside = [(t, c) for t, c in self.cpu_series if t0 <= t <= t1]
        if len(inside) < 2:
            return {}
        (ta, a), (tb, b) = inside[0], inside[-1]
        return {k: round((b[k] - a.get(k, 0.0)) / (tb - ta), 3) for k in sorted(b, key=lambda k: a.get(k, 0.0) - b[k])}

    def stop(self) -> None:
        self._stop.set()


def _where(frame) -> str:
    library, ours, tune_at, step = None, None, None, None
    while frame is not None:
        path, name = frame.f_code.co_filename, frame.f_code.co_name
        if library is None:
            library = next((lib for lib in ("mlflow", "optuna", "matplotlib", "pyarrow", "sqlalchemy")
                            if f"/{lib}/" in path), None)
            if library is None and name in ("wait", "select", "poll", "get", "_get_next_event", "sleep"):
                library = "waiting"
        if tune_at is None and f"{os.sep}ray{os.sep}" in path:
            tune_at = f"{Path(path).stem}.{name}"
        if step is None and path.endswith("tune_controller.py"):
            step = name
        if ours is None and f"{os.sep}search{os.sep}" in path and "site-packages" not in path:
            ours = f"{Path(path).stem}.{name}"
        frame = frame.f_back
    if library is None and tune_at:
        return f"tune/ray {tune_at} < {step or '-'} | {ours or '-'}"
    return f"{library or 'tune/ray'} | {ours or '-'}"


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _proc_cpu_s(pid: int | str) -> float | None:
    """CPU seconds (user + system) a process has used; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(stat[11]) + int(stat[12])) / TICK


def _kind(pid: int) -> str:
    """What a cluster process is, for the CPU breakdown: a trial actor, another worker (idle, starting, not a
    trial), Ray's agents, the dashboard, or a daemon by its program's name (raylet, gcs_server, log_monitor ...).
    Read from the program, never from its arguments: the raylet's arguments name the worker script."""
    try:
        args = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return "gone"
    title = args[0] if args else ""  # Ray's workers and agents retitle themselves "ray::..."
    if title.startswith("ray::ImplicitFunc"):
        return TRIAL_ACTORS
    if title.startswith("ray::"):
        return "agents" if title.endswith("Agent") else "other ray workers"
    if title.startswith("ray-dashboard"):
        return "dashboard"
    program = Path(title).name
    if not program.startswith("python"):
        return program or "other"
    script = next((a for a in args[1:] if not a.startswith("-")), "")  # after python's flags; -c's code counts
    if script.endswith("default_worker.py"):
        return "other ray workers"
    if "dashboard" in script:  # the dashboard and its module processes' fork server
        return "dashboard"
    return "other" if " " in script or not script else Path(script).name.removesuffix(".py")  # a script or -m module


def _machine_busy_s() -> float:
    """CPU seconds every core of the machine spent busy since boot (all processes, anyone's)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK  # minus idle and iowait


def _cpu_s() -> float:
    return _proc_cpu_s("self")


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# --- one run ---
def bench_spec(tmp: Path, uri: str, concurrency: int, trials: int, epochs: int, sampler: str, scheduler: str):
    from search.driver.checks import parse_spec

    return parse_spec({
        "name": "orchestration",
        "data": {"name": "gunpoint", "cv_folds": "holdout"},
        "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": SIZE, "mode": "min", "reference": 1e7, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 4}, "width": [16, 32, 64, 128],
                  "heads": [1, 2, 4], "patch_len": [10, 15, 30], "data_fraction": {"low": 0.25, "high": 1.0},
                  "lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        "training": {"epochs": epochs, "batch_size": 32},
        "search": {"sampler": sampler, "scheduler": scheduler, "trials": trials, "concurrency": concurrency,
                   "seed": 0, "storage": str(tmp / "runs")},
        "tracking": {"uri": uri, "experiment": "orchestration"},
    })


def run_once(cluster, uri: str, store: str, concurrency: int, args) -> dict:
    from ray import tune

    from search.driver.runner import run_search

    trials = concurrency * args.waves
    tmp = Path(tempfile.mkdtemp(prefix="emule-orch-"))
    spec = bench_spec(tmp, uri, concurrency, trials, args.epochs, args.sampler, args.scheduler)
    trainable = tune.with_resources(
        tune.with_parameters(synthetic_trial, epochs=args.epochs, epoch_s=args.epoch_s, blocking=args.blocking),
        {"cpu": 0, SLOT: 1})
    probe = Probe(cluster.root, args.min_free_gib, args.max_run_s)
    unpatch = probe.patch_mlflow()
    probe.watch()
    probe.sample_driver()
    cpu0, t0, busy0 = _cpu_s(), time.monotonic(), _machine_busy_s()
    try:
        import inspect

        # the commits measured in bench/results/orchestration.md named this parameter `trainable`
        key = "custom_trainable" if "custom_trainable" in inspect.signature(run_search).parameters else "trainable"
        result = run_search(spec, name=f"c{concurrency}-{store}", out=io.StringIO(), ray_address=cluster.gcs_address,
                            callbacks=[probe.callback()], status_every=None, quiet=True, **{key: trainable})
        status = result.status
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        probe.stop()
        unpatch()
    wall, cpu = time.monotonic() - t0, _cpu_s() - cpu0
    busy = _machine_busy_s() - busy0
    shutil.rmtree(tmp, ignore_errors=True)
    row = {"store": store, "concurrency": concurrency, "trials": trials, "epochs": args.epochs,
           "epoch_s": args.epoch_s, "report": "blocking" if args.blocking else "async", "sampler": args.sampler,
           "scheduler": args.scheduler, "status": "stopped: memory" if probe.stopped_for_memory else
           f"stopped: past {args.max_run_s:g} s" if probe.stopped_for_time else status,
           "driver_wall_s": round(wall, 1), "driver_cpu_cores": round(cpu / wall, 2),
           "machine_busy_cores": round(busy / wall, 2),
           "driver_peak_rss_mib": round(_peak_rss() / 1024**2), "cluster_peak_rss_gib":
           round(probe.peak_cluster_rss / 1024**3, 2), "actors_peak": probe.actors_peak,
           "min_available_gib": round(probe.min_free / 1024**3, 1), "label": args.label}
    row.update(summarize(probe.results, concurrency, args.epoch_s))
    total = sum(probe.samples.values()) or 1
    row["driver_profile"] = {k: round(v / total, 3) for k, v in sorted(probe.samples.items(), key=lambda x: -x[1])[:12]}
    by_kind = probe.cpu_by_kind()
    by_kind["driver"] = cpu
    row["cores_by_process"] = {k: round(v / wall, 3) for k, v in sorted(by_kind.items(), key=lambda x: -x[1])}
    warm_from, last_start = row.pop("warm_from", None), row.pop("last_start", None)
    if row.get("efficiency_warm") is not None:
        row["cores_by_process_warm"] = probe.cores_between(warm_from, last_start)
    for name, times in probe.writes.items():
        times = sorted(times)
        row[f"mlflow_{name}"] = {"n": len(times), "p50_ms": round(1000 * times[len(times) // 2], 1),
                                 "p95_ms": round(1000 * times[int(len(times) * 0.95)], 1),
                                 "total_s": round(sum(times), 1)}
    return row


def ray_ceiling(cluster, concurrency: int, epoch_s: float, window_s: float = 60.0) -> dict:
    """What Ray alone delivers on this cluster, without Tune or EMuLe: ``concurrency`` actors (one trial slot each,
    as the trials ask) each hand back a result of a trial's size every ``epoch_s``, the driver keeping one call in
    flight per actor, as Tune does. Results per second over ``window_s`` once every actor is up, against the
    ``concurrency / epoch_s`` the actors offer."""
    import ray

    @ray.remote(num_cpus=0, resources={SLOT: 1})
    class Reporter:
        def __init__(self):
            self.last = time.time()

        def next(self) -> dict:
            wait = self.last + epoch_s - time.time()
            if wait > 0:
                time.sleep(wait)
            self.last = time.time()
            return {f"metric_{i}": float(i) for i in range(24)}

    ray.init(address=cluster.gcs_address, log_to_driver=False)
    try:
        t0 = time.monotonic()
        actors = [Reporter.remote() for _ in range(concurrency)]
        ray.get([a.__ray_ready__.remote() for a in actors])
        up_s = time.monotonic() - t0
        pending = {a.next.remote(): a for a in actors}
        got, start = 0, time.monotonic()
        while time.monotonic() - start < window_s:
            done, _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(done[0])
            ray.get(done[0])
            got += 1
            pending[actor.next.remote()] = actor
        rate = got / (time.monotonic() - start)
        for a in actors:
            ray.kill(a)
    finally:
        ray.shutdown()
    return {"label": "Ray alone", "concurrency": concurrency, "actors_up_s": round(up_s, 1),
            "offered_results_per_s": round(concurrency / epoch_s, 1), "results_per_s": round(rate, 1),
            "ratio": round(rate * epoch_s / concurrency, 3)}


def summarize(results: list[tuple[float, str, dict]], concurrency: int, epoch_s: float) -> dict:
    """Efficiency, results per second, lag and stalls from what the driver received."""
    if not results:
        return {}
    per_trial: dict[str, list] = defaultdict(list)
    for recv, tid, r in results:
        per_trial[tid].append((recv, r))
    spans, lags, stalls = [], [], []
    for rows in per_trial.values():
        start = rows[0][1]["t_start"]
        last = max(rows, key=lambda x: x[1]["epoch"])
        spans.append((start, last[1]["t_sent"], last[1]["slept_s"]))
        lags += [recv - r["t_sent"] for recv, r in rows]
        stalls.append((last[1]["t_sent"] - start) - last[1]["slept_s"])
    lo, hi = min(s for s, _, _ in spans), max(e for _, e, _ in spans)
    work = sum(w for _, _, w in spans)
    # steady window: from the moment every slot first held a trial to the last trial's start
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    running, full = 0, None
    for t, step in events:
        running += step
        if running >= concurrency and full is None:
            full = t
    last_start = max(s for s, _, _ in spans)
    steady = None
    if full is not None and last_start > full:
        busy = sum(max(0.0, min(e, last_start) - max(s, full)) for s, e, _ in spans)
        steady = round(busy / ((last_start - full) * concurrency), 3)
    # warm window: from the first report of the last actor process to start (the machine's process start-up,
    # minutes for 64 processes on 2 cores, is over) to the last trial's start
    first_of_pid: dict = {}
    for _, _, r in sorted(results, key=lambda x: x[0]):
        first_of_pid.setdefault(r.get("pid"), r["t_start"])
    warm_from = max(first_of_pid.values())
    warm = None
    if last_start > warm_from:
        busy = sum(max(0.0, min(e, last_start) - max(s, warm_from)) for s, e, _ in spans)
        warm = round(busy / ((last_start - warm_from) * concurrency), 3)
    recvs = [recv for recv, _, _ in results]
    pids = {r.get("pid") for _, _, r in results}
    lags.sort()
    return {"results": len(results), "actor_processes": len(pids),
            "results_per_s": round(len(results) / (max(recvs) - min(recvs) or 1), 1),
            "trial_window_s": round(hi - lo, 1), "efficiency": round(work / ((hi - lo) * concurrency), 3),
            "efficiency_steady": steady, "steady_window_s": round(last_start - full, 1) if steady else None,
            "efficiency_warm": warm, "warm_window_s": round(last_start - warm_from, 1) if warm else None,
            "lag_p50_s": round(lags[len(lags) // 2], 3), "lag_p95_s": round(lags[int(len(lags) * 0.95)], 3),
            "stall_per_trial_p50_s": round(statistics.median(stalls), 2),
            "stall_per_trial_max_s": round(max(stalls), 2), "warm_from": warm_from, "last_start": last_start}


def front_cost(n: int, objectives: int, seed: int = 0) -> dict:
    """Driver time to keep the front current as ``n`` candidates finish one by one: recomputed every time (before)
    against extended without recomputation when the newcomer is dominated (after)."""
    import numpy as np

    from search.front.state import Record, compute_front, extend_front
    from search.spec.schema import Objective

    objs = [Objective(metric="val_accuracy", mode="max", reference=0.0),
            Objective(metric=SIZE, mode="min", reference=1e7, log=True),
            Objective(metric="flops", mode="min", reference=1e9, log=True)][:objectives]
    rng = np.random.default_rng(seed)
    records = [Record(str(i), str(i), {"val_accuracy": float(rng.random()), SIZE: float(10 ** rng.uniform(3, 6)),
                                       "flops": float(10 ** rng.uniform(4, 8))}) for i in range(n)]
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        compute_front(records[:i], objs)
    before = time.perf_counter() - t0
    t0, front, recomputed = time.perf_counter(), compute_front([], objs), 0
    for i in range(1, n + 1):
        extended = extend_front(front, records[i - 1], objs)
        if extended is None:
            recomputed += 1
        front = extended or compute_front(records[:i], objs)
    after = time.perf_counter() - t0
    return {"finished": n, "objectives": objectives, "recompute_every_time_s": round(before, 2),
            "extend_s": round(after, 2), "recomputed": recomputed}


def driver_capacity(store_uri: str, concurrency: int, trials: int, epochs: int, label: str) -> dict:
    """EMuLe's own driver work without Ray: the search's SearchCallback and Optuna searcher driven by fake trials as
    fast as they take results - ``concurrency`` trials open at once, each reporting ``epochs`` synthetic results,
    a new trial suggested as one ends. Measures what Tune's event loop would spend in our code per result and per
    trial, and how many results per second the whole path (the MLflow writer thread included) takes at most.
    Machine contention slows it too, but no Ray process runs: the numbers compare code, not cluster start-up."""
    import random
    from types import SimpleNamespace

    from search.driver.callbacks import SearchCallback
    from search.driver.searcher import BudgetAwareOptunaSearch
    from search.record.tracking import Tracker
    from search.spec.space import DefineByRun, build_sampler

    tmp = Path(tempfile.mkdtemp(prefix="emule-cap-"))
    spec = bench_spec(tmp, store_uri, concurrency, trials, epochs, "tpe", "none")
    tracker = Tracker(spec.tracking.uri, spec.tracking.experiment)
    parent = tracker.start_search(f"capacity-{label}", {}, "")
    from search.trial.candidate import spec_dataset

    dataset = spec_dataset(spec)  # its shape resolves each candidate, as in a search
    callback = SearchCallback(spec, tracker, parent, "capacity", dataset.modalities, len(dataset.classes), trials,
                              status_every=None, quiet=True)
    searcher = BudgetAwareOptunaSearch(space=DefineByRun(spec), metric=spec.metrics, mode=spec.modes,
                                       sampler=build_sampler(spec))
    rng = random.Random(0)
    open_trials: dict[str, SimpleNamespace] = {}
    started = ended = results = 0
    times = {"suggest": 0.0, "start": 0.0, "result": 0.0, "complete": 0.0}
    t0 = time.perf_counter()

    def timed(key, fn, *a):
        t = time.perf_counter()
        out = fn(*a)
        times[key] += time.perf_counter() - t
        return out

    while ended < trials:
        while len(open_trials) < concurrency and started < trials:
            tid = f"t{started:05d}"
            config = timed("suggest", searcher.suggest, tid)
            trial = SimpleNamespace(trial_id=tid, config=config, last_result=None, status="RUNNING", epoch=0)
            open_trials[tid] = trial
            timed("start", callback.on_trial_start, 0, [], trial)
            started += 1
        for tid, trial in list(open_trials.items()):
            trial.epoch += 1
            width, depth = int(trial.config.get("width", 32)), int(trial.config.get("depth", 2))
            acc = min(0.99, 0.5 + 0.4 * trial.epoch / epochs * width * depth / 512 + rng.gauss(0, 0.01))
            params = depth * 12 * width * width + 200 * width
            row = {"epoch": trial.epoch, "val_accuracy": acc, "val_loss": 1 - acc, "train_loss": 0.9 - acc,
                   "val_accuracy_std": 0.01, "samples_seen": 50 * trial.epoch, SIZE: params,
                   "flops": 40 * params, "latency_ms": 0.01, "latency_train_batch_ms": 0.2,
                   "peak_memory_bytes": 1000 * params, "serve_memory_bytes": 100 * params,
                   "training_compute": 1e6 * trial.epoch, "node_id": "n", "device": "cpu", "gpu_ids": ""}
            if trial.epoch == epochs:
                row.update(budget_done=True, test_accuracy=acc, train_samples=50, work_time_s=1.0)
            trial.last_result = row
            timed("result", callback.on_trial_result, 0, [], trial, row)
            results += 1
            if trial.epoch == epochs:
                trial.status = "TERMINATED"
                searcher.on_trial_complete(tid, row)
                timed("complete", callback.on_trial_complete, 0, [], trial)
                del open_trials[tid]
                ended += 1
    loop_s = time.perf_counter() - t0
    callback.on_experiment_end([])
    total_s = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    return {"label": label, "store": store_uri.split(":")[0], "concurrency": concurrency, "trials": trials,
            "epochs": epochs, "results": results, "loop_s": round(loop_s, 2), "total_s": round(total_s, 2),
            "results_per_s_loop": round(results / loop_s, 1), "results_per_s_total": round(results / total_s, 1),
            "ms_per_result": round(1000 * times["result"] / results, 2),
            "ms_per_trial_start": round(1000 * times["start"] / trials, 1),
            "ms_per_trial_end": round(1000 * times["complete"] / trials, 1),
            "ms_per_suggest": round(1000 * times["suggest"] / trials, 1)}


COLUMNS = [("label", "code"), ("store", "store"), ("report", "report"), ("concurrency", "concurrent"),
           ("trials", "trials"), ("status", "status"), ("results_per_s", "results/s"),
           ("efficiency", "efficiency"), ("efficiency_steady", "steady eff."), ("efficiency_warm", "warm eff."),
           ("lag_p50_s", "lag p50 s"),
           ("lag_p95_s", "lag p95 s"), ("stall_per_trial_p50_s", "stall/trial s"), ("driver_cpu_cores", "driver cores"),
           ("machine_busy_cores", "machine busy cores"),
           ("driver_peak_rss_mib", "driver MiB"), ("cluster_peak_rss_gib", "cluster GiB"), ("actors_peak", "actors"),
           ("actor_processes", "actor procs"), ("min_available_gib", "min free GiB")]


def table(paths: list[Path]) -> str:
    """The runs recorded in ``paths`` (JSON lines) as a Markdown table, then each run's MLflow calls and profile."""
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.startswith("{")]
    rows = [r for r in rows if "report" in r]  # cluster runs only: the file also keeps --capacity, --front-cost ...
    out = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(str(r.get(k, "")) for k, _ in COLUMNS) + " |" for r in rows]
    out.append("")
    for r in rows:
        calls = ", ".join(f"{k[7:]} {v['n']} x p50 {v['p50_ms']} / p95 {v['p95_ms']} ms (sum {v['total_s']} s)"
                          for k, v in r.items() if k.startswith("mlflow_"))
        out.append(f"- {r['label']}, {r['store']}, {r['report']}, {r['concurrency']} concurrent - MLflow calls: {calls}"
                   f"; driver loop: " + ", ".join(f"{k} {v:.0%}" for k, v in r.get("driver_profile", {}).items())
                   + "".join(f"; {title}: " + ", ".join(f"{k} {v:.2f}" for k, v in r[key].items())
                             for key, title in (("cores_by_process", "cores by process"),
                                                ("cores_by_process_warm", "cores by process, warm window"))
                             if r.get(key)))
    return "\n".join(out)


def _emit(row: dict, out: Path | None) -> None:
    """One run's result: printed, and appended to ``out`` as a JSON line."""
    print(json.dumps(row), flush=True)
    if out:
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    p.add_argument("--store", nargs="+", default=["sqlite"], choices=["sqlite", "postgres"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--epoch-s", type=float, default=1.0, help="seconds each epoch sleeps (10 x 1 s: 10-s trials)")
    p.add_argument("--waves", type=int, default=3, help="trials = concurrency x waves")
    p.add_argument("--workers", type=int, default=2, help="virtual worker nodes")
    p.add_argument("--sampler", default="tpe")
    p.add_argument("--scheduler", default="none")
    p.add_argument("--blocking", action="store_true", help="report as Tune does by default: wait for the driver")
    p.add_argument("--min-free-gib", type=float, default=4.0)
    p.add_argument("--max-run-s", type=float, default=None, help="stop a run (as Ctrl-C does) after this long")
    p.add_argument("--label", default="", help="what code ran (e.g. a commit), kept with each result")
    p.add_argument("--out", type=Path, default=None, help="append one JSON line per run here")
    p.add_argument("--front-cost", type=int, nargs="*", default=None, metavar="N",
                   help="only time keeping the front current as N candidates finish (no cluster)")
    p.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSONL",
                   help="only print the runs recorded in these files as a Markdown table")
    p.add_argument("--ray-ceiling", action="store_true", help="only measure the results per second Ray alone "
                   "delivers from as many actors on the same cluster (see ray_ceiling)")
    p.add_argument("--capacity", action="store_true", help="only drive the callback and searcher with fake trials, "
                   "no Ray (see driver_capacity)")
    args = p.parse_args(argv)
    if args.capacity:
        for store in args.store:
            trackers = {}
            if store == "postgres":
                local_tracking = _script("local_tracking")
                troot = Path(tempfile.mkdtemp(prefix="emule-obpg-"))
                trackers[store] = (local_tracking, troot, local_tracking.start(troot).uri)
            try:
                for c in args.concurrency:
                    folder = Path(tempfile.mkdtemp(prefix="emule-obdb-"))
                    uri = trackers[store][2] if store == "postgres" else f"sqlite:///{folder}/mlflow.db"
                    row = driver_capacity(uri, c, c * args.waves, args.epochs, args.label)
                    shutil.rmtree(folder, ignore_errors=True)
                    _emit(row, args.out)
            finally:
                for local_tracking, troot, _ in trackers.values():
                    local_tracking.stop(troot)
                    shutil.rmtree(troot, ignore_errors=True)
        return 0
    if args.table:
        print(table(args.table))
        return 0
    if args.front_cost is not None:
        for n in args.front_cost or [200, 800]:
            for m in (2, 3):
                print(json.dumps(front_cost(n, m)), flush=True)
        return 0

    local_cluster = _script("local_cluster")
    most = max(args.concurrency)
    per_node = -(-most // args.workers)
    root = Path(tempfile.mkdtemp(prefix="emule-ob-", dir="/tmp"))
    cluster = local_cluster.start(root, workers=args.workers, cpus=1, head_cpus=0, resources={SLOT: per_node},
                                  worker_ports=2 * per_node + 32)  # Ray starts spare workers: ports to spare
    os.environ.update(cluster.env)
    os.environ.pop("RAY_ADDRESS", None)
    trackers = {}
    try:
        if args.ray_ceiling:  # no store, no driver: Ray alone
            for c in args.concurrency:
                _emit(ray_ceiling(cluster, c, args.epoch_s), args.out)
            return 0
        for store in args.store:
            if store == "postgres":
                local_tracking = _script("local_tracking")
                troot = Path(tempfile.mkdtemp(prefix="emule-obpg-"))
                trackers[store] = (local_tracking, troot, local_tracking.start(troot).uri)
            for c in args.concurrency:
                folder = Path(tempfile.mkdtemp(prefix="emule-obdb-"))
                uri = trackers[store][2] if store == "postgres" else f"sqlite:///{folder}/mlflow.db"
                try:
                    row = run_once(cluster, uri, store, c, args)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
                _emit(row, args.out)
                if row["status"] == "stopped: memory":
                    break
    finally:
        for local_tracking, troot, _ in trackers.values():
            local_tracking.stop(troot)
            shutil.rmtree(troot, ignore_errors=True)
        local_cluster.stop(root)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
