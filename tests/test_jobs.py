"""search.delivery.jobs without a cluster: what `emule submit` checks, ships and runs. The real submission runs in
tests/test_cluster.py."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from search.cli import main
from search.delivery import jobs
from search.driver.checks import load_spec
from search.spec.schema import SpecError


def write_spec(tmp: Path, **changes) -> Path:
    raw = {
        "name": "jobs",
        "data": {"name": "osuleaf"},
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": 1, "width": [16, 32], "heads": 1,
                  "lr": {"low": 1e-3, "high": 3e-3, "log": True}},
        "training": {"epochs": 1},
        "search": {"trials": 2, "storage": "s3://bucket/runs"},
        "tracking": {"uri": "http://mlflow:5000"},
    }
    for section, values in changes.items():
        raw[section] = values if section == "data" else {**raw[section], **values}  # data: replaced whole
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(autouse=True)
def no_env_uri(monkeypatch):
    monkeypatch.delenv("EMULE_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key in jobs.ADDRESS_ENV:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("uri", [None, "sqlite:///mlflow.db", "mlruns", "file:mlruns"])
def test_tracking_that_would_stay_in_the_job_folder_is_refused(tmp_path, uri):
    path = write_spec(tmp_path, tracking={"uri": uri})
    with pytest.raises(SpecError, match=r"^tracking.uri: .*(null|relative).*temporary folder.*--tracking-uri"):
        jobs.prepare(path)


@pytest.mark.parametrize("uri", ["http://mlflow:5000", "https://x.example/mlflow", "sqlite:////shared/mlflow.db",
                                 "postgresql://u@db/mlflow", "databricks"])
def test_reachable_tracking_is_accepted(uri):
    jobs.check_tracking_uri(uri)


def test_relative_storage_is_refused_and_overrides_apply(tmp_path, monkeypatch):
    path = write_spec(tmp_path, search={"storage": "emule_runs"})
    with pytest.raises(SpecError, match=r"^search.storage: 'emule_runs' is relative.*s3://.*--storage"):
        jobs.prepare(path)
    monkeypatch.setenv("EMULE_TRACKING_URI", "http://from-env:5000")
    path = write_spec(tmp_path, search={"storage": "emule_runs"}, tracking={"uri": None})
    spec, raw, name = jobs.prepare(path, storage="/shared/runs", name="given")
    assert raw["search"]["storage"] == "/shared/runs" and name == "given"
    assert raw["tracking"]["uri"] == "http://from-env:5000"  # the job has no EMULE_TRACKING_URI of its own
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow-env:5000")  # MLflow's own variable comes first
    assert jobs.prepare(path, storage="/shared/runs")[1]["tracking"]["uri"] == "http://mlflow-env:5000"
    _, raw, name = jobs.prepare(path, storage="gs://b/r", tracking_uri="http://other:5000")
    assert raw["tracking"]["uri"] == "http://other:5000" and name.startswith("jobs-")


def test_stage_ships_the_code_the_spec_and_its_warm_starts(tmp_path):
    cand = tmp_path / "knee.yaml"
    cand.write_text(yaml.safe_dump({"model": {"width": 32, "depth": 1, "heads": 1, "attention": "linear"},
                                    "training": {"lr": 2e-3}, "data": {}}))
    path = write_spec(tmp_path, search={"warm_start": ["knee.yaml"]})  # relative to the spec's folder
    spec, raw, _ = jobs.prepare(path)
    out = tmp_path / "stage"
    out.mkdir()
    jobs.stage(spec, raw, out)
    for pkg in jobs.PACKAGES:
        assert (out / pkg / "__init__.py").is_file()
        assert not list((out / pkg).rglob("__pycache__"))
    shipped = load_spec(out / jobs.SPEC_NAME)  # valid where it lands, warm start included
    assert [Path(p).parent for p in shipped.search.warm_start] == [out / "warm_start"]
    assert shipped.search.storage == "s3://bucket/runs"


def test_stage_ships_user_data_and_refuses_too_much(tmp_path, monkeypatch):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 60
    pq.write_table(pa.table({"y": [f"c{i % 3}" for i in range(n)],
                             "split": ["train"] * 36 + ["val"] * 12 + ["test"] * 12,
                             "x": pa.array(rng.normal(size=(n, 32)).astype(np.float32).tolist(),
                                           type=pa.list_(pa.float32()))}), tmp_path / "mine.parquet")
    path = write_spec(tmp_path, data={"path": "mine.parquet", "label": "y", "split": "split",
                                      "columns": {"x": "series"}})
    spec, raw, _ = jobs.prepare(path)
    out = tmp_path / "stage"
    out.mkdir()
    jobs.stage(spec, raw, out)
    assert raw["data"]["path"] == "data/mine.parquet" and (out / "data" / "mine.parquet").is_file()
    assert load_spec(out / jobs.SPEC_NAME).data.path == str(out / "data" / "mine.parquet")
    monkeypatch.setattr(jobs, "DATA_LIMIT_MIB", 0)
    spec, raw, _ = jobs.prepare(path)
    with pytest.raises(SpecError, match=r"^data.path: .*mine.parquet' holds 0 MiB; a submitted search ships"):
        jobs.stage(spec, raw, tmp_path / "stage2")


def test_entrypoint_attaches_to_the_jobs_cluster():
    argv = shlex.split(jobs.entrypoint("my search; rm -rf /"))
    assert argv[:5] == ["python", "-m", "search.cli", "search", jobs.SPEC_NAME]
    assert argv[argv.index("--name") + 1] == "my search; rm -rf /"  # quoted, never run by the shell
    assert argv[argv.index("--address") + 1] == "auto"  # RAY_ADDRESS, set by Ray for the job's driver


def test_address_comes_from_flag_or_environment(monkeypatch):
    with pytest.raises(ValueError, match=r"^--address: missing"):
        jobs.address_or_env(None)
    monkeypatch.setenv("RAY_ADDRESS", "http://b:8265")
    assert jobs.address_or_env(None) == "http://b:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://a:8265")
    assert jobs.address_or_env(None) == "http://a:8265"
    assert jobs.address_or_env("http://c:8265") == "http://c:8265"


def test_cli_refuses_before_touching_a_cluster(tmp_path, capsys):
    path = write_spec(tmp_path, search={"storage": "runs"})
    assert main(["submit", str(path), "--address", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emule submit: search.storage: 'runs' is relative") and "\n" not in err
    assert main(["submit", str(write_spec(tmp_path)), "--env", "NOEQUALS", "--address", "http://127.0.0.1:9"]) == 2
    assert "--env: 'NOEQUALS' - accepted: KEY=VALUE" in capsys.readouterr().err
    assert main(["status", "x", "--address", "http://127.0.0.1:9"]) == 2  # nothing listens there
    assert "cannot reach the Ray Jobs API at 'http://127.0.0.1:9'" in capsys.readouterr().err
