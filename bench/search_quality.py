"""Search quality: hypervolume against compute for random, TPE and NSGA-II, with and without MO-ASHA.

Every combination searches the same space on the same real dataset (the quickstart space on OSULeaf, the
quickstart's three objectives and fixed reference point) under the same compute budget - ``search.epoch_budget``,
the total training epochs of all trials together - once per seed. Each search is a real ``run_search`` (local Ray,
Optuna, an MLflow store in a temp dir), all in this one process on one Ray instance. A driver-side callback
records, in the order the driver sees them, every epoch a trial trains (a result with ``epoch > 0``) and every
trial that finishes its full training budget (``budget_done``: only those can be on the front); after each such
completion the hypervolume of the finished candidates is recomputed with ``search.front.compute_front``. That
gives hypervolume as a step function of epochs spent and of wall time since the search was called.

``search.trials`` is only a cap on candidates here (the epoch budget ends each search), but ``build_sampler``
also sizes NSGA-II's population (trials // 3) and TPE's random start-up (trials // 4) from it. So the cap is set,
per scheduler, to about the number of candidates the budget affords: ``epoch_budget // epochs`` without early
stopping (exactly the budget), ``epoch_budget // 3`` with MO-ASHA (60 for 180 epochs; the recorded run averaged
46 candidates there, 4 epochs each, and 2 of its 10 MO-ASHA searches ended on the cap a little before the budget).

    python bench/search_quality.py --seeds 5 --epoch-budget 180 --epochs 12 --out bench/results/search_quality.md
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray
import torch
from ray.tune import Callback

from search.candidate import spec_dataset
from search.front import Record, compute_front
from search.runner import run_search
from search.searcher import BUDGET_DONE
from search.spec import Spec
from search.spec_checks import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
# label -> (sampler, scheduler); random first: its final hypervolume is the target the others race to.
COMBOS = {"random": ("random", "none"), "tpe": ("tpe", "none"), "nsga2": ("nsga2", "none"),
          "tpe + mo-asha": ("tpe", "mo-asha"), "nsga2 + mo-asha": ("nsga2", "mo-asha")}
BASELINE = "random"
TARGET_FRACTION = 1 / 3  # the target: reach random's final hypervolume with <= 1/3 of its compute


class HypervolumeTrace(Callback):
    """Epochs spent, wall time and hypervolume of the full-budget trials, after each one (driver order).

    A candidate counts from its ``budget_done`` result, not from ``on_trial_complete``: when the epoch budget runs
    out on a trial's last epoch, Tune's stop-all terminates that trial without calling any ``on_trial_complete``,
    so the product's own front misses a candidate that trained fully. ``lost`` lists those trials.
    """

    def __init__(self, spec: Spec, start: float):
        self.spec, self.start = spec, start
        self.epochs = 0
        self.trials: set[str] = set()
        self.completed: set[str] = set()
        self.records: list[Record] = []
        self.points: list[tuple[int, float, float]] = [(0, 0.0, 0.0)]  # (epochs, seconds, hypervolume)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trials.add(trial.trial_id)
        if result.get("epoch", 0) > 0:  # one training epoch; the same count the runner's EpochBudget stops on
            self.epochs += 1
        if result.get(BUDGET_DONE):
            metrics = {o.metric: float(result[o.metric]) for o in self.spec.objectives}
            self.records.append(Record(trial.trial_id, "", metrics))
            hv = compute_front(self.records, self.spec.objectives).hypervolume
            self.points.append((self.epochs, time.perf_counter() - self.start, hv))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed.add(trial.trial_id)

    @property
    def lost(self) -> list[str]:
        """Full-budget trials the product never saw complete (so they are off its front)."""
        return [r.trial_id for r in self.records if r.trial_id not in self.completed]


@dataclass
class Run:
    combo: str
    seed: int
    epochs: int  # epochs trained in all, including those of trials the budget cut short
    wall_s: float
    trials: int  # trials that reported at least once
    full: int  # trials that trained their full budget
    lost: int  # of those, trials the product never saw complete (off its own front)
    points: list[tuple[int, float, float]] = field(repr=False)

    def hv_at(self, x: np.ndarray, axis: int) -> np.ndarray:
        """Hypervolume reached by ``x`` epochs (axis 0) or seconds (axis 1); a finished search keeps its last."""
        xs = np.array([p[axis] for p in self.points], dtype=float)
        hvs = np.array([p[2] for p in self.points])
        return hvs[np.searchsorted(xs, x, side="right") - 1]

    @property
    def final_hv(self) -> float:
        return self.points[-1][2]


def make_spec(tmp: Path, sampler: str, scheduler: str, seed: int, args: argparse.Namespace) -> Spec:
    raw = load_spec(ROOT / "spaces" / "quickstart.yaml").model_dump(mode="json")
    raw["name"] = "bench-search-quality"
    raw["training"]["epochs"] = args.epochs
    trials = args.epoch_budget // args.epochs if scheduler == "none" else args.epoch_budget // 3
    raw["search"].update(sampler=sampler, scheduler=scheduler, grace_period=args.grace_period,
                         reduction_factor=args.reduction_factor, epoch_budget=args.epoch_budget, trials=trials,
                         concurrency=args.concurrency, seed=seed, storage=str(tmp / "runs"))
    raw["tracking"] = {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "bench-search-quality"}
    return parse_spec(raw)


def run_one(tmp: Path, combo: str, seed: int, args: argparse.Namespace) -> Run:
    sampler, scheduler = COMBOS[combo]
    spec = make_spec(tmp, sampler, scheduler, seed, args)
    start = time.perf_counter()
    trace = HypervolumeTrace(spec, start)
    name = f"{combo.replace(' + ', '-')}-s{seed}"
    run_search(spec, name=name, out=io.StringIO(), callbacks=[trace])
    return Run(combo, seed, trace.epochs, time.perf_counter() - start, len(trace.trials), len(trace.records),
               len(trace.lost), trace.points)


def first_reach(curve: np.ndarray, grid: np.ndarray, target: float) -> float | None:
    hit = np.nonzero(curve >= target - 1e-12)[0]
    return float(grid[hit[0]]) if len(hit) else None


def summarize(runs: list[Run], budget: int) -> dict[str, dict]:
    """Per combo: mean/std hypervolume curves over epochs and seconds, and the numbers of the table."""
    epochs = np.arange(0, max(budget, max(r.epochs for r in runs)) + 1, dtype=float)
    seconds = np.linspace(0, max(r.wall_s for r in runs), 400)
    out = {}
    for combo in COMBOS:
        mine = [r for r in runs if r.combo == combo]
        by_epoch = np.stack([r.hv_at(epochs, 0) for r in mine])
        by_time = np.stack([r.hv_at(seconds, 1) for r in mine])
        out[combo] = {"runs": mine, "epochs": epochs, "seconds": seconds,
                      "epoch_mean": by_epoch.mean(0), "epoch_std": by_epoch.std(0),
                      "time_mean": by_time.mean(0), "time_std": by_time.std(0), "by_epoch": by_epoch,
                      "by_time": by_time}
    target = statistics.mean(r.final_hv for r in out[BASELINE]["runs"])
    for s in out.values():
        s["reach_epochs"] = first_reach(s["epoch_mean"], epochs, target)
        s["reach_seconds"] = first_reach(s["time_mean"], seconds, target)
        s["seed_reach"] = [first_reach(row, epochs, target) for row in s["by_epoch"]]
    return {"target": target, "combos": out}


def fmt(values: list[float], digits: int = 3) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def report(summary: dict, args: argparse.Namespace, total_s: float, command: str, plot: Path) -> str:
    budget, target = args.epoch_budget, summary["target"]
    third, half = budget // 3, budget // 2
    lines = [
        "# Search quality: hypervolume against compute",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {os.cpu_count()} CPUs (shared with other jobs while this ran), Ray with num_cpus=2, "
        f"{args.concurrency} trials at a time; torch {torch.__version__}, ray {ray.__version__}, "
        f"python {platform.python_version()}. Whole run: **{total_s / 60:.1f} min** for "
        f"{len(COMBOS) * args.seeds} searches.",
        "",
        f"Task: the quickstart space and objectives (val_accuracy max, params min log, flops min log; fixed "
        f"reference point 0 / 1e6 / 1e9) on OSULeaf; every trial trains up to {args.epochs} epochs. Budget per "
        f"search: **{budget} training epochs** in total (`search.epoch_budget`), seeds {args.seeds} "
        f"(`search.seed` 0..{args.seeds - 1}, the same for every combination). MO-ASHA: grace period "
        f"{args.grace_period}, reduction factor {args.reduction_factor}. Trial cap (`search.trials`): "
        f"{budget // args.epochs} without a scheduler, {budget // 3} with MO-ASHA.",
        "",
        f"Hypervolume (HV) counts only trials that trained all {args.epochs} epochs. Mean ± std over seeds "
        f"(population std). \"Reaches random\" is the first point where the combination's mean HV curve reaches "
        f"random search's final mean HV ({target:.3f}); \"seeds\" counts the seeds whose own curve reaches it "
        "within the budget.",
        "",
        f"| combination | final HV | HV at {third} epochs (1/3) | HV at {half} epochs (1/2) | reaches random "
        "(epochs) | reaches random (s) | seeds | trials | full-budget trials | wall time per search (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for combo, s in summary["combos"].items():
        runs = s["runs"]
        reach = "not reached" if s["reach_epochs"] is None else \
            f"{s['reach_epochs']:.0f} ({s['reach_epochs'] / budget:.0%})"
        reach_s = "not reached" if s["reach_seconds"] is None else f"{s['reach_seconds']:.0f}"
        seeds = sum(x is not None for x in s["seed_reach"])
        lines.append(
            f"| {combo} | {fmt([r.final_hv for r in runs])} | {fmt(list(s['by_epoch'][:, third]))} | "
            f"{fmt(list(s['by_epoch'][:, half]))} | {reach} | {reach_s} | {seeds}/{len(runs)} | "
            f"{fmt([r.trials for r in runs], 1)} | {fmt([r.full for r in runs], 1)} | "
            f"{fmt([r.wall_s for r in runs], 0)} |")
    lines += ["", "Final HV per seed:", "",
              "| combination | " + " | ".join(f"seed {i}" for i in range(args.seeds)) +
              " | epochs spent | full-budget trials off the product's front |",
              "|---|" + "---|" * (args.seeds + 2)]
    for combo, s in summary["combos"].items():
        runs = sorted(s["runs"], key=lambda r: r.seed)
        lines.append(f"| {combo} | " + " | ".join(f"{r.final_hv:.3f}" for r in runs) +
                     f" | {', '.join(str(r.epochs) for r in runs)} | {', '.join(str(r.lost) for r in runs)} |")
    lines += ["", f"![hypervolume against epochs and wall time]({plot.name})", "", "## Verdict", "",
              verdict(summary, budget), "", notes([r for s in summary["combos"].values() for r in s["runs"]], args),
              ""]
    return "\n".join(lines)


def verdict(summary: dict, budget: int) -> str:
    combos = summary["combos"]
    reached = {c: s["reach_epochs"] for c, s in combos.items() if c != BASELINE and s["reach_epochs"] is not None}
    if not reached:
        return (f"**Target not met.** No combination's mean HV curve reaches random search's final mean HV "
                f"({summary['target']:.3f}) within the {budget}-epoch budget.")
    best = min(reached, key=reached.get)
    fraction = reached[best] / budget
    met = fraction <= TARGET_FRACTION
    others = ", ".join(f"{c} {e:.0f} ({e / budget:.0%})" for c, e in sorted(reached.items(), key=lambda kv: kv[1])
                       if c != best)
    missed = [c for c in combos if c != BASELINE and c not in reached]
    third = budget // 3
    base = combos[BASELINE]["by_epoch"][:, third]
    lead = max((c for c in combos if c != BASELINE), key=lambda c: combos[c]["by_epoch"][:, third].mean())
    gap = combos[lead]["by_epoch"][:, third].mean() - base.mean()
    return (f"**Target {'met' if met else 'not met'}.** The fastest combination, {best}, reaches random search's "
            f"final mean HV ({summary['target']:.3f}) after {reached[best]:.0f} of {budget} epochs "
            f"({fraction:.0%} of random's compute; target <= {TARGET_FRACTION:.0%}). "
            + (f"The others: {others}" if others else "")
            + (f"{'; ' if others else ''}not reached: {', '.join(missed)}" if missed else "")
            + f". At 1/3 of the budget the best mean HV ({lead}) is {gap:+.3f} from random's, against a "
            f"seed-to-seed std of {base.std():.3f} for random there: at this budget the early curves are not "
            "told apart.")


def population(trials: int) -> int:
    """NSGA-II's population for a trial cap, as ``search.space.build_sampler`` sets it."""
    return max(4, min(50, trials // 3))


def startup(trials: int) -> int:
    """TPE's random start-up trials for a trial cap, as ``search.space.build_sampler`` sets it."""
    return max(2, trials // 4)


def notes(runs: list[Run], args: argparse.Namespace) -> str:
    """What the cheap setting may distort, with the facts of this run that bear on it."""
    budget, cap_mo = args.epoch_budget, args.epoch_budget // 3
    by = {c: sorted((r for r in runs if r.combo == c), key=lambda r: r.seed) for c in COMBOS}
    base = by[BASELINE]
    wins = ", ".join(f"{c} {sum(r.final_hv > b.final_hv for r, b in zip(by[c], base))}/{len(base)}"
                     for c in COMBOS if c != BASELINE)
    mo = [r for r in runs if "mo-asha" in r.combo]
    rungs, level = [], args.grace_period
    while level < args.epochs:
        rungs.append(level)
        level *= args.reduction_factor
    levels = [*rungs, args.epochs]  # epochs per trial if exactly 1 in reduction_factor went on at every rung
    ideal = levels[0] + sum((levels[k + 1] - levels[k]) / args.reduction_factor ** (k + 1) for k in range(len(rungs)))
    capped = [r for r in runs if r.epochs < budget]
    gaps = [statistics.mean(r.final_hv for r in by[c]) - statistics.mean(r.final_hv for r in base)
            for c in COMBOS if c != BASELINE]
    checkpoints = np.array([budget // 3, budget // 2], dtype=float)
    same_start = "nsga2" in by and all(np.allclose(r.hv_at(checkpoints, 0), b.hv_at(checkpoints, 0))
                                       for r, b in zip(by["nsga2"], base))
    lost = [r for r in runs if r.lost]
    stds = [statistics.pstdev(r.final_hv for r in by[c]) for c in COMBOS]
    lines = ["## What the cheapness may distort", ""]
    if mo:
        per_trial = statistics.mean(r.epochs / r.trials for r in mo)
        full = statistics.mean(r.full for r in mo)
        lines += [
            f"- **Low-fidelity rankings.** MO-ASHA decides at epochs {', '.join(map(str, rungs))} of a "
            f"{args.epochs}-epoch cosine schedule. After {rungs[0]} epoch(s) validation accuracy says little about "
            "final accuracy, while params and flops are exact at any epoch, so at the first rung the ranking leans "
            "on size: MO-ASHA keeps small, cheap models and stops large ones whatever their final accuracy. With "
            "three objectives most points are mutually non-dominated and several per front have infinite crowding "
            "distance, so "
            f"promotions are generous: {statistics.mean(r.trials for r in mo):.0f} candidates per search, "
            f"{per_trial:.1f} epochs each on average (an exact 1-in-{args.reduction_factor} halving over these "
            f"rungs would spend {ideal:.1f}). Longer training makes early accuracy more telling, which may favour "
            "MO-ASHA at real scale; this benchmark cannot say.",
            f"- **Population sizes and pruned trials.** With MO-ASHA, stopped trials reach Optuna as PRUNED. NSGA-II "
            f"builds generations from COMPLETE trials only: with population {population(cap_mo)} and "
            f"{full:.1f} full-budget trials per search it "
            + ("never leaves its random first generation, so nsga2 + mo-asha is random sampling + MO-ASHA here. "
               if full < population(cap_mo) else "barely gets past its random first generation. ")
            + f"TPE counts pruned trials toward its start-up ({startup(cap_mo)} random trials) and then models "
            "from the few complete ones."]
    lines += [
        f"- **Few candidates.** Without a scheduler the budget buys {budget // args.epochs} candidates: TPE models "
        f"after {startup(budget // args.epochs)} random start-up trials, NSGA-II runs generations of "
        f"{population(budget // args.epochs)}. At real budgets (population 50) NSGA-II needs far more compute to "
        "leave its random first generation. That first generation draws the same points as random search with the "
        "same seed, so nsga2 and random coincide early in each search: a paired comparison, not an independent one"
        + (" (in this run they have the same HV at 1/3 and 1/2 of the budget on every seed)." if same_start
           else "."),
        f"- **Noise.** {args.val_size} validation samples: accuracy moves in steps of {100 / args.val_size:.1f} "
        "points, and the front is picked on the "
        f"same samples, so HV rewards lucky validation draws. The seed-to-seed std of final HV is "
        f"{min(stds):.2f}-{max(stds):.2f}; the combinations' mean final HVs lie {min(gaps):+.2f} to {max(gaps):+.2f} "
        f"from random's. Paired by seed (same `search.seed`), final HV above random's: {wins}.",
        "- **What an epoch costs.** The budget counts epochs; an epoch on a quarter of the data (`data_fraction` "
        "0.25) or of a width-16 model counts as much as a full-data width-64 one, so a search drifting to small data "
        "or small models gets more for its epochs. Training FLOPs (`training_compute`) would be the fairer unit.",
        "- **Wall time.** An epoch of these models takes a fraction of a second, so wall time is mostly per-trial "
        "cost (Ray actor, data subset, latency measurement, MLflow logging to SQLite); MO-ASHA's many short trials "
        "pay it more often"
        + (f" ({statistics.mean(r.wall_s for r in mo):.0f} s per search against "
           f"{statistics.mean(r.wall_s for r in runs if r not in mo):.0f} s without a scheduler, for the same epochs)"
           if mo and len(mo) < len(runs) else "")
        + ". The cores were shared with other jobs, so wall times are noisy."]
    if capped:
        lines.append("- **Trial cap.** " + ", ".join(f"{r.combo} seed {r.seed}" for r in capped) +
                     f" stopped on `search.trials` after {', '.join(str(r.epochs) for r in capped)} of {budget} "
                     "epochs; their curves hold their last HV from there, so those final HVs are slightly low.")
    if lost:
        lines.append(f"- **Candidates off the product's own front.** {sum(r.lost for r in lost)} full-budget "
                     f"trials in {len(lost)} searches finished on the epoch that spent the budget. Tune's stop-all "
                     "then terminates them without any `on_trial_complete`, so `run_search`'s front (and MLflow's "
                     "`budget_done` tag) misses them; this benchmark counts them from their `budget_done` result.")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (combo, s) in enumerate(summary["combos"].items()):
        for ax, x, mean, std in ((axes[0], s["epochs"], s["epoch_mean"], s["epoch_std"]),
                                 (axes[1], s["seconds"], s["time_mean"], s["time_std"])):
            ax.plot(x, mean, c=f"C{i}", label=combo, lw=2 if combo == BASELINE else 1.5,
                    ls="--" if "mo-asha" in combo else "-")
            ax.fill_between(x, mean - std, mean + std, color=f"C{i}", alpha=0.12)
    for ax, label in ((axes[0], "training epochs spent (all trials)"), (axes[1], "wall time since search start (s)")):
        ax.axhline(summary["target"], c="k", lw=0.8, ls=":", label="random's final mean HV")
        ax.set_xlabel(label)
        ax.set_ylabel("hypervolume (fixed reference point)")
        ax.grid(alpha=0.3)
    axes[0].axvline(summary["combos"][BASELINE]["epochs"][-1] * TARGET_FRACTION, c="0.5", lw=0.8, ls="-.",
                    label="1/3 of the budget")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("Hypervolume of full-budget candidates, mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epoch-budget", type=int, default=180, help="total training epochs per search")
    ap.add_argument("--epochs", type=int, default=12, help="training epochs of a full trial (MO-ASHA's max_t)")
    ap.add_argument("--grace-period", type=int, default=1)
    ap.add_argument("--reduction-factor", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--combos", nargs="+", choices=list(COMBOS), default=list(COMBOS),
                    help="subset to run (timing checks); the report needs random")
    ap.add_argument("--out", type=Path, help="markdown report; the plot goes beside it (.png)")
    args = ap.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    for combo in [c for c in COMBOS if c not in args.combos]:
        del COMBOS[combo]

    tmp = Path(tempfile.mkdtemp(prefix="emule-search-quality-"))
    args.val_size = len(spec_dataset(make_spec(tmp, "random", "none", 0, args)).val)
    print(f"store: {tmp}; {len(COMBOS)} combinations x {args.seeds} seeds, {args.epoch_budget} epochs each",
          flush=True)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    # a throw-away search first: creates the MLflow tables and starts Ray's workers, so seed 0's first search
    # does not pay for them on the wall-time axis
    run_one(tmp, BASELINE, 0, argparse.Namespace(**{**vars(args), "epochs": 1, "epoch_budget": 2}))
    runs: list[Run] = []
    start = time.perf_counter()
    try:
        for seed in range(args.seeds):  # seed-major, so a machine slowing down over time hits every combination
            for combo in COMBOS:
                run = run_one(tmp, combo, seed, args)
                runs.append(run)
                print(f"[{time.perf_counter() - start:7.1f}s] {combo:>16} seed {seed}: HV {run.final_hv:.3f}, "
                      f"{run.epochs} epochs, {run.trials} trials ({run.full} full, {run.lost} lost), "
                      f"{run.wall_s:.1f}s", flush=True)
    finally:
        ray.shutdown()
    total = time.perf_counter() - start
    summary = summarize(runs, args.epoch_budget)
    out = args.out or tmp / "search_quality.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plot(summary, png)
    text = report(summary, args, total, command, png)
    out.write_text(text)
    print(text)
    print(f"\nwrote {out} and {png}; total {total / 60:.1f} min")


if __name__ == "__main__":
    main()
