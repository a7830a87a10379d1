"""The peers of ``bench/search_quality.py``: plain Optuna (the spec's sampler in one process, no Ray) and Syne Tune's
MO-ASHA, on the product's own trial code (``search.trial.trainable``'s per-epoch results: the same candidate, folds,
refit and ``training_compute``), the same objectives, reference point, seed and compute budget.

Both run in this process, report every result to a ``Trace`` (``bench/trace.py``), which charges its compute and
keeps the hypervolume of the full-budget candidates, and stop once the trace has spent the budget. Syne Tune is a
benchmark-only extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna

from bench.trace import Trace
from search.driver.searcher import constraint_violations
from search.spec.schema import OPTION_SEP, Range, Spec
from search.spec.space import DefineByRun, build_sampler

# Syne Tune's MO-ASHA minimises every metric: the objectives as ``search.front.pareto.to_minimize`` turns them
MINIMIZED = {"val_accuracy": "neg_val_accuracy", "param_count": "log_param_count", "flops": "log_flops"}


def in_process_results(config: dict[str, Any], spec: Spec, dataset):
    """A trial's per-epoch results without Ray: ``search.trial.trainable``'s own generator, with the two Ray lookups it
    makes for the record (node, GPU ids) answered locally."""
    import time

    import search.trial.trainable as trainable

    trainable._node_id = lambda: "local"
    trainable._gpu_ids = lambda: ""
    return trainable._results(config, spec, dataset, None, None, time.perf_counter(), {})


def run_optuna(spec: Spec, dataset, trace: Trace) -> None:
    """Plain Optuna: ask, train the candidate to its full budget in this process, tell; until the budget is spent.
    One trial at a time (no Ray), so every suggestion sees every earlier result."""
    directions = ["maximize" if m == "max" else "minimize" for m in spec.modes]
    study = optuna.create_study(directions=directions, sampler=build_sampler(spec))
    space, limits = DefineByRun(spec), spec.constraints.limits()
    while not trace.spent():
        trial = study.ask()
        fixed = space(trial)  # suggests first: trial.params is empty until then
        config = {**trial.params, **fixed}
        last = None
        for row in in_process_results(config, spec, dataset):
            last = row
            trace.result(str(trial.number), row)
            if trace.spent():
                break
        if last is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        for key, value in zip(limits, constraint_violations(last, limits)):
            trial.set_constraint(key, value)
        if last.get("budget_done") or last.get("infeasible"):
            study.tell(trial, [last[m] for m in spec.metrics])
        # cut by the budget: the search ends here, nothing more to tell


def syne_config_space(spec: Spec) -> dict[str, Any]:
    """The spec's space in Syne Tune's terms. Syne Tune has no conditional parameters: every attention variant's
    options are sampled every time and only the picked variant's are used (as in the product's candidate)."""
    from syne_tune.config_space import choice, loguniform, randint, uniform

    def domain(param: Any) -> Any:
        if isinstance(param, Range):
            if param.is_int() and not param.log:
                return randint(int(param.low), int(param.high))
            return loguniform(param.low, param.high) if param.log else uniform(param.low, param.high)
        if isinstance(param, list):
            return choice(param) if len(param) > 1 else param[0]
        return param

    space = {name: domain(p) for name, p in spec.space.items()}
    for variant, options in spec.attention_options.items():
        space.update({variant + OPTION_SEP + o: domain(p) for o, p in options.items()})
    return space


def run_syne_moasha(spec: Spec, dataset, trace: Trace, grace_period: int, reduction_factor: int) -> None:
    """Syne Tune's MO-ASHA (random sampling, its default non-dominated-sort promotion) driven in this process:
    ``search.concurrency`` trials in flight, each trains one epoch in turn (asynchronous workers of equal speed);
    every result goes to the scheduler, whose STOP ends the trial. Syne Tune's own local backends start a Python
    process per trial (seconds of imports each, most of the wall time at this scale, nothing in FLOPs); the
    scheduler's decisions are the same either way."""
    from datetime import datetime

    from syne_tune.backend.trial_status import Trial
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    missing = [m for m in spec.metrics if m not in MINIMIZED]
    if missing:
        raise ValueError(f"objectives: {missing} have no minimised form for Syne Tune; accepted: {list(MINIMIZED)}")
    np.random.seed(spec.search.seed)  # MO-ASHA samples configs and brackets from numpy's global generator
    scheduler = MOASHA(syne_config_space(spec), metrics=[MINIMIZED[m] for m in spec.metrics], do_minimize=True,
                       time_attr="epoch", max_t=spec.training.epochs, grace_period=grace_period,
                       reduction_factor=reduction_factor, random_seed=spec.search.seed)
    running: dict[int, tuple[Trial, Any]] = {}
    last: dict[int, dict[str, float]] = {}
    started = 0
    while not trace.spent():
        while len(running) < spec.search.concurrency:
            trial = Trial(trial_id=started, config=scheduler.suggest().config, creation_time=datetime.now())
            scheduler.on_trial_add(trial)
            running[started] = (trial, in_process_results(dict(trial.config), spec, dataset))
            started += 1
        for tid in list(running):
            trial, results = running[tid]
            row = next(results, None)
            if row is None:  # ran to its end (an infeasible candidate's one result, say)
                scheduler.on_trial_complete(trial, last[tid])
                del running[tid]
                continue
            trace.result(str(tid), row)
            last[tid] = minimised(row)
            if scheduler.on_trial_result(trial, last[tid]) == SchedulerDecision.STOP:
                results.close()
                del running[tid]
            if trace.spent():
                break


def minimised(row: dict[str, Any]) -> dict[str, float]:
    """A result as Syne Tune's MO-ASHA reads it: the epoch and each objective turned into "minimize"."""
    return {"epoch": int(row["epoch"]), "neg_val_accuracy": -float(row["val_accuracy"]),
            "log_param_count": math.log10(row["param_count"]), "log_flops": math.log10(row["flops"])}
