"""Shared fixtures: one real local Ray instance per test session (2 CPUs), shut down at the end; a real S3 API."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
if "EMULE_CACHE_DIR" not in os.environ:  # the parsed built-in datasets: shared by this process's searches, subprocesses
    # and Ray workers (they inherit the variable), kept out of the user's own cache, removed at the end
    os.environ["EMULE_CACHE_DIR"] = tempfile.mkdtemp(prefix="emule-test-cache-")
    atexit.register(shutil.rmtree, os.environ["EMULE_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def ray_local():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3 API on 127.0.0.1 (moto's server mode), this process's AWS clients pointed at it."""
    from servers import S3Server

    server = S3Server()
    server.start()
    server.use(monkeypatch)
    yield server
    server.stop()
