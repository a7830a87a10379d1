"""The front's files (search.front.files, plot, html) and its description (search.front.summary), from a front
built by the real Pareto code over hand-made candidates whose dominance is known."""

from __future__ import annotations

import csv
import json
import re
from urllib.parse import parse_qs, urlsplit

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from search.driver.checks import parse_spec
from search.front.files import csv_rows, write_artifacts
from search.front.html import CHAR_PX, LABEL_PX, MARKER_PX, PANEL_PX, hover, label_box, label_positions, overlap_area
from search.front.plot import log_ticks, tick
from search.front.state import Record, compute_front
from search.front.summary import (
    DESCRIPTION_LIMIT,
    candidate_name,
    configuration,
    describe_front,
    experiment_note,
    fmt,
    front_view,
    front_view_key,
    runs_link,
    ui_lines,
    verdict,
    view_link,
)
from search.spec.metrics import rounded
from search.spec.schema import Objective

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
    # both in the description's order: best validation accuracy first
    assert csv.column("trial_id").to_pylist() == table.column("trial_id").to_pylist() == [
        "a1aaaaaa", "b2bbbbbb", "c3cccccc"]
    assert csv.column("param_count").to_pylist() == table.column("param_count").to_pylist()
    assert csv.column("knee").to_pylist().count("yes") == 1 and table.column("knee").to_pylist().count(True) == 1
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_is_written_for_people(front, tmp_path):
    """MLflow's CSV preview types every cell (true/false show as nothing) and shows floats as they are written."""
    members = [record("a1aaaaaa", 0.29500000000000004, 12_966.0, 12_080_096_639.5),
               record("b2bbbbbb", 0.2, 4_390, 1e6)]
    members[0].params["lr"] = "0.0006324334252044143"
    small = compute_front(members, OBJECTIVES)
    rows = csv_rows(small, OBJECTIVES)
    assert [r["trial_id"] for r in rows] == ["a1aaaaaa", "b2bbbbbb"]
    top = rows[0]
    assert list(top)[:7] == ["trial_id", "knee", "val_accuracy", "param_count", "flops", "test_accuracy",
                             "configuration"]
    assert top["knee"] in ("yes", "no") and [r["knee"] for r in rows].count("yes") == 1
    assert top["val_accuracy"] == 0.295 and top["param_count"] == 12966 and isinstance(top["param_count"], int)
    assert top["flops"] == 12_080_000_000 and top["test_accuracy"] == 0.245
    assert top["configuration"] == "softmax d2 w64" and top["param.lr"] == 0.0006324
    path = write_artifacts(small, OBJECTIVES, tmp_path)[1]
    text = path.read_text()
    assert "0.29500000000000004" not in text and "12080096639.5" not in text and "True" not in text
    assert next(csv.DictReader(path.open()))["val_accuracy"] == "0.295"


@pytest.mark.parametrize("value, shown", [(0.6199999999999999, 0.62), (9440.0, 9440), (2, 2), ("64", 64),
                                          ("softmax", "softmax"), (12_080_096_639.5, 12_080_000_000),
                                          (6.324334e-4, 0.0006324), (True, True)])
def test_rounded_keeps_a_few_significant_digits_and_integers_whole(value, shown):
    assert rounded(value) == shown and type(rounded(value)) is type(shown)


def test_html_is_self_contained_and_interactive(front, tmp_path):
    page = write_artifacts(front, OBJECTIVES, tmp_path, BASELINES)[3].read_text()
    assert not re.search(r"<script[^>]+src=", page)  # no CDN: Plotly's JavaScript is inside the page
    assert "Plotly.newPlot" in page and len(page) > 1_000_000
    for trial in ("a1aaaaaa", "b2bbbbbb", "c3cccccc", "d4dddddd"):  # every candidate, hover text included
        assert trial in page
    assert 'id="emule-pairs"' in page and 'id="emule-parallel"' in page and page.count("Plotly.newPlot(") == 2
    assert "1-NN DTW: val 0.640" in page  # the baseline as a reference line
    assert "attention: softmax" in page  # the configuration on hover


def test_hover_shows_numbers_as_people_read_them(front):
    r = front.members[0]
    r.params["lr"] = "0.0006324334252044143"
    text = hover(r, OBJECTIVES)
    assert "lr: 6.32e-4" in text and "param_count: 50k" in text and "val_accuracy: 0.8<" in text
    assert "0.000632433" not in text


def test_labels_are_placed_apart():
    # two candidates with the same objectives (same architecture) and a third close by
    points = [(0.5, 0.5), (0.5, 0.5), (0.55, 0.52)]
    texts = ["0d51b854", "cd6572c7", "3aff0c37"]
    places = label_positions(points, texts)
    assert len(set(places)) == 3
    w, h = PANEL_PX
    boxes = [label_box(p, x, y, len(t) * CHAR_PX / w, LABEL_PX / h, MARKER_PX / w, MARKER_PX / h)
             for p, (x, y), t in zip(places, points, texts)]
    assert all(overlap_area(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])
    # a lone point keeps its label above it; one at the top of the panel puts it below (Plotly cuts it there)
    assert label_positions([(0.5, 0.5)], ["a1aaaaaa"]) == ["top center"]
    assert label_positions([(0.5, 1.0)], ["a1aaaaaa"]) == ["bottom center"]


def test_log_ticks_tell_nearby_sizes_apart():
    assert [tick(v) for v in (2000, 5000, 10_000, 2e6, 500)] == ["2k", "5k", "10k", "2M", "500"]
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
    assert "| 50k&emsp; |" in rows[0] and "| 4.39k&emsp; |" in rows[1]  # readable numbers, cells apart
    assert rows[0].endswith("| softmax&nbsp;d2&nbsp;w64 |")  # in a few words, like the run names; one line
    assert f"**Hypervolume** {front.hypervolume:.4g}" in note
    assert "val_accuracy = 0, param_count = 1e+06, flops = 1e+09" in note and "log10" in note
    assert "| 1-NN DTW&emsp; | 0.640&emsp; | 0.590&emsp; | 85.1 s |" in note
    assert "ROCKET&emsp; | skipped: estimated 900 s" in note
    assert "selection gap +0.050" in note
    assert view_link("7", front_view_key("parent9")) in note
    assert "#/experiments/7/runs/parent9/artifacts/pareto.html?workflowType=machine_learning" in note
    assert "`param_count`: trainable parameters (count)" in note


def test_description_starts_with_the_verdict(front):
    best = front.members[0]
    note = describe_front("s-1", "7", "parent9", front, OBJECTIVES, BASELINES, best, "5-fold cross-validation")
    first = note.splitlines()[0]
    # best candidate against the best baseline that ran, in plain words (MLflow shows the start as it is)
    assert first == "Best 0.800 val / 0.750 test (a1aaaaaa, 50k params) vs 1-NN DTW 0.640 val / 0.590 test"
    assert first == verdict(best, BASELINES)
    assert verdict(best, {"rocket": BASELINES["rocket"]}).endswith("- no classical baseline ran (ROCKET skipped)")
    assert verdict(best, None) == "Best 0.800 val / 0.750 test (a1aaaaaa, 50k params)"  # while the search runs
    assert describe_front("s-1", "7", "p", front, OBJECTIVES).startswith("Pareto front of 3 among 4")


def test_long_front_is_cut_where_mlflow_would_cut_the_description():
    many = compute_front([record(f"{i:08x}", 0.5 + i / 1000, 1000 + i, 1e9 - i * 1e6) for i in range(300)],
                         OBJECTIVES)
    assert len(many.members) == 300
    note = describe_front("s-1", "7", "p", many, OBJECTIVES, BASELINES, many.members[0])
    assert len(note) <= DESCRIPTION_LIMIT
    cut = re.search(r"\.\.\. and (\d+) more front members in `pareto.csv`", note)
    assert cut and int(cut.group(1)) + sum(line.startswith("| [") for line in note.splitlines()) == 300
    assert note.rstrip().endswith(".") and "**Units:**" in note  # the rest stays whole


def test_front_link_filters_one_searchs_front_best_first():
    link = runs_link("3", "abc", OBJECTIVES)
    query = parse_qs(urlsplit(link.lstrip("#")).query)
    assert urlsplit(link.lstrip("#")).path == "/experiments/3/runs"
    assert query == {"workflowType": ["machine_learning"],
                     "searchFilter": ['tags.pareto = "true" and tags.`mlflow.parentRunId` = "abc"'],
                     "orderByKey": ["metrics.`val_accuracy`"], "orderByAsc": ["false"]}


def test_front_view_lists_the_objectives_in_their_order():
    view = front_view("abc", OBJECTIVES, ["attention", "width"])
    assert view["searchFilter"] == 'tags.pareto = "true" and tags.`mlflow.parentRunId` = "abc"'
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`val_accuracy`", False)
    assert view["selectedColumns"] == view["columnOrder"] == [
        "metrics.`val_accuracy`", "metrics.`param_count`", "metrics.`flops`", "metrics.`test_accuracy`",
        "metrics.`knee`", "params.`attention`", "params.`width`"]
    json.dumps(view)  # an experiment tag's value
    link = view_link("3", front_view_key("abc"))
    # no filter or order in the link: MLflow applies a view only to a URL without its own
    assert parse_qs(urlsplit(link.lstrip("#")).query) == {"workflowType": ["machine_learning"],
                                                          "viewStateShareKey": ["emule-front-abc"]}


def test_experiment_note_says_what_it_holds_and_how_to_reach_it():
    note = experiment_note("3")
    # MLflow shows the first line at the top of the experiment's pages: the link is in it
    first = note.splitlines()[0]
    assert first.startswith("EMuLe searches - [open them in the Model training view]"
                            "(#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=emule-searches)")
    assert "one parent run per search" in first and "click *Model training*" in note


@pytest.mark.parametrize("params, text", [
    ({"attention": "linear", "depth": "1", "width": "8", "heads": "2", "patch_len": "25"}, "linear d1 w8 h2 p25"),
    ({"attention": "softmax", "depth": 2, "width": 64, "data_fraction": "0.5", "selection": "el2n", "lr": "1e-3"},
     "softmax d2 w64 f0.5 el2n"),
    ({"attention": "softmax", "depth": 2, "data_fraction": 1.0, "selection": "random"}, "softmax d2")])
def test_configuration_reads_like_the_run_names(params, text):
    assert configuration(params) == text


def test_run_name_starts_with_the_trial_id():
    model = {"attention": "softmax", "depth": 2, "width": 64}
    assert candidate_name("3a7e17fe", model) == "3a7e17fe softmax d2 w64"
    assert candidate_name("3a7e17fe", model, {"data_fraction": 0.5}) == "3a7e17fe softmax d2 w64 f0.5"


@pytest.mark.parametrize("value, text", [(0.7317073, "0.732"), (2732096, "2.73M"), (21510, "21.5k"), (12, "12"),
                                         (4.2e10, "42G"), (0, "0"), (0.0006324334252044143, "6.32e-4"),
                                         ("0.0006324334252044143", "6.32e-4"), (3e-5, "3e-5"), (4.2e13, "4.2e13"),
                                         ("softmax", "softmax")])
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
    assert local[1].endswith("http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
                             "&viewStateShareKey=emule-searches")
    assert local[2].endswith("http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning")
    assert local[3].endswith("http://127.0.0.1:5000/" + view_link("3", front_view_key("abc")))
    served = ui_lines("https://mlflow.example.org/", "3", "abc", OBJECTIVES)
    assert len(served) == 3 and "https://mlflow.example.org/#/experiments/3/runs?" in served[2]
