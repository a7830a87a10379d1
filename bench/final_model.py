"""Refit or ensemble: what a candidate should deploy once selection is over.

For each best-by-validation candidate of a ``bench/accuracy.py --family small`` run (its JSON record), the same
candidate is fit each way, side by side in one run, from the same seed: ``refit``, one model trained again on every
training row (what the search reported); with ``--ensembles fold``, ``fold_ensemble``, the k models of its
k-fold selection, each on k-1 folds, averaged in probability; with ``--ensembles seeds``, ``seed_ensemble``: k
refits on every training row from seeds s, s+1, ... (the first is the refit), averaged the same way - LITETime's five
LITEs. Either ensemble has k times the parameters, FLOPs and latency. Reported per set: test accuracy of each (mean
over the search seeds), the difference, the parameters, and the training time of each (one thread per process, as a
trial trains). The field's LITE against LITETime is quoted beside it.

    python bench/final_model.py --record bench/results/accuracy_small.json --out bench/results/final_model.md
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from accuracy import best_candidate  # noqa: E402
from variants import record_parser, refit_each  # noqa: E402

from emule_models.cost import count_parameters  # noqa: E402
from emule_models.train import evaluate  # noqa: E402
from search.trial.candidate import build_seeded  # noqa: E402
from search.trial.validation import fit_fold_ensemble, fit_seed_ensemble, refit  # noqa: E402

# Published test accuracies of LITE (one model) and LITETime (five LITEs averaged), from the LITE repository's
# results (MSD-IRIMAS/LITE, default split, mean of 5 runs); "-" where it reports none.
LITE = {"osuleaf": ("-", "0.946"), "gunpoint": ("-", "1.000"), "italypowerdemand": ("-", "0.964"),
        "basicmotions": ("0.950", "1.000"), "plaid": ("0.907", "0.920")}


ENSEMBLES = {"fold": "fold ensemble", "seeds": "seed ensemble"}
KEYS = {"fold": "ensemble", "seeds": "seeds"}  # each ensemble's keys in a run's results (``ensemble``: as recorded)


def each_way(name: str, run: dict, epochs: int, ensembles: tuple[str, ...]) -> dict:
    """The run's best candidate, fit as a refit and as each of ``ensembles``; test accuracy, parameters, seconds."""
    torch.set_num_threads(1)  # as a trial trains
    with tempfile.TemporaryDirectory(prefix="emule-final-") as tmp:
        return fit_each_way(name, run, epochs, ensembles, Path(tmp))


def fit_each_way(name: str, run: dict, epochs: int, ensembles: tuple[str, ...], tmp: Path) -> dict:
    cand, dataset = best_candidate(name, run, epochs, tmp)
    k = int(cand.data["cv_folds"])
    out = {"set": name, "seed": run["seed"], "params": count_parameters(build_seeded(cand)), "k": k,
           "logged": run["test"]}
    start = time.perf_counter()
    model, _, _ = refit(cand, dataset)
    out["refit_s"], out["refit"] = time.perf_counter() - start, evaluate(model, dataset.test)["accuracy"]
    said = [f"refit {out['refit']:.3f} ({out['refit_s']:.0f} s; search logged {run['test']:.3f})"]
    if "fold" in ensembles:
        fold_cand = dataclasses.replace(cand, training=dataclasses.replace(cand.training, final="fold_ensemble"))
        start = time.perf_counter()
        ensemble, _ = fit_fold_ensemble(fold_cand, dataset)
        out["ensemble_s"], out["ensemble"] = time.perf_counter() - start, evaluate(ensemble, dataset.test)["accuracy"]
        said.append(f"{len(ensemble.members)}-fold ensemble {out['ensemble']:.3f} ({out['ensemble_s']:.0f} s)")
    if "seeds" in ensembles:  # as a search deploys it (``final: seed_ensemble``): its first member is the refit
        seeded = dataclasses.replace(cand, training=dataclasses.replace(cand.training, final="seed_ensemble",
                                                                        ensemble_seeds=k))
        start = time.perf_counter()
        ensemble, _, _ = fit_seed_ensemble(seeded, dataset)
        out["seeds_s"], out["seeds"] = time.perf_counter() - start, evaluate(ensemble, dataset.test)["accuracy"]
        said.append(f"{k}-seed ensemble {out['seeds']:.3f} ({out['seeds_s']:.0f} s)")
    print(f"{name} seed {run['seed']}: " + ", ".join(said), flush=True)
    return out


def report(rows: list[dict], args, wall_s: float) -> str:
    mean = statistics.mean
    results = {name: [r for r in rows if r["set"] == name] for name in dict.fromkeys(r["set"] for r in rows)}
    ways = [w for w in ENSEMBLES if w in args.ensembles]
    names = " or ".join(ENSEMBLES[w] for w in ways)
    option = "" if ways == ["fold"] else f" --ensembles {' '.join(ways)}"
    defined = {
        "fold": "*Fold ensemble*: the k fold models of its k-fold selection, probabilities averaged, at k times the "
                "parameters and FLOPs.",
        "seeds": "*Seed ensemble* (`final: seed_ensemble`): k refits on every training row from the candidate's "
                 "seed and the next k-1 (the first is the refit), probabilities averaged, at k times the parameters "
                 "and FLOPs.",
    }
    lines = [
        f"# Refit or {names}: the deployed model of the same candidate",
        "",
        f"Command: `python bench/final_model.py --record {' '.join(map(str, args.record))} --epochs {args.epochs}"
        f"{' --sets ' + ' '.join(args.sets) if args.sets else ''}{option} --processes {args.processes} --out "
        f"{args.out}` ({wall_s / 60:.0f} min; one thread per process).",
        "",
        "Each row: the best-by-validation candidates of the small-family searches in the record (one per search "
        "seed), fit each way from the same seed. *Refit*: one model on every training row (what the search "
        "reports; the search's own figure in brackets). " + " ".join(defined[w] for w in ways) + " Test accuracy on "
        "the official test split, mean over seeds; times are the training of each, one thread.",
        "",
        "| set | seeds | params (one model) | refit test | "
        + "".join(f"{ENSEMBLES[w]} test | ensemble - refit | " for w in ways)
        + "k | refit s | " + "".join(f"{ENSEMBLES[w].split()[0]} s | " for w in ways) + "LITE / LITETime (published) |",
        "|---|---:|---:|---:|" + "---:|---:|" * len(ways) + "---:|---:|" + "---:|" * len(ways) + "---|",
    ]
    for name, rows in results.items():
        lite = LITE.get(name, ("-", "-"))
        cells = "".join(f"{mean(r[KEYS[w]] for r in rows):.3f} | {mean(r[KEYS[w]] - r['refit'] for r in rows):+.3f} | "
                        for w in ways)
        times = "".join(f"{mean(r[KEYS[w] + '_s'] for r in rows):.0f} | " for w in ways)
        lines.append(
            f"| {name} | {len(rows)} | {mean(r['params'] for r in rows):,.0f} | {mean(r['refit'] for r in rows):.3f} "
            f"({mean(r['logged'] for r in rows):.3f}) | {cells}{rows[0]['k']} | "
            f"{mean(r['refit_s'] for r in rows):.0f} | {times}{lite[0]} / {lite[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = record_parser(__doc__)
    ap.add_argument("--ensembles", nargs="+", choices=list(ENSEMBLES), default=["fold"],
                    help="the ensembles fit beside the refit (default: fold)")
    ap.set_defaults(processes=1)
    args = ap.parse_args()
    refit_each(ap, args, each_way, [(tuple(args.ensembles),)], lambda rows, seconds: report(rows, args, seconds))


if __name__ == "__main__":
    main()
