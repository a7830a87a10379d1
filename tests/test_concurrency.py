"""The search's counts set from Tune's trial list (what a resume after a cut between Tune's state files needs; the
end-to-end case is in test_resume.py)."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.search import Searcher

from search.driver.concurrency import SearchSync, SyncedSearch


class Told(Searcher):
    """Records what it is told."""

    def __init__(self):
        super().__init__()
        self.told = {}

    def suggest(self, trial_id):
        return {"x": 1}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told[trial_id] = (result, error)


class FakeTrial:
    ERROR = Trial.ERROR

    def __init__(self, trial_id, status, last_result=None):
        self.trial_id, self.status, self.last_result = trial_id, status, last_result or {}

    def is_finished(self):
        return self.status in (Trial.TERMINATED, Trial.ERROR)


def test_counts_follow_tunes_trial_list():
    searcher = Told()
    search = SyncedSearch(searcher, max_concurrent=2)
    search._counter = 5  # saved later than the list: made one trial the list never got
    search.searcher.live_trials = {"ended", "never-ran", "running"}
    trials = [FakeTrial("ended", Trial.TERMINATED, {"val_accuracy": 0.5}), FakeTrial("errored", Trial.ERROR),
              FakeTrial("running", Trial.PENDING), FakeTrial("unseen", Trial.PENDING)]
    search.sync(trials)
    assert search._counter == 4
    assert search.searcher.live_trials == {"running", "unseen"}
    assert search.searcher.num_unfinished_live_trials == 2
    # the searcher hears how the trials it lost track of ended; the others it hears from Tune as usual
    assert searcher.told == {"ended": ({"val_accuracy": 0.5}, False), "never-ran": (None, True)}
    assert search.searcher.suggest("next") is None  # two running: the cap holds


def test_the_callback_syncs_once_per_run_of_tunes_loop():
    search = SyncedSearch(Told(), max_concurrent=1)
    sync = SearchSync(search)
    search.searcher.live_trials = {"never-ran"}
    sync.setup()
    sync.on_step_begin(0, [])
    assert search.searcher.live_trials == set()
    search.searcher.live_trials = {"made-by-this-run"}
    sync.on_step_begin(1, [])  # later steps leave the counts to the limiter
    assert search.searcher.live_trials == {"made-by-this-run"}
