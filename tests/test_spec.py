"""Spec validation: every bad field is refused with one line naming the field, before Ray starts."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.driver.checks import load_spec, parse_spec
from search.spec.schema import SPACE_KEYS, DataSection, Range, SpecError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = yaml.safe_load((ROOT / "spaces" / "quickstart.yaml").read_text())


def with_change(path: str, value):
    raw = copy.deepcopy(QUICKSTART)
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


DELETE = object()


def test_quickstart_loads():
    spec = load_spec(ROOT / "spaces" / "quickstart.yaml")
    assert spec.metrics == ["val_accuracy", "param_count", "flops"]
    assert spec.space["depth"] == [0, 1] and spec.space["tokenizer"] == "lite"  # the convolution-only end included
    assert isinstance(spec.space["lr"], Range) and spec.space["lr"].log


@pytest.mark.parametrize("path, value, expected", [
    ("space.depth", {"low": 0, "high": -1}, "space.depth: low=0 > high=-1"),
    ("space.depth", [-1, 2], "space.depth: -1 not accepted; accepted: integers >= 0"),
    ("space.depth", {"low": 1.5, "high": 3}, "space.depth: 1.5..3 is not an integer range"),
    ("space.attention", ["softmax", "sparkle"], "space.attention: 'sparkle' not accepted"),
    ("space.data_fraction", [0.0, 0.5], "space.data_fraction: 0.0 not accepted"),
    ("space.lr", {"low": 0, "high": 1, "log": True}, "space.lr: low=0 with log=true"),
    ("space.tokens", [1, 2], "space: 'tokens' is not a searchable setting"),
    ("space.heads", [3], "width: 16 is not divisible by heads=3"),
    ("space.patch_len", [1000], "patch_len: 1000 is longer than series 'outline'"),
    ("space.width", [], "space.width: empty list"),
    ("data.name", "imagenet", "data.name: 'imagenet' - not a built-in dataset"),
    ("data", DELETE, "data: missing"),
    ("objectives", [{"metric": "acc", "mode": "max", "reference": 0}], "objectives.0.metric: 'acc'"),
    ("objectives", [{"metric": "param_count", "mode": "up", "reference": 0}], "objectives.0.mode: 'up'"),
    ("objectives", [], "objectives: []"),
    ("search.sampler", "annealing", "search.sampler: 'annealing'"),
    ("search.trials", 0, "search.trials: 0"),
    ("training.epochs", -1, "training.epochs: -1"),
    ("name", "has space", "name: 'has space'"),
    ("surprise", 1, "surprise: 1 - unknown key; accepted keys at the top level of a spec: ['name', 'data', "),
    ("search.trails", 4, "search.trails: 4 - unknown key (did you mean 'trials'?); accepted keys of search: "
                         "['sampler', 'scheduler', 'grace_period', "),
    ("training.epoch", 4, "training.epoch: 4 - unknown key (did you mean 'epochs'?); accepted keys of training: "
                          "['epochs', 'batch_size', "),
    ("constraints.max_param", 4, "constraints.max_param: 4 - unknown key (did you mean 'max_params'?); accepted "
                                 "keys of constraints: ['max_params', 'max_flops', 'max_latency_ms']"),
    ("space.lr", {"low": 1e-3, "high": 1e-2, "lg": True}, "space.lr.lg: True - unknown key (did you mean 'log'?); "
                                                          "accepted keys of space.lr: ['low', 'high', 'log', 'step']"),
    ("objectives", [{"metric": "param_count", "mode": "min", "reference": 0, "lgo": True}],
     "objectives.0.lgo: True - unknown key (did you mean 'log'?); accepted keys of objectives.0: ['metric', 'mode', "),
    ("space.widht", [16], "space: 'widht' is not a searchable setting (did you mean 'width'?); accepted: "),
    ("space.tokenizer", ["patch", "rnn"],
     "space.tokenizer: 'rnn' not accepted; accepted: ['conv', 'disjoint', 'lite', 'patch']"),
    ("space.stem_filters", ["fixed"],
     "space.stem_filters: 'fixed' not accepted; accepted: ['learned', 'learned+fixed']"),
    ("space.series_norm", ["revin"], "space.series_norm: 'revin' not accepted"),
    ("space.augment", ["none", "extreme"], "space.augment: 'extreme' not accepted"),
    ("space.drop_path", [0.1, 1.0], "space.drop_path: 1.0 not accepted; accepted: numbers in [0, 1)"),
    ("space.conv_kernel", [0, 3], "space.conv_kernel: 0 not accepted; accepted: integers >= 1"),
    ("training.augment", "heavy", "training.augment: 'heavy' - not accepted; accepted: ['none', 'light', 'strong']"),
    ("training.ema", 1.0, "training.ema: 1.0"),
    ("training.lr_schedule", "step", "training.lr_schedule: 'step' - not accepted; accepted: ['cosine', 'plateau']"),
    ("space.lr_schedule", ["cosine", "step"],
     "space.lr_schedule: 'step' not accepted; accepted: ['cosine', 'plateau']"),
    ("training.final", "best", "training.final: 'best' - not accepted; accepted: ['refit', 'fold_ensemble', "
                               "'seed_ensemble']"),
    ("training.ensemble_seeds", 3, "training.ensemble_seeds: 3 - only a seed ensemble reads it; accepted: "
                                   "training.final: seed_ensemble beside it (final is refit)"),
    ("training", {"final": "seed_ensemble", "ensemble_seeds": 1},
     "training.ensemble_seeds: 1 - Input should be greater than or equal to 2"),
    ("training.final", "fold_ensemble", "training.final: fold_ensemble - data.cv_folds is holdout, and a fold "
                                        "ensemble needs folds; accepted: refit, or data.cv_folds >= 2"),
    ("space.final", ["refit", "fold_ensemble"], "space: 'final' is not a searchable setting"),
    ("data_curve", {"fractions": [0.5]}, "data_curve.fractions: [0.5] gives 2 point(s) with 1.0; accepted: at least "
                                         "two fractions below 1"),
    ("data_curve", {"seeds": 0}, "data_curve.seeds: 0 not accepted; accepted: an integer >= 1"),
    ("space.pretrain_epochs", [0, -5], "space.pretrain_epochs: -5 not accepted; accepted: integers >= 0"),
    ("space.pretrain_mask_ratio", [0.4, 1.0],
     "space.pretrain_mask_ratio: 1.0 not accepted; accepted: numbers in (0, 1)"),
    ("training.pretrain_mask_ratio", 0, "training.pretrain_mask_ratio: 0"),
    ("data.cv_folds", 1, "data.cv_folds: 1 not accepted; accepted: auto, holdout, or an integer >= 2"),
    ("data.cv_folds", 41, "data.cv_folds: 41 needs >= 41 training rows of each class"),
    ("baselines", ["rocket", "rocket"], "baselines: ['rocket', 'rocket'] - a name repeats"),
    ("search.max_trial_seconds", -5, "search.max_trial_seconds: -5 - Input should be greater than 0"),
    ("search.max_trial_seconds", "1h", "search.max_trial_seconds: '1h' - Input should be a valid number"),
])
def test_bad_field_names_field_and_value(path, value, expected):
    with pytest.raises(SpecError) as err:
        parse_spec(with_change(path, value))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_not_a_mapping():
    with pytest.raises(SpecError, match="top level is list"):
        parse_spec([1, 2])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="is not a file"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_cli_refuses_bad_spec_before_ray_starts(tmp_path):
    """The CLI in a fresh process: exit 2, one line on stderr, no traceback, and Ray never imported."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_change("space.depth", {"low": 0, "high": -1})))
    code = ("import sys; from search.cli import main; rc = main(['search', sys.argv[1]]); "
            "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["emule search: space.depth: low=0 > high=-1; accepted: low <= high"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "spaces").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_spec_validates(path):
    spec = load_spec(path)
    assert spec.name and spec.objectives


def test_recipe_dimensions_are_searchable():
    raw = with_change("space.tokenizer", ["patch", "conv"])
    raw["space"].update(series_norm=["none", "sample"], conv_kernel=[3, 7], conv_dilation=[1, 2], drop_path=[0.0, 0.1],
                        augment=["none", "light", "strong"], label_smoothing=[0.0, 0.1], ema=[0.0, 0.99],
                        pretrain_epochs=[0, 20], pretrain_mask_ratio={"low": 0.2, "high": 0.6})
    spec = parse_spec(raw)
    from search.trial.candidate import resolve, spec_dataset

    data = spec_dataset(spec)
    cand = resolve(spec, {"tokenizer": "conv", "series_norm": "sample", "conv_kernel": 3, "conv_dilation": 2,
                          "drop_path": 0.1, "augment": "strong", "label_smoothing": 0.1, "ema": 0.99,
                          "pretrain_epochs": 20, "pretrain_mask_ratio": 0.3},
                   data.modalities, len(data.classes))
    assert (cand.model.tokenizer, cand.model.series_norm, cand.model.conv_kernel, cand.model.drop_path) == (
        "conv", "sample", 3, 0.1)
    assert (cand.training.augment, cand.training.label_smoothing, cand.training.ema) == ("strong", 0.1, 0.99)
    assert (cand.training.pretrain_epochs, cand.training.pretrain_mask_ratio) == (20, 0.3)


def test_cv_folds_resolved_against_the_data():
    assert parse_spec(QUICKSTART).data.cv_folds == "holdout"  # the quickstart's own choice, to stay in minutes
    assert parse_spec(with_change("data.cv_folds", "auto")).data.cv_folds == 5  # OSULeaf: every class >= 5 rows
    assert parse_spec(with_change("data.cv_folds", "holdout")).data.cv_folds == "holdout"
    assert parse_spec(with_change("data.cv_folds", 3)).data.cv_folds == 3


def test_space_keys_are_the_dataclass_fields():
    """A field added to ModelConfig or TrainConfig is searchable with no list to edit beside it."""
    import dataclasses

    from emule_models.config import ModelConfig
    from emule_models.train import TrainConfig
    from search.spec.schema import DATA_KEYS, MODEL_FIXED, MODEL_KEYS, SPACE_KEYS, TRAINING_FIXED, TRAINING_KEYS

    assert set(MODEL_KEYS) == {f.name for f in dataclasses.fields(ModelConfig)} - set(MODEL_FIXED)
    assert set(TRAINING_KEYS) == {f.name for f in dataclasses.fields(TrainConfig)} - set(TRAINING_FIXED)
    assert SPACE_KEYS == MODEL_KEYS + DATA_KEYS + TRAINING_KEYS


@pytest.mark.parametrize("key", SPACE_KEYS)
def test_every_searchable_key_has_a_rule(key):
    """Each key refuses a value of the wrong kind, naming the key, the value and what its rule accepts."""
    from search.spec.schema import KEY_TYPES, rule

    bad = "not-a-name" if KEY_TYPES[key] is not str or rule(key).accepted != "strings" else 7
    with pytest.raises(SpecError) as err:
        parse_spec(with_change(f"space.{key}", [bad]))
    assert str(err.value) == f"space.{key}: {bad!r} not accepted; accepted: {rule(key).accepted}"


def test_int_fields_are_sampled_as_integers():
    """fusion_layer and pretrain_epochs are ints in their dataclasses, so an integer range samples ints."""
    import optuna

    from search.spec.space import suggest

    trial = optuna.create_study().ask()
    for key in ("fusion_layer", "pretrain_epochs", "depth"):
        assert isinstance(suggest(trial, key, Range(low=0, high=3)), int)
    assert isinstance(suggest(trial, "dropout", Range(low=0, high=0.5)), float)


@pytest.mark.parametrize("path, value, expected", [
    ("data.val_fraction", "a fifth", "data.val_fraction: 'a fifth' - Input should be a valid number"),
    ("data.val_fraction", 1.5, "data.val_fraction: 1.5 - Input should be less than 1"),
    ("data.seed", 0.5, "data.seed: 0.5 - Input should be a valid integer"),
    ("data.label", "species", "data: ['label'] only go with a Parquet path; accepted with a built-in name"),
    ("data.surprise", 1, "data.surprise: 1 - unknown key; accepted keys of data: ['name', 'path', 'label', "),
    ("data.val_fractoin", 0.1, "data.val_fractoin: 0.1 - unknown key (did you mean 'val_fraction'?)"),
    ("data.path", "x.parquet", "data: ['cv_folds', 'name', 'path', 'seed', 'val_fraction'] names no source"),
    ("data", "osuleaf", "data: 'osuleaf' - Input should be a valid dictionary"),
])
def test_data_section_is_typed(path, value, expected):
    with pytest.raises(SpecError) as err:
        parse_spec(with_change(path, value))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_data_section_keeps_the_keys_given():
    spec = parse_spec(QUICKSTART)
    assert isinstance(spec.data, DataSection) and spec.data.path is None  # read by attribute; not given: None
    given = {"name", "val_fraction", "seed", "cv_folds"}
    assert set(spec.data.as_dict()) == given
    assert spec.data.seed == 0 and isinstance(spec.data.val_fraction, float)
    # every dump holds the keys given, never the ones left out (the session file dumps without exclude_none)
    assert set(spec.model_dump(mode="json")["data"]) == given == set(spec.model_dump()["data"])
    assert spec.model_dump(mode="json")["data"] == spec.model_dump(mode="json", exclude_none=True)["data"]
    assert parse_spec(spec.model_dump(mode="json")) == spec  # and reads back as it was


def test_training_keys_fall_back_in_order():
    """Sampled value, else the spec's training section (distill section), else TrainConfig's own default."""
    from emule_models.train import TrainConfig
    from search.trial.candidate import resolve, spec_dataset

    spec = parse_spec(with_change("training", {"epochs": 7, "lr": 0.02, "ema": 0.5}))
    data = spec_dataset(spec)
    cand = resolve(spec, {"lr": 0.003, "batch_size": 16.0}, data.modalities, len(data.classes))
    assert (cand.training.lr, cand.training.batch_size, cand.training.ema, cand.training.epochs) == (0.003, 16, 0.5, 7)
    assert isinstance(cand.training.batch_size, int)
    assert cand.training.distill_temperature == TrainConfig.distill_temperature  # no distill section: the default


FRONT_ENDS = {"attention": ["softmax", "local"], "depth": {"low": 0, "high": 2}, "width": [16, 32], "heads": [1, 2],
              "patch_len": [16], "tokenizer": ["patch", "lite", "disjoint"],
              "position": ["learned", "sinusoidal", "tape", "relative", "none"], "stem_layers": {"low": 1, "high": 3},
              "stem_filters": ["learned", "learned+fixed"], "conv_kernel": [9, 41], "conv_dilation": [1, 2],
              "lr": {"low": 5e-4, "high": 5e-3, "log": True}}


def test_front_ends_positions_and_depth_zero_are_searchable():
    """Every corner of such a space builds on OSULeaf (parse_spec checks them), the sampler draws each key, and a
    drawn point becomes the candidate's model."""
    import optuna

    from search.spec.space import DefineByRun
    from search.trial.candidate import resolve, spec_dataset

    raw = copy.deepcopy(QUICKSTART)
    raw["space"] = FRONT_ENDS
    spec = parse_spec(raw)
    assert spec.space["depth"].low == 0 and spec.space["stem_layers"].is_int()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    DefineByRun(spec)(trial)
    assert {"tokenizer", "position", "stem_layers", "stem_filters", "depth"} <= set(trial.params)
    assert 0 <= trial.params["depth"] <= 2 and isinstance(trial.params["depth"], int)
    data = spec_dataset(spec)
    cand = resolve(spec, {"tokenizer": "lite", "position": "tape", "stem_layers": 3, "stem_filters": "learned",
                          "depth": 0, "conv_kernel": 41, "conv_dilation": 2, "width": 16, "heads": 1},
                   data.modalities, len(data.classes))
    model = cand.model
    assert (model.tokenizer, model.position, model.stem_layers, model.stem_filters, model.depth) == (
        "lite", "tape", 3, "learned", 0)


def test_relative_position_with_a_variant_without_scores_is_refused_in_a_space():
    raw = copy.deepcopy(QUICKSTART)
    raw["space"] = {**FRONT_ENDS, "attention": ["softmax", "linear"], "depth": 1}
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    message = str(err.value)
    assert message.startswith("space: the candidate (attention=linear, ")
    assert "position: 'relative' not accepted with attention=linear" in message and "\n" not in message
