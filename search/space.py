"""The spec's space as an Optuna define-by-run function, and the spec's sampler.

Conditional parameters: an attention variant's options (``attention_options`` in the spec) are only sampled
when that variant is picked, under the name ``<variant>.<option>``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from emule_models.registry import Registry
from search.candidate import OPTION_SEP
from search.spec import DISTILL_KEYS, INT_KEYS, Range, Spec, SpecError


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


# a sampler: (seed, NSGA population, start-up trials) -> a seeded Optuna sampler; the names are spec.SAMPLERS
SamplerFactory = Callable[[int, int, int], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler", field="search.sampler")


@SAMPLERS.register("nsga2")
def _nsga2(seed: int, population: int, startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)


@SAMPLERS.register("nsga3")
def _nsga3(seed: int, population: int, startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIIISampler(population_size=population, seed=seed)


@SAMPLERS.register("tpe")
def _tpe(seed: int, population: int, startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


@SAMPLERS.register("tpe-multivariate")
def _tpe_multivariate(seed: int, population: int, startup: int) -> optuna.samplers.BaseSampler:
    # one joint density over the parameters rather than one per parameter; ``group`` splits the space where a
    # parameter exists only for some choices (an attention type's options); ``constant_liar`` keeps trials that run
    # at once from being suggested the same point
    with warnings.catch_warnings():  # Optuna flags the three options experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True,
                                          constant_liar=True)


@SAMPLERS.register("gp")
def _gp(seed: int, population: int, startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)


@SAMPLERS.register("qmc")
def _qmc(seed: int, population: int, startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(seed=seed)


@SAMPLERS.register("random")
def _random(seed: int, population: int, startup: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def build_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded. NSGA-II/III population sizes follow the trial budget so that small searches
    still get past their first generation. Constraint values reach the samplers through each trial
    (``Trial.set_constraint``, see ``search.searcher``): nsga2, nsga3, tpe and gp learn from them; random and qmc
    ignore them."""
    # with an epoch budget, `trials` is only a cap: size the samplers for the full trials the budget affords
    expected = spec.search.trials
    if spec.search.epoch_budget is not None:
        expected = min(expected, max(1, spec.search.epoch_budget // spec.training.epochs))
    population = max(4, min(50, expected // 3))
    startup = spec.search.startup_trials or max(2, expected // 4)
    return SAMPLERS.lookup(spec.search.sampler)(spec.search.seed, population, startup)


def warm_start_points(spec: Spec) -> list[dict[str, Any]]:
    """Sampler parameters of the exported candidates in ``search.warm_start``, tried first (Optuna's enqueue).

    Each must lie inside the space: a value outside it would be silently re-sampled by Optuna.
    """
    import yaml

    points = []
    for i, path in enumerate(spec.search.warm_start):
        field = f"search.warm_start[{i}]"
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise SpecError(f"{field}: {path!r} cannot be read ({type(e).__name__})") from None
        if not isinstance(doc, dict) or not {"model", "training", "data"} <= set(doc):
            raise SpecError(f"{field}: {path!r} is not an exported candidate; accepted: YAML from `emule export`")
        sources = {**doc["training"], **doc["data"], **doc["model"]}
        point = {}
        for name, param in spec.space.items():
            if name not in sources and name in DISTILL_KEYS:
                continue  # a candidate from a search without a teacher: the sampler picks its alpha
            if name not in sources:
                raise SpecError(f"{field}: {path!r} has no {name!r}")
            point[name] = _inside(field, name, sources[name], param)
        attention = point.get("attention", sources.get("attention"))
        given = doc["model"].get("attention_options", {})
        for option, param in spec.attention_options.get(attention, {}).items():
            name = attention + OPTION_SEP + option
            if option in given:
                point[name] = _inside(field, name, given[option], param)
        points.append(point)
    return points


def _inside(field: str, name: str, value: Any, param: Any) -> Any:
    if isinstance(param, Range):
        ok = isinstance(value, (int, float)) and param.low <= value <= param.high
        accepted = f"{param.low:g}..{param.high:g}"
    elif isinstance(param, list):
        ok, accepted = value in param, str(param)
    else:
        ok, accepted = value == param, repr(param)
    if not ok:
        raise SpecError(f"{field}: {name}={value!r} lies outside the space; accepted: {accepted}")
    return value


def typed_params(spec: Spec, logged: dict[str, str]) -> dict[str, Any]:
    """Sampler parameters as MLflow logged them (strings) -> typed values of the spec's space."""
    out: dict[str, Any] = {}
    params = dict(spec.space)
    attention = logged.get("attention")
    for option, param in spec.attention_options.get(attention, {}).items():
        params[attention + OPTION_SEP + option] = param
    for name, param in params.items():
        if name not in logged:
            continue
        text = logged[name]
        if isinstance(param, Range):
            out[name] = int(float(text)) if param.is_int() and name in INT_KEYS else float(text)
        else:
            options = param if isinstance(param, list) else [param]
            out[name] = next((c for c in options if str(c) == text), text)
    return out


def history_trials(spec: Spec, rows: list[tuple[dict[str, Any], list[float]]]) -> list[optuna.trial.FrozenTrial]:
    """Finished candidates of an earlier search as Optuna trials of this space (params with their
    distributions, objective values), for a study to learn from without training them again."""
    directions = ["maximize" if m == "max" else "minimize" for m in spec.modes]
    scratch = optuna.create_study(directions=directions)
    space = DefineByRun(spec)
    for params, values in rows:
        scratch.enqueue_trial(params, skip_if_exists=False)
        trial = scratch.ask()
        space(trial)
        scratch.tell(trial, values)
    return scratch.get_trials(deepcopy=True)
