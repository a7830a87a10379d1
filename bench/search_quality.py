"""Search quality: hypervolume against training FLOPs for EMuLe's searches and two peers, in one run.

Every method searches the same space (``spaces/full.yaml``: the whole model family) on the same data with the
same objectives and fixed reference point, seeds and compute budget - **training FLOPs** (``training_compute``,
every cross-validation fold included), not epochs. The methods:

- EMuLe's searches (``run_search``: local Ray, Optuna, MLflow in a temp dir): random, TPE alone, TPE under MO-ASHA
  with the Pareto promotion rule and under the strata rule, NSGA-II under MO-ASHA; TPE under MO-ASHA with data as
  a fidelity as well (``search.data_fidelity``), with a shorter random start-up (``search.startup_trials``), with
  promotion by hypervolume contribution (``mo-asha-hv``) and by that contribution per training FLOP
  (``mo-asha-hv-cost``: with a shorter start-up and data 1/9, the default of ``spaces/full.yaml``), multivariate TPE
  (``tpe-multivariate``), and an ablation where stopped trials reach Optuna as PRUNED.
- Plain Optuna: the same sampler (``build_sampler`` of the same spec) in this process, one trial at a time, no Ray.
- Syne Tune's MO-ASHA (``syne_tune.optimizer.schedulers.multiobjective.moasha.MOASHA``, random sampling, its
  default non-dominated-sort promotion), driven in this process (``bench/peers.py``: Syne Tune's local backends
  start a Python process per trial, whose imports took most of the wall time at this scale).

All run the product's own trial code (``search.trial.trainable``), so a candidate trains, validates and refits the same
way and reports the same ``training_compute``. ``bench/trace.py`` turns each method's results into hypervolume as a
step function of FLOPs spent and of wall time; the budget ends each search (for EMuLe's searches a stopper on the
same trace replaces the epoch budget; ``search.trials`` is a cap that also sizes TPE's random start-up).
Results go to a JSON-lines log as each search ends, so a report can be written from a partial run
(``--from-log``).

    python bench/search_quality.py --datasets osuleaf plaid --seeds 3 --out bench/results/search_quality.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ray.tune.stopper import Stopper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.trace import Run, Trace  # noqa: E402
from search.driver.checks import load_spec, parse_spec  # noqa: E402
from search.spec.schema import Spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# label -> (runner, the spec's `search:` settings). Random first: its final hypervolume is the target the others race
# to. The trial cap is 16 without a scheduler and 48 with one (x reduction factor), which sizes TPE's random start-up
# (a quarter: 4 and 12) and NSGA-II's population. `data 1/3`: search.data_fidelity, the first rung learns from a
# third of the rows; its trials are cheaper, so the cap rises to 144 (x reduction factor again) with the start-up
# kept at 12 (`cap 144`: the same cap without data fidelity); `start-up 6`: search.startup_trials; `mo-asha-hv`:
# promotion by hypervolume contribution (search.driver.schedulers, rule 6''); `mo-asha-hv-cost`: that contribution per
# unit of training FLOPs spent (rule 6''').
DATA = {"scheduler": "mo-asha", "trials": 144, "startup_trials": 12}
METHODS = {
    "random": ("ray", {"sampler": "random", "scheduler": "none"}),
    "tpe": ("ray", {"sampler": "tpe", "scheduler": "none"}),
    "tpe + mo-asha": ("ray", {"sampler": "tpe", "scheduler": "mo-asha"}),
    "tpe + mo-asha, cap 144": ("ray", {**DATA, "sampler": "tpe"}),
    "tpe + mo-asha + data 1/3": ("ray", {**DATA, "sampler": "tpe", "data_fidelity": 1 / 3}),
    "tpe + mo-asha + data 1/9": ("ray", {**DATA, "sampler": "tpe", "data_fidelity": 1 / 9}),
    "tpe start-up 6 + mo-asha + data 1/3": ("ray", {**DATA, "sampler": "tpe", "data_fidelity": 1 / 3,
                                                    "startup_trials": 6}),
    "tpe start-up 6 + mo-asha + data 1/9": ("ray", {**DATA, "sampler": "tpe", "data_fidelity": 1 / 9,
                                                    "startup_trials": 6}),
    "tpe start-up 6 + mo-asha-hv + data 1/3": ("ray", {**DATA, "sampler": "tpe", "scheduler": "mo-asha-hv",
                                                       "data_fidelity": 1 / 3, "startup_trials": 6}),
    "tpe start-up 6 + mo-asha-hv + data 1/9": ("ray", {**DATA, "sampler": "tpe", "scheduler": "mo-asha-hv",
                                                       "data_fidelity": 1 / 9, "startup_trials": 6}),
    "tpe start-up 6 + mo-asha-hv-cost + data 1/9": ("ray", {**DATA, "sampler": "tpe", "scheduler": "mo-asha-hv-cost",
                                                            "data_fidelity": 1 / 9, "startup_trials": 6}),
    "tpe start-up 6 + mo-asha-hv + data 1/9, cap 432": ("ray", {**DATA, "sampler": "tpe", "scheduler": "mo-asha-hv",
                                                                "data_fidelity": 1 / 9, "startup_trials": 6,
                                                                "trials": 432}),
    "tpe start-up 6 + mo-asha-hv-cost + data 1/9, cap 432": ("ray", {**DATA, "sampler": "tpe",
                                                                     "scheduler": "mo-asha-hv-cost",
                                                                     "data_fidelity": 1 / 9, "startup_trials": 6,
                                                                     "trials": 432}),
    "tpe-multivariate start-up 6 + mo-asha + data 1/3": ("ray", {**DATA, "sampler": "tpe-multivariate",
                                                                  "data_fidelity": 1 / 3, "startup_trials": 6}),
    "tpe + mo-asha-strata": ("ray", {"sampler": "tpe", "scheduler": "mo-asha-strata"}),
    "tpe + mo-asha, stopped told pruned": ("ray", {"sampler": "tpe", "scheduler": "mo-asha"}),
    "nsga2 + mo-asha": ("ray", {"sampler": "nsga2", "scheduler": "mo-asha"}),
    "nsga2 + mo-asha-strata": ("ray", {"sampler": "nsga2", "scheduler": "mo-asha-strata"}),
    "optuna tpe": ("optuna", {"sampler": "tpe", "scheduler": "none"}),
    "syne tune mo-asha": ("syne", {"sampler": "random", "scheduler": "mo-asha"}),
}
# ablation: a trial the scheduler stopped reaches Optuna as PRUNED, as before stopped trials informed the samplers
TOLD_PRUNED = {"tpe + mo-asha, stopped told pruned"}
BASELINE, PEER = "random", "syne tune mo-asha"
TARGET_FRACTION = 1 / 3  # the target: random's final hypervolume with <= 1/3 of its compute
# training FLOPs per search and dataset: about 8 (OSULeaf) and 5.5 (PLAID) full random candidates at 9 epochs, 3 folds
# (mean cost of a feasible random candidate: 5.0e10 and 2.2e11 FLOPs)
BUDGETS = {"osuleaf": 4e11, "plaid": 1.2e12}


class ComputeBudget(Stopper):
    """A Tune stopper on a ``Trace``: every result is charged there, and the whole search ends once the budget is
    spent (it stands in for ``search.driver.runner.EpochBudget``, which counts epochs)."""

    def __init__(self, trace: Trace):
        self.trace = trace

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.trace.result(trial_id, result)
        return False

    def stop_all(self) -> bool:
        return self.trace.spent()


@contextlib.contextmanager
def compute_budget(trace: Trace):
    import search.driver.runner as runner

    saved = runner.EpochBudget
    runner.EpochBudget = lambda *budget: ComputeBudget(trace)  # noqa: ARG005  (the spec sets no epoch budget)
    try:
        yield
    finally:
        runner.EpochBudget = saved


@contextlib.contextmanager
def stopped_told_pruned():
    """``BudgetAwareOptunaSearch`` with a trial stopped early told PRUNED (no values) instead of COMPLETE with its
    rung values: the samplers then learn nothing from it (multi-objective TPE and NSGA-II read COMPLETE trials)."""
    from optuna.trial import TrialState

    from search.driver.searcher import BudgetAwareOptunaSearch
    from search.spec.results import BUDGET_DONE, INFEASIBLE, TIMED_OUT

    saved = BudgetAwareOptunaSearch.on_trial_complete

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        stopped = result and not error and not any(result.get(k) for k in (BUDGET_DONE, INFEASIBLE, TIMED_OUT))
        if stopped and trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._ot_study.tell(self._ot_trials[trial_id], None, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        saved(self, trial_id, result, error)

    BudgetAwareOptunaSearch.on_trial_complete = on_trial_complete
    try:
        yield
    finally:
        BudgetAwareOptunaSearch.on_trial_complete = saved


def make_spec(tmp: Path, dataset: str, method: str, seed: int, args: argparse.Namespace) -> Spec:
    search = METHODS[method][1]
    raw = load_spec(ROOT / "spaces" / "full.yaml").model_dump(mode="json")
    raw["name"] = "bench-search-quality"
    raw["data"] = {**raw["data"], "name": dataset, "cv_folds": args.cv_folds}
    raw["baselines"] = []
    raw["training"]["epochs"] = args.epochs
    trials = args.trials if search["scheduler"] == "none" else args.trials * args.reduction_factor
    # each arm states what it changes; the rest is the same for all, whatever full.yaml's own defaults
    raw["search"].update({"grace_period": args.grace_period, "reduction_factor": args.reduction_factor,
                          "data_fidelity": 1.0, "startup_trials": None, "epoch_budget": None, "trials": trials,
                          **search, "concurrency": args.concurrency,
                          "seed": seed, "storage": str(tmp / "runs")})
    raw["tracking"] = {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "bench-search-quality"}
    return parse_spec(raw)


def run_one(tmp: Path, dataset: str, method: str, seed: int, args: argparse.Namespace) -> Run:
    from bench.peers import run_optuna, run_syne_moasha
    from search.driver.runner import run_search
    from search.trial.candidate import spec_dataset

    runner = METHODS[method][0]
    spec = make_spec(tmp, dataset, method, seed, args)
    label = f"{dataset}-{re.sub('[^a-z0-9]+', '-', method.replace('/', 'of'))}-s{seed}"
    trace = Trace(spec, args.budget[dataset], label)
    if runner == "ray":
        ablation = stopped_told_pruned() if method in TOLD_PRUNED else contextlib.nullcontext()
        with compute_budget(trace), ablation:
            run_search(spec, name=label, out=io.StringIO(), quiet=True, status_every=None)
    elif runner == "optuna":
        run_optuna(spec, spec_dataset(spec), trace)
    else:
        run_syne_moasha(spec, spec_dataset(spec), trace, args.grace_period, args.reduction_factor)
    return trace.run(method, seed, dataset)


def first_reach(curve: np.ndarray, grid: np.ndarray, target: float) -> float | None:
    hit = np.nonzero(curve >= target - 1e-12)[0]
    return float(grid[hit[0]]) if len(hit) else None


def summarize(runs: list[Run], budget: float) -> dict:
    """One dataset: per method, HV curves over FLOPs (fractions of the budget) and seconds, and the table's numbers."""
    grid = np.linspace(0, 1, 301) * budget
    methods = [m for m in METHODS if any(r.method == m for r in runs)]
    seconds = np.linspace(0, max(r.wall_s for r in runs), 300)
    out = {}
    for method in methods:
        mine = sorted((r for r in runs if r.method == method), key=lambda r: r.seed)
        by_flops = np.stack([r.hv_at(grid, 0) for r in mine])
        by_time = np.stack([r.hv_at(seconds, 1) for r in mine])
        out[method] = {"runs": mine, "by_flops": by_flops, "by_time": by_time}
    target = statistics.mean(r.final_hv for r in out[BASELINE]["runs"]) if BASELINE in out else float("nan")
    for s in out.values():
        s["reach"] = first_reach(s["by_flops"].mean(0), grid / budget, target)
        s["seed_reach"] = [first_reach(row, grid / budget, target) for row in s["by_flops"]]
    return {"target": target, "grid": grid, "seconds": seconds, "methods": out, "budget": budget}


def fmt(values, digits: int = 3) -> str:
    values = list(values)
    return f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def at(s: dict, fraction: float) -> np.ndarray:
    """Per seed, HV at ``fraction`` of the budget."""
    return s["by_flops"][:, int(round(fraction * (s["by_flops"].shape[1] - 1)))]


def paired(a: dict, b: dict, fraction: float) -> tuple[float, int, int]:
    """Mean over common seeds of HV(a) - HV(b) at a fraction of the budget; seeds where a >= b; seeds compared."""
    seeds = sorted({r.seed for r in a["runs"]} & {r.seed for r in b["runs"]})
    ia = [[r.seed for r in a["runs"]].index(s) for s in seeds]
    ib = [[r.seed for r in b["runs"]].index(s) for s in seeds]
    diff = at(a, fraction)[ia] - at(b, fraction)[ib]
    return float(diff.mean()) if len(diff) else float("nan"), int((diff >= -1e-12).sum()), len(seeds)


def dataset_section(name: str, summary: dict) -> list[str]:
    target, budget, methods = summary["target"], summary["budget"], summary["methods"]
    lines = [f"### {name}", "", f"Budget **{budget:.3g} training FLOPs** per search; random's final mean HV "
             f"{target:.3f}.", "",
             "| method | final HV | HV at 1/3 | HV at 2/3 | reaches random (of budget) | seeds | vs Syne Tune at 1/3, "
             "2/3, end (paired mean, seeds >=) | trials | full-budget | FLOPs spent | wall per search (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, s in methods.items():
        runs = s["runs"]
        reach = "not reached" if s["reach"] is None else f"{s['reach']:.0%}"
        seeds = sum(x is not None for x in s["seed_reach"])
        if PEER in methods and method != PEER:
            cells = [paired(s, methods[PEER], f) for f in (1 / 3, 2 / 3, 1)]
            versus = ", ".join(f"{d:+.3f} ({k}/{n})" for d, k, n in cells)
        else:
            versus = "-"
        lines.append(f"| {method} | {fmt(r.final_hv for r in runs)} | {fmt(at(s, 1 / 3))} | {fmt(at(s, 2 / 3))} | "
                     f"{reach} | {seeds}/{len(runs)} | {versus} | {fmt((r.trials for r in runs), 1)} | "
                     f"{fmt((r.full for r in runs), 1)} | {statistics.mean(r.compute for r in runs):.3g} | "
                     f"{fmt((r.wall_s for r in runs), 0)} |")
    lines += ["", "Final HV per seed:", "", "| method | " + " | ".join(
        f"seed {r.seed}" for r in next(iter(methods.values()))["runs"]) + " |",
        "|---|" + "---|" * len(next(iter(methods.values()))["runs"])]
    for method, s in methods.items():
        lines.append(f"| {method} | " + " | ".join(f"{r.final_hv:.3f}" for r in s["runs"]) + " |")
    return lines + [""]


def verdict(summaries: dict[str, dict], default: str) -> list[str]:
    lines = []
    for name, summary in summaries.items():
        methods = summary["methods"]
        if default not in methods:
            continue
        s = methods[default]
        reach = s["reach"]
        met = reach is not None and reach <= TARGET_FRACTION + 1e-9
        line = (f"- **{name}, reach random at <= 1/3 of its compute: {'met' if met else 'not met'}.** {default} "
                + ("never reaches" if reach is None else f"reaches at {reach:.0%} of the budget")
                + f" random's final mean HV ({summary['target']:.3f}); the seeds' own curves reach it on "
                f"{sum(x is not None for x in s['seed_reach'])}/{len(s['runs'])}.")
        if PEER in methods:
            d13, k13, n = paired(s, methods[PEER], 1 / 3)
            d1, k1, _ = paired(s, methods[PEER], 1)
            line += (f" **Against Syne Tune's MO-ASHA at equal compute: {'met' if d13 >= 0 and d1 >= 0 else 'not met'}"
                     f"** (paired mean HV difference {d13:+.3f} at 1/3 of the budget, ahead or level on {k13}/{n} "
                     f"seeds; {d1:+.3f} at the end, {k1}/{n}).")
        lines.append(line)
        others = {m: x["reach"] for m, x in methods.items() if m not in (BASELINE, default)}
        lines.append("  Others reaching random: " + ", ".join(
            f"{m} {'never' if r is None else f'{r:.0%}'}" for m, r in others.items()) + ".")
    return lines


def report(runs: list[Run], args: argparse.Namespace, command: str, plot_path: Path, total_s: float) -> str:
    import ray
    import torch

    runs = complete_seeds(runs)
    datasets = [d for d in args.datasets if any(r.dataset == d for r in runs)]
    summaries = {d: summarize([r for r in runs if r.dataset == d], args.budget[d]) for d in datasets}
    seeds = {d: sorted({r.seed for r in runs if r.dataset == d}) for d in datasets}
    lines = [
        "# Search quality: hypervolume against training FLOPs, with peers in the same run", "", "```", command, "```",
        "",
        f"Machine: {os.cpu_count()} CPUs shared with other jobs while this ran (the first two runs under "
        f"`nice -n 10`); Ray "
        f"with num_cpus=2, {args.concurrency} trials at a time for every method but plain Optuna (one); torch "
        f"{torch.__version__}, ray {ray.__version__}, python {platform.python_version()}. Whole run: "
        f"**{total_s / 60:.1f} min** for {len(runs)} searches.",
        "",
        f"Task: `spaces/full.yaml` (every attention variant with its options, every fusion, depth 1-3, width 32/64, "
        f"heads, patch length, channel mode, image patch, data fraction 0.25-1, learning rate; max_params 200k) with "
        f"its objectives (val_accuracy max, param_count min log, flops min log; fixed reference point 0 / 1e6 / 1e9), "
        f"on {', '.join(datasets)}. Each candidate trains {args.epochs} epochs and is judged by "
        f"**{args.cv_folds}-fold cross-validation** (the spec's `auto` would pick 5 folds: 3 keep the run inside the "
        f"machine's time; the refit on all training rows runs after the last epoch, outside the budget, as in the "
        f"product). Seeds {seeds} (`search.seed`, the same for every method; paired comparisons by seed). MO-ASHA "
        f"(ours and Syne Tune's): grace period {args.grace_period}, reduction factor {args.reduction_factor}, max_t "
        f"{args.epochs}. Trial cap (`search.trials`): {args.trials} without a scheduler, "
        f"{args.trials * args.reduction_factor} with one (it sizes TPE's random start-up: trials // 4); the arms "
        f"marked `data` or `cap` {DATA['trials']}, with the start-up kept at {DATA['startup_trials']} unless "
        "the arm says `start-up`.",
        "",
        "HV counts only candidates that trained all epochs. Mean ± std over seeds (population std). \"Reaches "
        "random\" is the first point where the method's mean HV curve over FLOPs reaches random search's final mean "
        "HV; \"seeds\" counts the seeds whose own curve reaches it. \"vs Syne Tune\": mean over seeds of (HV - Syne "
        "Tune MO-ASHA's HV) at the same FLOPs, and on how many seeds it is ahead or level.",
        "",
    ]
    for name, summary in summaries.items():
        lines += dataset_section(name, summary)
    lines += [f"![hypervolume against training FLOPs and wall time]({plot_path.name})", "", "## Verdict", "",
              f"Default of `spaces/full.yaml` during this run: `{args.default[0]}`"
              + (f"; judged beside it: {', '.join(f'`{m}`' for m in args.default[1:])}." if args.default[1:] else "."),
              "", *(line for method in args.default for line in verdict(summaries, method)), ""]
    return "\n".join(lines)


def complete_seeds(runs: list[Run]) -> list[Run]:
    """Only the (dataset, seed) pairs every method run on that dataset finished, so that every comparison is paired
    (an arm may run on one dataset only)."""
    methods = {d: {r.method for r in runs if r.dataset == d} for d in {r.dataset for r in runs}}
    done = {(d, s) for d, s in {(r.dataset, r.seed) for r in runs}
            if {r.method for r in runs if (r.dataset, r.seed) == (d, s)} == methods[d]}
    return [r for r in runs if (r.dataset, r.seed) in done]


def plot(runs: list[Run], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = complete_seeds(runs)
    datasets = [d for d in args.datasets if any(r.dataset == d for r in runs)]
    fig, axes = plt.subplots(len(datasets), 2, figsize=(13, 4.5 * len(datasets)), squeeze=False)
    for row, name in zip(axes, datasets):
        summary = summarize([r for r in runs if r.dataset == name], args.budget[name])
        for i, (method, s) in enumerate(summary["methods"].items()):
            style = dict(c=f"C{i}", label=method, lw=2.2 if method in (BASELINE, PEER) else 1.4,
                         ls=":" if method == PEER else "--" if "mo-asha" in method else "-")
            for ax, x, curves in ((row[0], summary["grid"], s["by_flops"]), (row[1], summary["seconds"],
                                                                               s["by_time"])):
                mean, std = curves.mean(0), curves.std(0)
                ax.plot(x, mean, **style)
                ax.fill_between(x, mean - std, mean + std, color=f"C{i}", alpha=0.08)
        for ax, label in ((row[0], "training FLOPs spent (all trials, all folds)"),
                          (row[1], "wall time since search start (s; machine shared)")):
            ax.axhline(summary["target"], c="k", lw=0.8, ls=":")
            ax.set_xlabel(label)
            ax.set_ylabel(f"{name}: hypervolume")
            ax.grid(alpha=0.3)
        row[0].axvline(summary["budget"] * TARGET_FRACTION, c="0.5", lw=0.8, ls="-.")
        row[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Hypervolume of full-budget candidates, mean ± std over seeds (dotted line: random's final mean)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_log(path: Path) -> list[Run]:
    return [Run(**{**row, "points": [tuple(p) for p in row["points"]]}) for row in map(json.loads, path.open())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["osuleaf", "plaid"], choices=list(BUDGETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. seeds-1 (a run split in two)")
    ap.add_argument("--budget", nargs="+", default=[], metavar="DATASET=FLOPS",
                    help=f"training FLOPs per search (default {BUDGETS})")
    ap.add_argument("--epochs", type=int, default=9, help="training epochs of a full trial (MO-ASHA's max_t)")
    ap.add_argument("--cv-folds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=16, help="trial cap without a scheduler (x reduction factor with)")
    ap.add_argument("--grace-period", type=int, default=1)
    ap.add_argument("--reduction-factor", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--default", nargs="+", default=["tpe"], choices=list(METHODS),
                    help="the methods the targets judge: the spec's default first, then any proposed one")
    ap.add_argument("--log", type=Path, help="JSON lines, one per finished search (appended)")
    ap.add_argument("--from-log", type=Path, nargs="+", help="write the report from earlier runs' logs; run nothing")
    ap.add_argument("--out", type=Path, help="markdown report; the plot goes beside it (.png)")
    args = ap.parse_args()
    args.budget = {**BUDGETS, **{k: float(v) for k, v in (b.split("=", 1) for b in args.budget)}}
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    for method in [m for m in METHODS if m not in args.methods]:
        del METHODS[method]

    start = time.perf_counter()
    if args.from_log:  # the run's own command and time, kept beside its log
        runs = list({(r.dataset, r.method, r.seed): r for path in reversed(args.from_log)
                     for r in load_log(path) if r.method in METHODS}.values())  # a search in two logs counts once
        metas = [json.loads(p.with_suffix(".meta.json").read_text()) for p in args.from_log]
        command = "\n".join(m["command"] for m in metas) + f"\n# report written from their logs:\n{command}"
        total = sum(m.get("total_s", float("nan")) for m in metas)
    else:
        runs, total = execute(args, start, command)
    out = args.out or Path(tempfile.mkdtemp(prefix="emule-search-quality-")) / "search_quality.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plot(runs, args, png)
    out.write_text(report(runs, args, command, png, total))
    print(out.read_text())
    print(f"\nwrote {out} and {png}")


def execute(args: argparse.Namespace, start: float, command: str) -> tuple[list[Run], float]:
    import ray

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    tmp = Path(tempfile.mkdtemp(prefix="emule-search-quality-"))
    log = args.log or tmp / "runs.jsonl"
    meta = log.with_suffix(".meta.json")
    meta.write_text(json.dumps({"command": command}))
    print(f"store: {tmp}; log: {log}; {len(METHODS)} methods x {args.seeds} seeds x {args.datasets}", flush=True)
    # "local": a fresh instance, never one another process started on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    # a throw-away search first: MLflow's tables and Ray's workers, so the first timed search does not pay for them
    warm = argparse.Namespace(**{**vars(args), "epochs": 2, "trials": 1, "grace_period": 1})
    run_one(tmp, args.datasets[0], next(iter(METHODS)), 0, warm)
    runs = load_log(log) if log.exists() else []  # a log from an interrupted run: its searches are not repeated
    done = {(r.dataset, r.method, r.seed) for r in runs}
    try:
        # seed-major: a machine slowing down over time hits every method alike
        for seed in range(args.first_seed, args.seeds):
            for dataset in args.datasets:
                for method in [m for m in METHODS if (dataset, m, seed) not in done]:
                    run = run_one(tmp, dataset, method, seed, args)
                    runs.append(run)
                    with log.open("a") as f:
                        f.write(json.dumps(run.__dict__) + "\n")
                    meta.write_text(json.dumps({"command": command, "total_s": time.perf_counter() - start}))
                    print(f"[{time.perf_counter() - start:7.1f}s] {dataset} {method:>22} seed {seed}: HV "
                          f"{run.final_hv:.3f}, {run.compute:.3g} FLOPs, {run.trials} trials ({run.full} full), "
                          f"{run.wall_s:.1f}s", flush=True)
    finally:
        ray.shutdown()
    return runs, time.perf_counter() - start


if __name__ == "__main__":
    main()
