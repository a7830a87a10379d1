"""Security: credentials never reach the record, local Ray serves no dashboard, weights and YAML load safely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from servers import ENV, MlflowServer, free_port

from search.driver.checks import load_spec
from search.record.tracking import redact
from search.spec.schema import SpecError

SECRET = "s3cret-Tok3n"


def test_redact_hides_passwords_in_uris():
    text = f"postgresql://emule:{SECRET}@db:5432/mlflow and http://u:{SECRET}@h:5000 and sqlite:////tmp/a.db"
    out = redact(text)
    assert SECRET not in out
    assert "postgresql://emule:***@db:5432/mlflow" in out and "sqlite:////tmp/a.db" in out


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(evil)
    assert not (tmp_path / "pwned").exists()


def test_weights_load_refuses_pickled_code(tmp_path):
    from search.trial.candidate import load_weights

    path = tmp_path / "evil.pt"
    torch.save({"candidate": {}, "state_dict": {}, "payload": Path("x")}, path)  # an object, not just tensors
    with pytest.raises(Exception, match="[Ww]eights only|weights_only"):
        load_weights(path)


@pytest.mark.slow
def test_local_ray_starts_no_dashboard():
    code = ("import ray; from search.driver.ray_session import init_ray; init_ray(None, 1); "
            "info = ray._private.worker.global_worker.node.address_info; "
            "print('DASHBOARD', info.get('webui_url') or ''); ray.shutdown()")
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("DASHBOARD")]
    assert line.strip() == "DASHBOARD"


@pytest.mark.slow
def test_credentials_in_tracking_uri_never_logged(tmp_path):
    """A search against a real MLflow server with credentials in its URI: the secret appears in no param, tag,
    metric name, artifact, exported config or line of output."""
    port = free_port()
    server = MlflowServer(tmp_path, port)
    server.start()
    try:
        uri = f"http://emule:{SECRET}@127.0.0.1:{port}"
        spec = tmp_path / "secret.yaml"
        spec.write_text(yaml.safe_dump({
            "name": "secret", "data": {"name": "osuleaf", "cv_folds": "holdout"},
            "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
            "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                           {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
            "space": {"attention": ["softmax", "linear"], "width": 16, "heads": 1, "depth": 1},
            "training": {"epochs": 1},
            "search": {"sampler": "random", "trials": 2, "concurrency": 1, "storage": str(tmp_path / "runs")},
            "tracking": {"uri": uri, "experiment": "secret"},
        }))
        cli = [sys.executable, "-m", "search.cli"]
        search = subprocess.run([*cli, "search", str(spec), "--name", "secret-1"], cwd=tmp_path, env=ENV,
                                capture_output=True, text=True, timeout=600)
        assert search.returncode == 0, search.stdout + search.stderr
        export = subprocess.run([*cli, "export", "secret-1", "--out", str(tmp_path / "ex"), "--tracking-uri", uri,
                                 "--experiment", "secret"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                                timeout=300)
        assert export.returncode == 0, export.stdout + export.stderr
        seen = [search.stdout, search.stderr, export.stdout, export.stderr]
        seen += [p.read_text() for p in (tmp_path / "ex").glob("*.yaml")]

        from search.record.tracking import Tracker

        tracker = Tracker(uri, "secret")
        runs = tracker.runs("")
        assert len(runs) == 3  # parent + 2 candidates
        for run in runs:
            seen += [str(run.data.params), str(run.data.tags), str(list(run.data.metrics))]
            folder = Path(tracker.download_artifact(run.info.run_id, "", str(tmp_path / run.info.run_id)))
            for path in folder.rglob("*"):
                if path.suffix == ".parquet":
                    seen.append(str(pq.read_table(path).to_pylist()))
                elif path.is_file() and path.suffix != ".png":
                    seen.append(path.read_text())
        assert any("spec.yaml" in s or "emule" in s for s in seen)
        leaks = [s[:200] for s in seen if SECRET in s]
        assert not leaks
    finally:
        server.stop()
