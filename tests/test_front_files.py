"""The front's files (search.front, front_plot, front_html) and its description (search.summary), from a front
built by the real Pareto code over hand-made candidates whose dominance is known."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from search.front import Record, compute_front
from search.front_files import write_artifacts
from search.front_plot import _tick, log_ticks
from search.spec import Objective
from search.spec_checks import parse_spec
from search.summary import candidate_name, describe_front, fmt, runs_link, ui_lines

OBJECTIVES = [Objective(metric="val_accuracy", mode="max", reference=0.0),
              Objective(metric="param_count", mode="min", reference=1e6, log=True),
              Objective(metric="flops", mode="min", reference=1e9, log=True)]
BASELINES = {"nn_dtw": {"label": "1-NN DTW", "val_accuracy": 0.64, "val_accuracy_std": 0.02, "test_accuracy": 0.59,
                        "fit_seconds": 85.1},
             "rocket": {"label": "ROCKET", "skipped": "estimated 900 s > search.baseline_seconds=300"}}


def record(trial: str, acc: float, size: float, flops: float) -> Record:
    return Record(trial, f"run-{trial}", {"val_accuracy": acc, "param_count": size, "flops": flops,
                                          "test_accuracy": acc - 0.05},
                  {"attention": "softmax", "depth": "2", "width": "64", "lr": "0.001"})


@pytest.fixture
def front():
    # a1 most accurate, b2 smallest, c3 fewest FLOPs (best on no 2-D panel against accuracy alone), d4 dominated
    return compute_front([record("a1aaaaaa", 0.80, 50_000, 4e6), record("b2bbbbbb", 0.60, 4_390, 2e6),
                          record("c3cccccc", 0.55, 12_966, 1e6), record("d4dddddd", 0.50, 60_000, 5e6)], OBJECTIVES)


def test_files_hold_the_front(front, tmp_path):
    paths = write_artifacts(front, OBJECTIVES, tmp_path, BASELINES, "s: Pareto front")
    assert [p.name for p in paths] == ["pareto.parquet", "pareto.csv", "pareto.png", "pareto.html"]
    members = {"a1aaaaaa", "b2bbbbbb", "c3cccccc"}
    assert {r.trial_id for r in front.members} == members
    table, csv = pq.read_table(paths[0]), pacsv.read_csv(paths[1])
    assert set(csv.column("trial_id").to_pylist()) == members
    assert csv.column("param_count").to_pylist() == table.column("param_count").to_pylist()
    assert csv.column("knee").to_pylist().count(True) == 1
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained_and_interactive(front, tmp_path):
    page = write_artifacts(front, OBJECTIVES, tmp_path, BASELINES)[3].read_text()
    assert not re.search(r"<script[^>]+src=", page)  # no CDN: Plotly's JavaScript is inside the page
    assert "Plotly.newPlot" in page and len(page) > 1_000_000
    for trial in ("a1aaaaaa", "b2bbbbbb", "c3cccccc", "d4dddddd"):  # every candidate, hover text included
        assert trial in page
    assert 'id="emule-pairs"' in page and 'id="emule-parallel"' in page and page.count("Plotly.newPlot(") == 2
    assert "1-NN DTW: val 0.640" in page  # the baseline as a reference line
    assert "attention: softmax" in page  # the configuration on hover


def test_log_ticks_tell_nearby_sizes_apart():
    assert [_tick(v) for v in (2000, 5000, 10_000, 2e6, 500)] == ["2k", "5k", "10k", "2M", "500"]
    assert log_ticks(4000, 14_000) == [4000, 5000, 6000, 7000, 8000, 9000, 10_000]  # within a decade: every step
    assert log_ticks(3000, 120_000) == [5000, 10_000, 20_000, 50_000, 100_000]
    assert log_ticks(1e3, 1e9) == [1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]  # wide: decades only


def test_description_has_table_knee_hypervolume_baselines_gap_and_link(front):
    best = front.members[0]
    note = describe_front("s-1", "7", "parent9", front, OBJECTIVES, BASELINES, best, "5-fold cross-validation")
    rows = [line for line in note.splitlines() if line.startswith("| [")]
    assert [re.match(r"\| \[(\w+)\]\(#/experiments/7/runs/run-(\w+)\?", row).groups() for row in rows] == [
        ("a1aaaaaa", "a1aaaaaa"), ("b2bbbbbb", "b2bbbbbb"), ("c3cccccc", "c3cccccc")]  # best accuracy first
    assert sum("(knee)" in row for row in rows) == 1 and f"`{front.knee.trial_id}`" in note
    assert "| 50k |" in rows[0] and "| 4.39k |" in rows[1]  # readable numbers
    assert f"**Hypervolume** {front.hypervolume:.4g}" in note
    assert "val_accuracy = 0, param_count = 1e+06, flops = 1e+09" in note and "log10" in note
    assert "| 1-NN DTW | 0.640 | 0.590 | 85.1 s |" in note and "ROCKET | skipped: estimated 900 s" in note
    assert "selection gap +0.050" in note
    assert runs_link("7", "parent9", OBJECTIVES) in note
    assert "`param_count`: trainable parameters (count)" in note


def test_front_link_filters_one_searchs_front_best_first():
    link = runs_link("3", "abc", OBJECTIVES)
    query = parse_qs(urlsplit(link.lstrip("#")).query)
    assert urlsplit(link.lstrip("#")).path == "/experiments/3/runs"
    assert query == {"workflowType": ["machine_learning"],
                     "searchFilter": ['tags.pareto = "true" and tags.`mlflow.parentRunId` = "abc"'],
                     "orderByKey": ["metrics.`val_accuracy`"], "orderByAsc": ["false"]}


def test_run_name_starts_with_the_trial_id():
    model = {"attention": "softmax", "depth": 2, "width": 64}
    assert candidate_name("3a7e17fe", model) == "3a7e17fe softmax d2 w64"
    assert candidate_name("3a7e17fe", model, {"data_fraction": 0.5}) == "3a7e17fe softmax d2 w64 f0.5"


@pytest.mark.parametrize("value, text", [(0.7317073, "0.732"), (2732096, "2.73M"), (21510, "21.5k"), (12, "12"),
                                         (4.2e10, "42G"), (0, "0")])
def test_numbers_read_as_people_read_them(value, text):
    assert fmt(value) == text


def test_former_size_name_is_accepted_in_specs():
    raw = {"name": "a", "data": {"name": "osuleaf"},
           "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0},
                          {"metric": "params", "mode": "min", "reference": 1e6, "log": True}],
           "space": {"depth": [1]}}
    assert parse_spec(raw).metrics == ["val_accuracy", "param_count"]


def test_end_lines_say_how_to_open_the_ui():
    local = ui_lines("sqlite:////data/mlflow.db", "3", "abc", OBJECTIVES)
    assert local[0] == "look at it in MLflow: mlflow ui --backend-store-uri sqlite:////data/mlflow.db, then open"
    assert local[1].endswith("http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning")
    assert local[2].endswith("http://127.0.0.1:5000/" + runs_link("3", "abc", OBJECTIVES))
    served = ui_lines("https://mlflow.example.org/", "3", "abc", OBJECTIVES)
    assert len(served) == 2 and "https://mlflow.example.org/#/experiments/3/runs?" in served[1]
