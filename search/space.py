"""The spec's space as an Optuna define-by-run function, and the spec's sampler.

Conditional parameters: an attention variant's options (``attention_options`` in the spec) are only sampled
when that variant is picked, under the name ``<variant>.<option>``.
"""

from __future__ import annotations

from typing import Any

import optuna

from search.candidate import OPTION_SEP
from search.spec import INT_KEYS, Range, Spec


def suggest(trial: optuna.Trial, name: str, param: Any, as_int: bool = False) -> Any:
    """One spec entry -> one Optuna suggestion (ranges inclusive at both ends); a scalar stays fixed."""
    if isinstance(param, Range):
        if as_int or param.is_int() and name in INT_KEYS:
            step = int(param.step or 1)
            return trial.suggest_int(name, int(param.low), int(param.high), step=step, log=param.log)
        return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    if isinstance(param, list):
        return trial.suggest_categorical(name, param) if len(param) > 1 else param[0]
    return param


class DefineByRun:
    """The function ``OptunaSearch(space=...)`` calls per trial; returns the fixed (unsampled) settings.

    A class rather than a closure: Tune pickles the searcher with its experiment state.
    """

    def __init__(self, spec: Spec):
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        entries = list(self.spec.space.items())
        attention = None
        fixed: dict[str, Any] = {}
        for name, param in entries:
            value = suggest(trial, name, param)
            if _is_fixed(param):
                fixed[name] = value
            if name == "attention":
                attention = value
        attention = attention or "softmax"
        for option, param in self.spec.attention_options.get(attention, {}).items():
            name = attention + OPTION_SEP + option
            value = suggest(trial, name, param)
            if _is_fixed(param):
                fixed[name] = value
        return fixed


def _is_fixed(param: Any) -> bool:
    return not isinstance(param, (Range, list)) or isinstance(param, list) and len(param) == 1


def build_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded. NSGA-II/III population sizes follow the trial budget so that small searches
    still get past their first generation."""
    name, seed = spec.search.sampler, spec.search.seed
    population = max(4, min(50, spec.search.trials // 3))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(population_size=population, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, spec.search.trials // 4))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(2, spec.search.trials // 4))
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)
