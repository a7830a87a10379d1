"""The checks against the data (search.driver.checks): a space too large to check is refused, naming its size, the
limit and what to do; the corners are every combination up to that limit; the boundary runs schema then checks."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.driver.checks import MAX_CORNERS, corner_counts, parse_spec, space_corners
from search.spec.schema import SpecError, parse_schema

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = yaml.safe_load((ROOT / "spaces" / "quickstart.yaml").read_text())

# attention 2 x depth 2 (a range's bounds) x width 25 x heads 4 x patch_len 10 x mlp_ratio 5 = 20000 combinations
AT_LIMIT = {"attention": ["softmax", "linear"], "depth": {"low": 1, "high": 2}, "width": [8 * i for i in range(1, 26)],
            "heads": [1, 2, 4, 8], "patch_len": list(range(1, 11)), "mlp_ratio": [1.0, 1.5, 2.0, 3.0, 4.0],
            "lr": {"low": 1e-4, "high": 1e-2, "log": True}}  # a training key: no corner of the model space


def with_space(space):
    raw = copy.deepcopy(QUICKSTART)
    raw["space"] = space
    return raw


def test_the_limit_is_what_the_issue_measured():
    assert MAX_CORNERS == 20000


def test_corners_reach_the_limit_in_full():
    spec = parse_schema(with_space(AT_LIMIT))
    assert math.prod(corner_counts(spec).values()) == MAX_CORNERS
    corners = space_corners(spec)
    assert len(corners) == MAX_CORNERS
    assert len({tuple(values.items()) for values, _ in corners}) == MAX_CORNERS  # every combination, once
    assert all("lr" not in values for values, _ in corners)


def test_a_space_over_the_limit_is_refused_not_cut():
    space = {**AT_LIMIT, "dropout": [0.0, 0.1]}  # 40000 combinations
    with pytest.raises(SpecError) as err:
        space_corners(parse_schema(with_space(space)))
    message = str(err.value)
    assert message.startswith("space: 40000 combinations")
    assert "accepted: at most 20000" in message and "narrow the space" in message
    assert "width 25 x heads 4" in message  # the factors, so the user sees which setting to narrow
    assert "\n" not in message


def test_the_full_check_refuses_it_before_building_anything(tmp_path):
    """Through the CLI in a fresh process: exit 2 and the one line, before Ray is imported."""
    spec = tmp_path / "huge.yaml"
    spec.write_text(yaml.safe_dump(with_space({**AT_LIMIT, "dropout": [0.0, 0.1, 0.2]})))
    code = ("import sys; from search.cli import main; rc = main(['search', sys.argv[1]]); "
            "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("emule search: space: 60000 combinations") and "accepted: at most 20000" in line


def test_attention_option_corners_multiply_each_variant():
    raw = with_space({"attention": ["softmax", "performer"], "depth": 1, "width": 16, "heads": 1, "patch_len": 16})
    raw["attention_options"] = {"performer": {"features": [8, 16, 32]}}
    corners = space_corners(parse_schema(raw))
    assert sorted((v["attention"], o.get("features", 0)) for v, o in corners) == [
        ("performer", 8), ("performer", 16), ("performer", 32), ("softmax", 0)]


def test_boundary_checks_the_data_after_the_schema():
    """A spec the schema accepts can still be refused by a check against the data; parse_schema never loads it."""
    raw = with_space({"attention": "softmax", "depth": 1, "width": 16, "heads": 1, "patch_len": 5000})
    assert parse_schema(raw).space["patch_len"] == 5000
    with pytest.raises(SpecError, match=r"patch_len: 5000 is longer than series 'outline'"):
        parse_spec(raw)


def test_boundary_resolves_the_validation_scheme():
    auto = {**QUICKSTART, "data": {**QUICKSTART["data"], "cv_folds": "auto"}}
    assert parse_schema(auto).data.cv_folds == "auto"
    assert parse_spec(auto).data.cv_folds == 5
