"""What the corner check costs before a search starts: ``search.driver.checks.check_buildable`` builds the
``ModelConfig`` of every corner of the model space on the data's shape (no weights, no training), and refuses a
space of more than ``MAX_CORNERS`` combinations. This times it on the quickstart's data (OSULeaf) for spaces of a
growing number of corners, median of a few repeats after a warm-up that loads the data.

    python bench/spec_check.py --corners 200 2000 10000 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from pathlib import Path

import yaml

from search.driver.checks import MAX_CORNERS, check_buildable, check_data, corner_counts
from search.spec.schema import parse_schema

ROOT = Path(__file__).resolve().parents[1]
# choices every corner of which builds on OSULeaf (series length 427, 128 x 128 silhouette)
WIDTHS = [8 * i for i in range(1, 26)]  # 25 widths, all divisible by every head count below
FACTORS = [("attention", ["softmax", "linear"]), ("heads", [1, 2, 4, 8]), ("patch_len", list(range(8, 18))),
           ("mlp_ratio", [1.0, 1.5, 2.0, 3.0, 4.0]), ("depth", [1, 2])]


def space_of(corners: int) -> dict:
    """A model space of exactly ``corners`` combinations: the widths times the first few FACTORS."""
    space, total = {"width": WIDTHS}, len(WIDTHS)
    for key, values in FACTORS:
        if total >= corners:
            break
        space[key], total = values, total * len(values)
    if total != corners:
        raise ValueError(f"--corners {corners}: not a product this bench forms; accepted: 25, 50, 200, 2000, 10000, "
                         "20000")
    return space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corners", type=int, nargs="+", default=[200, 2000, 10000, 20000])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    raw = yaml.safe_load((ROOT / "spaces" / "quickstart.yaml").read_text())
    print(f"MAX_CORNERS = {MAX_CORNERS}\n")
    print("| corners | check s | ms per corner |\n|---|---|---|")
    for n in args.corners:
        spec = parse_schema({**copy.deepcopy(raw), "space": space_of(n)})
        assert math.prod(corner_counts(spec).values()) == n
        check_data(spec)  # warm-up: the data is read once per process
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            check_buildable(spec)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"| {n} | {median:.2f} | {1000 * median / n:.3f} |", flush=True)


if __name__ == "__main__":
    main()
