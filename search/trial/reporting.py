"""Per-epoch results handed to Tune without stopping the training for the driver's round trip.

A Tune function trainable reports synchronously: ``tune.report`` returns only once the driver has taken the result,
run its callbacks and asked for the next one. A driver busy with hundreds of trials then stalls every trial at
every epoch. ``Reporter`` puts each result on a queue that one thread of the trial hands to ``tune.report`` in
order, so the next epoch trains while the driver catches up; the trial's last result still waits for the driver.

What Tune's contract still holds: every result reaches Tune, in order, and a trial that Tune stops (a scheduler's
decision, the end of the search) stops at its next ``report`` - one epoch later than with a blocking report.
Tune hands a stopped trial's actor to the next trial only once the stopped trial's thread has ended, and waits
``TUNE_FUNCTION_THREAD_TIMEOUT_S`` for it (2 s by default): shorter than an epoch, the reuse failed, Tune errored the
next trial without freeing its concurrency slot (Ray 2.60), and a search under a stopping scheduler stalled once
``search.concurrency`` trials were lost that way. A ``Reporter`` therefore lets Tune wait for the epoch to end.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

_DONE = object()
THREAD_TIMEOUT = "TUNE_FUNCTION_THREAD_TIMEOUT_S"  # read by Tune in the trial's process when it reuses the actor
REUSE_WAIT_S = 24 * 3600  # the longest epoch a stopped trial may still finish before its actor is reused


class Reporter:
    """Hands results to ``report`` from a thread of their own, in order.

    Use as a context manager around the training loop; leaving it waits until Tune has taken every result.

    Args:
        report: what delivers one result (``ray.tune.report``; a fake in unit tests).
        blocking: report on the calling thread instead (Tune's own behaviour), for comparison.
    """

    def __init__(self, report: Callable[[dict[str, Any]], None], blocking: bool = False):
        self._report, self.blocking = report, blocking
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> Reporter:
        os.environ.setdefault(THREAD_TIMEOUT, str(REUSE_WAIT_S))  # a value the user set is kept
        if not self.blocking:
            self._thread = threading.Thread(target=self._deliver, name="emule-report", daemon=True)
            self._thread.start()
        return self

    def report(self, row: dict[str, Any]) -> None:
        """Queue one result (or deliver it now when blocking). Raises what delivering an earlier one raised."""
        self._raise_pending()
        if self.blocking:
            self._report(row)
        else:
            self._queue.put(row)

    def __exit__(self, kind, value, tb) -> None:
        if self._thread is None:
            return
        self._queue.put(_DONE)
        if kind is not None and issubclass(kind, SystemExit):  # Tune stopped the trial: nothing more to deliver
            return
        # every queued result reaches Tune before the trial returns or reports anything else (a timeout, say)
        self._thread.join()
        if kind is None:
            self._raise_pending()

    def _deliver(self) -> None:
        while (row := self._queue.get()) is not _DONE:
            try:
                self._report(row)
            except BaseException as e:  # Tune ends a stopped trial's report with SystemExit: pass it to the trial
                self._error = e
                return

    def _raise_pending(self) -> None:
        # a SystemExit is how Tune ends a stopped trial's training thread: raised here, it ends the trial the same way
        if self._error is not None:
            raise self._error
