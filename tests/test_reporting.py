"""Reporter: results reach Tune in order from a thread of their own, the trial does not wait for the driver, and
a trial Tune stopped ends at its next report."""

from __future__ import annotations

import threading

import pytest

from search.trial.reporting import Reporter


class SlowDriver:
    """A report that blocks until the driver is released, as Tune's does until the driver takes the result."""

    def __init__(self):
        self.taken: list[int] = []
        self.go = threading.Event()

    def __call__(self, row):
        self.go.wait(10)
        self.taken.append(row["epoch"])


def test_reports_do_not_wait_for_the_driver_and_arrive_in_order():
    driver = SlowDriver()
    with Reporter(driver) as reporter:
        for epoch in range(1, 6):
            reporter.report({"epoch": epoch})  # returns while the driver has taken nothing
        assert driver.taken == []
        driver.go.set()
    assert driver.taken == [1, 2, 3, 4, 5]  # leaving waits until all were taken


def test_blocking_mode_reports_on_the_calling_thread():
    taken = []
    with Reporter(lambda row: taken.append((row["epoch"], threading.current_thread().name)), blocking=True) as r:
        r.report({"epoch": 1})
        assert taken == [(1, threading.current_thread().name)]


def test_a_stopped_trial_ends_at_its_next_report():
    stopped = threading.Event()
    reported = []

    def tune_stops(row):
        if row["epoch"] == 2:
            stopped.set()
            raise SystemExit(0)  # what Tune's report does in a trial it stopped

    with pytest.raises(SystemExit):
        with Reporter(tune_stops) as reporter:
            for epoch in range(1, 100):
                reporter.report({"epoch": epoch})
                reported.append(epoch)
                if epoch == 2:
                    assert stopped.wait(10)
    assert reported == [1, 2]  # the report after the stop raised


def test_an_error_in_the_trial_still_delivers_what_it_reported():
    taken = []
    with pytest.raises(RuntimeError):
        with Reporter(lambda row: taken.append(row["epoch"])) as reporter:
            reporter.report({"epoch": 1})
            raise RuntimeError("time limit")
    assert taken == [1]  # delivered before anything else (a timeout's own result) is reported


@pytest.mark.slow
def test_a_stopped_trial_hands_its_actor_to_the_next_trial(ray_local, tmp_path):
    """Real Tune with actor reuse: each trial is stopped after its first result while its next epoch (longer than
    Tune's 2 s default wait) still runs. The next trials reuse the actor and run, none errors (before the fix the
    reuse failed and Tune errored the next trial, which stalled a search under a concurrency limit)."""
    import time

    from ray import tune

    def trial(config):
        with Reporter(tune.report) as reporter:
            for epoch in range(1, 4):
                time.sleep(0 if epoch == 1 else 3)
                reporter.report({"epoch": epoch, "score": config["x"]})

    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(stop={"epoch": 1}, verbose=0, storage_path=str(tmp_path)),
    )
    grid = tuner.fit()
    assert grid.errors == []
    assert sorted(r.metrics["score"] for r in grid) == [1, 2, 3]
    assert all(r.metrics["epoch"] == 1 for r in grid)  # each was stopped after its first result
