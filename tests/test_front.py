"""The front kept as candidates finish: extending it without recomputation gives what recomputation gives."""

from __future__ import annotations

import numpy as np
import pytest

from search.front.state import Record, compute_front, extend_front
from search.spec.metrics import SIZE
from search.spec.schema import Objective

OBJECTIVES = [Objective(metric="val_accuracy", mode="max", reference=0.0),
              Objective(metric=SIZE, mode="min", reference=1e7, log=True),
              Objective(metric="flops", mode="min", reference=1e9, log=True)]


def record(i: int, acc: float, params: float, flops: float) -> Record:
    return Record(str(i), f"run-{i}", {"val_accuracy": acc, SIZE: params, "flops": flops})


@pytest.mark.parametrize("seed", range(5))
def test_extending_matches_recomputing(seed):
    rng = np.random.default_rng(seed)
    records, front, shortcuts = [], compute_front([], OBJECTIVES), 0
    for i in range(120):
        new = record(i, float(rng.random()), float(10 ** rng.uniform(3, 6)), float(10 ** rng.uniform(4, 8)))
        records.append(new)
        extended = extend_front(front, new, OBJECTIVES)
        front = compute_front(records, OBJECTIVES)
        if extended is not None:
            shortcuts += 1
            assert [r.run_id for r in extended.members] == [r.run_id for r in front.members]
            assert extended.hypervolume == front.hypervolume and extended.knee is front.knee
            assert {r.run_id for r in extended.others} == {r.run_id for r in front.others}
    assert shortcuts > 60  # most newcomers are dominated: the shortcut is the common case


def test_a_newcomer_that_ties_or_improves_is_left_to_recomputation():
    front = compute_front([record(0, 0.8, 1e4, 1e5)], OBJECTIVES)
    assert extend_front(front, record(1, 0.8, 1e4, 1e5), OBJECTIVES) is None  # a duplicate joins the front
    assert extend_front(front, record(2, 0.9, 1e5, 1e5), OBJECTIVES) is None  # better in one objective
    assert extend_front(front, record(3, 0.7, 1e4, 1e5), OBJECTIVES) is not None
    assert extend_front(compute_front([], OBJECTIVES), record(4, 0.5, 1e4, 1e5), OBJECTIVES) is None


def test_the_front_table_names_what_each_member_is():
    """`emule pareto`'s rows: a depth-0 member shows no attention (it has none, whatever was sampled for it), and
    a fold ensemble says so."""
    from search.delivery.export import front_rows

    small = Record("a", "run-a", {"val_accuracy": 0.8, SIZE: 1e3, "flops": 1e5},
                   {"tokenizer": "lite", "attention": "softmax", "depth": "0", "heads": "2", "final": "refit"})
    big = Record("b", "run-b", {"val_accuracy": 0.9, SIZE: 5e3, "flops": 5e5},
                 {"tokenizer": "lite", "attention": "linear", "depth": "1", "heads": "2", "final": "fold_ensemble"})
    rows = front_rows(compute_front([small, big], OBJECTIVES), ["val_accuracy", SIZE])
    assert [(r["trial"], r["attention"], r["heads"], r["final"]) for r in rows] == [
        ("a", "-", "-", "refit"), ("b", "linear", 2, "fold_ensemble")]
