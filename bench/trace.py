"""Hypervolume against compute for one search, whatever runs it (Ray Tune, plain Optuna, Syne Tune).

Every result a trial reports goes through ``Trace.result`` in the order the driver sees it. Compute is charged
from ``training_compute`` (training FLOPs of the trial so far, every selection fold and pretraining included):
each result adds its increase over the trial's previous one. A result with ``budget_done`` admits the candidate;
the hypervolume of the admitted candidates is recomputed then (``search.front.state.compute_front``, the spec's fixed
reference point). So the trace is a step function of compute spent and of wall time since the search started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from search.front.state import Record, compute_front
from search.spec.schema import Spec


class Trace:
    def __init__(self, spec: Spec, budget: float, label: str):
        self.spec, self.budget, self.label = spec, budget, label
        self.start = time.perf_counter()
        self.compute = 0.0
        self.last: dict[str, float] = {}  # trial -> its training_compute so far
        self.records: list[Record] = []
        self.points: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]  # (FLOPs, seconds, hypervolume)

    def result(self, trial: str, row: dict) -> None:
        spent = float(row.get("training_compute", 0.0) or 0.0)
        self.compute += max(0.0, spent - self.last.get(trial, 0.0))
        self.last[trial] = max(spent, self.last.get(trial, 0.0))
        if row.get("budget_done") and trial not in {r.trial_id for r in self.records}:
            self.records.append(Record(trial, "", {o.metric: float(row[o.metric]) for o in self.spec.objectives}))
            hv = compute_front(self.records, self.spec.objectives).hypervolume
            self.points.append((self.compute, time.perf_counter() - self.start, hv))

    def spent(self) -> bool:
        return self.compute >= self.budget

    def run(self, method: str, seed: int, dataset: str) -> Run:
        return Run(method, dataset, seed, self.compute, time.perf_counter() - self.start, len(self.last),
                   len(self.records), self.points)


@dataclass
class Run:
    method: str
    dataset: str
    seed: int
    compute: float  # training FLOPs spent in all, trials the budget cut short included
    wall_s: float
    trials: int  # trials that reported at least once
    full: int  # trials that trained their full budget
    points: list[tuple[float, float, float]] = field(repr=False)

    def hv_at(self, x: np.ndarray, axis: int) -> np.ndarray:
        """Hypervolume reached by ``x`` FLOPs (axis 0) or seconds (axis 1); a finished search keeps its last."""
        xs = np.array([p[axis] for p in self.points], dtype=float)
        hvs = np.array([p[2] for p in self.points])
        return hvs[np.searchsorted(xs, x, side="right") - 1]

    @property
    def final_hv(self) -> float:
        return self.points[-1][2]
