"""Training length: what more epochs, and the plateau schedule, buy the small family's best candidates.

For each best-by-validation candidate of a ``bench/accuracy.py --family small`` run (its JSON record), the same
candidate is refit on every training row at each ``--budgets`` entry (``EPOCHS:SCHEDULE``, e.g. ``60:cosine
200:plateau``), side by side in one run, from the same seed; nothing else changes (its learning rate is the one its
search chose). Test accuracy on the official test split, mean over the search seeds, and each refit's training time
(one process, one thread, as a trial trains; ``--processes`` refits at once). The searches choose at their own epochs:
this measures the training, not the selection.

    python bench/training_length.py --record bench/results/accuracy_small_plaid.json \
        bench/results/accuracy_small_plaid12.json --budgets 200:cosine 200:plateau \
        --out bench/results/training_length_plaid.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from variants import record_parser, refit_each, refit_variant  # noqa: E402

from emule_models.train import LR_SCHEDULES  # noqa: E402


def budget(text: str) -> tuple[int, str]:
    """``EPOCHS:SCHEDULE`` -> (epochs, schedule); refused in one line naming what is accepted."""
    epochs, _, schedule = text.partition(":")
    if not epochs.isdigit() or int(epochs) < 1 or schedule not in LR_SCHEDULES:
        raise argparse.ArgumentTypeError(f"{text!r} is not EPOCHS:SCHEDULE with EPOCHS a positive whole "
                                         f"number and SCHEDULE one of {list(LR_SCHEDULES)} (e.g. 200:plateau)")
    return int(epochs), schedule


def refit_at(name: str, run: dict, search_epochs: int, epochs: int, schedule: str) -> dict:
    """The run's best candidate refit at ``epochs`` with ``schedule``: test accuracy and seconds."""
    row = refit_variant(name, run, search_epochs, f"{epochs}:{schedule}",
                        {"epochs": str(epochs), "lr_schedule": schedule})
    return {**row, "epochs": epochs, "schedule": schedule}


def report(rows: list[dict], args, wall_s: float) -> str:
    mean = statistics.mean
    labels = [f"{e}:{s}" for e, s in args.budgets]
    lines = [
        "# Training length: the small family's best candidates refit at more epochs",
        "",
        f"Command: `python bench/training_length.py --record {' '.join(map(str, args.record))} --epochs {args.epochs}"
        f"{' --sets ' + ' '.join(args.sets) if args.sets else ''} --budgets {' '.join(labels)} --processes "
        f"{args.processes} --out {args.out}` ({wall_s / 60:.0f} min; each refit on one thread).",
        "",
        f"Each cell: test accuracy of the search seeds' best-by-validation candidates (chosen at {args.epochs} "
        "epochs), each refit on every training row at `EPOCHS:SCHEDULE` from the same seed, mean +- std over the "
        "seeds, and the mean seconds of one refit. `cosine` anneals the rate to zero; `plateau` halves it when the "
        "training loss stalls (LITE's and InceptionTime's schedule). `logged`: the searches' own test accuracy.",
        "",
        "| set | seeds | logged | " + " | ".join(labels) + " |",
        "|---|---:|---:|" + "---:|" * len(labels),
    ]
    for name in dict.fromkeys(r["set"] for r in rows):
        of_set = [r for r in rows if r["set"] == name]
        cells = []
        for label in labels:
            got = [r for r in of_set if f"{r['epochs']}:{r['schedule']}" == label]
            tests = [r["test"] for r in got]
            spread = f" +- {statistics.stdev(tests):.3f}" if len(tests) > 1 else ""
            cells.append(f"{mean(tests):.3f}{spread} ({mean(r['seconds'] for r in got):.0f} s)" if got else "-")
        logged = mean({r["seed"]: r["logged"] for r in of_set}.values())
        lines.append(f"| {name} | {len({r['seed'] for r in of_set})} | {logged:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = record_parser(__doc__)
    ap.add_argument("--budgets", nargs="+", type=budget, default=[(60, "cosine"), (200, "cosine"), (200, "plateau")],
                    metavar="EPOCHS:SCHEDULE")
    args = ap.parse_args()
    refit_each(ap, args, refit_at, args.budgets, lambda rows, seconds: report(rows, args, seconds))


if __name__ == "__main__":
    main()
