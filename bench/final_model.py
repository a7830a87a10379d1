"""Refit or fold ensemble: what a candidate should deploy once selection is over.

For each best-by-validation candidate of a ``bench/accuracy.py --family small`` run (its JSON record), the same
candidate is fit both ways, side by side in one run, from the same seed: ``refit``, one model trained again on every
training row (what the search reported), and ``fold_ensemble``, the k models of its k-fold selection, each on k-1
folds, averaged in probability (k times the parameters, FLOPs and latency). Reported per set: test accuracy of each
(mean over the search seeds), the difference, the parameters, and the training time of each (one process, one
thread, as a trial trains). The field's LITE against LITETime (five LITEs averaged) is quoted beside it.

    python bench/final_model.py --record bench/results/accuracy_small.json --out bench/results/final_model.md
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

import torch  # noqa: E402
from accuracy import best_candidate  # noqa: E402

from emule_models.cost import count_parameters  # noqa: E402
from emule_models.train import evaluate  # noqa: E402
from search.trial.candidate import build_seeded  # noqa: E402
from search.trial.validation import fit_fold_ensemble, refit  # noqa: E402

# Published test accuracies of LITE (one model) and LITETime (five LITEs averaged), from the LITE repository's
# results (MSD-IRIMAS/LITE, default split, mean of 5 runs); "-" where it reports none.
LITE = {"osuleaf": ("-", "0.946"), "gunpoint": ("-", "1.000"), "italypowerdemand": ("-", "0.964"),
        "basicmotions": ("0.950", "1.000"), "plaid": ("0.907", "0.920")}


def both_ways(name: str, run: dict, epochs: int, tmp: Path) -> dict:
    """The run's best candidate, fit as a refit and as a fold ensemble; test accuracy, parameters, seconds."""
    cand, dataset = best_candidate(name, run, epochs, tmp)
    one = count_parameters(build_seeded(cand))
    start = time.perf_counter()
    model, _, _ = refit(cand, dataset)
    refit_s, refit_test = time.perf_counter() - start, evaluate(model, dataset.test)["accuracy"]
    ensemble_cand = dataclasses.replace(cand, training=dataclasses.replace(cand.training, final="fold_ensemble"))
    start = time.perf_counter()
    ensemble, _ = fit_fold_ensemble(ensemble_cand, dataset)
    ensemble_s, ensemble_test = time.perf_counter() - start, evaluate(ensemble, dataset.test)["accuracy"]
    k = len(ensemble.members)
    print(f"{name} seed {run['seed']}: refit {refit_test:.3f} ({refit_s:.0f} s; search logged {run['test']:.3f}), "
          f"{k}-fold ensemble {ensemble_test:.3f} ({ensemble_s:.0f} s)", flush=True)
    return {"seed": run["seed"], "params": one, "k": k, "logged": run["test"], "refit": refit_test,
            "refit_s": refit_s, "ensemble": ensemble_test, "ensemble_s": ensemble_s}


def report(results: dict[str, list[dict]], args, wall_s: float) -> str:
    mean = statistics.mean
    lines = [
        "# Refit or fold ensemble: the deployed model of the same candidate",
        "",
        f"Command: `python bench/final_model.py --record {args.record} --epochs {args.epochs}"
        f"{' --sets ' + ' '.join(args.sets) if args.sets else ''} --out {args.out}` ({wall_s / 60:.0f} min on "
        f"{torch.get_num_threads()} thread(s)).",
        "",
        "Each row: the best-by-validation candidates of the small-family searches in the record (one per search "
        "seed), fit both ways from the same seed. *Refit*: one model on every training row (what the search "
        "reports; the search's own figure in brackets). *Fold ensemble*: the k fold models of its k-fold selection, "
        "probabilities averaged, at k times the parameters and FLOPs. Test accuracy on the official test split, "
        "mean over seeds; times are the training of each, one thread.",
        "",
        "| set | seeds | params (one model) | refit test | fold ensemble test | ensemble - refit | k | refit s | "
        "ensemble s | LITE / LITETime (published) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, rows in results.items():
        lite = LITE.get(name, ("-", "-"))
        lines.append(
            f"| {name} | {len(rows)} | {mean(r['params'] for r in rows):,.0f} | {mean(r['refit'] for r in rows):.3f} "
            f"({mean(r['logged'] for r in rows):.3f}) | {mean(r['ensemble'] for r in rows):.3f} | "
            f"{mean(r['ensemble'] - r['refit'] for r in rows):+.3f} | {rows[0]['k']} | "
            f"{mean(r['refit_s'] for r in rows):.0f} | {mean(r['ensemble_s'] for r in rows):.0f} | "
            f"{lite[0]} / {lite[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", type=Path, default=Path("bench/results/accuracy_small.json"),
                    help="a bench/accuracy.py --family small JSON record: its best candidates are refit both ways")
    ap.add_argument("--epochs", type=int, default=60, help="the epochs of the searches in the record")
    ap.add_argument("--sets", nargs="*", default=[], help="only these sets of the record (default: all)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as a trial trains
    start, results = time.perf_counter(), {}
    with tempfile.TemporaryDirectory(prefix="emule-final-") as tmp:
        for entry in json.loads(args.record.read_text()):
            if args.sets and entry["name"] not in args.sets:
                continue
            results[entry["name"]] = [both_ways(entry["name"], run, args.epochs, Path(tmp)) for run in entry["runs"]]
            text = report(results, args, time.perf_counter() - start)
            if args.out:  # after every set: a run cut short keeps what it measured
                args.out.write_text(text)
                args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
