"""The front's files: ``pareto.parquet`` (the table at full precision), ``pareto.csv`` (the same for people: MLflow
previews it), ``pareto.png`` (the static plot) and ``pareto.html`` (interactive, self-contained), written together
at each refresh."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from search.front.html import write_html
from search.front.plot import plot_front
from search.front.state import Front, front_table, ordered
from search.front.summary import configuration
from search.spec.metrics import rounded
from search.spec.results import LATENCY_MS, TEST_ACCURACY, TRAINING_COMPUTE
from search.spec.schema import Objective


def write_artifacts(front: Front, objectives: Sequence[Objective], folder: Path,
                    baselines: dict[str, dict] | None = None, title: str = "Pareto front") -> list[Path]:
    """The four files in ``folder``, in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in ("pareto.parquet", "pareto.csv", "pareto.png", "pareto.html")]
    pq.write_table(front_table(front, objectives), paths[0])
    write_csv(front, objectives, paths[1])
    plot_front(front, objectives, paths[2], baselines)
    write_html(front, objectives, paths[3], title, baselines)
    return paths


def write_csv(front: Front, objectives: Sequence[Objective], path: Path) -> None:
    """``pareto.csv``: ``csv_rows`` with a header."""
    rows = csv_rows(front, objectives)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def csv_rows(front: Front, objectives: Sequence[Objective]) -> list[dict[str, Any]]:
    """The front as people read it, in the description's order (best first on the first objective): the knee as
    yes/no (MLflow's CSV preview shows no cell for true/false), numbers to 4 significant digits and integers as
    integers, the configuration in a few words; the run id and every param last."""
    rows = []
    for r in ordered(front, objectives):
        row: dict[str, Any] = {"trial_id": r.trial_id, "knee": "yes" if r is front.knee else "no"}
        row.update({o.metric: rounded(r.metrics[o.metric]) for o in objectives})
        row.update({k: rounded(r.metrics[k]) for k in (TEST_ACCURACY, LATENCY_MS, TRAINING_COMPUTE)
                    if k in r.metrics and k not in row})
        row["configuration"] = configuration(r.params)
        row["run_id"] = r.run_id
        row.update({f"param.{k}": rounded(v) for k, v in sorted(r.params.items())})
        rows.append(row)
    return rows
