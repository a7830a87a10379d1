"""The search's Pareto front as artifacts: which candidates are on it, a Parquet table and a plot.

Only candidates that trained to their full budget are eligible; the math is in ``search.pareto``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from search.pareto import dominates, hypervolume, knee_point, non_dominated_mask, to_minimize
from search.spec import Objective


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


def front_table(front: Front, objectives: Sequence[Objective]) -> pa.Table:
    rows = []
    for r in front.members:
        row = {"trial_id": r.trial_id, "run_id": r.run_id, "knee": r is front.knee}
        row.update({o.metric: float(r.metrics[o.metric]) for o in objectives})
        row.update({k: r.metrics[k] for k in ("test_accuracy", "latency_ms", "training_compute") if k in r.metrics})
        row.update({f"param.{k}": str(v) for k, v in sorted(r.params.items())})
        rows.append(row)
    return pa.Table.from_pylist(rows)


def write_artifacts(front: Front, objectives: Sequence[Objective], folder: Path,
                    baselines: dict[str, dict] | None = None) -> tuple[Path, Path]:
    """``pareto.parquet`` and ``pareto.png`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    table_path, plot_path = folder / "pareto.parquet", folder / "pareto.png"
    pq.write_table(front_table(front, objectives), table_path)
    plot_front(front, objectives, plot_path, baselines)
    return table_path, plot_path


def plot_front(front: Front, objectives: Sequence[Objective], path: Path,
               baselines: dict[str, dict] | None = None) -> None:
    """First objective against each other one: every finished candidate, the front drawn as a step line, and the
    classical baselines' validation accuracy (same folds) as labelled horizontal lines when that is the y axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_obj, x_objs = objectives[0], list(objectives[1:]) or list(objectives[:1])
    fig, axes = plt.subplots(1, len(x_objs), figsize=(5 * len(x_objs), 4), squeeze=False)
    for ax, x_obj in zip(axes[0], x_objs):
        for group, style in ((front.others, dict(c="0.6", s=18, label="candidates")),
                             (front.members, dict(c="C3", s=30, label="Pareto front"))):
            if group:
                ax.scatter([r.metrics[x_obj.metric] for r in group], [r.metrics[y_obj.metric] for r in group], **style)
        if front.members:  # the 2-D trade-off staircase among front members
            pts = sorted((r.metrics[x_obj.metric], r.metrics[y_obj.metric]) for r in front.members)
            if x_obj.mode == "max":
                pts = pts[::-1]
            stair, best = [], -np.inf if y_obj.mode == "max" else np.inf
            for x, y in pts:
                if (y > best) if y_obj.mode == "max" else (y < best):
                    best = y
                    stair.append((x, y))
            ax.step(*zip(*stair), where="post", c="C3", lw=1)
        if front.knee is not None:
            ax.scatter([front.knee.metrics[x_obj.metric]], [front.knee.metrics[y_obj.metric]], marker="*", s=160,
                       c="gold", edgecolors="k", label="knee", zorder=3)
        if y_obj.metric == "val_accuracy":
            ran = [r for r in (baselines or {}).values() if "val_accuracy" in r]
            for i, r in enumerate(ran):
                ax.axhline(r["val_accuracy"], ls="--", lw=1, c=f"C{i + 4}",
                           label=f"{r['label']}: val {r['val_accuracy']:.3f}, test {r['test_accuracy']:.3f}")
        if x_obj.log:
            ax.set_xscale("log")
        ax.set_xlabel(f"{x_obj.metric} ({x_obj.mode})")
        ax.set_ylabel(f"{y_obj.metric} ({y_obj.mode})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Pareto front: {len(front.members)} of {len(front.members) + len(front.others)} finished candidates,"
                 f" hypervolume {front.hypervolume:.4g}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
