"""Stop signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP all stop a search the same way.

SIGTERM is what `emule stop` (Ray Jobs), Kubernetes, systemd, batch schedulers and `timeout` send; SIGHUP comes
when the terminal of a search goes away. Whichever arrives first:

- while Tune's loop runs, it is handed to Tune's own stop (the handler Tune installs for SIGUSR1, which also serves
  Ctrl-C): the loop ends, the experiment state is saved one last time, the callbacks close the open MLflow runs as
  KILLED with the signal as the reason, and the search is recorded ``interrupted``;
- at any other moment it raises KeyboardInterrupt where the driver is, and the search is recorded ``interrupted``;
- while the records are being closed it is noted and nothing else: closing takes seconds.

A second signal raises KeyboardInterrupt at once (skips the orderly stop), as a second Ctrl-C does in Tune.

``ray.init`` installs a SIGTERM handler of its own (exit at once); ``reinstall`` takes SIGTERM back after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

NAMES = ("SIGINT", "SIGTERM", "SIGHUP")


class StopSignals:
    """The stop-signal handler of one search run (``run_search``/``resume_search``)."""

    def __init__(self):
        self.received: str | None = None  # name of the first stop signal, e.g. "SIGTERM"
        self._previous: dict[int, object] = {}
        self._tune_before: object | None = None  # SIGUSR1's handler before Tune's loop started
        self._in_tune = False
        self._closing = False

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by the signal: 128 + its number (130 for Ctrl-C)."""
        return 128 + int(getattr(signal, self.received or "SIGINT"))

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (and only it receives signals)
        for name in NAMES:
            if hasattr(signal, name):
                sig = getattr(signal, name)
                self._previous.setdefault(sig, signal.getsignal(sig))
                signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @contextlib.contextmanager
    def tune_loop(self) -> Iterator[None]:
        """Around ``Tuner.fit``: a stop signal then goes to Tune's stop."""
        usr1 = getattr(signal, "SIGUSR1", None)
        self._tune_before = signal.getsignal(usr1) if usr1 is not None else None
        self._in_tune = True
        try:
            yield
        finally:
            self._in_tune = False
            if usr1 is not None and threading.current_thread() is threading.main_thread():
                signal.signal(usr1, self._tune_before)  # Tune leaves its handler behind

    @contextlib.contextmanager
    def closing(self) -> Iterator[None]:
        """Around the closing of the search's records: a first signal is noted, not raised."""
        self._closing = True
        try:
            yield
        finally:
            self._closing = False

    def _handle(self, signum: int, frame) -> None:
        first = self.received is None
        if first:
            self.received = signal.Signals(signum).name
        if first and self._closing:
            return
        if first and self._in_tune:
            tune_stop = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
            if callable(tune_stop) and tune_stop is not self._tune_before:  # Tune's loop is running
                tune_stop(signum, frame)
                return
        raise KeyboardInterrupt(self.received)


_active: list[StopSignals] = []


@contextlib.contextmanager
def handled() -> Iterator[StopSignals]:
    """Stop signals handled for the duration (the previous handlers come back after)."""
    # Tune's SIGINT handler would take Ctrl-C from us during `fit`; ours hands it to Tune's stop instead, so every
    # signal is handled (and named as the reason) in one place.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    stops = StopSignals()
    stops.install()
    _active.append(stops)
    try:
        yield stops
    finally:
        _active.remove(stops)
        stops.uninstall()


def reinstall() -> None:
    """Take the stop signals back after a library (``ray.init``) set handlers of its own."""
    if _active:
        _active[-1].install()


def reason() -> str | None:
    """The stop signal the running search received, if any (e.g. ``"SIGTERM"``)."""
    return _active[-1].received if _active else None


def current() -> StopSignals:
    """The running search's handler; outside one, an idle handler whose contexts do nothing."""
    return _active[-1] if _active else StopSignals()
