"""Loading a built-in dataset in a fresh process: parsed from the bundling package (sktime imported) against read
back from the cache file that the first parse leaves (emule_models/data/builtin.py).

Every process that trains or reads a built-in pays this once: each trial's Ray actor, each ``emule`` command, the
driver. Both ways run in the same session, each in ``--repeats`` fresh Python processes per dataset (cold: an empty
cache folder each time; warm: the folder the cold runs filled); the time is measured inside the child, from just
before ``load_builtin`` to just after, imports of EMuLe itself excluded.

    python bench/builtin_cache.py --out bench/results/builtin_cache.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emule_models.data import BUILTIN  # noqa: E402

CHILD = """
import json, sys, time
from emule_models.data import load_builtin
start = time.perf_counter()
d = load_builtin(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(d.train) + len(d.val) + len(d.test),
                  "sktime_imported": "sktime" in sys.modules}))
"""


def load_in_fresh_process(name: str, cache: Path) -> dict:
    env = {**os.environ, "EMULE_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, name], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="emule-cache-bench-") as tmp:
        for name in BUILTIN:
            cold, warm = [], []
            for i in range(args.repeats):
                run = load_in_fresh_process(name, Path(tmp) / f"{name}-cold-{i}")
                assert run["sktime_imported"], run
                cold.append(run["seconds"])
            for _ in range(args.repeats):
                run = load_in_fresh_process(name, Path(tmp) / f"{name}-cold-0")
                assert not run["sktime_imported"], run
                warm.append(run["seconds"])
            c, w = statistics.median(cold), statistics.median(warm)
            rows.append(f"| {name} | {run['rows']} | {c:.2f} | {w:.3f} | {c / w:.0f}x |")
            print(rows[-1], flush=True)
    text = "\n".join([
        "# Built-in datasets: parsed from the package against read back from the cache",
        "",
        "Recorded with:",
        "",
        f"    python bench/builtin_cache.py --repeats {args.repeats} --out bench/results/builtin_cache.md",
        "",
        f"Seconds to `load_builtin(name)` in a fresh Python process (median of {args.repeats}), measured in the "
        "child; cold: an empty cache folder (sktime imported, its files parsed, the cache file written); warm: the "
        "cache file read back (sktime never imported). Both ways in one run, on this 2-core machine.",
        "",
        "| dataset | rows | cold (s) | warm (s) | cold / warm |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ])
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
