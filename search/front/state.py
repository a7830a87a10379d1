"""The search's Pareto front: which candidates are on it, its hypervolume and knee, and its table.

Only candidates that trained to their full budget are eligible; the math is in ``search.front.pareto``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from search.front.pareto import dominates, hypervolume, knee_point, non_dominated_mask, to_minimize
from search.spec.results import LATENCY_MS, TEST_ACCURACY, TRAINING_COMPUTE
from search.spec.schema import Objective


@dataclass
class Record:
    """One finished candidate as the front sees it."""

    trial_id: str
    run_id: str
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Front:
    members: list[Record]
    others: list[Record]
    hypervolume: float
    knee: Record | None


@dataclass
class SearchState:
    """One search's candidates as the record holds them: trial -> run map, finished candidates, counts, front."""

    runs: dict[str, str] = field(default_factory=dict)
    finished: dict[str, Record] = field(default_factory=dict)
    stopped: int = 0
    infeasible: int = 0
    failed: int = 0
    front: Front = field(default_factory=lambda: Front([], [], 0.0, None))

    @property
    def ended(self) -> int:
        return len(self.finished) + self.stopped + self.infeasible + self.failed


def compute_front(records: Sequence[Record], objectives: Sequence[Objective]) -> Front:
    """Non-dominated set over the objectives, its hypervolume against the spec's fixed reference point, and
    the knee (balanced compromise)."""
    if not records:
        return Front([], [], 0.0, None)
    modes, log = [o.mode for o in objectives], [o.log for o in objectives]
    points = to_minimize(np.array([[r.metrics[o.metric] for o in objectives] for r in records]), modes, log)
    ref = to_minimize(np.array([[o.reference for o in objectives]]), modes, log)[0]
    mask = non_dominated_mask(points)
    members = [r for r, m in zip(records, mask) if m]
    knee = members[knee_point(points[mask])]
    return Front(members, [r for r, m in zip(records, mask) if not m], hypervolume(points[mask], ref), knee)


def extend_front(front: Front, record: Record, objectives: Sequence[Objective]) -> Front | None:
    """``front`` with one more finished candidate, without recomputing it, when a member dominates the newcomer:
    members, hypervolume and knee then stay as they are (a dominated point cannot dominate a member). None when the
    newcomer may change the front - then ``compute_front`` is needed."""
    modes, log = [o.mode for o in objectives], [o.log for o in objectives]
    new = to_minimize(np.array([[record.metrics[o.metric] for o in objectives]]), modes, log)[0]
    members = to_minimize(np.array([[r.metrics[o.metric] for o in objectives] for r in front.members]).reshape(
        -1, len(objectives)), modes, log)
    if not any(dominates(m, new) for m in members):
        return None
    return Front(front.members, [*front.others, record], front.hypervolume, front.knee)


def ordered(front: Front, objectives: Sequence[Objective]) -> list[Record]:
    """The front's members best first on the first objective: the order of its description and its tables."""
    first = objectives[0]
    return sorted(front.members, key=lambda r: r.metrics[first.metric], reverse=first.mode == "max")


def front_table(front: Front, objectives: Sequence[Objective]) -> pa.Table:
    """The front at full precision (``pareto.parquet``), in the order of ``ordered``."""
    rows = []
    for r in ordered(front, objectives):
        row = {"trial_id": r.trial_id, "run_id": r.run_id, "knee": r is front.knee}
        row.update({o.metric: float(r.metrics[o.metric]) for o in objectives})
        row.update({k: r.metrics[k] for k in (TEST_ACCURACY, LATENCY_MS, TRAINING_COMPUTE) if k in r.metrics})
        row.update({f"param.{k}": str(v) for k, v in sorted(r.params.items())})
        rows.append(row)
    return pa.Table.from_pylist(rows)
