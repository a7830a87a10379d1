"""A search whose driver fails after its parent run exists: the record closed, the error in one line.

An exception in the driver (Ray that cannot start, a data file gone between the check and the start, a bug in a
callback ...) would otherwise leave the parent run RUNNING for good and print a long traceback. Instead the open
runs are closed (the parent as FAILED, with the error), the full traceback is written to a file (and attached to
the parent run), and ``SearchFailed`` carries one line for the terminal. What the search had done stays: finished
candidates in MLflow, Tune's saved state for ``emule resume``.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from search.spec import storage as store

if TYPE_CHECKING:
    from search.record.tracking import Tracker

# Errors whose message is written for the user (the field, the value, what is accepted): shown as they are. Others
# are shown with their type's name, as Python would.
USER_ERRORS = (ValueError, LookupError, ConnectionError, FileNotFoundError)


class SearchFailed(Exception):
    """A search that failed after its parent run was made, recorded as FAILED.

    Attributes:
        name: the search.
        error: what the driver raised (also the ``__cause__``).
        trace: the file holding the full traceback.
        resumable: whether the search's session file was written, so that ``emule resume NAME`` continues it.
        line: the error in one line, as printed (default ``error_line(error)``).
    """

    def __init__(self, name: str, error: BaseException, trace: Path, resumable: bool, line: str | None = None):
        self.name, self.error, self.trace, self.resumable = name, error, trace, resumable
        super().__init__(line or error_line(error))

    def trace_line(self) -> str:
        """Where the full traceback is, and how to continue the search."""
        after = (f"; the search is kept: continue it with `emule resume {self.name}`" if self.resumable
                 and f"emule resume {self.name}" not in str(self) else "")
        return f"full traceback: {self.trace}{after}"


def error_line(error: BaseException) -> str:
    """The error in one line: a message written for the user as it is, anything else after its type's name."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, USER_ERRORS) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def record_failure(tracker: Tracker, parent_id: str, name: str, experiment: str, error: BaseException,
                   session_file: str, out=None) -> SearchFailed:
    """Close the records of search ``name`` after its driver raised ``error``: its child runs still open as KILLED
    (``emule resume`` continues them inside their runs), its parent run as FAILED with the error; the traceback
    written to ``experiment`` (the search's folder: where it is local) or a temporary folder. Returns the
    ``SearchFailed`` to raise. MLflow that cannot be reached is told on ``out``; the traceback file is written
    regardless."""
    from search.record.tracking import redact  # MLflow is loaded by now: the tracker holds a client

    text = redact("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    trace = write_trace(text, name, experiment)
    line = redact(error_line(error))
    try:
        tracker.stop_running(parent_id, f"the search's driver failed: {line}"[:5000])
        tracker.fail_search(parent_id, line, text, str(trace))
    except Exception as e:  # tracking went away as well: the traceback file is the record
        if out is not None:
            print(f"warning: MLflow unreachable while recording the failure ({type(e).__name__}); the parent run "
                  "stays open", file=out, flush=True)
    try:
        resumable = store.modified(store.join(experiment, session_file)) is not None
    except Exception:  # an object store that cannot be reached
        resumable = False
    return SearchFailed(name, error, trace, resumable, line)


def write_trace(text: str, name: str, experiment: str) -> Path:
    """The traceback as a file: in the search's own folder where its storage is local, else (an object store, a
    folder that cannot be written) in a temporary folder."""
    file = f"traceback-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    if not store.is_uri(experiment):
        try:
            path = Path(experiment) / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return path
        except OSError:
            pass
    path = Path(tempfile.mkdtemp(prefix=f"emule-{name}-")) / file
    path.write_text(text)
    return path
