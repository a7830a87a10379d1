"""search.spec.storage and the spec's storage setting: local folders made absolute, URIs kept, files through
pyarrow.fs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from search.driver.checks import parse_spec
from search.spec import storage


@pytest.mark.parametrize("value, uri", [("s3://b/x", True), ("gs://b", True), ("file:///tmp/x", True),
                                        ("hdfs://nn:8020/x", True), ("emule_runs", False), ("/shared/runs", False),
                                        ("~/runs", False), ("C:/x", False)])
def test_is_uri(value, uri):
    assert storage.is_uri(value) is uri


def test_absolute_keeps_uris_and_resolves_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.absolute("s3://bucket/runs/") == "s3://bucket/runs"
    assert storage.absolute("runs") == str(tmp_path / "runs")
    assert storage.join("s3://bucket/runs", "a", "b.json") == "s3://bucket/runs/a/b.json"
    assert storage.join(str(tmp_path), "a") == str(tmp_path / "a")


@pytest.mark.parametrize("as_uri", [False, True])
def test_write_then_read(tmp_path, as_uri):
    base = f"file://{tmp_path}" if as_uri else str(tmp_path)
    target = storage.join(base, "deep", "er", "state.json")
    storage.write_text(target, '{"a": 1}')
    assert (tmp_path / "deep" / "er" / "state.json").read_text() == '{"a": 1}'
    assert storage.read_text(target) == '{"a": 1}'


def test_unknown_scheme_names_the_field():
    with pytest.raises(ValueError, match=r"^search.storage: cannot open 'nope://x/y'"):
        storage.write_text("nope://x/y", "")


def test_spec_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = {"name": "s", "data": {"name": "osuleaf"},
           "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
           "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
           "space": {"depth": 1, "width": 16, "heads": 1}}
    local = parse_spec({**raw, "search": {"storage": "runs", "gpus_per_trial": 0.5}})
    assert local.storage_path() == tmp_path / "runs" and local.storage_uri() == str(tmp_path / "runs")
    assert local.search.gpus_per_trial == 0.5
    remote = parse_spec({**raw, "search": {"storage": "s3://bucket/runs"}})
    assert remote.storage_uri() == "s3://bucket/runs"
    with pytest.raises(ValueError, match="is a URI"):
        remote.storage_path()
    assert parse_spec(raw).search.gpus_per_trial == 0
    assert Path(parse_spec(raw).storage_uri()).is_absolute()


def test_a_sqlite_stores_artifacts_sit_beside_its_database(tmp_path, monkeypatch):
    from search.record.tracking import Tracker

    monkeypatch.chdir(tmp_path)
    (tmp_path / "store").mkdir()
    tracker = Tracker(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", "beside")
    tracker.start_search("s", {"a": 1}, "name: s\n")  # logs spec.yaml as an artifact
    assert list((tmp_path / "store" / "mlruns").rglob("spec.yaml"))
    assert not (tmp_path / "mlruns").exists()  # not under the folder the process happens to run in


def test_files_on_a_real_s3_api(s3_server):
    base = s3_server.uri("runs")
    assert storage.entries(base) == [] and storage.modified(storage.join(base, "a.json")) is None
    storage.write_text(storage.join(base, "one", "a.json"), '{"a": 1}')
    storage.write_text(storage.join(base, "two.json"), "{}")
    assert storage.read_text(storage.join(base, "one", "a.json")) == '{"a": 1}'
    assert storage.entries(base) == ["one", "two.json"]
    assert storage.modified(storage.join(base, "two.json")) > 0
    assert storage.modified(storage.join(base, "one")) is None  # a folder is not a file


@pytest.mark.parametrize("on_s3", [False, True])
def test_find_experiment_by_name_or_newest_of_its_spec(tmp_path, request, on_s3):
    from search.driver.resume import find_experiment
    from search.driver.runner import SESSION_FILE

    root = request.getfixturevalue("s3_server").uri("runs") if on_s3 else str(tmp_path / "runs")
    for name in ["demo-1", "demo-2", "other-1"]:
        storage.write_text(storage.join(root, name, SESSION_FILE), "{}")
        time.sleep(1.1)  # S3 keeps modification times to the second
    storage.write_text(storage.join(root, "demo-3", "tuner.pkl"), "")  # no session file: not a search
    assert find_experiment("demo-1", root) == storage.join(root, "demo-1")
    assert find_experiment("demo", root) == storage.join(root, "demo-2")
    with pytest.raises(LookupError, match=r"^search: no search named 'nope' under .*--storage"):
        find_experiment("nope", root)


@pytest.mark.parametrize("cut", [None, "experiment_state-2026-01-01_00-00-02.json",
                                 "searcher-state-2026-01-01_00-00-02.pkl", "search_gen_state-2026-01-01_00-00-02.json",
                                 "callback-states-2026-01-01_00-00-02.pkl"])
def test_tune_state_reads_back_only_when_every_part_does(tmp_path, cut):
    """A kill while Tune copies its state to the storage path can cut any part of it (found cutting the searcher's
    pickle): the newest of each kind must read back whole, older sessions' files do not count."""
    import json
    import pickle

    from search.driver.resume import tune_state_readable

    (tmp_path / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    for session in ["2026-01-01_00-00-01", "2026-01-01_00-00-02"]:
        (tmp_path / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": []}))
        for part in ["searcher-state", "search_gen_state", "callback-states"]:
            suffix = "json" if part == "search_gen_state" else "pkl"
            (tmp_path / f"{part}-{session}.{suffix}").write_bytes(pickle.dumps({"state": list(range(100))}))
    (tmp_path / "searcher-state-2026-01-01_00-00-01.pkl").write_bytes(b"")  # an older session's: not read
    if cut is not None:
        whole = (tmp_path / cut).read_bytes()
        (tmp_path / cut).write_bytes(whole[: len(whole) // 2])
    assert tune_state_readable(str(tmp_path)) is (cut is None)
    (tmp_path / "tuner.pkl").unlink()
    assert not tune_state_readable(str(tmp_path))  # Tune saved nothing yet
