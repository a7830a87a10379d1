"""Status lines on the running trials, driven with a fake clock: their rate, the quiet-period line, the
estimate of what is left."""

from __future__ import annotations

from search.driver.progress import QUIET_FACTOR, StatusBoard, TrialClock, duration


def test_a_slow_trial_shows_every_epoch():
    board = StatusBoard(every=10, epochs=4, folds=1, now=0)
    board.started("slow", 0)
    lines = []
    for epoch, now in enumerate((30, 60, 90), start=1):  # 30 s per epoch, longer than the interval
        board.epoch_ended("slow", epoch, now)
        assert board.due(now)
        lines.append(board.line(now, now))
    assert [line.split("epoch ")[1].split("/")[0] for line in lines] == ["1", "2", "3"]
    assert "slow epoch 3/4 1m30s" in lines[-1]


def test_fast_trials_give_at_most_one_line_per_interval():
    board = StatusBoard(every=10, epochs=100, folds=1, now=0)
    board.started("a", 0)
    shown = 0
    for step in range(1, 101):  # an epoch every 0.5 s for 50 s
        now = step * 0.5
        board.epoch_ended("a", step, now)
        if board.due(now):
            board.line(now, now)
            shown += 1
    assert shown == 5


def test_a_trial_in_a_long_first_epoch_still_shows_it_runs():
    board = StatusBoard(every=10, epochs=40, folds=5, now=0)
    board.started("big", 0)
    assert not board.due(10 * QUIET_FACTOR - 1)  # no epoch ended: the quiet-period line only
    assert board.due(10 * QUIET_FACTOR)
    line = board.line(10 * QUIET_FACTOR, 40)
    assert "running 1: big epoch 0/40 40s (first epoch)" in line


def test_what_is_left_counts_the_epochs_to_go_and_the_refit():
    clock = TrialClock(start=0, epoch=2, last=20)  # 10 s per epoch of 5 fold models
    assert clock.left(now=20, epochs=10, folds=5) == 8 * 10 + 10 * 10 / 5
    assert clock.left(now=25, epochs=10, folds=5) == 8 * 10 + 20 - 5
    assert TrialClock(start=0).left(now=5, epochs=10, folds=1) is None


def test_off_when_every_is_zero_or_nothing_runs():
    board = StatusBoard(every=0, epochs=4, folds=1, now=0)
    board.started("a", 0)
    board.epoch_ended("a", 1, 100)
    assert not board.due(1000)
    idle = StatusBoard(every=1, epochs=4, folds=1, now=0)
    assert not idle.due(1000)


def test_many_running_trials_are_counted_not_all_named():
    board = StatusBoard(every=1, epochs=4, folds=1, now=0)
    for i in range(9):
        board.started(f"t{i}", i)
    line = board.line(100, 100)
    assert line.count(" epoch ") == 6 and "+3 more" in line and "running 9:" in line


def test_durations():
    assert [duration(s) for s in (0, 42, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]
    # under a second (a trial on small data, in `emule plan`): tenths, never "0s"
    assert [duration(s) for s in (0.01, 0.04, 0.4, 0.94, 0.96, 1.4)] == ["<0.1s", "<0.1s", "0.4s", "0.9s", "1s", "1s"]
