"""The searcher's count of trials - made and running at once - kept true to Tune's own trial list across a resume.

Tune wraps a searcher in a ``ConcurrencyLimiter`` (trials handed out and not yet heard end) inside a
``SearchGenerator`` (trials made, against the spec's number). It saves their counts in a file apart from its trial
list, and a driver stopped between the writes (on ``s3://``, between their uploads) leaves them from different
moments. The resumed search then counted a trial its list never ran - with one trial at a time it waited for it
forever; with more it ran one short for good - and made one trial too few or too many. ``SearchSync`` sets both
counts from the trial list when Tune's loop starts (a new search or a resumed one), and tells the searcher how the
trials it lost track of ended.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator


class SyncedLimiter(ConcurrencyLimiter):
    def sync(self, trials: list) -> None:
        """Count as running the trials that are not finished in Tune's list; one counted here that is not running
        there is told to the searcher as ended (with its last result), or failed when Tune never had it."""
        running = {t.trial_id for t in trials if not t.is_finished()}
        known = {t.trial_id: t for t in trials}
        for trial_id in self.live_trials - running:
            trial = known.get(trial_id)
            failed = trial is None or trial.status == trial.ERROR
            self.searcher.on_trial_complete(trial_id, trial.last_result if trial else None, failed)
        self.live_trials = running
        self.num_unfinished_live_trials = len(running)


class SyncedSearch(SearchGenerator):
    """Tune's trial maker over ``searcher``, at most ``max_concurrent`` trials running at once."""

    def __init__(self, searcher: Searcher, max_concurrent: int):
        super().__init__(SyncedLimiter(searcher, max_concurrent=max_concurrent))

    def sync(self, trials: list) -> None:
        self._counter = len(trials)  # every trial made is in Tune's list
        self.searcher.sync(trials)


class SearchSync(Callback):
    """Syncs ``search`` with Tune's trial list at the first step of each run of Tune's loop (it is pickled with the
    search in Tune's saved tuner, so a resumed search syncs the one Tune restored)."""

    def __init__(self, search: SyncedSearch):
        self.search, self._due = search, True

    def setup(self, **info: Any) -> None:
        self._due = True

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._due:
            self.search.sync(trials)
            self._due = False
