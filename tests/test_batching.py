"""MetricBatcher: queued epochs are merged per run, in order, while the store is busy; flush waits for them;
a run's calls go first and its end last."""

from __future__ import annotations

import threading

from search.record.batching import MetricBatcher


class SlowStore:
    """Records each write; the first one waits until released, as a busy store would."""

    def __init__(self):
        self.writes: list[tuple[str, list[int]]] = []
        self.release = threading.Event()
        self.first = threading.Event()

    def __call__(self, run_id, epochs):
        if not self.first.is_set():
            self.first.set()
            self.release.wait(10)
        self.writes.append((run_id, [step for step, _, _ in epochs]))


def test_epochs_queued_behind_a_busy_write_go_in_one_write_per_run():
    store = SlowStore()
    batcher = MetricBatcher(store)
    batcher.add("a", 1, {"x": 1.0}, 0)
    assert store.first.wait(10)  # the first write is in progress and stuck
    for step in (2, 3, 4):
        batcher.add("a", step, {"x": float(step)}, 0)
        batcher.add("b", step, {"x": float(step)}, 0)
    store.release.set()
    batcher.flush()
    assert store.writes[0] == ("a", [1])
    assert sorted(store.writes[1:]) == [("a", [2, 3, 4]), ("b", [2, 3, 4])]  # merged, in order
    assert batcher.calls == 3
    batcher.close()


def test_flush_returns_after_every_write_and_close_restarts():
    store = SlowStore()
    store.first.set()  # no stall
    batcher = MetricBatcher(store)
    for step in range(5):
        batcher.add("r", step, {"x": 0.0}, 0)
    batcher.flush()
    assert [s for _, steps in store.writes for s in steps] == list(range(5))
    batcher.close()
    batcher.add("r", 5, {"x": 0.0}, 0)  # a closed batcher starts its thread again
    batcher.close()
    assert store.writes[-1] == ("r", [5])


def test_a_runs_calls_go_before_its_epochs_and_its_end_after_with_the_epochs_left():
    store = SlowStore()
    order = []
    batcher = MetricBatcher(lambda run_id, epochs: (store(run_id, epochs), order.append(("write", run_id))))
    batcher.add("a", 1, {"x": 1.0}, 0)
    assert store.first.wait(10)  # a's first write is in progress and stuck
    batcher.later("b", lambda: order.append(("params", "b")))
    batcher.add("b", 1, {"x": 1.0}, 0)
    batcher.add("a", 2, {"x": 2.0}, 0)
    batcher.end("a", lambda epochs: order.append(("end", "a", [s for s, _, _ in epochs])))
    store.release.set()
    batcher.close()
    # b's params before b's epochs; a's end after a's first write, taking a's epoch 2 with it (not written alone)
    assert order == [("write", "a"), ("params", "b"), ("write", "b"), ("end", "a", [2])]
    assert store.writes == [("a", [1]), ("b", [1])]


def test_runs_take_turns_in_the_order_they_queued_so_an_end_is_never_starved():
    store = SlowStore()
    order = []
    batcher = MetricBatcher(lambda run_id, epochs: (store(run_id, epochs), order.append(run_id)))
    batcher.add("x", 1, {"x": 1.0}, 0)
    assert store.first.wait(10)  # stuck on x while a ends and b keeps reporting
    batcher.end("a", lambda epochs: order.append("end a"))
    for step in (1, 2, 3):
        batcher.add("b", step, {"x": 1.0}, 0)
    store.release.set()
    batcher.close()
    assert order == ["x", "end a", "b"]


def test_an_end_with_nothing_queued_still_runs_and_a_failing_call_spares_the_rest():
    ends = []
    batcher = MetricBatcher(lambda run_id, epochs: None)

    def broken():
        raise OSError("store gone")

    batcher.later("a", broken)
    batcher.end("a", lambda epochs: ends.append(list(epochs)))
    batcher.flush()
    assert ends == [[]] and isinstance(batcher.error, OSError)
    batcher.close()


def test_a_failing_write_never_blocks_flush():
    def broken(run_id, epochs):
        raise OSError("store gone")

    batcher = MetricBatcher(broken)
    batcher.add("r", 1, {"x": 0.0}, 0)
    batcher.flush()
    assert isinstance(batcher.error, OSError)
    batcher.close()


def test_log_epochs_writes_each_step_with_its_timestamp(tmp_path):
    from mlflow import MlflowClient

    from search.record.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    run = MlflowClient(tracker.uri).create_run(tracker.experiment_id).info.run_id  # a bare run, in no search
    tracker.log_epochs(run, [(1, {"acc": 0.5, "name": "skipped"}, 1000), (2, {"acc": 0.7}, 2000)])
    history = tracker.metric_history(run, "acc")
    assert [(m.step, m.value, m.timestamp) for m in history] == [(1, 0.5, 1000), (2, 0.7, 2000)]
    assert "name" not in tracker.run(run).data.metrics

