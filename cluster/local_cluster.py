"""Start and stop a local multi-node Ray cluster on 127.0.0.1: a head and N worker nodes, token auth on.

For development and tests: it behaves like a real cluster (separate raylets, object stores and node ids, the
dashboard serving the Jobs API) on one machine. Worker nodes can declare GPUs they do not have (``--gpus``) and
custom resources (``--resources``): Ray schedules on declared resources only, so this simulates a GPU cluster's
scheduling (which trial gets which GPU id on which node), not its CUDA.

    python cluster/local_cluster.py start [--workers 2] [--cpus 1] [--head-cpus 1] [--gpus 0] [--resources JSON]
                                          [--dir /tmp/emule-ray]
    python cluster/local_cluster.py status [--dir ...]
    python cluster/local_cluster.py stop [--dir ...]

Everything the cluster owns lives under ``--dir``: one Ray temp dir per node, a throwaway auth token and
``cluster.json`` (addresses and the environment a client needs). ``stop`` ends exactly this cluster's processes
(marked by ``EMULE_LOCAL_CLUSTER=<folder>`` in their environment), by PID: raylets first (they take their workers
with them), then the other daemons, the GCS last. It never runs ``ray stop``, which kills every Ray process on the
machine by name. Needs ``ray[default]`` (the dashboard serves the Jobs API).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_DIR = Path("/tmp/emule-ray")
STATE = "cluster.json"
MARKER = "EMULE_LOCAL_CLUSTER"  # in the environment of every process of a cluster: its folder
# Per node, so two nodes on one machine never fight over a default port (dashboard agent, metrics, ...).
NODE_PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                   "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
OBJECT_STORE_BYTES = 256 * 1024**2  # plenty for the built-in datasets; Ray's default is 30% of RAM per node


@dataclass
class LocalCluster:
    root: str
    gcs_address: str  # HOST:PORT, what `ray start --address` and `ray.init(address=...)` take
    dashboard_url: str  # http://HOST:PORT, what the Jobs API (`emule submit --address`) takes
    env: dict[str, str]  # what every Ray client of this cluster needs in its environment (token auth)
    nodes: int

    def node_ids(self) -> list[str]:
        """Ids of the nodes alive now (from the dashboard)."""
        return [n["node_id"] for n in _nodes(self) if n.get("state") == "ALIVE"]

    def client_env(self) -> dict[str, str]:
        """os.environ plus this cluster's auth settings, without a RAY_ADDRESS that would point elsewhere."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(self.env)
        return env


def start(root: Path = DEFAULT_DIR, workers: int = 2, cpus: float = 1, head_cpus: float | None = None,
          timeout_s: float = 90, gpus: float = 0, resources: dict[str, float] | None = None,
          worker_ports: int = 32) -> LocalCluster:
    """Start a head and ``workers`` worker nodes under ``root``, wait until all nodes are alive.

    Args:
        cpus: CPUs each worker node offers.
        head_cpus: CPUs the head offers (default ``cpus``); 0 keeps trials off the head, so it runs only drivers.
        gpus: GPUs each worker node declares (the head declares none); nothing checks that they exist.
        resources: custom resources each worker node declares, e.g. ``{"slot": 32}``.
        worker_ports: ports each node keeps for its worker processes, one per process: at least the actors (trials)
            a node runs at once, plus a few.
    """
    if gpus < 0:
        raise ValueError(f"gpus: {gpus} is negative; accepted: a number of GPUs per worker node >= 0")
    for key, value in (resources or {}).items():
        if not isinstance(value, (int, float)) or value < 0 or key in ("CPU", "GPU", "memory"):
            raise ValueError(f"resources: {key}={value!r} not accepted; accepted: a custom name (not CPU, GPU or "
                             "memory) with a quantity >= 0")
    root = Path(root).resolve()
    if _pids_under(root):
        raise RuntimeError(f"a cluster is already running under {root}; stop it first")
    root.mkdir(parents=True, exist_ok=True)
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    gcs_port, dashboard_port, client_port = _free_ports(3)
    cluster = LocalCluster(str(root), f"{HOST}:{gcs_port}", f"http://{HOST}:{dashboard_port}", env, 1 + workers)
    head = ["--head", f"--port={gcs_port}", "--include-dashboard=true", f"--dashboard-host={HOST}",
            f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={client_port}",
            f"--num-cpus={cpus if head_cpus is None else head_cpus}", "--num-gpus=0"]
    worker = [f"--address={cluster.gcs_address}", f"--num-cpus={cpus}", f"--num-gpus={gpus:g}"]
    if resources:
        worker.append(f"--resources={json.dumps(resources)}")
    try:
        _ray_start(cluster, root / "h", head, worker_ports)
        for i in range(1, workers + 1):
            _ray_start(cluster, root / f"w{i}", worker, worker_ports)
        _wait_for_nodes(cluster, timeout_s)
    except BaseException:
        stop(root)
        raise
    (root / STATE).write_text(json.dumps(asdict(cluster), indent=2))
    return cluster


def _ray_start(cluster: LocalCluster, temp_dir: Path, args: list[str], worker_ports: int = 32) -> None:
    ports = [f"{flag}={port}" for flag, port in zip(NODE_PORT_FLAGS, _free_ports(len(NODE_PORT_FLAGS)))]
    lo, hi = _free_port_range(worker_ports)
    cmd = [_ray_cli(), "start", *args, f"--node-ip-address={HOST}", f"--temp-dir={temp_dir}",
           f"--object-store-memory={OBJECT_STORE_BYTES}", f"--min-worker-port={lo}", f"--max-worker-port={hi}",
           "--disable-usage-stats", *ports]
    # the marker lets `stop` find every process of this cluster; PATH puts this Python first for job drivers
    env = {**cluster.client_env(), MARKER: cluster.root,
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"`ray start` for {temp_dir.name} failed ({done.returncode}):\n{done.stdout}\n"
                           f"{done.stderr}")


def _wait_for_nodes(cluster: LocalCluster, timeout_s: float) -> None:
    """Poll the dashboard until it lists every node alive (the Jobs API is up then, too)."""
    deadline, alive, last = time.monotonic() + timeout_s, 0, ""
    while time.monotonic() < deadline:
        try:
            alive = len(cluster.node_ids())
            if alive >= cluster.nodes:
                return
        except (OSError, ValueError, KeyError) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(1)
    raise TimeoutError(f"{alive}/{cluster.nodes} nodes alive after {timeout_s:.0f}s at {cluster.dashboard_url} "
                       f"{last}".strip())


def _nodes(cluster: LocalCluster) -> list[dict]:
    """The dashboard's node table (the state API), with this cluster's token."""
    import urllib.request

    token = Path(cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    req = urllib.request.Request(f"{cluster.dashboard_url}/api/v0/nodes?limit=100",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)["data"]["result"]["result"]


def load(root: Path = DEFAULT_DIR) -> LocalCluster:
    """The cluster started under ``root`` (from its ``cluster.json``)."""
    path = Path(root).resolve() / STATE
    if not path.is_file():
        raise FileNotFoundError(f"no local cluster under {path.parent} (no {STATE}); start one first")
    return LocalCluster(**json.loads(path.read_text()))


def stop(root: Path = DEFAULT_DIR, grace_s: float = 10) -> list[int]:
    """End every process of the cluster under ``root``, by PID: raylets, then the rest, the GCS last.
    Returns the PIDs that were signalled."""
    root = Path(root).resolve()
    signalled: list[int] = []
    for stage in ("raylet", "other", "gcs_server"):
        pids = [pid for pid, kind in _pids_under(root).items() if kind == stage]
        _terminate(pids, grace_s)
        signalled += pids
    leftover = list(_pids_under(root))  # workers a raylet spawned after its stage, drivers of running jobs
    _terminate(leftover, grace_s)
    (root / STATE).unlink(missing_ok=True)
    return signalled + leftover


def _terminate(pids: list[int], grace_s: float) -> None:
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _pids_under(root: Path) -> dict[int, str]:
    """PID -> kind (raylet, gcs_server, other) of this cluster's processes: those with ``MARKER=root`` in their
    environment (`ray start` gets it; every daemon, worker and job driver inherits it; clients do not) and their
    descendants. Nothing else: not a shell whose folder or a `tail` whose argument lies under ``root``, nor this
    process and its ancestors."""
    marker = f"{MARKER}={root}".encode()
    spare = _ancestors()
    found: dict[int, str] = {}
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spare:
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z":
                continue
            children.setdefault(int(stat[1]), []).append(pid)
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            names[pid] = Path(argv0).name
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found[pid] = names[pid]
        except (OSError, IndexError):  # gone, or not ours to read
            continue
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and child not in spare:
                found[child] = names.get(child, "")
                todo.append(child)
    return {pid: name if name in ("raylet", "gcs_server") else "other" for pid, name in found.items()}


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def _zombie(entry: Path) -> bool:
    try:
        return (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _zombie(Path(f"/proc/{pid}"))


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_port_range(width: int) -> tuple[int, int]:
    """A run of ``width`` consecutive free ports for a node's workers (Ray's default range is shared by all nodes
    on a machine)."""
    rng = secrets.SystemRandom()
    for _ in range(200):
        lo = rng.randrange(20000, 30000)
        try:
            socks = []
            for port in range(lo, lo + width):
                s = socket.socket()
                socks.append(s)
                s.bind((HOST, port))
            return lo, lo + width - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {width} consecutive free ports between 20000 and 30000")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local multi-node Ray cluster on 127.0.0.1 (token auth).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start", help="start a head and worker nodes")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cpus", type=float, default=1, help="CPUs per worker node")
    p.add_argument("--head-cpus", type=float, default=None, help="CPUs of the head (default --cpus; 0: drivers only)")
    p.add_argument("--gpus", type=float, default=0, help="GPUs each worker node declares (need not exist)")
    p.add_argument("--resources", type=json.loads, default=None, help='custom resources per worker node, as JSON: '
                   '\'{"slot": 32}\'')
    for name in ("start", "status", "stop"):
        q = p if name == "start" else sub.add_parser(name, help=f"{name} the cluster under --dir")
        q.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"the cluster's folder (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    if args.command == "start":
        t0 = time.monotonic()
        c = start(args.dir, args.workers, args.cpus, args.head_cpus, gpus=args.gpus, resources=args.resources)
        print(f"{c.nodes} nodes up in {time.monotonic() - t0:.0f}s; GCS {c.gcs_address}, dashboard {c.dashboard_url}")
        print("for clients of this cluster:")
        print("  export " + " ".join(f"{k}={v}" for k, v in c.env.items()))
        print(f"  emule submit SPEC --address {c.dashboard_url}")
        print(f"stop with: python {sys.argv[0]} stop --dir {c.root}")
    elif args.command == "status":
        pids = _pids_under(args.dir.resolve())
        try:
            c = load(args.dir)
            print(f"dashboard {c.dashboard_url}, GCS {c.gcs_address}, {c.nodes} nodes started")
        except FileNotFoundError as e:
            print(e)
        print(f"{len(pids)} processes: " + ", ".join(f"{pid} {kind}" for pid, kind in sorted(pids.items())))
    else:
        pids = stop(args.dir)
        print(f"stopped {len(pids)} processes under {args.dir.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
