"""The search spec: a validated model of a YAML file in spaces/.

Every error names the field, the value and what is accepted, and is raised here - before Ray, MLflow or any
training is touched. ``load_spec`` is the boundary; ``SpecError`` carries one line for the terminal.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search.metrics import ALIASES, SIZE, canonical
from search.storage import absolute as absolute_storage
from search.storage import is_uri

# Which candidate setting each space key drives. Anything else in `space` is refused.
MODEL_KEYS = ("attention", "depth", "width", "heads", "mlp_ratio", "dropout", "fusion", "fusion_layer",
              "bottleneck_tokens", "patch_len", "patch_stride", "channel_mode", "image_patch", "series_norm",
              "tokenizer", "conv_kernel", "conv_dilation", "drop_path")
DATA_KEYS = ("data_fraction", "selection")
TRAINING_KEYS = ("lr", "weight_decay", "batch_size", "augment", "label_smoothing", "ema", "pretrain_epochs",
                 "pretrain_mask_ratio", "distill_alpha", "distill_temperature")
DISTILL_KEYS = ("distill_alpha", "distill_temperature")  # searchable only with a `distill:` teacher
SPACE_KEYS = MODEL_KEYS + DATA_KEYS + TRAINING_KEYS
INT_KEYS = ("depth", "width", "heads", "patch_len", "patch_stride", "image_patch", "batch_size", "bottleneck_tokens",
            "conv_kernel", "conv_dilation")
RATE_KEYS = ("dropout", "drop_path", "label_smoothing", "ema")  # numbers in [0, 1)
DEFAULT_STORAGE = "emule_runs"  # where experiment state goes when a spec or command names no storage
SAMPLERS = ("nsga2", "nsga3", "tpe", "gp", "random", "qmc")
SCHEDULERS = ("none", "asha", "mo-asha", "mo-asha-strata")
# Metrics a trial reports that can be objectives, with the direction that makes sense for each.
# The model size is `param_count`; its former name `params` is accepted (search.metrics.ALIASES).
OBJECTIVE_METRICS = {"val_accuracy": "max", SIZE: "min", "flops": "min", "latency_ms": "min",
                     "training_compute": "min", "train_time_s": "min"}


class SpecError(ValueError):
    """A spec problem, as one line: ``<field>: <value> - <what is accepted>``."""


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
    weight_decay: float = Field(0.01, ge=0)
    augment: str = Field("none", description="augmentation policy: none, light, strong (emule_models.augment)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    ema: float = Field(0.0, ge=0, lt=1, description="decay of a weight average that is validated and kept; 0 = off")
    pretrain_epochs: int = Field(0, ge=0, description="epochs of masked-patch reconstruction first; 0 = off")
    pretrain_mask_ratio: float = Field(0.4, gt=0, lt=1, description="share of patches blanked while pretraining")

    @field_validator("augment")
    @classmethod
    def _policy(cls, v: str) -> str:
        from emule_models.augment import POLICIES

        if v not in POLICIES:
            raise ValueError(f"not accepted; accepted: {list(POLICIES)}")
        return v


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
        pairs = ((SIZE, self.max_params), ("flops", self.max_flops), ("latency_ms", self.max_latency_ms))
        return {metric: limit for metric, limit in pairs if limit is not None}


class SearchSettings(Strict):
    sampler: Literal[SAMPLERS] = "nsga2"  # type: ignore[valid-type]
    scheduler: Literal[SCHEDULERS] = "none"  # type: ignore[valid-type]
    grace_period: int = Field(1, ge=1, description="epochs before the first halving decision")
    reduction_factor: int = Field(3, ge=2, description="keep 1 in reduction_factor at each rung")
    warm_start: list[str] = Field(default_factory=list, description="exported candidate YAMLs to try first")
    epoch_budget: int | None = Field(None, ge=1, description="stop the search once trials trained this many epochs "
                                     "in total (a compute budget; `trials` stays the cap on candidates)")
    trials: int = Field(12, ge=1)
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


class Tracking(Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///<cwd>/mlflow.db")
    experiment: str = "emule"


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: dict[str, Any] = Field(description="a built-in {name: ...} or a user's Parquet {path: ..., label: ..., "
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
    search: SearchSettings = SearchSettings()
    tracking: Tracking = Tracking()

    @field_validator("data")
    @classmethod
    def _data_source(cls, data: dict[str, Any]) -> dict[str, Any]:
        if ("name" in data) == ("path" in data):
            raise ValueError(f"{sorted(data)} names no source; accepted: either name (a built-in, see "
                             "`emule datasets`) or path (a Parquet file or folder) with label and columns")
        from search.validation import AUTO, check_setting

        try:
            check_setting(data.get("cv_folds", AUTO))
        except ValueError as e:  # named relative to `data`, like the loader's own key errors
            raise ValueError(str(e).removeprefix("data.")) from None
        return data

    @field_validator("baselines")
    @classmethod
    def _baselines_known(cls, names: list[str] | None) -> list[str] | None:
        from search.baselines import BASELINES

        for name in names or []:
            if name not in BASELINES:
                raise ValueError(f"{name!r} not accepted; accepted: {sorted(BASELINES)} (or [] for none)")
        if names is not None and len(set(names)) != len(names):
            raise ValueError("a name repeats; accepted: each baseline once")
        return names

    @field_validator("space")
    @classmethod
    def _space_keys(cls, space: dict[str, Any]) -> dict[str, Any]:
        for key, param in space.items():
            if key not in SPACE_KEYS:
                raise ValueError(f"{key!r} is not a searchable setting; accepted: {list(SPACE_KEYS)}")
            if isinstance(param, list) and not param:
                raise ValueError(f"{key}: empty list; accepted: a non-empty list of choices")
            _check_values(key, param)
        return space

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
        from search.baselines import DEFAULT

        return list(DEFAULT) if self.baselines is None else list(self.baselines)

    @property
    def data_label(self) -> str:
        return str(self.data.get("name") or Path(self.data["path"]).name)

    def needs_scores(self) -> bool:
        """Whether any selection strategy in the space needs the proxy's quality scores."""
        from emule_models.data import needs_scores

        return any(needs_scores(s) for s in choices(self.space.get("selection", "random")))

    def storage_path(self) -> Path:
        """The experiment storage as an absolute local path. A URI storage has none: see ``storage_uri``."""
        if is_uri(self.search.storage):
            raise ValueError(f"search.storage: {self.search.storage!r} is a URI, not a local path; use storage_uri()")
        return Path(self.search.storage).expanduser().resolve()

    def storage_uri(self) -> str:
        """The experiment storage as Ray Tune's ``storage_path`` takes it: a URI as given, a path made absolute."""
        return absolute_storage(self.search.storage)


def _check_values(key: str, param: Any) -> None:
    """Per-key value rules (a depth is an int >= 1, a fraction is in (0, 1], ...)."""
    values = param.corners() if isinstance(param, Range) else param if isinstance(param, list) else [param]
    if key in ("fusion_layer", "pretrain_epochs"):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or v < 0:
                raise ValueError(f"{key}: {v!r} not accepted; accepted: integers >= 0")
    if key in INT_KEYS:
        if isinstance(param, Range) and not param.is_int():
            raise ValueError(f"{key}: {param.low:g}..{param.high:g} is not an integer range; accepted: integers")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or v < 1:
                raise ValueError(f"{key}: {v!r} not accepted; accepted: integers >= 1")
    if key == "data_fraction":
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ValueError(f"data_fraction: {v!r} not accepted; accepted: numbers in (0, 1]")
    names = _named_choices().get(key)
    if names is not None:
        for v in values:
            if v not in names:
                raise ValueError(f"{key}: {v!r} not accepted; accepted: {sorted(names)}")
    if key in ("lr", "weight_decay", "mlp_ratio", *RATE_KEYS):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{key}: {v!r} not accepted; accepted: numbers")
    if key in RATE_KEYS:
        for v in values:
            if not 0 <= v < 1:
                raise ValueError(f"{key}: {v!r} not accepted; accepted: numbers in [0, 1)")
    if key == "distill_alpha":
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{key}: {v!r} not accepted; accepted: numbers in [0, 1]")
    if key == "distill_temperature":
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{key}: {v!r} not accepted; accepted: numbers > 0")
    if key == "pretrain_mask_ratio":
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise ValueError(f"{key}: {v!r} not accepted; accepted: numbers in (0, 1)")


def _named_choices() -> dict[str, Any]:
    from emule_models.attention import ATTENTION
    from emule_models.augment import POLICIES
    from emule_models.config import CHANNEL_MODES, SERIES_NORMS, TOKENIZERS
    from emule_models.data import STRATEGIES
    from emule_models.fusion import FUSION

    return {"attention": ATTENTION, "fusion": FUSION, "channel_mode": CHANNEL_MODES, "selection": STRATEGIES,
            "series_norm": SERIES_NORMS, "tokenizer": TOKENIZERS, "augment": POLICIES}


def load_spec(path: str | Path) -> Spec:
    """Read and fully validate a spec file (syntax, fields, and the space against the dataset's shape)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec: {str(path)!r} is not a file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"spec: {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_spec(raw, base_dir=path.parent)


def parse_spec(raw: Any, base_dir: Path | None = None, check_files: bool = True) -> Spec:
    """Validate a spec given as data. ``search.warm_start`` and ``distill.teacher`` paths are taken relative to
    ``base_dir`` (the spec file's folder) and made absolute. ``check_files=False`` skips reading the teacher files,
    for a finished search's record (the files may have moved since; its candidates hold what they need)."""
    if not isinstance(raw, dict):
        raise SpecError(f"spec: top level is {type(raw).__name__}; accepted: a mapping with name, data, objectives, "
                        "space")
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_one_line(e)) from None
    base = base_dir or Path.cwd()
    if "path" in spec.data and not Path(spec.data["path"]).is_absolute():
        spec = spec.model_copy(update={"data": {**spec.data, "path": str((base / spec.data["path"]).resolve())}})
    if spec.search.warm_start:
        paths = [str((base / p).resolve()) for p in spec.search.warm_start]
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"warm_start": paths})})
    if spec.distill is not None and spec.distill.paths():
        paths = [str((base / p).resolve()) for p in spec.distill.paths()]
        teacher = paths[0] if isinstance(spec.distill.teacher, str) else paths
        spec = spec.model_copy(update={"distill": spec.distill.model_copy(update={"teacher": teacher})})
    check_space_buildable(spec)
    spec = _resolve_folds(spec)
    from search.space import warm_start_points

    warm_start_points(spec)  # refuses files that are missing, malformed or outside the space
    if spec.distill is not None and check_files:
        from search.teacher import check_teachers

        try:
            check_teachers(spec)  # missing, malformed or foreign teacher files, before anything starts
        except ValueError as e:
            raise SpecError(str(e)) from None
    return spec


def _resolve_folds(spec: Spec) -> Spec:
    """``data.cv_folds`` made concrete for this dataset (``auto`` picks k-fold or holdout by the pool's size);
    a fold count the smallest class cannot fill is refused here."""
    from search.candidate import spec_dataset
    from search.validation import AUTO, resolve_setting

    try:
        folds = resolve_setting(spec.data.get("cv_folds", AUTO), spec_dataset(spec).pool.labels)
    except ValueError as e:
        raise SpecError(str(e)) from None
    return spec.model_copy(update={"data": {**spec.data, "cv_folds": folds}})


def _one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    # pydantic lists union branches in the location; keep only the user's field path
    loc = ".".join(str(p) for p in err["loc"] if not _is_type_tag(p))
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if not loc:  # a whole-spec rule: the message names its fields
        return msg
    if err["type"] == "missing":
        return f"{loc}: missing - required"
    if isinstance(value, dict):  # our own validators name the key and value inside msg
        return f"{loc}.{msg}" if msg.split(":")[0].isidentifier() and ":" in msg else f"{loc}: {msg}"
    return f"{loc}: {value!r} - {msg}"


def _is_type_tag(part: Any) -> bool:
    """pydantic puts union branch names (``Range``, ``list[any]``, ``function-after[...]``) into locations."""
    return isinstance(part, str) and (part in ("Range", "str", "int", "float")
                                      or part.startswith(("function-", "list[")))


def choices(param: Any) -> list[Any]:
    """The values of a space entry worth checking: its choices, or a range's two bounds."""
    if isinstance(param, Range):
        return [int(v) if param.is_int() else v for v in param.corners()]
    return list(param) if isinstance(param, list) else [param]


def check_space_buildable(spec: Spec) -> None:
    """Refuse a space containing models that cannot be built (heads not dividing width, a patch longer than
    the series, a variant that cannot serve the token count ...), by building every corner config. Loads only
    the dataset's shape, never trains."""
    from emule_models.attention import ATTENTION
    from emule_models.data import BUILTIN
    from search.candidate import spec_dataset

    if "name" in spec.data and spec.data["name"] not in BUILTIN:
        raise SpecError(f"data.name: {spec.data['name']!r} - not a built-in dataset; accepted: {sorted(BUILTIN)}")
    try:
        spec_dataset(spec)  # reads and checks the data itself: a bad column fails here, before Ray
    except (ValueError, OSError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SpecError(message if message.startswith("data") else f"data: {message}") from None
    for variant, options in spec.attention_options.items():
        if variant not in ATTENTION:
            raise SpecError(f"attention_options.{variant}: not a known variant; accepted: {sorted(ATTENTION)}")
        allowed = ATTENTION[variant].defaults
        for opt in options:
            if opt not in allowed:
                raise SpecError(f"attention_options.{variant}.{opt}: not an option of {variant!r}; accepted: "
                                f"{sorted(allowed)}")
    from search.candidate import model_config_problems

    for values, opts in space_corners(spec):
        problems = model_config_problems(spec, values, opts)
        if problems:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise SpecError(f"space: the candidate ({shown}) cannot be built - {problems[0]}")


MAX_CORNERS = 20000  # corners of the model space that are checked (and costed); a larger space is cut there


def space_corners(spec: Spec) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The corners of the model space: every combination of each model setting's choices (a range's two bounds),
    with every combination of the picked variant's attention options; (values, options) pairs, at most
    MAX_CORNERS model combinations."""
    model_space = {k: choices(v) for k, v in spec.space.items() if k in MODEL_KEYS}
    names = list(model_space)
    corners = []
    for combo in itertools.islice(itertools.product(*model_space.values()), MAX_CORNERS):
        values = dict(zip(names, combo))
        for opts in _option_corners(spec.attention_options.get(values.get("attention", "softmax"), {})):
            corners.append((values, opts))
    return corners


def _option_corners(options: dict[str, Any]) -> list[dict[str, Any]]:
    if not options:
        return [{}]
    keys = list(options)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(choices(options[k]) for k in keys))]
