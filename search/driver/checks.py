"""The checks of a spec that need its data or build its models, and the boundary that loads a spec.

``load_spec`` / ``parse_spec`` validate the schema (``search.spec.schema``), then check the spec against what it names:
the data reads and can fill the validation scheme, every corner of the model space builds on that data, the
warm-start candidates lie inside the space, the teachers can label the data. Every refusal is one ``SpecError``
line naming the field, the value and what is accepted - before Ray, MLflow or any training is touched.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import yaml

from emule_models.data import Dataset
from emule_models.train import FOLD_ENSEMBLE
from search.driver.schedulers import SCHEDULERS
from search.spec.schema import AUTO, HOLDOUT, MODEL_KEYS, Spec, SpecError, choices, parse_schema
from search.spec.space import SAMPLERS, warm_start_points
from search.trial.baselines import METHODS
from search.trial.candidate import model_config_problems, spec_dataset
from search.trial.teacher import check_teachers
from search.trial.validation import resolve_setting

# Model combinations the corner check builds (and `emule plan` costs): under a second at the limit
# (bench/results/spec_check.md). A larger space is refused: checking only part of it would let candidates that
# cannot be built through.
MAX_CORNERS = 20000


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
    """Validate a spec given as data: the schema (paths taken relative to ``base_dir``), then every check below.
    ``check_files=False`` skips reading the teacher files, for a finished search's record (the files may have
    moved since; its candidates hold what they need)."""
    return check_spec(parse_schema(raw, base_dir), check_files)


def check_spec(spec: Spec, check_files: bool = True) -> Spec:
    """The names, then the checks against the data, in order; returns the spec with ``data.cv_folds`` resolved for
    its data."""
    check_names(spec)
    dataset = check_data(spec)
    check_buildable(spec)
    spec = resolve_folds(spec, dataset)
    check_warm_start(spec)
    if spec.distill is not None and check_files:
        try:
            check_teachers(spec)  # missing, malformed or foreign teacher files, before anything starts
        except ValueError as e:
            raise SpecError(str(e)) from None
    return spec


def check_names(spec: Spec) -> None:
    """The sampler, scheduler and baselines the spec names, against their registries (the one list of each)."""
    try:
        SAMPLERS.lookup(spec.search.sampler)
        SCHEDULERS.lookup(spec.search.scheduler)
    except ValueError as e:
        raise SpecError(str(e)) from None
    for name in spec.baselines or []:
        if name not in METHODS:
            raise SpecError(f"baselines: {spec.baselines} - {name!r} not accepted; accepted: {METHODS.names()} "
                            "(or [] for none)")


def check_data(spec: Spec) -> Dataset:
    """Read and check the data itself: a missing file or a bad column fails here, before Ray."""
    try:
        return spec_dataset(spec)
    except (ValueError, OSError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SpecError(message if message.startswith("data") else f"data: {message}") from None


def resolve_folds(spec: Spec, dataset: Dataset) -> Spec:
    """``data.cv_folds`` made concrete for this dataset (``auto`` picks k-fold or holdout by the pool's size);
    a fold count the smallest class cannot fill is refused here."""
    given = AUTO if spec.data.cv_folds is None else spec.data.cv_folds
    try:
        folds = resolve_setting(given, dataset.pool.labels)
    except ValueError as e:
        raise SpecError(str(e)) from None
    if folds == HOLDOUT and spec.training.final == FOLD_ENSEMBLE:
        raise SpecError(f"training.final: {FOLD_ENSEMBLE} - data.cv_folds is {given}"
                        f"{' (holdout on this data)' if given == AUTO else ''}, and a fold ensemble needs folds; "
                        "accepted: refit, or data.cv_folds >= 2")
    return spec.model_copy(update={"data": spec.data.model_copy(update={"cv_folds": folds})})


def check_buildable(spec: Spec) -> None:
    """Refuse a space containing models that cannot be built (heads not dividing width, a patch longer than
    the series, a variant that cannot serve the token count ...), by building every corner config on the data's
    shape. Never trains."""
    for values, opts in space_corners(spec):
        problems = model_config_problems(spec, values, opts)
        if problems:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise SpecError(f"space: the candidate ({shown}) cannot be built - {problems[0]}")


def check_warm_start(spec: Spec) -> None:
    """Refuse warm-start files that are missing, malformed or outside the space (Optuna would silently re-sample
    a value outside it)."""
    warm_start_points(spec)


def corner_counts(spec: Spec) -> dict[str, int]:
    """Each model setting of the space with its number of corner values (choices, or a range's two bounds)."""
    return {k: len(choices(v)) for k, v in spec.space.items() if k in MODEL_KEYS}


def space_corners(spec: Spec) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The corners of the model space: every combination of each model setting's choices (a range's two bounds),
    with every combination of the picked variant's attention options; (values, options) pairs. A space of more
    than ``MAX_CORNERS`` model combinations is refused."""
    counts = corner_counts(spec)
    total = math.prod(counts.values())
    if total > MAX_CORNERS:
        factors = " x ".join(f"{k} {n}" for k, n in counts.items() if n > 1)
        raise SpecError(f"space: {total} combinations of the model settings' choices and range bounds ({factors}) "
                        f"- too many to check that each builds; accepted: at most {MAX_CORNERS} - narrow the space: "
                        "fewer choices, or fix a setting to one value")
    model_space = {k: choices(v) for k, v in spec.space.items() if k in MODEL_KEYS}
    corners = []
    for combo in itertools.product(*model_space.values()):
        values = dict(zip(model_space, combo))
        for opts in _option_corners(spec.attention_options.get(values.get("attention", "softmax"), {})):
            corners.append((values, opts))
    return corners


def _option_corners(options: dict[str, Any]) -> list[dict[str, Any]]:
    if not options:
        return [{}]
    keys = list(options)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(choices(options[k]) for k in keys))]
