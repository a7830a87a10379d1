"""Starting (or attaching to) the Ray instance a search runs on, with time to start on a busy machine.

Ray gives a local instance's node 30 s to register with its control store, a wait fixed in its code. On a small,
loaded machine (2 cores, a test suite or another search beside it) that can pass, and ``ray.init`` fails with
"The current node timed out during startup". A local start is therefore tried again until
``EMULE_RAY_START_TIMEOUT`` seconds have passed, the processes of a failed try stopped first (by PID: only this
driver's own children that the try started). A start that still fails ends in one ``RayStartError`` line that says
what to try, never a traceback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from search.driver import stopping

TIMEOUT_ENV = "EMULE_RAY_START_TIMEOUT"
DEFAULT_TIMEOUT = 180.0  # seconds: six of Ray's own 30 s waits


class RayStartError(ConnectionError):
    """Ray could not be started or reached; the message is one line that says what to try."""


def start_timeout() -> float:
    """Seconds a local Ray instance may take to start, from ``EMULE_RAY_START_TIMEOUT`` (default 180)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise RayStartError(f"{TIMEOUT_ENV}: {text!r} not accepted; accepted: seconds > 0 (default "
                            f"{DEFAULT_TIMEOUT:g})")
    return value


def init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Start a local Ray instance (``address`` None) or attach to the cluster at ``address``; returns whether this
    call started it (and so must shut it down). Raises ``RayStartError`` where Ray cannot be started or reached."""
    import ray

    if ray.is_initialized():
        return False
    timeout = start_timeout()  # a bad setting is refused before anything starts

    def start() -> None:
        # "local" starts a fresh instance rather than attaching to one another process started on this machine
        ray.init(address=address or "local", num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 logging_level="WARNING")

    if address is None:
        start_with_retries(start, timeout)
    else:
        try:
            start()
        except Exception as e:
            raise RayStartError(f"could not attach to the Ray cluster at {address} ({_first_line(e)}); check the "
                                "address and that the cluster is up (`ray status` there)") from None
    stopping.reinstall()  # ray.init makes SIGTERM exit at once; a search stops in order instead
    return True


def own_processes() -> set[int]:
    """PIDs of the processes this driver has started (its children, theirs, ...)."""
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def stop_new_processes(before: set[int]) -> None:
    """Stop the processes this driver started that were not running ``before`` (the Ray processes of a failed
    start), by PID; nothing else on the machine is touched."""
    import psutil

    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for process in new:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(new, timeout=10)


def start_with_retries(start: Callable[[], None], timeout: float,
                       snapshot: Callable[[], set[int]] = own_processes,
                       clean_up: Callable[[set[int]], None] = stop_new_processes) -> int:
    """Call ``start`` until it succeeds; the processes a failed try started are stopped (``clean_up`` of the
    ``snapshot`` taken before it), and a try that failed because the node timed out during start-up is made again
    while ``timeout`` seconds have not passed. Returns the number of tries. Any other failure, or time out:
    ``RayStartError``."""
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        tries += 1
        before = snapshot()
        try:
            start()
            return tries
        except Exception as e:
            clean_up(before)
            if not _timed_out(e):
                raise RayStartError(f"Ray could not start on this machine ({_first_line(e)}); start it yourself "
                                    "(`ray start --head --num-cpus N`) and pass --address 127.0.0.1:6379, or see "
                                    "Ray's logs under /tmp/ray/session_latest/logs") from None
            if time.monotonic() >= deadline:
                raise RayStartError(
                    f"Ray could not start on this machine within {timeout:g} s ({tries} tries; {_first_line(e)}): "
                    f"the machine is likely too busy - try again when it is quieter, give Ray longer with "
                    f"{TIMEOUT_ENV}=SECONDS, or start Ray yourself (`ray start --head --num-cpus N`) and pass "
                    "--address 127.0.0.1:6379") from None


def _timed_out(error: Exception) -> bool:
    return isinstance(error, TimeoutError) or "timed out" in str(error).lower()


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def shutdown_ray(started: bool) -> None:
    if started:
        import ray

        ray.shutdown()
