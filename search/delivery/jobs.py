"""Send a search to a Ray cluster through the Ray Jobs API (the head's dashboard, ``http://HEAD:8265``).

A job is ``emule search`` run by a driver on the cluster. Its working directory is a staging folder built here:
the ``search`` and ``emule_models`` packages as they are on this machine (so every node runs the same code), the
spec, the exported candidates its ``search.warm_start`` names and the user's Parquet data (``data.path``; the driver
reads it and hands it to the trials through Ray's object store). The cluster's Python environment must hold the
project's dependencies (see cluster/README.md); it need not hold the project.

Everything a submitted search needs from outside the cluster is checked here, before anything is sent: the spec
validates, the tracking URI is one the head can reach (a temporary folder on the head is refused), and the
experiment storage is a URI or an absolute path.

Token auth (``RAY_AUTH_MODE=token``) works as for every Ray client: the token comes from ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search.driver.checks import load_spec
from search.spec.schema import Spec, SpecError
from search.spec.storage import is_uri

PACKAGES = ("search", "emule_models")
SPEC_NAME = "spec.yaml"
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")  # what `ray job submit` reads, in this order
# `emule stop` (Ray's stop_job) sends SIGTERM to the driver, waits this long, then SIGKILLs it. Ray's default is 3 s;
# a search needs the time to end Tune's loop, save its state and close its MLflow runs. `--env
# RAY_JOB_STOP_WAIT_TIME_S=N` sets another (the job's supervisor reads it from the job's environment).
STOP_GRACE_S = 30
# Every job gets these; the user's --env adds to them.
JOB_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1",
           "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S)}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# A job's working directory travels through Ray's GCS (at most 512 MiB, zipped); user data rides along up to this.
DATA_LIMIT_MIB = 256


@dataclass(frozen=True)
class Submission:
    job_id: str
    search: str  # the search name, for `emule pareto` / `emule export` once it ran
    address: str
    tracking_uri: str
    storage: str


def address_or_env(address: str | None) -> str:
    """The dashboard address: ``address``, else RAY_API_SERVER_ADDRESS or RAY_ADDRESS."""
    for value in (address, *(os.environ.get(k) for k in ADDRESS_ENV)):
        if value:
            return value
    raise ValueError("--address: missing; accepted: the head's dashboard, http://HEAD:8265 (or set "
                     "RAY_API_SERVER_ADDRESS)")


def client(address: str | None):
    """A ``JobSubmissionClient`` for the dashboard at ``address``; connection and auth problems become one line."""
    from ray.job_submission import JobSubmissionClient

    address = address_or_env(address)
    try:
        return JobSubmissionClient(address)
    except Exception as e:  # connection refused, 401/403, a non-dashboard port ...
        auth = "Authentication" in type(e).__name__ or any(code in str(e) for code in ("401", "403"))
        hint = ("; the cluster uses token auth: set RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, "
                "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)") if auth else ""
        raise ConnectionError(f"--address: cannot reach the Ray Jobs API at {address!r} ({_first_line(e)}){hint}"
                              ) from None


def prepare(spec_path: Path, tracking_uri: str | None = None, storage: str | None = None,
            name: str | None = None) -> tuple[Spec, dict[str, Any], str]:
    """Validate a spec for a cluster run and apply the overrides.

    Returns the validated spec, the raw YAML mapping to ship (overrides applied) and the search name.
    Raises SpecError naming the field when the spec would lose its results on a cluster.
    """
    spec = load_spec(spec_path)
    raw = yaml.safe_load(spec_path.read_text())
    raw["tracking"], raw["search"] = raw.get("tracking") or {}, raw.get("search") or {}
    if tracking_uri is not None:
        raw["tracking"]["uri"] = tracking_uri
    if storage is not None:
        raw["search"]["storage"] = storage
    # the job has none of this machine's MLFLOW_TRACKING_URI / EMULE_TRACKING_URI: the store they name goes into
    # the shipped spec (never the default, a file in the job's temporary folder: refused below)
    raw["tracking"]["uri"] = raw["tracking"].get("uri") or _uri_from_environment()
    check_tracking_uri(raw["tracking"]["uri"])
    check_storage(raw["search"].get("storage", spec.search.storage))
    name = name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return spec, raw, name


def _uri_from_environment() -> str | None:
    from search.record.tracking import DEFAULT, uri_and_source

    uri, source = uri_and_source(None)
    return None if source == DEFAULT else uri


def check_tracking_uri(uri: str | None) -> None:
    """Refuse tracking stores that would end up in the job's temporary folder on the head."""
    why = "a submitted search runs in a temporary folder on the cluster's head, so its results would be lost"
    accepted = ("accepted: an MLflow server (http://HOST:5000, see cluster/README.md) or sqlite:////ABSOLUTE/PATH "
                "on storage the head mounts; or pass --tracking-uri")
    if not uri:
        raise SpecError(f"tracking.uri: null (the default sqlite:///mlflow.db) - {why}; {accepted}")
    if uri.startswith("sqlite:"):
        relative = not uri.startswith("sqlite:////")  # sqlite:///x.db is relative, sqlite:////x.db absolute
    elif uri.startswith("file:"):
        relative = not uri.startswith("file:///")
    else:  # no scheme: a local path, except MLflow's named targets
        relative = "://" not in uri and uri != "databricks" and not Path(uri).is_absolute()
    if relative:
        raise SpecError(f"tracking.uri: {uri!r} is relative - {why}; {accepted}")


def check_storage(storage: str) -> None:
    if not is_uri(storage) and not Path(storage).expanduser().is_absolute():
        raise SpecError(f"search.storage: {storage!r} is relative - a submitted search runs in a temporary folder on "
                        "the cluster's head and its trials on other nodes; accepted: a URI (s3://BUCKET/PATH, "
                        "gs://BUCKET/PATH) or an absolute path every node mounts; or pass --storage")


def stage(spec: Spec, raw: dict[str, Any], into: Path) -> Path:
    """Build the job's working directory under ``into``: the packages, the spec, its warm-start files and data."""
    root = Path(__file__).resolve().parents[2]
    if spec.data.path is not None:  # load_spec made it absolute on this machine; ship it beside the spec
        source = Path(spec.data.path)
        size = source.stat().st_size if source.is_file() else sum(f.stat().st_size for f in source.rglob("*")
                                                                    if f.is_file())
        if size > DATA_LIMIT_MIB * 2**20:
            raise SpecError(f"data.path: {str(source)!r} holds {size / 2**20:.0f} MiB; a submitted search ships its "
                            f"data with the job, at most {DATA_LIMIT_MIB} MiB; accepted: a smaller table (fewer rows "
                            "or columns), or run `emule search` where the data is")
        target = Path("data") / source.name
        (into / "data").mkdir()
        if source.is_file():
            shutil.copy2(source, into / target)
        else:
            shutil.copytree(source, into / target)
        raw["data"]["path"] = str(target)
    for pkg in PACKAGES:
        shutil.copytree(root / pkg, into / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if spec.search.warm_start:  # load_spec made them absolute on this machine; ship them beside the spec
        (into / "warm_start").mkdir()
        shipped = []
        for i, path in enumerate(spec.search.warm_start):
            target = Path("warm_start") / f"{i}-{Path(path).name}"
            shutil.copy2(path, into / target)
            shipped.append(str(target))
        raw["search"]["warm_start"] = shipped
    (into / SPEC_NAME).write_text(yaml.safe_dump(raw, sort_keys=False))
    return into


def entrypoint(search: str, python: str = "python", output: list[str] | None = None) -> str:
    """The job's command: ``emule search`` on the staged spec; ``output`` adds its output flags (``--quiet``,
    ``--status-every S``): its stdout is what `emule logs` shows."""
    # --address auto: attach to the cluster the job runs on (Ray sets RAY_ADDRESS for the entrypoint); without it
    # `emule search` would start a Ray instance of its own on the head.
    return shlex.join([python, "-m", "search.cli", "search", SPEC_NAME, "--name", search, "--address", "auto",
                       *(output or [])])


def submit(spec_path: Path, address: str | None = None, *, name: str | None = None, tracking_uri: str | None = None,
           storage: str | None = None, env: Mapping[str, str] | None = None, job_id: str | None = None,
           python: str = "python", output: list[str] | None = None) -> Submission:
    """Validate ``spec_path`` for a cluster run and submit it as a Ray job. Returns the job id and search name.

    Args:
        tracking_uri, storage: override the spec's ``tracking.uri`` / ``search.storage``.
        env: extra environment variables for the job (credentials for the tracking server or object store).
        python: the interpreter on the cluster that runs the driver.
        output: the driver's output flags (``--quiet``, ``--status-every S``).
    """
    spec_path = Path(spec_path)
    spec, raw, search = prepare(spec_path, tracking_uri, storage, name)
    with tempfile.TemporaryDirectory(prefix="emule-job-") as tmp:
        workdir = stage(spec, raw, Path(tmp))  # refuses oversized data before the cluster is touched
        jobs = client(address)
        runtime_env = {"working_dir": str(workdir), "env_vars": {**JOB_ENV, **(env or {})}}
        try:
            job = jobs.submit_job(entrypoint=entrypoint(search, python, output), runtime_env=runtime_env,
                                  submission_id=job_id, metadata={"emule.search": search, "emule.spec": spec.name})
        except RuntimeError as e:
            raise ConnectionError(f"submit: the Ray Jobs API at {address_or_env(address)!r} refused the job "
                                  f"({_first_line(e)})") from None
    return Submission(job, search, address_or_env(address), raw["tracking"]["uri"],
                      raw["search"].get("storage", spec.search.storage))


@dataclass(frozen=True)
class JobState:
    job_id: str
    status: str  # PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
    message: str
    search: str | None
    start: float | None  # seconds since the epoch
    end: float | None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


def status(job_id: str, address: str | None = None) -> JobState:
    info = _call(lambda c: c.get_job_info(job_id), job_id, address)
    return JobState(job_id, getattr(info.status, "value", str(info.status)), info.message or "",
                    (info.metadata or {}).get("emule.search"), info.start_time / 1000 if info.start_time else None,
                    info.end_time / 1000 if info.end_time else None)


def wait(job_id: str, address: str | None = None, timeout_s: float | None = None, poll_s: float = 2) -> JobState:
    """Poll until the job ends (or ``timeout_s`` passes: TimeoutError)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        state = status(job_id, address)
        if state.done:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state.status} after {timeout_s:.0f}s")
        time.sleep(poll_s)


def logs(job_id: str, address: str | None = None, follow: bool = False,
         write: Callable[[str], Any] | None = None) -> None:
    """Write the job's driver output (to stdout unless ``write``); with ``follow``, keep writing until the job
    ends."""
    write = write or _stdout
    if not follow:
        write(_call(lambda c: c.get_job_logs(job_id), job_id, address))
        return
    jobs = client(address)
    status(job_id, address)  # an unknown id fails here, with one line, instead of inside the stream

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            write(chunk)

    asyncio.run(tail())


def stop(job_id: str, address: str | None = None) -> bool:
    """Ask the cluster to stop the job. False when it had already ended."""
    return bool(_call(lambda c: c.stop_job(job_id), job_id, address))


def _call(fn: Callable[[Any], Any], job_id: str, address: str | None) -> Any:
    jobs = client(address)
    try:
        return fn(jobs)
    except RuntimeError as e:
        if "404" in str(e) or "does not exist" in str(e):
            raise LookupError(f"job: {job_id!r} is not a job of the cluster at {address_or_env(address)!r}; "
                              "accepted: an id `emule submit` printed") from None
        raise ConnectionError(f"job {job_id}: {_first_line(e)}") from None


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
