"""A throwaway PostgreSQL-backed MLflow server on 127.0.0.1, started with cluster/mlflow_server.sh: the cluster
tracking setup on one machine, for development and tests.

    python cluster/local_tracking.py start [--dir /tmp/emule-mlflow] [--timeout 180]   # prints the tracking URI
    python cluster/local_tracking.py stop [--dir ...]

Under ``--dir``: a PostgreSQL cluster of its own (``initdb``, ``pg_ctl``, a free port, connections from 127.0.0.1
only, trust auth - it is throwaway), the artifact folder, logs and ``tracking.json``. PostgreSQL refuses to run as
root, so as root its commands run as the ``postgres`` user (``runuser``). The MLflow server runs in a session of its
own (``setsid``); ``stop`` ends its process group, then stops PostgreSQL with ``pg_ctl stop``.
Needs PostgreSQL's server binaries (Debian: ``apt-get install postgresql``) and ``psycopg[binary]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from local_cluster import HOST, _free_ports  # a sibling script: cluster/ is on sys.path

DEFAULT_DIR = Path("/tmp/emule-mlflow")
STATE = "tracking.json"
RECIPE = Path(__file__).resolve().with_name("mlflow_server.sh")
DB_USER, DB_NAME = "emule", "mlflow"
# a fresh server's first start runs MLflow's schema migrations: over a minute on a busy 2-core machine
START_TIMEOUT_S = 180


@dataclass
class LocalTracking:
    root: str
    uri: str  # the tracking URI searches log to (http://127.0.0.1:PORT)
    db_uri: str  # the server's backend store (postgresql://...)
    artifacts: str
    pg_bin: str
    mlflow_pgid: int


def postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
                      if p.parts[-3].isdigit() else 0)
    return versions[-1].parent if versions else None


def start(root: Path = DEFAULT_DIR, timeout_s: float = START_TIMEOUT_S) -> LocalTracking:
    """Start PostgreSQL and an MLflow server on it under ``root``; return when ``/health`` answers."""
    root = Path(root).resolve()
    pg_bin = postgres_bin()
    if pg_bin is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
                                "/usr/lib/postgresql/*/bin; Debian: apt-get install postgresql")
    if (root / STATE).exists():
        raise RuntimeError(f"a tracking server is already set up under {root}; stop it first")
    for sub in ("pg", "pg/sock"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the postgres user must reach its folders
    if os.geteuid() == 0:
        ids = pwd.getpwnam("postgres")
        for path in (root / "pg", root / "pg" / "sock"):
            os.chown(path, ids.pw_uid, ids.pw_gid)
    data, sock, log = root / "pg" / "data", root / "pg" / "sock", root / "pg" / "postgres.log"
    pg_port, mlflow_port = _free_ports(2)
    _pg(pg_bin, "initdb", "-D", data, "-U", DB_USER, "--auth=trust", "--encoding=UTF8", "--no-sync",
        "--no-instructions")
    # throwaway settings: no fsync, few connections, small buffers
    options = (f"-p {pg_port} -k {sock} -c listen_addresses={HOST} -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=30 -c shared_buffers=32MB")
    _pg(pg_bin, "pg_ctl", "-D", data, "-l", log, "-w", "-t", str(int(timeout_s)), "-o", options, "start")
    try:
        _pg(pg_bin, "createdb", "-h", HOST, "-p", str(pg_port), "-U", DB_USER, DB_NAME)
        db_uri = f"postgresql+psycopg://{DB_USER}@{HOST}:{pg_port}/{DB_NAME}"
        artifacts = root / "artifacts"
        artifacts.mkdir(exist_ok=True)
        env = {**os.environ, "EMULE_MLFLOW_DB": db_uri, "EMULE_MLFLOW_ARTIFACTS": str(artifacts),
               "MLFLOW": _beside_python("mlflow")}
        with open(root / "mlflow.log", "ab") as out:
            server = subprocess.Popen(["bash", str(RECIPE), "--host", HOST, "--port", str(mlflow_port)], env=env,
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)  # setsid: its own process group, stopped as one
        tracking = LocalTracking(str(root), f"http://{HOST}:{mlflow_port}", db_uri, str(artifacts), str(pg_bin),
                                 server.pid)
        (root / STATE).write_text(json.dumps(asdict(tracking), indent=2))
        _wait_healthy(tracking, server, timeout_s)
    except BaseException:
        stop(root)
        raise
    return tracking


def _wait_healthy(tracking: LocalTracking, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = (Path(tracking.root) / "mlflow.log").read_text()[-2000:]
            raise RuntimeError(f"mlflow server exited with {server.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{tracking.uri}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {tracking.uri} did not answer /health within {timeout_s:.0f}s (its log: "
                       f"{Path(tracking.root) / 'mlflow.log'}; a slow machine may need a longer --timeout)")


def load(root: Path = DEFAULT_DIR) -> LocalTracking:
    path = Path(root).resolve() / STATE
    if not path.is_file():
        raise FileNotFoundError(f"no tracking server under {path.parent} (no {STATE}); start one first")
    return LocalTracking(**json.loads(path.read_text()))


def stop(root: Path = DEFAULT_DIR, grace_s: float = 10) -> None:
    """Stop the MLflow server's process group, then PostgreSQL; leaves the files."""
    root = Path(root).resolve()
    state = root / STATE
    if state.is_file():
        pgid = json.loads(state.read_text())["mlflow_pgid"]
        _killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.2)
        _killpg(pgid, signal.SIGKILL)
        state.unlink()
    data, pg_bin = root / "pg" / "data", postgres_bin()
    if (data / "postmaster.pid").exists() and pg_bin is not None:
        _pg(pg_bin, "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")


def _pg(pg_bin: Path, tool: str, *args) -> None:
    """Run a PostgreSQL tool, as the postgres user when this is root (the server refuses root)."""
    cmd = [str(Path(pg_bin) / tool), *map(str, args)]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the group."""
    try:
        os.waitpid(pgid, os.WNOHANG)  # reap the leader when it is our own child (started in this process)
    except ChildProcessError:
        pass
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


def _beside_python(tool: str) -> str:
    beside = Path(sys.executable).with_name(tool)
    return str(beside) if beside.exists() else tool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A throwaway PostgreSQL-backed MLflow server on 127.0.0.1.")
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"its folder (default {DEFAULT_DIR})")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT_S, metavar="SECONDS",
                        help=f"how long start waits for PostgreSQL and the MLflow server (default {START_TIMEOUT_S})")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if args.command == "start":
        t0 = time.monotonic()
        t = start(args.dir, args.timeout)
        print(f"MLflow on PostgreSQL up in {time.monotonic() - t0:.0f}s: {t.uri} (store {t.db_uri}, artifacts "
              f"{t.artifacts})")
        print(f"  emule search SPEC  with  tracking: {{uri: {t.uri}}}   |   mlflow ui: open {t.uri}")
        print(f"stop with: python {sys.argv[0]} stop --dir {t.root}")
    else:
        stop(args.dir)
        print(f"stopped the tracking server under {args.dir.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
