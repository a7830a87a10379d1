"""The spec's space as an Optuna define-by-run function, and the spec's sampler.

Conditional parameters: an attention variant's options (``attention_options`` in the spec) are only sampled
when that variant is picked, under the name ``<variant>.<option>``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from emule_models.registry import Registry
from search.spec.schema import DISTILL_KEYS, INT_KEYS, OPTION_SEP, Range, Spec, SpecError


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


def searched(spec: Spec) -> list[str]:
    """The space's keys that are sampled (a range, or more than one choice), in the spec's order."""
    return [name for name, param in spec.space.items() if not _is_fixed(param)]


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


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class SpecSampler(optuna.samplers.BaseSampler):
    """The spec's sampler, kept as its recipe (registry name, seed, NSGA population, start-up trials) and built on
    first use: Tune pickles the searcher - into its saved tuner when the Tuner is made, into the experiment state as
    the search goes - and a live Optuna sampler need not survive that (Optuna 5.1's NSGA-II/III hold a thread lock).
    Pickled, it is its recipe alone; unpickled (a resumed search), it builds its sampler again at the first
    suggestion. What a sampler learns lives in the study's trials, which are pickled with the study, so the rebuilt
    one goes on from them. Its random stream is seeded from the seed and the number of trials the study has finished,
    so a resumed search does not draw again what the first run drew, and a fresh search draws from the seed alone.
    """

    def __init__(self, name: str, seed: int, population: int, startup: int):
        self.recipe = (name, seed, population, startup)
        self._sampler: optuna.samplers.BaseSampler | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "_sampler": None}

    @property
    def sampler(self) -> optuna.samplers.BaseSampler:
        """The Optuna sampler itself, built from the seed if no study has asked for it yet."""
        if self._sampler is None:
            self._build(0)
        return self._sampler

    def _for(self, study: optuna.Study) -> optuna.samplers.BaseSampler:
        if self._sampler is None:
            self._build(len(study.get_trials(deepcopy=False, states=FINISHED)))
        return self._sampler

    def _build(self, trials_before: int) -> None:
        name, seed, population, startup = self.recipe
        if trials_before:  # a rebuilt sampler: a stream of its own, still a function of the spec's seed
            seed = int(np.random.SeedSequence([seed, trials_before]).generate_state(1)[0])
        self._sampler = SAMPLERS.lookup(name)(seed, population, startup)

    def infer_relative_search_space(self, study, trial):
        return self._for(study).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(study).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(study).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(study).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(study).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()

    def __str__(self) -> str:
        return f"{self.recipe[0]} (seed {self.recipe[1]})"


def build_sampler(spec: Spec) -> SpecSampler:
    """The spec's sampler, seeded, as a recipe that pickles (``SpecSampler``). NSGA-II/III population sizes follow
    the trial budget so that small searches still get past their first generation. Constraint values reach the
    samplers through each trial (``Trial.set_constraint``, see ``search.driver.searcher``): nsga2, nsga3, tpe and gp
    learn from them; random and qmc ignore them."""
    # with an epoch budget, `trials` is only a cap: size the samplers for the full trials the budget affords
    expected = spec.search.trials
    if spec.search.epoch_budget is not None:
        expected = min(expected, max(1, spec.search.epoch_budget // spec.training.epochs))
    population = max(4, min(50, expected // 3))
    startup = spec.search.startup_trials or max(2, expected // 4)
    SAMPLERS.lookup(spec.search.sampler)  # an unknown name fails here, not at the first suggestion
    return SpecSampler(spec.search.sampler, spec.search.seed, population, startup)


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
