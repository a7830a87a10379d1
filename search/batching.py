"""Per-epoch metric writes merged into as few MLflow calls as possible, from one background thread.

With hundreds of trials reporting, one write per epoch per trial queues faster than a store takes it (a SQLite
transaction or an HTTP round trip each). The writer takes everything queued since its last write and sends each
run's epochs together: one call per run, however far behind it was. Nothing is dropped; a run's epochs keep their
order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Epoch = tuple[int, dict[str, Any], int]  # (step, metrics, timestamp in ms)


class MetricBatcher:
    """Queue epochs with ``add``; a thread writes them with ``write(run_id, epochs)``, merged per run.

    Args:
        write: writes one run's epochs (in order); its failures are its own to handle (the thread goes on).
    """

    def __init__(self, write: Callable[[str, list[Epoch]], None]):
        self._write = write
        self._pending: dict[str, list[Epoch]] = {}
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.calls = 0  # writes made (for tests and benchmarks)
        self.error: Exception | None = None  # the last write's failure that ``write`` itself let through

    def add(self, run_id: str, step: int, metrics: dict[str, Any], timestamp_ms: int) -> None:
        with self._cond:
            self._start()
            self._pending.setdefault(run_id, []).append((step, metrics, timestamp_ms))
            self._cond.notify_all()

    def flush(self) -> None:
        """Return once everything added so far is written."""
        with self._cond:
            self._cond.wait_for(lambda: not self._pending and not self._busy)

    def close(self) -> None:
        """Write what is queued, then stop the thread (a later ``add`` starts it again)."""
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._thread, self._closed = None, False

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="emule-mlflow", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:  # closed and drained
                    return
                batch, self._pending, self._busy = self._pending, {}, True
            try:
                for run_id, epochs in batch.items():
                    try:
                        self._write(run_id, epochs)
                    except Exception as e:  # kept, not raised: a flush must never wait on a dead thread
                        self.error = e
                    self.calls += 1
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
