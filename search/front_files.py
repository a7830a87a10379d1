"""The front's files: ``pareto.parquet`` and ``pareto.csv`` (the table; MLflow previews CSV), ``pareto.png`` (the
static plot) and ``pareto.html`` (interactive, self-contained), written together at each refresh."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from search.front import Front, front_table
from search.front_html import write_html
from search.front_plot import plot_front
from search.spec import Objective


def write_artifacts(front: Front, objectives: Sequence[Objective], folder: Path,
                    baselines: dict[str, dict] | None = None, title: str = "Pareto front") -> list[Path]:
    """The four files in ``folder``, in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    table = front_table(front, objectives)
    paths = [folder / name for name in ("pareto.parquet", "pareto.csv", "pareto.png", "pareto.html")]
    pq.write_table(table, paths[0])
    pacsv.write_csv(table, paths[1])
    plot_front(front, objectives, paths[2], baselines)
    write_html(front, objectives, paths[3], title, baselines)
    return paths
