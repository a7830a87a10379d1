"""Stop signals: SIGINT, SIGTERM and SIGHUP handled alike - handed to Tune's stop while its loop runs, a
KeyboardInterrupt elsewhere, noted only while the records close, forced by a second signal. Real signals, sent
to this process."""

from __future__ import annotations

import signal

import pytest

from search.driver import stopping

SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"]


@pytest.mark.parametrize("name", SIGNALS)
def test_outside_tunes_loop_a_signal_interrupts_and_is_named(name):
    before = signal.getsignal(signal.SIGTERM)
    with stopping.handled() as stops:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(getattr(signal, name))
        assert stopping.reason() == name
        assert stops.exit_code == 128 + int(getattr(signal, name))
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handlers are back
    assert stopping.reason() is None


@pytest.mark.parametrize("name", SIGNALS)
def test_in_tunes_loop_the_first_signal_goes_to_tunes_stop_and_a_second_forces(name):
    stopped, usr1 = [], signal.getsignal(signal.SIGUSR1)
    with stopping.handled() as stops, stops.tune_loop():
        # what Tune's fit does when its loop starts: its stop handler on SIGUSR1
        signal.signal(signal.SIGUSR1, lambda signum, frame: stopped.append(signum))
        signal.raise_signal(getattr(signal, name))  # no exception: Tune ends its loop in order
        assert stopped and stops.received == name
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGUSR1) is usr1  # Tune's handler does not outlive its loop


def test_before_tune_installs_its_stop_a_signal_interrupts():
    with stopping.handled() as stops, stops.tune_loop(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)


def test_while_closing_the_first_signal_is_noted_only():
    with stopping.handled() as stops:
        with stops.closing():
            signal.raise_signal(signal.SIGHUP)
            assert stops.received == "SIGHUP"
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGHUP)


def test_reinstall_takes_sigterm_back_from_a_library():
    with stopping.handled():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as ray.init does (it exits at once)
        stopping.reinstall()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)


def _grid(*results):
    from types import SimpleNamespace

    return [SimpleNamespace(metrics=m, error=e) for m, e in results]


@pytest.mark.parametrize(("results", "budget", "complete"), [
    ([({"epoch": 3, "done": True}, None), ({"epoch": 1, "done": True}, None)], None, True),  # finished; stopped early
    ([({"epoch": 3, "done": True}, None), (None, RuntimeError("x"))], None, True),  # one failed
    ([({"epoch": 3, "done": True}, None), ({"epoch": 2, "done": False}, None)], None, False),  # a signal cut one
    ([({"epoch": 3, "done": True}, None), (None, None)], None, False),  # one never reported
    # a driver killed between a trial's last result and Tune's done: the trial's own flags say it ended
    ([({"epoch": 3, "done": True}, None), ({"epoch": 3, "done": False, "budget_done": True}, None)], None, True),
    ([({"epoch": 3, "done": True}, None), ({"epoch": 0, "infeasible": True}, None)], None, True),
    ([({"epoch": 3, "done": True}, None)], None, False),  # fewer trials than the spec's
    ([({"epoch": 3, "done": True}, None), ({"epoch": 2, "done": False}, None)], 5, True),  # the epoch budget ended it
])
def test_a_search_is_complete_when_every_trial_ended_or_the_budget_did(results, budget, complete):
    from types import SimpleNamespace

    from search.driver.runner import all_done

    spec = SimpleNamespace(search=SimpleNamespace(trials=2, epoch_budget=budget))
    assert all_done(_grid(*results), spec) is complete
