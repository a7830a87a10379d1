"""The Python API (``import search``): what ``help(search)`` shows, that importing it starts nothing heavy, specs from
files and dicts, one-line refusals, and the README's example run as written - a real local Ray, Optuna and an MLflow
store in a temp dir."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import search

README = Path(__file__).resolve().parents[1] / "README.md"
RAW = {
    "name": "api",
    "data": {"name": "gunpoint", "cv_folds": "holdout"},
    "baselines": [],
    "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
    "space": {"depth": [0, 1], "width": [16]},
    "training": {"epochs": 1},
}


def readme_example() -> str:
    """The first ```python block of the README's "## Python API" section."""
    body = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)[0]


def test_help_shows_the_api_and_nothing_else():
    text = subprocess.run([sys.executable, "-c", "import search; help(search)"], capture_output=True, text=True,
                          check=True).stdout
    sections = dict(re.findall(r"^([A-Z][A-Z ]+)\n(.*?)(?=^[A-Z][A-Z ]+\n|\Z)", text, flags=re.S | re.M))
    assert set(sections) == {"NAME", "DESCRIPTION", "PACKAGE CONTENTS", "CLASSES", "FUNCTIONS", "FILE"}
    classes = re.findall(r"^    class (\w+)\(", sections["CLASSES"], flags=re.M)
    functions = re.findall(r"^    (\w+)\(", sections["FUNCTIONS"], flags=re.M)
    assert sorted(classes + functions) == sorted(search.__all__)
    assert sorted(dir(search)) == sorted(search.__all__)


def test_importing_search_starts_nothing_heavy():
    """Ray's workers and the CLI import modules of the package; the API's imports wait for its first use."""
    code = ("import sys, search; print(sorted(m for m in ('ray', 'mlflow', 'optuna', 'torch', 'pandas') "
            "if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_a_spec_from_a_file_or_a_dict_is_the_same(tmp_path):
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(RAW))
    assert search.load_spec(path) == search.load_spec(RAW) == search.load_spec(str(path))


def test_a_bad_spec_is_refused_in_one_line():
    with pytest.raises(search.SpecError, match=r"^search.sampler: 'annealing' not accepted; accepted: \[") as e:
        search.load_spec({**RAW, "search": {"sampler": "annealing"}})
    assert "\n" not in str(e.value)


def test_opening_a_search_that_is_not_there_names_it(tmp_path):
    with pytest.raises(LookupError, match=r"^search: no search named 'nope' in this experiment"):
        search.open_search("nope", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.mark.slow
def test_the_readme_example_runs_as_written(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its store (./mlflow.db), search state and exports land here
    for name in ("MLFLOW_TRACKING_URI", "EMULE_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    ns: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), "README.md", "exec"), ns)  # noqa: S102
    result, same = ns["result"], ns["same"]

    assert isinstance(result, search.Search) and result.status == "complete"
    assert len(result.candidates) == result.spec.search.trials
    front = result.front
    assert not front.empty and front["on_front"].all() and front["run_id"].str.len().gt(0).all()
    assert result.best["val_accuracy"] == result.candidates["val_accuracy"].max()
    assert result.knee["trial_id"] in set(front["trial_id"])
    assert {"nn_euclidean", "nn_dtw", "rocket"} <= set(result.baselines)
    assert result.parent_run_id in result.mlflow_url and result.mlflow_url in printed.getvalue()
    # the search read again later, from MLflow alone: the same record
    pd.testing.assert_frame_equal(same.candidates, result.candidates)
    assert (same.name, same.status, same.baselines) == (result.name, result.status, result.baselines)
    # the knee exported and trained again from scratch
    [path] = ns["files"]
    assert yaml.safe_load(path.read_text())["source"]["trial_id"] == result.knee["trial_id"]
    assert ns["metrics"]["param_count"] == result.knee["param_count"]
    assert 0 <= ns["metrics"]["test_accuracy"] <= 1 and (tmp_path / "exports" / "knee.pt").is_file()
