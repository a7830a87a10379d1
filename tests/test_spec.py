"""Spec validation: every bad field is refused with one line naming the field, before Ray starts."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.spec import Range, SpecError, load_spec, parse_spec

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
    assert spec.metrics == ["val_accuracy", "params", "flops"]
    assert isinstance(spec.space["depth"], Range) and spec.space["depth"].is_int()


@pytest.mark.parametrize("path, value, expected", [
    ("space.depth", {"low": 0, "high": -1}, "space.depth: low=0 > high=-1"),
    ("space.depth", [0, 2], "space.depth: 0 not accepted"),
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
    ("objectives", [{"metric": "params", "mode": "up", "reference": 0}], "objectives.0.mode: 'up'"),
    ("objectives", [], "objectives: []"),
    ("search.sampler", "annealing", "search.sampler: 'annealing'"),
    ("search.trials", 0, "search.trials: 0"),
    ("training.epochs", -1, "training.epochs: -1"),
    ("name", "has space", "name: 'has space'"),
    ("surprise", 1, "surprise: 1 - Extra inputs are not permitted"),
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
