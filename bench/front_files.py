"""What a refresh of the front's files costs on the driver, per file, and how large they are.

A search rewrites them every 5 finished candidates and at the end (``search.driver.callbacks``), while the trials wait
for the driver: this measures ``pareto.parquet``, ``pareto.csv``, ``pareto.png`` and ``pareto.html`` for fronts
over N synthetic candidates (3 objectives, the quickstart's), median of a few repeats after a warm-up.

    python bench/front_files.py --candidates 12 50 200 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from search.front.html import write_html
from search.front.plot import plot_front
from search.front.state import Record, compute_front, front_table
from search.spec.schema import Objective

OBJECTIVES = [Objective(metric="val_accuracy", mode="max", reference=0.0),
              Objective(metric="param_count", mode="min", reference=1e6, log=True),
              Objective(metric="flops", mode="min", reference=1e9, log=True)]


def candidates(n: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    size = rng.integers(4_000, 110_000, n).astype(float)
    return [Record(f"{i:08x}", f"run{i}", {"val_accuracy": float(rng.uniform(0.3, 0.8)), "param_count": size[i],
                                           "flops": size[i] * float(rng.uniform(50, 200)), "test_accuracy": 0.5},
                   {"attention": "softmax", "depth": "2", "width": "64", "lr": "0.001"}) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, nargs="+", default=[12, 50, 200])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    writers = {"pareto.parquet": lambda f, p: pq.write_table(front_table(f, OBJECTIVES), p),
               "pareto.csv": lambda f, p: pacsv.write_csv(front_table(f, OBJECTIVES), p),
               "pareto.png": lambda f, p: plot_front(f, OBJECTIVES, p),
               "pareto.html": lambda f, p: write_html(f, OBJECTIVES, p)}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| candidates | front | " + " | ".join(f"{name} ms" for name in writers) + " | pareto.html size |")
    print("|---" * (len(writers) + 3) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.candidates:
            front = compute_front(candidates(n), OBJECTIVES)
            cells = []
            for name, write in writers.items():
                path = Path(tmp) / name
                write(front, path)  # warm-up: imports, font cache
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    write(front, path)
                    times.append(time.perf_counter() - start)
                cells.append(f"{1000 * statistics.median(times):.0f}")
            size = (Path(tmp) / "pareto.html").stat().st_size
            print(f"| {n} | {len(front.members)} | " + " | ".join(cells) + f" | {size / 1e6:.2f} MB |")


if __name__ == "__main__":
    main()
