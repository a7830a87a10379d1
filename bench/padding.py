"""Skipping the padding of variable-length series: the stems run up to a batch's last real step, and evaluation
batches rows of like lengths (``emule_models.embed.real_extent``, ``Split.by_length``).

For each best-by-validation candidate of a ``bench/accuracy.py --family small`` run (its JSON record), the same
model is trained for a few epochs on the whole training pool and evaluated on the test split twice, side by side in
one run, from the same seed, in one process on one thread (as a trial trains), after an untimed epoch each way:
with the padding computed and masked (``TRIM_PADDING = False``, as before) and with it skipped. Reported: seconds
per epoch and for the test split each way, their ratio, how far apart the test logits of one trained model lie
when computed each way (the skip is exact: float rounding only), and each trained model's test accuracy (rounding
differences grow over training steps, as between any two runs that sum in another order).

    python bench/padding.py --record bench/results/accuracy_small_plaid.json bench/results/accuracy_small.json \\
        --sets plaid gunpoint --out bench/results/padding.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accuracy import best_candidate, runs_by_set  # noqa: E402

from emule_models import embed  # noqa: E402
from emule_models.distill import predict_logits  # noqa: E402
from emule_models.train import fit  # noqa: E402
from search.trial.candidate import build_seeded  # noqa: E402


def logits_timed(model, dataset, trim: bool) -> tuple[float, np.ndarray]:
    """Seconds for the test split's logits, and those logits."""
    embed.TRIM_PADDING = trim
    start = time.perf_counter()
    logits = predict_logits(model, dataset.test)
    return time.perf_counter() - start, logits


def trained(cand, dataset, epochs: int, trim: bool):
    """The candidate's model trained for ``epochs`` on the whole pool; seconds per epoch."""
    embed.TRIM_PADDING = trim
    model = build_seeded(cand)
    start = time.perf_counter()
    fit(model, dataset.pool, None, dataclasses.replace(cand.training, epochs=epochs))
    return model, (time.perf_counter() - start) / epochs


def measure(name: str, run: dict, epochs: int, tmp: Path) -> dict:
    cand, dataset = best_candidate(name, run, epochs, tmp)
    lengths = np.concatenate([v.sum(1) for v in dataset.pool.valid.values()]) if dataset.pool.valid else None
    for trim in (False, True):  # untimed: the first calls' one-off set-up must not count against the way run first
        logits_timed(trained(cand, dataset, 1, trim)[0], dataset, trim)
    padded_model, padded_s = trained(cand, dataset, epochs, trim=False)
    model, skipped_s = trained(cand, dataset, epochs, trim=True)
    padded_eval_s, padded = logits_timed(model, dataset, trim=False)
    skipped_eval_s, skipped = logits_timed(model, dataset, trim=True)
    _, other = logits_timed(padded_model, dataset, trim=True)
    row = {"set": name, "seed": run["seed"], "length": dataset.modalities[0].length,
           "median_length": float(np.median(lengths)) if lengths is not None else None,
           "padded_epoch_s": padded_s, "skipped_epoch_s": skipped_s,
           "padded_eval_s": padded_eval_s, "skipped_eval_s": skipped_eval_s,
           "logit_gap": float(np.abs(padded - skipped).max()),
           "padded_test": float((other.argmax(1) == dataset.test.labels).mean()),
           "skipped_test": float((skipped.argmax(1) == dataset.test.labels).mean())}
    print(f"{name} seed {run['seed']}: epoch {padded_s:.2f} s -> {skipped_s:.2f} s "
          f"({padded_s / skipped_s:.2f}x), test split {padded_eval_s:.2f} s -> {skipped_eval_s:.2f} s, "
          f"largest logit gap {row['logit_gap']:.1e}; test accuracy trained padded {row['padded_test']:.3f}, "
          f"skipped {row['skipped_test']:.3f}", flush=True)
    return row


def report(rows: list[dict], command: str) -> str:
    lines = ["# Skipping the padding of variable-length series", "", "Recorded with:", "", f"    {command}", "",
             "Each set's best-by-validation candidates (one per search seed of the record), trained on the whole "
             "training pool from the same seed, once computing the padding and masking it, once skipping it (after an "
             "untimed epoch and test pass each way); one process, one thread. `logit gap`: the largest absolute "
             "difference between one trained model's test logits computed each way (float rounding: the skip is "
             "exact). `test accuracy`: of the model trained "
             "each way (their rounding differences grow over the training steps, as between any two runs that "
             "sum in another order).", "",
             "| set | seed | length (median) | epoch, padded (s) | epoch, skipped (s) | speed-up | test split, padded "
             "(s) | skipped (s) | speed-up | logit gap | test accuracy, padded / skipped |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        median = f"{r['median_length']:.0f}" if r["median_length"] is not None else "fixed"
        lines.append(f"| {r['set']} | {r['seed']} | {r['length']} ({median}) | {r['padded_epoch_s']:.2f} | "
                     f"{r['skipped_epoch_s']:.2f} | {r['padded_epoch_s'] / r['skipped_epoch_s']:.2f}x | "
                     f"{r['padded_eval_s']:.2f} | {r['skipped_eval_s']:.2f} | "
                     f"{r['padded_eval_s'] / r['skipped_eval_s']:.2f}x | {r['logit_gap']:.1e} | "
                     f"{r['padded_test']:.3f} / {r['skipped_test']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", type=Path, nargs="+", required=True,
                        help="bench/accuracy.py --family small JSON records")
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs timed each way")
    parser.add_argument("--seeds", type=int, default=1, help="search seeds per set (their best candidates)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = runs_by_set(args.record)
    missing = [s for s in args.sets if s not in runs]
    if missing:
        parser.error(f"--sets: {missing} not in the records; they hold {sorted(runs)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            for run in runs[name][:args.seeds]:
                rows.append(measure(name, run, args.epochs, Path(tmp)))
    text = report(rows, "python " + " ".join(sys.argv))
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
