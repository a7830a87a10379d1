"""Real servers for tests, each in its own process group and stopped by it, and a read-only peek into a
running search's SQLite store."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
       "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` (one worker, job execution off) on a sqlite store, in its own process group.
    ``backend``: an existing store to serve (its runs' artifacts are read where they lie), as `mlflow ui` does."""

    def __init__(self, folder: Path, port: int, backend: str | None = None):
        self.folder, self.port, self.proc, self.backend = folder, port, None, backend

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1", "--backend-store-uri", self.backend or f"sqlite:///{self.folder / 'server.db'}",
               "--artifacts-destination", str(self.folder / "artifacts")]
        self.proc = subprocess.Popen(cmd, cwd=self.folder, env=ENV, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("mlflow server did not answer /health within 90 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class S3Server:
    """A real S3 API (moto's server mode) on 127.0.0.1 with one empty bucket. ``env`` points AWS clients at it -
    pyarrow's, and so Ray Tune's, in this process (``use``) or in a driver started with it."""

    def __init__(self, bucket: str = "emule"):
        self.bucket, self.port, self.server = bucket, free_port(), None
        self.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}", "AWS_ACCESS_KEY_ID": "test",
                    "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}

    def start(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        # moto keeps its buckets per process, across servers: each test starts from an empty store
        urllib.request.urlopen(urllib.request.Request(f"{self.env['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"))
        boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=self.bucket)

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def use(self, monkeypatch) -> None:
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def epochs_logged(db: Path) -> int:
    """Per-epoch validation results in an MLflow SQLite store so far (read-only peek while a driver writes)."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
        try:
            return con.execute("select count(*) from metrics where key = 'val_accuracy'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
