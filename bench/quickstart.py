"""The quickstart as a new user meets it: ``emule search spaces/quickstart.yaml`` in a fresh folder (no cached
baselines, scores or MLflow store), once per search seed. Records the whole command's wall time, the best-by-validation
candidate's test accuracy and size, and the baselines the search printed beside it.

    python bench/quickstart.py --seeds 0 1 2 --out bench/results/quickstart.md
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import PUBLISHED, PUBLISHED_COLUMNS  # noqa: E402

BEST = re.compile(r"best by validation: (\w+) val_accuracy ([\d.]+).*test_accuracy ([\d.]+)")
BASELINE = re.compile(r"baseline (.+?): val_accuracy [\d.]+, test_accuracy ([\d.]+)")
ENDED = re.compile(r"(\w{8}) done val_accuracy=[\d.]+ param_count=(\d+)")


def run(seed: int, spec_path: Path) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"emule-quickstart-{seed}-"))
    spec = yaml.safe_load(spec_path.read_text())
    spec["search"]["seed"] = seed
    (folder / "quickstart.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "search.cli", "search", "quickstart.yaml"], cwd=folder,
                          capture_output=True, text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: the quickstart failed:\n{proc.stderr[-3000:]}")
    best = BEST.search(proc.stdout)
    sizes = dict(ENDED.findall(proc.stdout))
    return {"seed": seed, "seconds": seconds, "trial": best.group(1), "val": float(best.group(2)),
            "test": float(best.group(3)), "params": int(sizes[best.group(1)]),
            "baselines": {name: float(acc) for name, acc in BASELINE.findall(proc.stdout)}}


def report(rows: list[dict], spec_path: Path, command: str) -> str:
    names = list(rows[0]["baselines"])
    lines = ["# The quickstart, as a new user runs it", "", "Recorded with:", "", f"    {command}", "",
             f"`emule search {spec_path.relative_to(ROOT)}` in a fresh folder per search seed (cold caches: the "
             "baselines are computed, not read back), on this 2-core machine; the time is the whole command's, "
             "Ray's start and the baselines (which run beside the trials) included.", "",
             "| search seed | wall time | best by validation | its test accuracy | its parameters | "
             + " | ".join(names) + " |",
             "|---:|---:|---|---:|---:|" + "---:|" * len(names)]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['seconds'] / 60:.1f} min | {r['trial']} (val {r['val']:.3f}) | "
                     f"{r['test']:.3f} | {r['params']:,} | "
                     + " | ".join(f"{r['baselines'].get(n, float('nan')):.3f}" for n in names) + " |")
    mean = statistics.mean(r["test"] for r in rows)
    lines += ["", f"Mean best-by-validation test accuracy over {len(rows)} seeds: **{mean:.3f}**; longest run "
              f"{max(r['seconds'] for r in rows) / 60:.1f} min.", "",
              "Published on OSULeaf's official split (quoted, not measured here; sources in `bench/accuracy.py`): "
              + ", ".join(f"{name} {value}" for name, value in zip(PUBLISHED_COLUMNS, PUBLISHED["osuleaf"]))
              + " (LITE: 9,814 parameters; LITETime is five of them).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "spaces" / "quickstart.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        rows.append(run(seed, args.spec.resolve()))
        print(f"seed {seed}: {rows[-1]['seconds']:.0f} s, best test {rows[-1]['test']:.3f}", flush=True)
    text = report(rows, args.spec.resolve(), "python bench/quickstart.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
