"""A tiny search logged to a real MLflow server on a real PostgreSQL, both started by cluster/local_tracking.py
(the cluster tracking recipe, cluster/mlflow_server.sh, on one machine) and stopped at the end."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import cluster_scripts
import pytest

from search.driver.checks import parse_spec
from search.driver.runner import run_search
from search.record.searches import load_search
from search.record.tracking import PARENT_TAG, Tracker

pytestmark = pytest.mark.slow

TRIALS = 4


local_tracking = cluster_scripts.load("local_tracking")


@pytest.fixture(scope="module")
def server():
    if local_tracking.postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed; Debian: apt-get install postgresql")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root, and `runuser` (util-linux) is missing to run PostgreSQL as the postgres user")
    root = Path(tempfile.mkdtemp(prefix="emule-mlf-"))
    try:
        # its default readiness wait (a wait, not a timing) covers a fresh server's schema migrations on 2 busy cores
        yield local_tracking.start(root)
    finally:
        local_tracking.stop(root)
        shutil.rmtree(root, ignore_errors=True)


def test_search_logs_to_a_postgres_backed_server(server, ray_local, tmp_path):
    spec = parse_spec({
        "name": "pg-tiny",
        "data": {"name": "osuleaf"},
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": 1, "width": [16, 32], "heads": 1,
                  "patch_len": [16, 32], "data_fraction": {"low": 0.3, "high": 0.6}},
        "training": {"epochs": 2, "batch_size": 32},
        "search": {"sampler": "random", "trials": TRIALS, "concurrency": 2, "seed": 2,
                   "storage": str(tmp_path / "runs")},
        "tracking": {"uri": server.uri, "experiment": "pg"},
    })
    result = run_search(spec, name="pg-run", out=io.StringIO())
    assert result.status == "complete" and result.finished == TRIALS

    tracker = Tracker(server.uri, "pg")
    runs = tracker.runs(f"tags.`{PARENT_TAG}` = '{result.parent_run_id}'")
    assert len(runs) == TRIALS and all(r.info.status == "FINISHED" for r in runs)
    assert all({"val_accuracy", "param_count", "test_accuracy"} <= set(r.data.metrics) for r in runs)
    record = load_search(tracker, "pg-run")  # the front read back through the server
    assert {r.run_id for r in record.front.members} == {r.run_id for r in result.front.members}

    # the runs are rows in PostgreSQL, the artifacts files in the server's artifact folder
    import psycopg

    with psycopg.connect(server.db_uri.replace("postgresql+psycopg://", "postgresql://")) as db:
        (count,) = db.execute("SELECT count(*) FROM runs WHERE experiment_id = %s",
                              (int(tracker.experiment_id),)).fetchone()
    assert count == TRIALS + 1  # the candidates and the search's parent run
    stored = {p.name for p in Path(server.artifacts).rglob("*") if p.is_file()}
    assert {"spec.yaml", "pareto.parquet", "pareto.png", "candidate.json"} <= stored
