"""`emule suggest-labels`: the scores and rankings (margin and entropy order, k-center never picks what the labelled
rows cover, BADGE's gradient embeddings), suggestions that are only ever unlabelled rows and name their row in the
user's file, bad arguments refused in one line, and the command end to end on a real search (real Ray, Optuna and
MLflow store)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from emule_models import ModelConfig, build_model
from emule_models.data import load_data, synthetic
from search.cli import main
from search.delivery.label_suggestions import (
    STRATEGIES,
    Outputs,
    badge,
    by_score,
    check_arguments,
    check_unlabelled,
    covering,
    entropy,
    margin,
    rank,
    suggest,
)


# ------------------------------------------------------------------------------------------------ scores
def test_margin_and_entropy_rank_the_least_sure_rows_first():
    probs = np.array([[0.9, 0.05, 0.05],   # sure
                      [0.4, 0.35, 0.25],   # top two close, third close too
                      [0.5, 0.5, 0.0],     # a tie of the top two: margin's first
                      [1 / 3, 1 / 3, 1 / 3],  # uniform: entropy's first
                      [0.6, 0.2, 0.2]])
    assert margin(probs) == pytest.approx([0.15, 0.95, 1.0, 1.0, 0.6])
    assert entropy(probs)[3] == pytest.approx(1.0) and entropy(np.eye(3))[0] == pytest.approx(0.0, abs=1e-9)
    order, scores = by_score(margin(probs), 5)
    assert order.tolist() == [2, 3, 1, 4, 0]  # the tie at 1.0 stays in row order
    assert by_score(entropy(probs), 2)[0].tolist() == [3, 1]
    assert np.all(np.diff(scores) <= 0)


def test_k_center_starts_from_the_labelled_rows_and_never_picks_what_they_cover():
    labelled = np.array([[0.0, 0.0], [10.0, 0.0]])
    unlabelled = np.array([[0.0, 0.0],    # a copy of a labelled row: covered already
                           [10.0, 0.1],   # next to one
                           [5.0, 9.0],    # far from both: first
                           [5.0, 0.0],    # between them
                           [5.0, 8.5]])   # near the first pick
    picks, radii = covering(unlabelled, labelled, 5)
    assert picks[0] == 2 and radii[0] == pytest.approx(np.hypot(5, 9))
    assert picks[1] == 3 and radii[1] == pytest.approx(5.0)
    assert sorted(picks.tolist()) == list(range(5)) and picks[-1] == 0 and radii[-1] == 0.0
    assert np.all(np.diff(radii) <= 1e-12)  # each pick closes a smaller radius
    assert covering(unlabelled, labelled, 2)[0].tolist() == [2, 3]


def test_badge_embeddings_distances_and_seeding():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(2, 40))  # (models, rows, classes)
    pooled = rng.normal(size=(2, 40, 6))
    probs[:, 7] = [1.0, 0.0, 0.0]  # both models sure of row 7: a zero gradient embedding
    picks, radii = badge(probs, pooled, 12, np.random.default_rng(1))
    predicted = probs.mean(0).argmax(1)
    a = probs - np.eye(3)[predicted][None]
    grads = np.concatenate([np.einsum("nk,nw->nkw", a[m], pooled[m]).reshape(40, -1) for m in range(2)], axis=1)
    assert picks[0] == np.argmax(np.linalg.norm(grads, axis=1))  # the longest first
    assert radii[0] == pytest.approx(np.linalg.norm(grads[picks[0]]))
    for i in range(1, len(picks)):  # each radius: the distance to the nearest pick before it, as the full vectors say
        assert radii[i] == pytest.approx(np.linalg.norm(grads[picks[:i]] - grads[picks[i]], axis=1).min())
    assert len(set(picks.tolist())) == 12 and 7 not in picks
    assert np.array_equal(picks, badge(probs, pooled, 12, np.random.default_rng(1))[0])  # seeded
    assert len(badge(probs, pooled, 100, np.random.default_rng(1))[0]) == 40  # at most every row


def test_rank_takes_every_strategy_and_at_most_the_rows_there_are():
    rng = np.random.default_rng(2)
    unl = Outputs(rng.dirichlet(np.ones(4), size=(3, 9)), rng.normal(size=(3, 9, 5)))
    lab = Outputs(rng.dirichlet(np.ones(4), size=(3, 20)), rng.normal(size=(3, 20, 5)))
    for strategy in STRATEGIES:
        picks, scores = rank(strategy, unl, lab, 20)
        assert sorted(picks.tolist()) == list(range(9)) and len(scores) == 9


# ------------------------------------------------------------------------------------------------ rows of the file
def write_semi(path, unlabelled_every: int = 4, n: int = 96, ids: bool = True):
    """A user's Parquet: 3 classes of sinusoids, every ``unlabelled_every``-th row with a null label, a split column
    (a test split of labelled rows) and an id column; the series' first value is the row number, to check against."""
    data = synthetic(n, 32, 3, seed=4, val_fraction=0.0, test_fraction=0.0)
    x = data.train.inputs["series"][:, 0].copy()
    x[:, 0] = np.arange(len(x))
    labels = [None if i % unlabelled_every == 1 else f"c{data.train.labels[i]}" for i in range(len(x))]
    split = ["test" if labels[i] and i % 5 == 0 else "train" for i in range(len(x))]
    columns = {"reading": pa.array(x.tolist(), pa.list_(pa.float32())), "appliance": pa.array(labels, pa.string()),
               "split": split}
    if ids:
        columns["meter"] = [f"m-{1000 + i}" for i in range(len(x))]
    pq.write_table(pa.table(columns), path)
    return {"path": str(path), "label": "appliance", "split": "split", "columns": {"reading": "series"},
            **({"id": "meter"} if ids else {})}


def tiny_models(dataset, k: int = 2) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    cfg = ModelConfig(modalities=dataset.modalities, num_classes=len(dataset.classes), width=8, depth=0,
                      patch_len=8, heads=1)
    return [build_model(cfg) for _ in range(k)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_suggestions_are_unlabelled_rows_and_name_their_row_in_the_file(strategy, tmp_path):
    section = write_semi(tmp_path / "meters.parquet")
    dataset = load_data(section)
    file = pq.read_table(section["path"])
    labels, ids = file.column("appliance").to_pylist(), file.column("meter").to_pylist()
    assert dataset.unlabelled_rows.tolist() == [i for i, y in enumerate(labels) if y is None]
    found = suggest(tiny_models(dataset), dataset, 7, strategy, id_column="meter")
    assert len(found.rows) == 7 and len(set(found.rows.tolist())) == 7
    assert all(labels[r] is None for r in found.rows)  # never a labelled row - so never validation or test
    assert [ids[r] for r in found.rows] == found.ids.tolist()
    first_value = dataset.unlabelled.inputs["reading"][:, 0, 0]
    at = {int(r): i for i, r in enumerate(dataset.unlabelled_rows)}
    assert [first_value[at[int(r)]] for r in found.rows] == found.rows.tolist()  # the row's own inputs were ranked
    table = found.table({"strategy": strategy})
    assert table.column_names == ["row", "meter", "rank", "score", "predicted", "probability"]
    assert table.column("rank").to_pylist() == list(range(1, 8))
    assert set(table.column("predicted").to_pylist()) <= set(dataset.classes)
    clash = suggest(tiny_models(dataset), dataset, 3, strategy, id_column="rank")  # an id column named like ours
    assert clash.table().column_names == ["row", "rank_id", "rank", "score", "predicted", "probability"]
    everything = suggest(tiny_models(dataset), dataset, 10_000, strategy)  # --n beyond the rows: all of them
    assert sorted(everything.rows.tolist()) == dataset.unlabelled_rows.tolist() and everything.ids is None


def test_a_folder_of_files_is_numbered_in_path_order(tmp_path):
    section = write_semi(tmp_path / "all.parquet", ids=False)
    whole = pq.read_table(section["path"])
    (tmp_path / "parts").mkdir()
    pq.write_table(whole.slice(50), tmp_path / "parts" / "b.parquet")  # written first, read second
    pq.write_table(whole.slice(0, 50), tmp_path / "parts" / "a.parquet")
    dataset = load_data({**section, "path": str(tmp_path / "parts")})
    np.testing.assert_array_equal(dataset.unlabelled_rows, load_data(section).unlabelled_rows)
    np.testing.assert_array_equal(dataset.unlabelled.inputs["reading"][:, 0, 0], dataset.unlabelled_rows)


def test_data_without_unlabelled_rows_is_refused_in_one_line():
    with pytest.raises(ValueError) as e:
        check_unlabelled(synthetic(30, 8, 3), "s-1")
    assert str(e.value).startswith("data: search s-1's data (synthetic-30x8-3c-noise0.0-s0) has no unlabelled rows; "
                                   "accepted: a dataset with rows whose label is null")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("argv, message", [
    (["--n", "0"], "--n: 0 not accepted; accepted: an integer >= 1"),
    (["--n", "-3"], "--n: -3 not accepted"),
    (["--n", "5", "--strategy", "bald"], "--strategy: 'bald' not accepted; accepted: ['margin', 'entropy', "
                                         "'kcenter', 'mix']"),
    (["--n", "5", "--out", "picked.csv"], "--out: 'picked.csv' not accepted; accepted: a file name ending in "
                                          ".parquet"),
])
def test_bad_arguments_are_refused_in_one_line_before_any_store(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["suggest-labels", "some-search", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emule suggest-labels: {message}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # refused before any store was opened
    with pytest.raises(ValueError, match="--n"):
        check_arguments(True, "margin")  # a bool is no count


def test_an_unknown_search_is_refused_in_one_line(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["suggest-labels", "nowhere", "--n", "3", "--tracking-uri", uri]) == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if "mlflow.store" not in line]  # MLflow's own
    assert len(ours) == 1 and ours[0].startswith("emule suggest-labels: search: no search named 'nowhere'")


# ------------------------------------------------------------------------------------------------ end to end
SECTION = "## Which rows to label next: `emule suggest-labels`"


@pytest.mark.slow
def test_suggest_labels_end_to_end_on_a_finished_search(ray_local, tmp_path, monkeypatch, capsys):
    """A real search (1 trial, 2 epochs, 2 folds) on a Parquet with null labels, then `emule suggest-labels`: the
    Parquet holds unlabelled rows only, named by row and id, and the analysis is a child run of the search."""
    from search.driver.checks import parse_spec
    from search.driver.runner import run_search
    from search.record.tracking import Tracker

    monkeypatch.chdir(tmp_path)
    section = write_semi(tmp_path / "meters.parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec({
        "name": "meters", "data": {**section, "cv_folds": 2}, "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
        "space": {"depth": 0, "width": 16, "heads": 1, "patch_len": 8},
        "training": {"epochs": 2},
        "search": {"trials": 1, "concurrency": 1, "storage": str(tmp_path / "runs")},
        "tracking": {"uri": uri, "experiment": "meters"},
    })
    result = run_search(spec, name="meters-1", out=io.StringIO())
    assert result.status == "complete" and result.finished == 1
    file = pq.read_table(section["path"])
    labels, ids = file.column("appliance").to_pylist(), file.column("meter").to_pylist()
    store = ["--tracking-uri", uri, "--experiment", "meters", "--threads", "1"]

    capsys.readouterr()
    assert main(["suggest-labels", "meters-1", "--n", "3", "--select", "nope", *store]) == 2
    assert capsys.readouterr().err.startswith("emule suggest-labels: --select: 'nope' is not a finished trial")

    for strategy in STRATEGIES:
        out = tmp_path / f"{strategy}.parquet"
        where = [] if strategy == "margin" else ["--out", str(out)]  # by default: SEARCH.suggest-STRATEGY.parquet
        out = out if where else Path("meters-1.suggest-margin.parquet")
        assert main(["suggest-labels", "meters-1", "--n", "6", "--strategy", strategy, *where, *store]) == 0
        printed = capsys.readouterr().out
        assert "label suggestions: 2 fold model(s) of 2 epochs (2-fold cross-validation" in printed
        assert "epoch 2/2: fold-mean val_accuracy" in printed and f"wrote {out}: 6 of 24 unlabelled rows" in printed
        picked = pq.read_table(out)
        rows = picked.column("row").to_pylist()
        assert len(set(rows)) == 6 and all(labels[r] is None for r in rows)  # never labelled, validation or test
        assert picked.column("meter").to_pylist() == [ids[r] for r in rows]
        assert picked.column("rank").to_pylist() == list(range(1, 7))

    tracker = Tracker(uri, "meters")
    runs = [r for r in tracker.runs() if r.data.tags.get("emule.kind") == "label_suggestions"]
    assert len(runs) == 4 and not [r for r in tracker.candidates(result.parent_run_id) if r in runs]
    last = max(runs, key=lambda r: r.info.start_time)
    assert last.info.status == "FINISHED" and last.data.params["strategy"] in STRATEGIES
    assert "label_suggestions.parquet" in tracker.artifact_paths(last.info.run_id)
    assert last.data.metrics["suggested"] == 6 and last.data.metrics["training_compute"] > 0
    parent = tracker.run(result.parent_run_id).data.tags
    assert parent["mlflow.note.content"].count("**label_suggestions**: ") == 1  # the newest replaces the older

    # the loop, as the README writes it: the suggested rows labelled in place are labelled rows from then on
    body = (Path(__file__).resolve().parents[1] / "README.md").read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    margin_rows = pq.read_table("meters-1.suggest-margin.parquet").column("row").to_pylist()
    exec(block.replace("meters.suggest-margin.parquet", "meters-1.suggest-margin.parquet"),
         {"new_labels": ["c2"] * 6})
    again = load_data(section)
    assert len(again.unlabelled) == 24 - 6 and not set(margin_rows) & set(again.unlabelled_rows.tolist())
    relabelled = pq.read_table(section["path"]).column("appliance").to_pylist()
    assert [relabelled[r] for r in margin_rows] == ["c2"] * 6
    assert [y for i, y in enumerate(relabelled) if i not in margin_rows] == [
        y for i, y in enumerate(labels) if i not in margin_rows]
