"""MetricBatcher: queued epochs are merged per run, in order, while the store is busy; flush waits for them."""

from __future__ import annotations

import threading

from search.batching import MetricBatcher


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

    from search.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    run = MlflowClient(tracker.uri).create_run(tracker.experiment_id).info.run_id  # a bare run, in no search
    tracker.log_epochs(run, [(1, {"acc": 0.5, "name": "skipped"}, 1000), (2, {"acc": 0.7}, 2000)])
    history = tracker.metric_history(run, "acc")
    assert [(m.step, m.value, m.timestamp) for m in history] == [(1, 0.5, 1000), (2, 0.7, 2000)]
    assert "name" not in tracker.run(run).data.metrics

