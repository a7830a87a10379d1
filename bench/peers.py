"""The peers of ``bench/search_quality.py``: plain Optuna (the spec's sampler in one process, no Ray) and Syne Tune's
MO-ASHA, on the product's own trial code (``search.trainable``'s per-epoch results: the same candidate, folds,
refit and ``training_compute``), the same objectives, reference point, seed and compute budget.

Both report every result to a ``Trace`` (``bench/trace.py``), which charges its compute and keeps the
hypervolume of the full-budget candidates, and stop once the trace has spent the budget. Syne Tune is a
benchmark-only extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from bench.trace import Trace
from search.candidate import OPTION_SEP
from search.searcher import constraint_violations
from search.space import DefineByRun, build_sampler
from search.spec import Range, Spec

# Syne Tune's MO-ASHA minimises every metric: the objectives as ``search.pareto.to_minimize`` turns them
MINIMIZED = {"val_accuracy": "neg_val_accuracy", "param_count": "log_param_count", "flops": "log_flops"}


def in_process_results(config: dict[str, Any], spec: Spec, dataset):
    """A trial's per-epoch results without Ray: ``search.trainable``'s own generator, with the two Ray lookups it
    makes for the record (node, GPU ids) answered locally."""
    import time

    import search.trainable as trainable

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


def syne_config_space(spec: Spec, spec_file: Path) -> dict[str, Any]:
    """The spec's space in Syne Tune's terms. Syne Tune has no conditional parameters: every attention variant's
    options are sampled every time and only the picked variant's are used (as in the product's candidate)."""
    from syne_tune.config_space import choice, loguniform, randint, uniform

    def domain(name: str, param: Any) -> Any:
        if isinstance(param, Range):
            if param.is_int() and not param.log:
                return randint(int(param.low), int(param.high))
            return loguniform(param.low, param.high) if param.log else uniform(param.low, param.high)
        if isinstance(param, list):
            return choice(param) if len(param) > 1 else param[0]
        return param

    space = {name: domain(name, p) for name, p in spec.space.items()}
    for variant, options in spec.attention_options.items():
        space.update({variant + OPTION_SEP + o: domain(o, p) for o, p in options.items()})
    space["spec_file"] = str(spec_file)
    return space


def syne_trial(**config) -> None:
    """One Syne Tune trial, in a process of its own: rebuild spec and data, report each epoch's minimised
    objectives (Syne Tune kills the process to stop it). Self-contained: Syne Tune pickles it without globals."""
    import json as _json
    import math as _math
    from pathlib import Path as _Path

    from syne_tune import Reporter

    from bench.peers import in_process_results
    from search.candidate import spec_dataset
    from search.spec import parse_spec

    spec = parse_spec(_json.loads(_Path(config.pop("spec_file")).read_text()))
    dataset = spec_dataset(spec)
    report = Reporter()
    for row in in_process_results(config, spec, dataset):
        report(epoch=int(row["epoch"]), neg_val_accuracy=-float(row["val_accuracy"]),
               log_param_count=_math.log10(row["param_count"]), log_flops=_math.log10(row["flops"]),
               val_accuracy=float(row["val_accuracy"]), param_count=float(row["param_count"]),
               flops=float(row["flops"]), training_compute=float(row.get("training_compute", 0.0)),
               budget_done=int(bool(row.get("budget_done"))), infeasible=int(bool(row.get("infeasible"))))


def run_syne_moasha(spec: Spec, trace: Trace, tmp: Path, grace_period: int, reduction_factor: int) -> None:
    """Syne Tune's MO-ASHA (random sampling, non-dominated sort + crowding promotion, its default) on a local
    backend: each trial a Python process of its own, ``search.concurrency`` at a time."""
    from syne_tune import Tuner
    from syne_tune.backend import PythonBackend
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
    from syne_tune.results_callback import StoreResultsCallback
    from syne_tune.tuner_callback import TunerCallback

    missing = [m for m in spec.metrics if m not in MINIMIZED]
    if missing:
        raise ValueError(f"objectives: {missing} have no minimised form for Syne Tune; accepted: {list(MINIMIZED)}")
    os.environ["SYNETUNE_FOLDER"] = str(tmp / "syne-tune")
    spec_file = tmp / f"spec-{trace.label}.json"
    spec_file.write_text(json.dumps(spec.model_dump(mode="json")))
    space = syne_config_space(spec, spec_file)
    np.random.seed(spec.search.seed)  # MO-ASHA samples its configs from numpy's global generator

    class Traced(TunerCallback):
        def on_trial_result(self, trial, status, result, decision):
            trace.result(str(trial.trial_id), {**result, "budget_done": bool(result.get("budget_done"))})

    scheduler = MOASHA(space, metrics=[MINIMIZED[m] for m in spec.metrics], do_minimize=True, time_attr="epoch",
                       max_t=spec.training.epochs, grace_period=grace_period, reduction_factor=reduction_factor,
                       random_seed=spec.search.seed)
    tuner = Tuner(trial_backend=PythonBackend(tune_function=syne_trial, config_space=space), scheduler=scheduler,
                  stop_criterion=lambda status: trace.spent(), n_workers=spec.search.concurrency, sleep_time=0.2,
                  results_update_interval=3600, print_update_interval=3600, callbacks=[StoreResultsCallback(),
                                                                                      Traced()],
                  tuner_name=f"st-{trace.label}", save_tuner=False, metadata={})
    tuner.run()

