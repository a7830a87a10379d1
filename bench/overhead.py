"""Per-trial overhead of `emule search` against a plain in-process loop over the same candidates.

Runs a real search (local Ray, Optuna, MLflow in a temp dir) with one trial at a time, then trains the very same
candidates in a plain Python loop in this process, and reports:
- the wall-time ratio search / loop,
- per-trial overhead: the time between consecutive trial completions seen by the driver minus the same
  candidate's time in the plain loop (data subset, build, cost measures, training, evaluation), as a median after
  the first (warm-up) trial; split into time between trials and time inside a trial around the training.

    python bench/overhead.py --trials 12 --epochs 5
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from ray.tune import Callback

from emule_models.cost import count_parameters, forward_flops, measure
from emule_models.train import evaluate
from search.driver.checks import load_spec, parse_spec
from search.driver.runner import run_search
from search.record.tracking import Tracker
from search.trial.candidate import Candidate, build_seeded, candidate_dataset
from search.trial.validation import cross_validate, refit, selection_folds

ROOT = Path(__file__).resolve().parents[1]


class CompletionClock(Callback):
    """Driver-side wall clock of each trial's completion."""

    def __init__(self):
        self.done: list[tuple[float, str]] = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done.append((time.perf_counter(), trial.trial_id))


def plain_loop(candidates: list[Candidate]) -> list[float]:
    """Train each candidate in-process: the same work a trial does, with nothing around it."""
    times = []
    torch.set_num_threads(1)  # as in a 1-CPU trial
    for cand in candidates:
        start = time.perf_counter()
        dataset = candidate_dataset(cand)
        model = build_seeded(cand)
        count_parameters(model), forward_flops(cand.model)
        measure(model, cand.model, cand.training.batch_size)
        for _ in cross_validate(cand, dataset, selection_folds(cand.data_section, dataset)):
            pass
        final, _, _ = refit(cand, dataset)
        evaluate(final, dataset.test)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="emule-bench-"))
    raw = load_spec(ROOT / "spaces" / "quickstart.yaml").model_dump(mode="json")
    raw["training"]["epochs"] = args.epochs
    raw["search"].update(trials=args.trials, concurrency=1, storage=str(tmp / "runs"))
    raw["tracking"] = {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "bench"}
    spec = parse_spec(raw)

    clock = CompletionClock()
    start = time.perf_counter()
    result = run_search(spec, name="overhead", out=io.StringIO(), num_cpus=2, callbacks=[clock])
    search_wall = time.perf_counter() - start

    tracker = Tracker(spec.tracking.uri, "bench")
    runs = {r.data.tags["emule.trial_id"]: r for r in tracker.candidates(result.parent_run_id)}
    order = [tid for _, tid in clock.done]
    work = {tid: runs[tid].data.metrics["work_time_s"] for tid in order}
    gaps = [t - previous for (t, _), (previous, _) in zip(clock.done[1:], clock.done[:-1])]
    candidates = [Candidate.from_dict(tracker.candidate(runs[tid].info.run_id)) for tid in order]

    candidate_dataset(candidates[0])  # data load outside the timed loop, as the search loads it once up front
    start = time.perf_counter()
    loop_times = plain_loop(candidates)
    loop_wall = time.perf_counter() - start

    # per trial after the first: what the driver saw it take, minus the same candidate's plain in-process time
    total = [gap - plain for gap, plain in zip(gaps, loop_times[1:])]
    # split into what happens between trials (scheduling, searcher, MLflow at start and end) and inside a trial
    # around the training itself (per-epoch result round trips through Tune, reporting)
    between = [gap - work[tid] for gap, tid in zip(gaps, order[1:])]
    inside = [work[tid] - plain for tid, plain in zip(order[1:], loop_times[1:])]
    print(f"command: python bench/overhead.py --trials {args.trials} --epochs {args.epochs}")
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, python {sys.version.split()[0]}")
    print(f"trials: {args.trials} (one at a time), {args.epochs} epochs each, quickstart space on OSULeaf")
    print(f"emule search wall time (Ray start, MLflow, search, front): {search_wall:8.2f} s")
    print(f"plain in-process loop wall time:                          {loop_wall:8.2f} s")
    print(f"ratio search / loop:                                      {search_wall / loop_wall:8.2f}")
    print(f"median plain per-trial time:                              {statistics.median(loop_times):8.3f} s")
    print(f"per-trial overhead after warm-up (driver-seen time - plain time), over {len(total)} trials:")
    print(f"  total   median {statistics.median(total):.3f} s, max {max(total):.3f} s")
    print(f"  between trials (searcher, scheduling, MLflow runs)  median {statistics.median(between):.3f} s")
    print(f"  inside a trial (per-epoch reports through Tune)     median {statistics.median(inside):.3f} s "
          f"= {statistics.median(inside) / args.epochs * 1e3:.1f} ms per epoch")
    fixed = search_wall - sum(gaps)
    print(f"fixed cost (Ray start, first trial, final front):         {fixed:8.2f} s")


if __name__ == "__main__":
    main()
