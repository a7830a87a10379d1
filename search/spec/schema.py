"""The search spec's schema: a validated model of a YAML file in spaces/, the value rules of every searchable key,
and the rewriting of pydantic's errors into one line naming the field, the value and what is accepted.

The searchable model and training keys are the fields of ``ModelConfig`` and ``TrainConfig``: a field added there is
searchable at once, under the rule of its type (ints: integers >= 1, floats: numbers, strings: the names in
``CHOICES``) unless ``RULES`` gives it its own. What needs the data or builds models is checked by
``search.driver.checks``, which is also where a spec file is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from emule_models.attention import ATTENTION
from emule_models.augment import POLICIES
from emule_models.config import CHANNEL_MODES, SERIES_NORMS, TOKENIZERS, ModelConfig
from emule_models.data import BUILTIN, STRATEGIES, needs_scores
from emule_models.data.load import BUILTIN_KEYS
from emule_models.fusion import FUSION
from emule_models.position import POSITIONS
from emule_models.stems import STEM_FILTERS
from emule_models.train import FINALS, LR_SCHEDULES, SEED_ENSEMBLE, TrainConfig
from search.spec.metrics import ALIASES, canonical
from search.spec.results import FLOPS, LATENCY_MS, SIZE, TRAINING_COMPUTE
from search.spec.storage import DEFAULT_STORAGE, is_uri
from search.spec.storage import absolute as absolute_storage

# --- the searchable keys, derived from the dataclasses that consume them ---
OPTION_SEP = "."  # sampler parameter "performer.features" -> attention_options["features"] of performer
# ModelConfig fields a sampler never proposes: the data fixes the first two, `attention_options` the third.
MODEL_FIXED = ("modalities", "num_classes", "attention_options")
# TrainConfig fields that are no hyperparameters: epochs are the budget a scheduler cuts, the seed is search.seed,
# the data schedule follows from search.data_fidelity; the final model (and a seed ensemble's size) is a deployment
# choice that validation cannot rank (an ensemble's validation accuracy is its members' fold mean, as a refit's is).
TRAINING_FIXED = ("epochs", "seed", "data_schedule", "final", "ensemble_seeds")


def _searchable(cls: type, fixed: tuple[str, ...]) -> dict[str, type]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in fixed}


MODEL_TYPES = _searchable(ModelConfig, MODEL_FIXED)
TRAINING_TYPES = _searchable(TrainConfig, TRAINING_FIXED)
DATA_TYPES: dict[str, type] = {"data_fraction": float, "selection": str}  # which training rows a candidate sees
KEY_TYPES = {**MODEL_TYPES, **DATA_TYPES, **TRAINING_TYPES}
MODEL_KEYS, DATA_KEYS, TRAINING_KEYS = tuple(MODEL_TYPES), tuple(DATA_TYPES), tuple(TRAINING_TYPES)
SPACE_KEYS = tuple(KEY_TYPES)
INT_KEYS = tuple(k for k, kind in KEY_TYPES.items() if kind is int)
DISTILL_KEYS = ("distill_alpha", "distill_temperature")  # searchable only with a `distill:` teacher

# Samplers, schedulers and baselines are named in their registries (search.spec.space.SAMPLERS,
# search.driver.schedulers.SCHEDULERS, search.trial.baselines.METHODS), which sit in layers above the schema:
# search.driver.checks checks the names against them, before any data is read.
DEFAULT_BASELINES = ("nn_euclidean", "nn_dtw", "rocket")  # the baselines of a spec that names none
DEFAULT_EXPERIMENT = "emule"  # the MLflow experiment of a spec that names none
# Metrics a trial reports that can be objectives, with the direction that makes sense for each.
# The model size is `param_count`; its former name `params` is accepted (search.spec.metrics.ALIASES).
OBJECTIVE_METRICS = {"val_accuracy": "max", SIZE: "min", FLOPS: "min", LATENCY_MS: "min",
                     TRAINING_COMPUTE: "min", "train_time_s": "min"}
# data.cv_folds: how candidates are validated (search.trial.validation resolves `auto` against the data)
HOLDOUT = "holdout"
AUTO = "auto"


class SpecError(ValueError):
    """A spec problem, as one line: ``<field>: <value> - <what is accepted>``."""


# --- value rules of the searchable keys ---
@dataclasses.dataclass(frozen=True)
class Rule:
    """What one key's values may be: ``ok(value)``, and ``accepted`` in words for the error line."""

    accepted: str
    ok: Callable[[Any], bool]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


def _integer(v: Any) -> bool:
    return _number(v) and float(v).is_integer()


def one_of(registry: Collection[str]) -> Rule:
    return Rule(str(sorted(registry)), lambda v: isinstance(v, str) and v in registry)


INTEGERS = Rule("integers >= 1", lambda v: _integer(v) and v >= 1)
COUNTS = Rule("integers >= 0", lambda v: _integer(v) and v >= 0)
NUMBERS = Rule("numbers", _number)
STRINGS = Rule("strings", lambda v: isinstance(v, str))
RATES = Rule("numbers in [0, 1)", lambda v: _number(v) and 0 <= v < 1)
TYPE_RULES = {int: INTEGERS, float: NUMBERS, str: STRINGS}  # a key's rule when it has no other

# The names a string key accepts: the registries of emule_models.
CHOICES: dict[str, Collection[str]] = {
    "attention": ATTENTION, "fusion": FUSION, "channel_mode": CHANNEL_MODES, "series_norm": SERIES_NORMS,
    "tokenizer": TOKENIZERS, "stem_filters": STEM_FILTERS, "position": POSITIONS, "selection": STRATEGIES,
    "augment": POLICIES, "lr_schedule": LR_SCHEDULES, "final": FINALS}
# Keys whose values are narrower than their type's rule.
RULES: dict[str, Rule] = {
    "depth": COUNTS, "fusion_layer": COUNTS, "pretrain_epochs": COUNTS,
    "dropout": RATES, "drop_path": RATES, "label_smoothing": RATES, "ema": RATES,
    "data_fraction": Rule("numbers in (0, 1]", lambda v: _number(v) and 0 < v <= 1),
    "pretrain_mask_ratio": Rule("numbers in (0, 1)", lambda v: _number(v) and 0 < v < 1),
    "distill_alpha": Rule("numbers in [0, 1]", lambda v: _number(v) and 0 <= v <= 1),
    "distill_temperature": Rule("numbers > 0", lambda v: _number(v) and v > 0),
}


def rule(key: str) -> Rule:
    """The rule of a searchable key: its own, else its registry's names, else its type's."""
    if key in RULES:
        return RULES[key]
    if key in CHOICES:
        return one_of(CHOICES[key])
    return TYPE_RULES[KEY_TYPES[key]]


# A field whose type has no rule (a bool, an optional) must be given one: refused here, not at a user's spec.
_UNRULED = [k for k in SPACE_KEYS if k not in RULES and k not in CHOICES and KEY_TYPES[k] not in TYPE_RULES]
if _UNRULED:
    raise TypeError(f"search.spec.schema: no rule for the searchable keys {_UNRULED}; give each one in RULES")


def check_value(key: str, param: Any) -> None:
    """Refuse a space entry (choices, a range - by its bounds - or a fixed value) that breaks its key's rule."""
    if KEY_TYPES[key] is int and isinstance(param, Range) and not param.is_int():
        raise ValueError(f"{key}: {param.low:g}..{param.high:g} is not an integer range; accepted: integers")
    r = rule(key)
    for v in param.corners() if isinstance(param, Range) else param if isinstance(param, list) else [param]:
        if not r.ok(v):
            raise ValueError(f"{key}: {v!r} not accepted; accepted: {r.accepted}")


def check_cv_folds(value: Any) -> None:
    """Refuse a ``data.cv_folds`` value that is not ``auto``, ``holdout`` or an integer >= 2."""
    if value in (AUTO, HOLDOUT):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"data.cv_folds: {value!r} not accepted; accepted: auto, holdout, or an integer >= 2")


# --- the schema ---
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(Strict):
    """A numeric range, bounds inclusive; ``log`` samples on a log scale; ``step`` quantizes."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low={self.low:g} > high={self.high:g}; accepted: low <= high")
        if self.log and self.low <= 0:
            raise ValueError(f"low={self.low:g} with log=true; accepted: low > 0 on a log scale")
        if self.log and self.step is not None:
            raise ValueError("log=true with a step; accepted: one of the two")
        return self

    def is_int(self) -> bool:
        return float(self.low).is_integer() and float(self.high).is_integer() and (
            self.step is None or float(self.step).is_integer())

    def corners(self) -> list[float]:
        return [self.low, self.high]


Param = Range | list[Any] | str | int | float  # list: categorical choices; scalar: fixed


class Proxy(Strict):
    """The small proxy model whose EL2N scores and embeddings drive the quality-aware selection strategies
    (``el2n``, ``kcenter``, ``ccs``). Computed once per search on the driver, cached, shared with every trial."""

    epochs: int = Field(10, ge=1)
    seeds: int = Field(3, ge=1)
    width: int = Field(32, ge=1)


class Objective(Strict):
    metric: str
    mode: Literal["max", "min"]
    reference: float = Field(description="hypervolume reference point, in the metric's own units")
    log: bool = False

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if canonical(v) not in OBJECTIVE_METRICS:
            raise ValueError(f"{v!r} is not a metric trials report; accepted: {sorted(OBJECTIVE_METRICS)} "
                             f"(former names: {sorted(ALIASES)})")
        return canonical(v)


class Training(Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_schedule: str = Field("cosine", description="cosine, or plateau: halved when the training loss stalls "
                             "(emule_models.train.LR_SCHEDULES)")
    final: str = Field("refit", description="the model a candidate deploys: refit (one model trained again on "
                       "every training row), fold_ensemble (the cross-validation fold models, probabilities "
                       "averaged: no refit, k times the parameters, FLOPs and latency; needs data.cv_folds >= 2) or "
                       "seed_ensemble (ensemble_seeds refits from consecutive seeds, averaged the same way)")
    ensemble_seeds: int = Field(5, ge=2, description="the models of a seed ensemble (final: seed_ensemble)")
    weight_decay: float = Field(0.01, ge=0)
    augment: str = Field("none", description="augmentation policy: none, light, strong (emule_models.augment)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    ema: float = Field(0.0, ge=0, lt=1, description="decay of a weight average that is validated and kept; 0 = off")
    pretrain_epochs: int = Field(0, ge=0, description="epochs of masked-patch reconstruction first; 0 = off")
    pretrain_mask_ratio: float = Field(0.4, gt=0, lt=1, description="share of patches blanked while pretraining")

    @field_validator("augment", "lr_schedule", "final")
    @classmethod
    def _named(cls, v: str, info: ValidationInfo) -> str:
        accepted = CHOICES[info.field_name]  # the registry of names the space's key takes too
        if v not in accepted:
            raise ValueError(f"not accepted; accepted: {list(accepted)}")
        return v

    @model_validator(mode="after")
    def _seeds_for_an_ensemble(self) -> Training:
        # compared with the default, not with the keys given: a stored spec holds every key of this section
        if self.ensemble_seeds != Training.model_fields["ensemble_seeds"].default and self.final != SEED_ENSEMBLE:
            raise ValueError(f"training.ensemble_seeds: {self.ensemble_seeds} - only a seed ensemble reads it; "
                             f"accepted: training.final: {SEED_ENSEMBLE} beside it (final is {self.final})")
        return self


class Distill(Strict):
    """Knowledge distillation from a teacher: its soft labels (per fold, from a teacher that never saw the fold's
    validation rows, and for the refit) are computed once per search on the driver and shared with every trial.
    ``alpha`` and ``temperature`` are the defaults of the searchable ``distill_alpha`` / ``distill_temperature``."""

    teacher: str | list[str] | dict[str, Any] = Field(description="an exported candidate YAML (its weights, the "
                                                      ".pt beside it, are used for the refit when present), a list "
                                                      "of them (an ensemble: logits averaged), or {search: NAME} "
                                                      "for that search's best candidate by validation ({search: "
                                                      "NAME, top: K}: its K best, as an ensemble)")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-label term; 1 - alpha weighs the labels")
    temperature: float = Field(4.0, gt=0, description="softmax temperature of the soft-label term")
    cross_fit: int = Field(1, ge=1, le=10, description="1: each training row's soft label comes from a teacher "
                           "that learned from it; K >= 2: from one of K teacher models that did not (the rows "
                           "dealt into K parts; K times the teacher models to train)")

    @field_validator("teacher")
    @classmethod
    def _teacher_form(cls, v: Any) -> Any:
        top = v.get("top", 1) if isinstance(v, dict) else 1
        if isinstance(v, dict) and (set(v) - {"search", "select", "top"} or not isinstance(v.get("search"), str)
                                    or v.get("select", "best") != "best" or isinstance(top, bool)
                                    or not isinstance(top, int) or top < 1):
            raise ValueError(f"{v!r} not accepted; accepted: a candidate YAML path, a list of them, or "
                             "{search: NAME[, select: best][, top: K >= 1]}")
        if isinstance(v, list) and not v:
            raise ValueError("empty list; accepted: one or more candidate YAML paths")
        return v

    def paths(self) -> list[str]:
        """The teacher YAMLs (empty for a ``{search: NAME}`` teacher, resolved when the search starts)."""
        return [] if isinstance(self.teacher, dict) else [self.teacher] if isinstance(self.teacher, str) \
            else list(self.teacher)


class Constraints(Strict):
    """Hard budgets: a candidate over any of them is infeasible - measured, never trained, never on the front."""

    max_params: float | None = Field(None, gt=0)
    max_flops: float | None = Field(None, gt=0)
    max_latency_ms: float | None = Field(None, gt=0)

    def limits(self) -> dict[str, float]:
        """metric -> limit, for the constraints that are set."""
        pairs = ((SIZE, self.max_params), (FLOPS, self.max_flops), (LATENCY_MS, self.max_latency_ms))
        return {metric: limit for metric, limit in pairs if limit is not None}

    def violated(self, measured: dict[str, Any]) -> list[str]:
        """The limits ``measured`` exceeds, as people read them (``param_count 1.2e+05 > 1e+05``)."""
        return [f"{k} {float(measured[k]):.4g} > {limit:.4g}" for k, limit in self.limits().items()
                if measured[k] > limit]


class SearchSettings(Strict):
    sampler: str = Field("nsga2", description="a name in search.spec.space.SAMPLERS")
    scheduler: str = Field("none", description="a name in search.driver.schedulers.SCHEDULERS")
    grace_period: int = Field(1, ge=1, description="epochs before the first halving decision")
    reduction_factor: int = Field(3, ge=2, description="keep 1 in reduction_factor at each rung")
    data_fidelity: float = Field(1.0, gt=0, le=1, description="under a scheduler, the share of a candidate's "
                                 "training rows its epochs up to the first rung learn from; it grows by the same "
                                 "factor at each rung, to every row after the last (search.spec.fidelity); 1 = every "
                                 "row at every epoch")
    warm_start: list[str] = Field(default_factory=list, description="exported candidate YAMLs to try first")
    epoch_budget: int | None = Field(None, ge=1, description="stop the search once trials trained this many epochs "
                                     "in total (a compute budget; `trials` stays the cap on candidates)")
    trials: int = Field(12, ge=1)
    startup_trials: int | None = Field(None, ge=1, description="random trials before tpe or gp model the results; "
                                       "null = a quarter of the expected trials, at least 2")
    concurrency: int = Field(2, ge=1)
    seed: int = 0
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs per trial; a fraction shares one GPU between trials")
    baseline_seconds: float = Field(300.0, gt=0, description="time bound per classical baseline: one whose "
                                    "estimated run time is above it is skipped (ROCKET falls back to MiniRocket)")
    retries: int = Field(0, ge=0, description="times a failed trial is started again before it counts as failed")
    max_trial_seconds: float | None = Field(None, gt=0, description="wall-clock limit of one trial (measuring, "
                                            "pretraining, every fold and the refit): past it the trial stops and "
                                            "fails with reason timeout; null = no limit")
    storage: str = Field(DEFAULT_STORAGE, description="where Ray Tune keeps experiment state: a local folder (made "
                         "absolute), a path every node mounts, or a URI (s3://, gs://, ...)")


# A learning curve's fractions and shuffles (`emule data-curve`, the spec's data_curve; search.delivery.data_curve).
CURVE_FRACTIONS, CURVE_SEEDS = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0), 3


def check_curve(fractions: Any, seeds: Any, prefix: str = "") -> tuple[float, ...]:
    """A learning curve's fractions, sorted, with 1.0 added; refused in one line (``prefix``: "--" for options)."""
    bad = [f for f in fractions if not (_number(f) and 0 < f <= 1)]
    if bad:
        raise ValueError(f"{prefix}fractions: {bad[0]!r} not accepted; accepted: numbers in (0, 1]")
    if not _integer(seeds) or seeds < 1:
        raise ValueError(f"{prefix}seeds: {seeds!r} not accepted; accepted: an integer >= 1")
    chosen = tuple(sorted({float(f) for f in fractions} | {1.0}))
    if len(chosen) < 3:
        raise ValueError(f"{prefix}fractions: {list(fractions)} gives {len(chosen)} point(s) with 1.0; accepted: at "
                         "least two fractions below 1 (a curve needs three points)")
    return chosen


class DataCurve(Strict):
    """``data_curve:``: `emule data-curve` run on the search's candidate once the search completes
    (``search.delivery.data_curve``)."""

    select: str = Field("best", description="best (by validation), knee, or a trial id")
    fractions: list[float] = Field(default_factory=lambda: list(CURVE_FRACTIONS),
                                   description="fractions of each fold's training rows, in (0, 1]; 1 is added")
    seeds: int = Field(CURVE_SEEDS, description="shuffles of the rows per fraction")

    @model_validator(mode="after")
    def _measurable(self) -> DataCurve:
        check_curve(self.fractions, self.seeds)
        return self


class Tracking(Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, then "
                            "$EMULE_TRACKING_URI, then sqlite:///<cwd>/mlflow.db")
    experiment: str = DEFAULT_EXPERIMENT


class DataSection(Strict):
    """The ``data`` section: a built-in by ``name`` or a user's Parquet ``path`` (read by
    ``emule_models.data.load_data``), and how candidates are validated on it. Read by attribute; a key not given
    is None, and is left out of every dump (``as_dict``, the spec's YAML and JSON), which hold the keys given, as
    the loader and every candidate's ``data`` take them."""

    name: str | None = Field(None, description="a built-in dataset (`emule datasets`)")
    path: str | None = Field(None, description="a Parquet file or folder, relative to the spec file")
    label: str | None = Field(None, description="the label column (Parquet)")
    columns: dict[str, Any] | None = Field(None, description="input columns and their kinds (Parquet)")
    split: str | None = Field(None, description="a column of train / val / test (Parquet)")
    id: str | None = Field(None, description="a column naming each row, unique (Parquet): `emule suggest-labels` "
                           "names the rows to label by it")
    seed: int | None = Field(None, description="seeds the validation carve and the cross-validation folds")
    val_fraction: float | None = Field(None, ge=0, lt=1)
    test_fraction: float | None = Field(None, ge=0, lt=1)
    view: str | None = Field(None, description="a derived view of the series (emule_models.data.views)")
    view_size: int | None = Field(None, ge=1)
    cv_folds: Any = Field(None, description="auto | holdout | k >= 2 (search.trial.validation)")

    @field_validator("name")
    @classmethod
    def _builtin(cls, v: str | None) -> str | None:
        if v is not None and v not in BUILTIN:
            raise ValueError(f"not a built-in dataset; accepted: {sorted(BUILTIN)}")
        return v

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, v: Any) -> Any:
        if v is not None:
            check_cv_folds(v)
        return v

    @model_validator(mode="after")
    def _one_source(self):
        given = self.as_dict()
        if ("name" in given) == ("path" in given):
            raise ValueError(f"data: {sorted(given)} names no source; accepted: either name (a built-in, see "
                             "`emule datasets`) or path (a Parquet file or folder) with label and columns")
        foreign = sorted(set(given) - {*BUILTIN_KEYS, "cv_folds"}) if "name" in given else []
        if foreign:
            raise ValueError(f"data: {foreign} only go with a Parquet path; accepted with a built-in name: "
                             f"{[*BUILTIN_KEYS, 'cv_folds']}")
        return self

    @model_serializer(mode="wrap")
    def _given(self, handler: Callable[[DataSection], dict[str, Any]]) -> dict[str, Any]:
        """Dumped as the keys given: a key left out is None, and never written (so a spec's YAML, its session file
        and what a candidate copies are the mapping the user wrote, with its paths and folds resolved)."""
        return {k: v for k, v in handler(self).items() if v is not None}

    def as_dict(self) -> dict[str, Any]:
        """The keys given, as the loader (``emule_models.data.load_data``) takes them, ``cv_folds`` included."""
        return self.model_dump()

    def source(self) -> dict[str, Any]:
        """The keys that name and shape the dataset: ``as_dict`` less ``cv_folds``, which is how candidates are
        validated on it, not which rows it holds."""
        return self.model_dump(exclude={"cv_folds"})


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataSection = Field(description="a built-in {name: ...} or a user's Parquet {path: ..., label: ..., "
                              "columns: ...}; see emule_models.data.load")
    proxy: Proxy = Proxy()
    baselines: list[str] | None = Field(None, description="classical baselines computed once per search beside the "
                                        "trials (default: all); [] turns them off")
    objectives: list[Objective] = Field(min_length=1)
    space: dict[str, Param]
    attention_options: dict[str, dict[str, Param]] = Field(default_factory=dict)
    constraints: Constraints = Constraints()
    training: Training = Training()
    distill: Distill | None = None
    data_curve: DataCurve | None = Field(None, description="a learning curve of the search's candidate, once "
                                         "the search completes (see `emule data-curve`)")
    search: SearchSettings = SearchSettings()
    tracking: Tracking = Tracking()

    @field_validator("data", mode="before")
    @classmethod
    def _typed_data(cls, data: Any) -> DataSection:
        """The section validated here, so that its errors read as one line under ``data``."""
        try:
            return DataSection.model_validate(data)
        except ValidationError as e:
            raise ValueError(one_line(e, under="data", schema=DataSection)) from None

    @field_validator("baselines")
    @classmethod
    def _baselines_once(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(set(names)) != len(names):
            raise ValueError("a name repeats; accepted: each baseline once")
        return names

    @field_validator("space")
    @classmethod
    def _space_keys(cls, space: dict[str, Any]) -> dict[str, Any]:
        for key, param in space.items():
            if key not in SPACE_KEYS:
                raise ValueError(f"{key!r} is not a searchable setting{did_you_mean(key, SPACE_KEYS)}; accepted: "
                                 f"{list(SPACE_KEYS)}")
            if isinstance(param, list) and not param:
                raise ValueError(f"{key}: empty list; accepted: a non-empty list of choices")
            check_value(key, param)
        return space

    @field_validator("attention_options")
    @classmethod
    def _options_known(cls, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for variant, given in options.items():
            if variant not in ATTENTION:
                raise ValueError(f"{variant}: not a known variant; accepted: {sorted(ATTENTION)}")
            allowed = ATTENTION[variant].defaults
            for opt in given:
                if opt not in allowed:
                    raise ValueError(f"{variant}.{opt}: not an option of {variant!r}{did_you_mean(opt, allowed)}; "
                                     f"accepted: {sorted(allowed)}")
        return options

    @model_validator(mode="after")
    def _objectives_unique(self):
        names = [o.metric for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives: {names} repeat a metric; accepted: each metric once")
        searched = [k for k in DISTILL_KEYS if k in self.space]
        if searched and self.distill is None:
            raise ValueError(f"space.{searched[0]}: searched without a teacher; accepted: a `distill:` section "
                             "naming the teacher (distill: {teacher: exports/x.yaml})")
        if self.search.scheduler != "none" and self.search.grace_period >= self.training.epochs:
            raise ValueError(f"search.grace_period: {self.search.grace_period} leaves no room to stop early with "
                             f"training.epochs={self.training.epochs}; accepted: 1..{self.training.epochs - 1}")
        if self.search.data_fidelity < 1 and self.search.scheduler == "none":
            raise ValueError(f"search.data_fidelity: {self.search.data_fidelity} needs rungs to grow the data at; "
                             f"accepted: 1 with search.scheduler: none, or a scheduler other than none")
        return self

    # --- helpers for the rest of search/ ---
    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    @property
    def baseline_names(self) -> list[str]:
        return list(DEFAULT_BASELINES) if self.baselines is None else list(self.baselines)

    @property
    def data_label(self) -> str:
        return str(self.data.name or Path(str(self.data.path)).name)

    def needs_scores(self) -> bool:
        """Whether any selection strategy in the space needs the proxy's quality scores."""
        return any(needs_scores(s) for s in choices(self.space.get("selection", "random")))

    def storage_path(self) -> Path:
        """The experiment storage as an absolute local path. A URI storage has none: see ``storage_uri``."""
        if is_uri(self.search.storage):
            raise ValueError(f"search.storage: {self.search.storage!r} is a URI, not a local path; use storage_uri()")
        return Path(self.search.storage).expanduser().resolve()

    def storage_uri(self) -> str:
        """The experiment storage as Ray Tune's ``storage_path`` takes it: a URI as given, a path made absolute."""
        return absolute_storage(self.search.storage)


def choices(param: Any) -> list[Any]:
    """The values of a space entry worth checking: its choices, or a range's two bounds."""
    if isinstance(param, Range):
        return [int(v) if param.is_int() else v for v in param.corners()]
    return list(param) if isinstance(param, list) else [param]


def parse_schema(raw: Any, base_dir: Path | None = None) -> Spec:
    """Validate a spec given as data against the schema alone (no file beyond the spec is read). The paths in it
    (``data.path``, ``search.warm_start``, ``distill.teacher``) are taken relative to ``base_dir`` (the spec file's
    folder; default the working directory) and made absolute. ``search.driver.checks.parse_spec`` adds the checks
    against the data."""
    if not isinstance(raw, dict):
        raise SpecError(f"spec: top level is {type(raw).__name__}; accepted: a mapping with name, data, objectives, "
                        "space")
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(one_line(e, schema=Spec)) from None
    base = base_dir or Path.cwd()
    if spec.data.path is not None and not Path(spec.data.path).is_absolute():
        data = spec.data.model_copy(update={"path": str((base / spec.data.path).resolve())})
        spec = spec.model_copy(update={"data": data})
    if spec.search.warm_start:
        paths = [str((base / p).resolve()) for p in spec.search.warm_start]
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"warm_start": paths})})
    if spec.distill is not None and spec.distill.paths():
        paths = [str((base / p).resolve()) for p in spec.distill.paths()]
        teacher = paths[0] if isinstance(spec.distill.teacher, str) else paths
        spec = spec.model_copy(update={"distill": spec.distill.model_copy(update={"teacher": teacher})})
    return spec


# --- pydantic's errors as one line ---
def one_line(e: ValidationError, under: str = "", schema: type[BaseModel] | None = None) -> str:
    """The first error as ``<field>: <value> - <what is accepted>``, the field as the user wrote it (``under``:
    the section the validated data sits in; ``schema``: the model validated, whose keys an unknown key's error
    lists)."""
    err = e.errors()[0]
    # pydantic lists union branches in the location; keep only the user's field path
    loc = ".".join([under] * bool(under) + [str(p) for p in err["loc"] if not _is_type_tag(p)])
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if not loc or msg.startswith((f"{loc}:", f"{loc}.")):  # a rule that names its own field(s)
        return msg
    if err["type"] == "missing":
        return f"{loc}: missing - required"
    if err["type"] == "extra_forbidden":
        return _unknown_key(loc, err["loc"], value, schema)
    if isinstance(value, dict) and _names_a_key(msg):  # a mapping's validator: "<key>: <value> ..." inside it
        return f"{loc}.{msg}"
    return f"{loc}: {value!r} - {msg}" if not isinstance(value, dict) else f"{loc}: {msg}"


def did_you_mean(word: str, accepted: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the accepted name closest to a mistyped ``word``, or nothing."""
    close = difflib.get_close_matches(word, list(accepted), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(loc: str, raw_loc: tuple, value: Any, schema: type[BaseModel] | None) -> str:
    """``search.trails: 4 - unknown key (did you mean 'trials'?); accepted keys of search: [...]``."""
    key, section = str(raw_loc[-1]), loc.rpartition(".")[0]
    shown = "" if isinstance(value, (dict, list)) else f" {value!r} -"
    accepted = _keys_at(schema, raw_loc[:-1]) if schema is not None else None
    if not accepted:
        return f"{loc}:{shown} unknown key"
    where = f"of {section}" if section else "at the top level of a spec"
    return f"{loc}:{shown} unknown key{did_you_mean(key, accepted)}; accepted keys {where}: {accepted}"


def _keys_at(schema: type[BaseModel], path: tuple) -> list[str] | None:
    """The keys of the model at ``path`` (a pydantic error location, union branch names included) in ``schema``."""
    node: Any = schema
    for part in path:
        node = _step(node, part)
        if node is None:
            return None
    models = [m for m in _members(node) if isinstance(m, type) and issubclass(m, BaseModel)]
    return list(models[0].model_fields) if len(models) == 1 else None


def _step(node: Any, part: Any) -> Any:
    """The type one location part below ``node``: a model's field, a list's item, a mapping's value, or the union
    branch a type tag names."""
    members = _members(node)
    if _is_type_tag(part):
        named = [m for m in members if isinstance(m, type) and re.search(rf"\b{m.__name__}\b", part)]
        return named[0] if named else node
    for m in members:
        if isinstance(m, type) and issubclass(m, BaseModel) and part in m.model_fields:
            return m.model_fields[part].annotation
        if get_origin(m) in (list, tuple) and isinstance(part, int):
            return get_args(m)[0]
        if get_origin(m) is dict and isinstance(part, str):
            return get_args(m)[1]
    return None


def _members(node: Any) -> list[Any]:
    """A union's members (None left out), or the type itself."""
    if get_origin(node) in (typing.Union, types.UnionType):
        return [m for m in get_args(node) if m is not type(None)]
    return [node]


def _names_a_key(msg: str) -> bool:
    head = msg.split(":")[0]
    return ":" in msg and all(part.isidentifier() for part in head.split("."))


def _is_type_tag(part: Any) -> bool:
    """pydantic puts union branch names (``Range``, ``list[any]``, ``function-after[...]``) into locations."""
    return isinstance(part, str) and (part in ("Range", "str", "int", "float")
                                      or part.startswith(("function-", "list[")))
