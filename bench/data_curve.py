"""Does the learning curve extrapolate: fit on at most half the rows, predict all of them, compare with the measure.

For each best-by-validation candidate of a ``bench/accuracy.py --family small`` run (its JSON record), the
candidate's learning curve is measured exactly as ``emule data-curve`` measures it
(``search.delivery.data_curve.measure``: its recipe, 5-fold selection folds, nested stratified fractions, ``--seeds``
shuffles). The command's fit is made on the fractions <= ``--fit-up-to`` only and asked for the accuracy with every
row of the folds; the error against the measured accuracy there is the extrapolation error (target: a mean absolute
error <= 2 points over the sets). Beside it, the baseline: a plain unweighted ``a - b n^-c`` through the same points.
The fit on every fraction, as the command reports it, is shown too. Kept curves (``--keep``) are fit again.

    python bench/data_curve.py --out bench/results/data_curve.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accuracy import best_candidate, runs_by_set  # noqa: E402

from search.delivery.data_curve import Run, fit_curve, fit_power_law, measure, power_law  # noqa: E402

FRACTIONS = (0.1, 0.2, 0.35, 0.5, 1.0)


def one(name: str, run: dict, args, tmp: Path) -> dict:
    cand, dataset = best_candidate(name, run, args.epochs, tmp)
    start = time.perf_counter()
    say = lambda line: print(f"{name} seed {run['seed']}:{line}", flush=True)  # noqa: E731
    runs = measure(cand, dataset, FRACTIONS, args.seeds, log=say)
    row = curve_row(name, run["seed"], runs, len(dataset.pool), args.fit_up_to, time.perf_counter() - start)
    print(f"{name} seed {run['seed']}: measured {row['measured']:.3f} at {row['rows']:.0f} rows, predicted from <= "
          f"{args.fit_up_to:g} {row['predicted']:.3f} [{row['low']:.3f}, {row['high']:.3f}] ({row['seconds']:.0f} s)",
          flush=True)
    return row


def curve_row(name: str, search_seed: int, runs: list[Run], labelled: int, fit_up_to: float, seconds: float) -> dict:
    """One report row: the curve's measures, what the fit on the fractions <= ``fit_up_to`` predicts at every row of
    the folds, and the models themselves (so a later run can fit them again without training)."""
    full = fit_curve(runs, labelled)
    table = full.table()
    all_rows, measured = table[-1]["rows"], table[-1]["accuracy"]
    early = fit_curve([r for r in runs if r.fraction <= fit_up_to], round(all_rows))
    predicted = early.predicted.get("now", (float("nan"),) * 3)
    half = [t for t in table if t["fraction"] <= fit_up_to]
    plain = fit_power_law(np.array([t["rows"] for t in half]), np.array([t["accuracy"] for t in half]))
    plain_predicted = float(power_law(all_rows, *plain)) if plain else float("nan")
    return {"set": name, "search_seed": search_seed, "rows": all_rows, "labelled": labelled, "measured": measured,
            "predicted": predicted[0], "low": predicted[1], "high": predicted[2], "error": predicted[0] - measured,
            "law": "ceiling" if early.ceiling_seen else "error", "plain": plain_predicted,
            "plain_error": plain_predicted - measured,
            "enough": full.enough(), "flat": full.flat, "x2": full.predicted.get("x2", (float("nan"),) * 3)[0],
            "table": table, "seconds": seconds, "runs": [dataclasses.asdict(r) for r in runs]}


def refit(row: dict, fit_up_to: float) -> dict:
    """A kept row fit again from its models."""
    runs = [Run(**r) for r in row["runs"]]
    return curve_row(row["set"], row["search_seed"], runs, row["labelled"], fit_up_to, row["seconds"])


def report(rows: list[dict], args) -> str:
    lines = [
        "# Learning curves: extrapolation from half the rows",
        "",
        f"Command: `python bench/data_curve.py --record {' '.join(map(str, args.record))}"
        f"{f' --keep {args.keep}' if args.keep else ''} --search-seeds {args.search_seeds} --seeds "
        f"{args.seeds} --fit-up-to {args.fit_up_to:g}{' --sets ' + ' '.join(args.sets) if args.sets else ''} --out "
        f"{args.out}` ({sum(r['seconds'] for r in rows) / 60:.0f} min of training on one thread; each curve's in "
        "column s; kept curves are fit again, not trained).",
        "",
        f"Per set and search seed, the best candidate of the small-family search in the record, measured as `emule "
        f"data-curve` measures it: fractions {', '.join(f'{f:g}' for f in FRACTIONS)} of each of its 5 folds' "
        f"training rows, {args.seeds} shuffle(s), validation accuracy on the fold's own rows. *Predicted*: the "
        f"command's fit (`search.delivery.data_curve.fit_curve`) on the fractions <= {args.fit_up_to:g} only, at every "
        "row of the folds (90% bootstrap interval); *law*: the law it chose by AICc (*error*: `1 - b n^-c`, *ceiling*: "
        "`a - b n^-c`). *Plain*: the baseline, an unweighted `a - b n^-c` through the same means (the command's fit "
        "before the weighted, AICc-chosen one). *Enough*: the smallest fraction within 1 point of all the rows "
        "(measured). *2x*: what the fit on every fraction predicts with twice the labelled rows.",
        "",
        "| set | search seed | rows | measured | predicted from <= half | law | error | plain | plain's error | "
        "enough | flat | 2x (all fractions) | s |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['set']} | {r['search_seed']} | {r['rows']:.0f} | {r['measured']:.3f} | {r['predicted']:.3f}"
                     f" [{r['low']:.3f}, {r['high']:.3f}] | {r['law']} | {r['error']:+.3f} | {r['plain']:.3f} | "
                     f"{r['plain_error']:+.3f} | "
                     f"{r['enough']:g} | {'yes' if r['flat'] else 'no'} | {r['x2']:.3f} | {r['seconds']:.0f} |")
    for key, what in (("error", "Mean absolute extrapolation error"), ("plain_error", "The plain power law's")):
        per_set: dict[str, list[float]] = {}
        for r in rows:
            if r[key] == r[key]:  # NaN where the fit failed
                per_set.setdefault(r["set"], []).append(abs(r[key]))
        errors = [e for v in per_set.values() for e in v]
        if errors:
            by_set = ", ".join(f"{k} {statistics.mean(v) * 100:.1f}" for k, v in per_set.items())
            lines += ["", f"{what}: {statistics.mean(errors) * 100:.1f} points over {len(errors)} curves ({by_set})"
                      + ("; target <= 2 points." if key == "error" else ".")]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", type=Path, nargs="+", default=[Path("bench/results/accuracy_small.json")],
                    help="accuracy.py JSON records (several: their seeds of a set one after the other)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="an earlier run's JSON rows, kept in the report (fit again from their models where they carry "
                         "them); curves already in it are not measured again")
    ap.add_argument("--epochs", type=int, default=60, help="the epochs of the searches in the record")
    ap.add_argument("--sets", nargs="*", default=[])
    ap.add_argument("--search-seeds", type=int, default=1, help="the first N search seeds of each set in the record")
    ap.add_argument("--seeds", type=int, default=1, help="shuffles per fraction")
    ap.add_argument("--fit-up-to", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [refit(r, args.fit_up_to) for r in json.loads(args.keep.read_text())] if args.keep else []
    done = {(r["set"], r["search_seed"]) for r in rows}
    runs = runs_by_set(args.record)

    def save() -> str:
        text = report(rows, args)
        if args.out:
            args.out.write_text(text)
            args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        return text

    with tempfile.TemporaryDirectory(prefix="emule-curve-") as tmp:
        for name, its_runs in runs.items():
            if args.sets and name not in args.sets:
                continue
            for run in its_runs[:args.search_seeds]:
                if (name, run["seed"]) in done:
                    continue
                rows.append(one(name, run, args, Path(tmp)))
                save()
    print(save())


if __name__ == "__main__":
    main()
