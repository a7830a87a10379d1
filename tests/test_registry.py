"""The one registry idiom: a dict filled by a decorator that refuses duplicates, whose lookup names the field,
the value and every accepted name - and every named choice of the project is such a registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from emule_models.attention import ATTENTION
from emule_models.augment import POLICIES
from emule_models.data import BUILTIN, STRATEGIES, VIEWS
from emule_models.fusion import FUSION
from emule_models.registry import Registry
from emule_models.stems import STEMS
from search.driver.checks import check_names
from search.driver.schedulers import SCHEDULERS
from search.spec.schema import DEFAULT_BASELINES, SpecError, parse_schema
from search.spec.space import SAMPLERS
from search.trial.baselines import METHODS

QUICKSTART = Path(__file__).resolve().parents[1] / "spaces" / "quickstart.yaml"


def test_register_under_a_given_name_or_the_entry_name():
    shapes = Registry("shape", field="model.shape")

    @shapes.register("square")
    def square(x: int) -> int:
        return x * x

    @shapes.register()
    class Cube:
        name = "cube"

    assert shapes == {"square": square, "cube": Cube}
    assert shapes.lookup("square") is square and shapes.lookup("cube") is Cube
    assert shapes.names() == ["cube", "square"]


def test_names_keep_the_order_of_registration_where_it_means_something():
    sizes = Registry("size", sort=False)
    for name in ("small", "medium", "large"):
        sizes.add(name, name)
    assert sizes.names() == ["small", "medium", "large"]
    with pytest.raises(ValueError, match=r"^size: 'huge' not accepted; accepted: \['small', 'medium', 'large'\]$"):
        sizes.lookup("huge")


def test_a_name_given_twice_is_refused_naming_both_definitions():
    shapes = Registry("shape")
    shapes.add("square", len)
    with pytest.raises(ValueError, match=r"^shape 'square' registered twice \(len, abs\)$"):
        shapes.add("square", abs)
    assert shapes["square"] is len


def test_an_entry_without_a_name_is_refused():
    with pytest.raises(TypeError, match="has no 'name'"):
        Registry("shape").register()(type("Nameless", (), {}))


@pytest.mark.parametrize("value", ["hexagon", 3, ["square"]])
def test_an_unknown_name_names_the_field_the_value_and_the_accepted_names(value):
    shapes = Registry("shape", field="model.shape", unknown="is not a known shape")
    shapes.add("square", len)
    shapes.add("circle", abs)
    with pytest.raises(ValueError) as e:
        shapes.lookup(value)
    assert str(e.value) == f"model.shape: {value!r} is not a known shape; accepted: ['circle', 'square']"


@pytest.mark.parametrize("registry,field,some", [
    (ATTENTION, "attention", "softmax"),
    (FUSION, "fusion", "early"),
    (STEMS, "tokenizer", "lite"),
    (BUILTIN, "data.name", "osuleaf"),
    (VIEWS, "data.view", "gaf"),
    (STRATEGIES, "selection", "ccs"),
    (SAMPLERS, "search.sampler", "tpe"),
    (SCHEDULERS, "search.scheduler", "mo-asha"),
    (POLICIES, "training.augment", "light"),
    (METHODS, "baselines", "rocket"),
])
def test_every_named_choice_is_a_registry_keyed_by_its_spec_field(registry, field, some):
    assert isinstance(registry, Registry) and registry.field == field
    assert registry.lookup(some) is registry[some]
    with pytest.raises(ValueError, match=rf"^{field}: 'nope' .*; accepted: \[.*'{some}'"):
        registry.lookup("nope")


def test_the_sampler_registry_builds_every_sampler():
    import optuna

    for name in SAMPLERS:
        assert isinstance(SAMPLERS.lookup(name)(0, 4, 2), optuna.samplers.BaseSampler)


@pytest.mark.parametrize(("field", "registry"), [("sampler", SAMPLERS), ("scheduler", SCHEDULERS)])
def test_a_spec_names_its_sampler_and_scheduler_from_their_registries(field, registry):
    """The registries are the one list of names: every registered name passes the spec check, another is refused
    with the registry's names, before any data is read."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    for name in registry:
        check_names(parse_schema({**raw, "search": {**raw["search"], field: name, "grace_period": 1}}))
    first = next(iter(registry))
    with pytest.raises(SpecError, match=rf"^search.{field}: 'annealing' not accepted; accepted: \[.*'{first}'"):
        check_names(parse_schema({**raw, "search": {**raw["search"], field: "annealing"}}))


def test_a_spec_names_its_baselines_from_their_registry():
    raw = yaml.safe_load(QUICKSTART.read_text())
    check_names(parse_schema({**raw, "baselines": list(METHODS)}))
    assert set(DEFAULT_BASELINES) <= set(METHODS)
    with pytest.raises(SpecError, match=r"^baselines: \['knn'\] - 'knn' not accepted; accepted: \["):
        check_names(parse_schema({**raw, "baselines": ["knn"]}))
