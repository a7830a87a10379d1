"""Status lines while trials run: each running trial with its epoch of total, elapsed time and what is left.

Plain Python driven by the Tune callback (``search.driver.callbacks``) with the driver's clock; a test drives it with a
fake one. The rule: a status line is due when ``every`` seconds have passed since the last one and an epoch ended
meanwhile (so a slow trial shows each epoch, a fast search at most one line per ``every`` seconds), or when
``QUIET_FACTOR * every`` seconds have passed with no line at all (so a trial inside a long first epoch still shows
that it runs and for how long).

What is left of a trial is estimated from its own pace: the time from its start to its last finished epoch over
the epochs done, times the epochs to go, plus the refit on every training row (about one fold's share of the whole
training: ``1 / folds`` of it), less the time since that last epoch. Unknown before the first epoch ends.
"""

from __future__ import annotations

from dataclasses import dataclass

STATUS_EVERY = 30.0  # default seconds between status lines
QUIET_FACTOR = 4
SHOWN = 6  # running trials named on one line; the rest are counted


@dataclass
class TrialClock:
    start: float  # when the trial started (driver's monotonic clock)
    epoch: int = 0  # epochs finished
    last: float | None = None  # when the last epoch finished

    def left(self, now: float, epochs: int, folds: int) -> float | None:
        """Seconds the trial still needs, from its pace so far; None before its first epoch."""
        if self.epoch <= 0 or self.last is None:
            return None
        per_epoch = (self.last - self.start) / self.epoch
        return max(0.0, per_epoch * (epochs - self.epoch) + per_epoch * epochs / folds - (now - self.last))


class StatusBoard:
    """The running trials' clocks and when the next status line is due.

    Args:
        every: seconds between status lines (at least); None or 0 turns them off.
        epochs: epochs of a full training (the total shown).
        folds: models trained per epoch (cross-validation folds; 1 for a holdout split), for the refit's share.
    """

    def __init__(self, every: float | None, epochs: int, folds: int, now: float):
        self.every, self.epochs, self.folds = every or 0.0, epochs, max(1, folds)
        self.trials: dict[str, TrialClock] = {}
        self.last_line = now
        self.epoch_since_line = False

    def started(self, trial_id: str, now: float) -> None:
        self.trials[trial_id] = TrialClock(now)

    def epoch_ended(self, trial_id: str, epoch: int, now: float) -> None:
        clock = self.trials.setdefault(trial_id, TrialClock(now))
        if epoch > clock.epoch:
            clock.epoch, clock.last = epoch, now
            self.epoch_since_line = True

    def ended(self, trial_id: str) -> None:
        self.trials.pop(trial_id, None)

    def due(self, now: float) -> bool:
        if self.every <= 0 or not self.trials:
            return False
        waited = now - self.last_line
        return (self.epoch_since_line and waited >= self.every) or waited >= QUIET_FACTOR * self.every

    def line(self, now: float, search_elapsed: float) -> str:
        """The status line (and the board's note that it was shown)."""
        self.last_line, self.epoch_since_line = now, False
        order = sorted(self.trials.items(), key=lambda item: item[1].start)
        parts = []
        for trial_id, clock in order[:SHOWN]:
            left = clock.left(now, self.epochs, self.folds)
            parts.append(f"{trial_id} epoch {clock.epoch}/{self.epochs} {duration(now - clock.start)}"
                         f"{f' ~{duration(left)} left' if left is not None else ' (first epoch)'}")
        more = f" | +{len(order) - SHOWN} more" if len(order) > SHOWN else ""
        return f"[{search_elapsed:6.1f}s] running {len(order)}: {' | '.join(parts)}{more}"


def duration(seconds: float) -> str:
    """``0.4s``, ``42s``, ``3m05s``, ``2h07m``: a tenth of a second below one second (small data trains a trial in
    well under a second, which "0s" would hide), ``<0.1s`` below that."""
    if 0 < seconds < 0.95:
        return f"{seconds:.1f}s" if seconds >= 0.05 else "<0.1s"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
