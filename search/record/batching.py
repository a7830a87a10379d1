"""A candidate run's MLflow writes, made from one background thread, per-epoch metrics merged into as few calls as
possible.

With hundreds of trials reporting, one write per epoch per trial queues faster than a store takes it (a SQLite
transaction or an HTTP round trip each), and every write made on Tune's event loop holds up every trial. Per run the
thread makes, in this order: the run's queued calls (``later``: its params, dataset, candidate), its queued epochs
(``add``) in one write however far behind it was, and its closing write (``end``), which takes the epochs still
queued so that they go in the same call. Nothing is dropped; a run's writes keep their order; runs take turns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Epoch = tuple[int, dict[str, Any], int]  # (step, metrics, timestamp in ms)


class MetricBatcher:
    """Queue a run's writes; a thread makes them, epochs merged per run (``write(run_id, epochs)``).

    Args:
        write: writes one run's epochs (in order); its failures are its own to handle (the thread goes on).
    """

    def __init__(self, write: Callable[[str, list[Epoch]], None]):
        self._write = write
        self._pending: dict[str, list[Epoch]] = {}
        self._calls: dict[str, list[Callable[[], Any]]] = {}
        self._ends: dict[str, Callable[[list[Epoch]], Any]] = {}
        self._turns: dict[str, None] = {}  # runs with writes queued, in the order they first queued one
        self._writing: str | None = None  # the run whose writes the thread is making now
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.calls = 0  # turns taken (for tests and benchmarks)
        self.error: Exception | None = None  # the last write's failure that ``write`` itself let through

    def add(self, run_id: str, step: int, metrics: dict[str, Any], timestamp_ms: int) -> None:
        self._queue(run_id, lambda: self._pending.setdefault(run_id, []).append((step, metrics, timestamp_ms)))

    def later(self, run_id: str, call: Callable[[], Any]) -> None:
        """Queue ``call`` (a write for ``run_id``), made before the run's epochs queued with it."""
        self._queue(run_id, lambda: self._calls.setdefault(run_id, []).append(call))

    def end(self, run_id: str, closing: Callable[[list[Epoch]], Any]) -> None:
        """Queue the run's last write: ``closing(epochs)`` gets the epochs not yet written, after every other write
        of the run."""
        self._queue(run_id, lambda: self._ends.__setitem__(run_id, closing))

    def flush(self) -> None:
        """Return once everything queued so far is written."""
        with self._cond:
            self._cond.wait_for(lambda: not self._queued() and self._writing is None)

    def close(self) -> None:
        """Write what is queued, then stop the thread (a later write starts it again)."""
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._thread, self._closed = None, False

    def _queue(self, run_id: str, put: Callable[[], None]) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="emule-mlflow", daemon=True)
                self._thread.start()
            put()
            self._turns.setdefault(run_id, None)
            self._cond.notify_all()

    def _queued(self) -> bool:
        return bool(self._turns)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queued() or self._closed)
                if not self._queued():  # closed and drained
                    return
                # one run at a time, in the order they queued: a run's later writes keep merging while earlier runs
                # are written, and no run waits behind runs that queued after it (a run's end is never starved)
                run_id = next(iter(self._turns))
                del self._turns[run_id]
                calls, epochs = self._calls.pop(run_id, []), self._pending.pop(run_id, [])
                # a run's end waits for its queued calls (queued before it): they go in this turn, the end after
                closing = self._ends.pop(run_id, None)
                self._writing = run_id
            try:
                for call in calls:
                    self._guarded(call)
                if closing is not None:
                    self._guarded(lambda end=closing, rows=epochs: end(rows))
                elif epochs:
                    self._guarded(lambda run=run_id, rows=epochs: self._write(run, rows))
            finally:
                with self._cond:
                    self.calls += 1
                    self._writing = None
                    self._cond.notify_all()

    def _guarded(self, write: Callable[[], Any]) -> None:
        try:
            write()
        except Exception as e:  # kept, not raised: a flush must never wait on a dead thread
            self.error = e
