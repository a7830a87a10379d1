"""Variants: a small-family record's best candidates refit with one thing changed, beside themselves as found.

For each best-by-validation candidate of a ``bench/accuracy.py --family small`` run (its JSON record), the candidate
is refit on every training row as its search found it and once per ``--variant``, side by side in one run, from the
same seed; test accuracy on the official test split. A variant is ``LABEL=KEY:VALUE[,KEY:VALUE...]`` where each KEY
is a model field (``patch_len``, ``width``, ``stem_layers``, ...) or a training field (``epochs``, ``lr_schedule``,
``batch_size``, ...), or ``padding:signal``: variable-length series handed over zero-padded with every step real, as
the classical baselines see them (``search.trial.baselines``), instead of masked. The searches choose at their own
settings: this measures what a change does to the same candidates, not what a search would choose with it.

    python bench/variants.py --record bench/results/accuracy_small_plaid.json \
        bench/results/accuracy_small_plaid12.json --variant gap=patch_len:1 wide=width:64 \
        padded=padding:signal --out bench/results/variants_plaid.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accuracy import best_candidate, runs_by_set  # noqa: E402

from emule_models.config import ModelConfig  # noqa: E402
from emule_models.cost import count_parameters  # noqa: E402
from emule_models.data.dataset import Dataset, Split  # noqa: E402
from emule_models.train import TrainConfig, evaluate  # noqa: E402
from search.trial.validation import refit  # noqa: E402

AS_FOUND = "as found"
MODEL_KEYS = {f.name: f.type for f in dataclasses.fields(ModelConfig)}
TRAIN_KEYS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
SCALARS = {"int": int, "float": float, "str": str}
PADDINGS = ("mask", "signal")


def variant(text: str) -> tuple[str, dict[str, str]]:
    """``LABEL=KEY:VALUE[,KEY:VALUE...]`` -> (label, {key: value}); refused in one line naming what is accepted."""
    label, _, body = text.partition("=")
    pairs = [p.partition(":") for p in body.split(",")] if body else []
    changes = {k: v for k, _, v in pairs}
    keys = {**MODEL_KEYS, **TRAIN_KEYS}
    accepted = sorted(k for k, t in keys.items() if t in SCALARS and k != "num_classes")  # the data fixes that
    bad = [k for k, sep, v in pairs if not sep or not v or k not in [*accepted, "padding"]]
    for k, v in changes.items():
        try:
            SCALARS[keys[k]](v) if k in accepted else None
        except ValueError:
            bad.append(f"{k}: {v!r} is not {keys[k]}")
    if not label or label == AS_FOUND or not changes or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not LABEL=KEY:VALUE[,KEY:VALUE...] (a label other than {AS_FOUND!r}; keys among "
            f"{accepted} and 'padding'){' - not accepted: ' + str(bad) if bad else ''}")
    if changes.get("padding", "mask") not in PADDINGS:
        raise argparse.ArgumentTypeError(f"{text!r}: padding {changes['padding']!r} not accepted; accepted: "
                                         f"{list(PADDINGS)}")
    return label, changes


def typed(changes: dict[str, str], keys: dict[str, str]) -> dict:
    return {k: SCALARS[keys[k]](v) for k, v in changes.items() if k in keys}


def padding_as_signal(dataset: Dataset) -> Dataset:
    """The dataset with every padded step of its series made a real step holding zero."""

    def real(split: Split) -> Split:
        inputs = {k: np.nan_to_num(v) if k in split.valid else v for k, v in split.inputs.items()}
        return dataclasses.replace(split, inputs=inputs, valid={k: np.ones_like(v) for k, v in split.valid.items()})

    return dataclasses.replace(dataset, train=real(dataset.train), val=real(dataset.val), test=real(dataset.test))


def refit_variant(name: str, run: dict, search_epochs: int, label: str, changes: dict[str, str]) -> dict:
    """The run's best candidate with ``changes`` refit on every training row: test accuracy, parameters, seconds."""
    torch.set_num_threads(1)  # as a trial trains
    with tempfile.TemporaryDirectory(prefix="emule-variant-") as tmp:
        cand, dataset = best_candidate(name, run, search_epochs, Path(tmp))
        cand = dataclasses.replace(cand, model=dataclasses.replace(cand.model, **typed(changes, MODEL_KEYS)),
                                   training=dataclasses.replace(cand.training, **typed(changes, TRAIN_KEYS)))
        if changes.get("padding") == "signal":
            dataset = padding_as_signal(dataset)
        start = time.perf_counter()
        model, _, _ = refit(cand, dataset)
        seconds, test = time.perf_counter() - start, evaluate(model, dataset.test)["accuracy"]
    params = count_parameters(model)
    print(f"{name} seed {run['seed']} {label}: test {test:.3f}, {params} params ({seconds:.0f} s; its search "
          f"logged {run['test']:.3f})", flush=True)
    return {"set": name, "seed": run["seed"], "variant": label, "changes": changes, "test": test, "params": params,
            "seconds": seconds, "logged": run["test"]}


def report(rows: list[dict], args, command: str, wall_s: float) -> str:
    mean = statistics.mean
    lines = [
        "# Variants: the small family's best candidates refit with one thing changed",
        "",
        f"Command: `{command}` ({wall_s / 60:.0f} min; each refit on one thread).",
        "",
        f"Each row: the search seeds' best-by-validation candidates (chosen at {args.epochs} epochs), refit on every "
        "training row with the change, from the same seed; test accuracy mean +- std over the seeds, and its change "
        f"against the same candidates refit as found in this run (`{AS_FOUND}`), seed by seed. `logged`: the "
        "searches' own test accuracy.",
        "",
        "| set | variant | changes | seeds | test | change | params | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["set"] for r in rows):
        of_set = [r for r in rows if r["set"] == name]
        found = {r["seed"]: r["test"] for r in of_set if r["variant"] == AS_FOUND}
        logged = mean({r["seed"]: r["logged"] for r in of_set}.values())
        lines.append(f"| {name} | logged | - | {len({r['seed'] for r in of_set})} | {logged:.3f} | | | |")
        for label in dict.fromkeys(r["variant"] for r in of_set):
            got = [r for r in of_set if r["variant"] == label]
            tests = [r["test"] for r in got]
            spread = f" +- {statistics.stdev(tests):.3f}" if len(tests) > 1 else ""
            paired = [r["test"] - found[r["seed"]] for r in got if r["seed"] in found]
            change = "" if label == AS_FOUND or not paired else f"{mean(paired):+.3f}"
            what = ", ".join(f"{k}: {v}" for k, v in got[0]["changes"].items()) or "-"
            lines.append(f"| {name} | {label} | {what} | {len(got)} | {mean(tests):.3f}{spread} | {change} | "
                         f"{mean(r['params'] for r in got):,.0f} | {mean(r['seconds'] for r in got):.0f} |")
    return "\n".join(lines) + "\n"


def record_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a bench that refits a small-family record's best candidates (this one, training_length,
    final_model)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--record", type=Path, nargs="+", required=True,
                    help="bench/accuracy.py --family small JSON records: their best candidates are refit")
    ap.add_argument("--epochs", type=int, default=60, help="the epochs of the searches in the record")
    ap.add_argument("--sets", nargs="*", default=[], help="only these sets of the record (default: all)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    return ap


def refit_each(ap: argparse.ArgumentParser, args, refit_one, settings: list[tuple], report) -> None:
    """``refit_one(name, run, args.epochs, *setting)`` for every run of the record's sets and every setting,
    ``args.processes`` at once; ``report(rows, seconds)`` written to ``args.out`` after each refit (a run cut short
    keeps what it measured), with the rows as JSON beside it, and printed at the end."""
    jobs = [(name, run, args.epochs, *setting) for name, runs in runs_by_set(args.record).items()
            if not args.sets or name in args.sets for run in runs for setting in settings]
    if not jobs:
        ap.error(f"--sets: none of {args.sets} is in {' '.join(map(str, args.record))}")
    start, rows = time.perf_counter(), []
    with ProcessPoolExecutor(args.processes) as pool:
        for row in pool.map(refit_one, *zip(*jobs)):
            rows.append(row)
            if args.out:
                args.out.write_text(report(rows, time.perf_counter() - start))
                args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(report(rows, time.perf_counter() - start))


def main() -> None:
    ap = record_parser(__doc__)
    ap.add_argument("--variant", nargs="+", type=variant, required=True, metavar="LABEL=KEY:VALUE[,KEY:VALUE...]")
    args = ap.parse_args()
    command = "python bench/variants.py " + " ".join(sys.argv[1:])
    refit_each(ap, args, refit_variant, [(AS_FOUND, {}), *args.variant],
               lambda rows, seconds: report(rows, args, command, seconds))


if __name__ == "__main__":
    main()
