"""A finished search reopens from MLflow alone (search.record.searches.load_search): from any folder, after its data
moved, and for searches recorded before their spec's paths were resolved. Only what trains reads the data, and a missing
file is one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_runner import cli
from waves import waves_spec, write_waves

from search.driver.checks import load_spec
from search.record.datasets import DatasetRecord
from search.record.searches import load_search, recorded_spec, spec_yaml
from search.record.tracking import Tracker

OLD_SPEC = """name: old
data: {path: data/leaves.parquet, label: species, columns: {outline: series}}
objectives:
  - {metric: val_accuracy, mode: max, reference: 0.0}
  - {metric: param_count, mode: min, reference: 1.0e+6, log: true}
space: {width: [16]}
"""


def old_search(t: Tracker, name: str, dataset_uri: str | None, cv_folds: str | None) -> str:
    """A search as versions before resolved paths recorded it: the spec file's text, ``data.path`` relative to a
    folder the record does not name; maybe a dataset input (resolved), maybe no validation scheme."""
    parent = t.start_search(name, {} if cv_folds is None else {"data.cv_folds": cv_folds}, OLD_SPEC)
    if dataset_uri is not None:
        t.log_dataset([parent], DatasetRecord("leaves.parquet", "0" * 12, "local",
                                              {"uri": dataset_uri, "format": "parquet"},
                                              (("outline", "float32", (-1, 1, 8)), ("label", "int64", (-1,))),
                                              {"train": 30, "val": 6, "test": 10}))
    run = t.start_candidate(parent, "a", "a", {"width": 16})
    t.log_metrics(run, {"val_accuracy": 0.8, "param_count": 700.0}, step=1)
    t.finish_candidate(run, "FINISHED", {"budget_done": "true"})
    return parent


def test_an_old_search_reopens_without_its_data(tmp_path, monkeypatch):
    t = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    old_search(t, "old-1", "/projects/leaves/data/leaves.parquet", "5")
    old_search(t, "old-2", None, None)
    monkeypatch.chdir(tmp_path)  # no data anywhere: the record alone is read
    one = load_search(t, "old-1")
    assert one.spec.data.path == "/projects/leaves/data/leaves.parquet"  # from the recorded dataset input
    assert one.spec.data.cv_folds == 5 and one.pool_rows() == 36
    assert [r.trial_id for r in one.front.members] == ["a"]
    two = load_search(t, "old-2")
    assert two.spec.data.path == str(tmp_path / "data" / "leaves.parquet")  # as before: the working directory
    assert two.spec.data.cv_folds == "holdout" and two.pool_rows() is None  # before cross-validation


def test_the_recorded_spec_reads_back_as_it_ran(tmp_path):
    write_waves(tmp_path / "waves.parquet")
    spec = load_spec(waves_spec(tmp_path, None, tmp_path / "runs"))
    text = spec_yaml(spec)
    assert yaml.safe_load(text)["data"]["path"] == str(tmp_path / "waves.parquet")
    assert recorded_spec(yaml.safe_load(text)) == spec


@pytest.mark.slow
def test_a_search_on_parquet_reopens_from_anywhere_and_after_its_data_moved(ray_local, tmp_path, monkeypatch):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    write_waves(project / "waves.parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    waves_spec(project, uri, tmp_path / "runs")
    monkeypatch.chdir(project)
    code, out, err = cli("search", "waves.yaml", "--name", "waves-1", "--quiet")  # the path relative to the spec
    assert code == 0, err
    store = ["--tracking-uri", uri, "--experiment", "waves"]
    assert f"next: emule pareto waves-1 {' '.join(store)}   |   " in out  # the hint names the spec's own store
    assert f"MLflow store: {uri}\n" in out
    tracker = Tracker(uri, "waves")
    parent = tracker.find_search("waves-1")
    data = project / "waves.parquet"
    assert yaml.safe_load(tracker.spec_text(parent))["data"]["path"] == str(data)
    source = tracker.download_artifact(parent, "spec.source.yaml", tmp_path / "dl").read_text()
    assert source.startswith("# waves, as a user writes them") and "path: waves.parquet" in source

    monkeypatch.chdir(elsewhere)

    def reopen() -> Path:
        code, out, err = cli("pareto", "waves-1", *store)
        assert code == 0 and out.startswith("search waves-1: 1 on the Pareto front"), err
        code, out, err = cli("export", "waves-1", *store, "--out", "exports")
        assert code == 0, err
        [path] = out.split()
        return Path(path)

    exported = reopen()
    doc = yaml.safe_load(exported.read_text())
    assert doc["data"]["path"] == str(data)
    assert doc["source"]["fit"].startswith("refit on the 36 training rows (train + validation")

    data.rename(tmp_path / "moved.parquet")
    assert reopen() == exported  # the results are in MLflow: reading them needs no data
    results = "the search's results are still readable from MLflow (emule pareto waves-1, emule export waves-1)"
    code, _, err = cli("train", str(exported))
    assert code == 2 and err.splitlines() == [
        f"emule train: data.path: '{data}' does not exist - search waves-1 read its data there; to train, put the "
        f"data back there, or set data.path in {exported} to where it is now; {results}"]
    code, _, err = cli("distill", "waves-1", *store)  # its teacher would train on that data
    assert code == 2 and err.splitlines() == [
        f"emule distill: data.path: '{data}' does not exist - search waves-1 read its data there; to train, put the "
        f"data back there; {results}"]
