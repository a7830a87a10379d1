"""Simulated labelling: how many labels each `emule suggest-labels` strategy needs, against random picks.

On a bundled set every training row's label is hidden but those of a seeded, stratified 20% of the training pool
(train + validation rows: the official train split). Then, round by round, a batch of 10% of the pool is chosen
from the rows still unlabelled - by ``margin``, ``entropy``, ``kcenter``, ``mix`` (BADGE) or at random - its labels
are revealed, and a fixed small candidate is trained again on every labelled row and scored on the official test
split. Reported: the test accuracy after each round (mean +- std over seeds) and the labels each strategy needed to
come within 1 point of the same seed's model trained on the whole pool (its first round there; all the rows when
none is), mean over seeds.

The candidate is fixed - the small end of ``spaces/quickstart.yaml``'s space, as ``bench/results/accuracy_small.md``
searched it: LITE-like stem (learned + fixed filters, 2 layers, kernel 21, dilation 2), no attention (depth 0),
width 32, series normalised per sample, AdamW lr 6e-3, batch 32, a fixed number of epochs for every round. The
strategies score with ``search.delivery.label_suggestions.rank`` - the command's own code - on the outputs of the
round's one model (the command uses the candidate's fold models: an ensemble of k where this uses one, to stay cheap). A
seed fixes the first 20%, the model's initialisation and the random picks; strategies are paired by seed.

    python bench/label_suggestions.py --sets gunpoint italypowerdemand basicmotions --seeds 3 \
        --out bench/results/label_suggestions.md
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STRATEGIES = ("random", "margin", "entropy", "kcenter", "mix")
START, STEP, WITHIN = 0.2, 0.1, 0.01
MODEL = {"tokenizer": "lite", "stem_filters": "learned+fixed", "stem_layers": 2, "conv_kernel": 21,
         "conv_dilation": 2, "depth": 0, "width": 32, "heads": 2, "series_norm": "sample"}
LR, BATCH = 6e-3, 32


@functools.lru_cache(maxsize=2)
def _data(name: str):
    from emule_models.data import load_builtin

    return load_builtin(name)


def _config(ds):
    from emule_models import ModelConfig

    length = min(m.length for m in ds.modalities if m.kind == "series")
    return ModelConfig(modalities=ds.modalities, num_classes=len(ds.classes), patch_len=max(2, length // 24),
                       **MODEL)


def first_rows(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded stratified ``fraction`` of the rows, at least one of each class: what a user labelled first."""
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:max(1, round(fraction * np.sum(labels == c)))]
              for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def _train(ds, rows: np.ndarray, seed: int, epochs: int):
    import torch

    from emule_models import build_model
    from emule_models.train import TrainConfig, evaluate, fit

    torch.manual_seed(seed)
    model = build_model(_config(ds))
    fit(model, ds.pool.take(np.sort(rows)), None, TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, seed=seed))
    return model, evaluate(model, ds.test)["accuracy"]


def run_chain(job: dict) -> dict:
    """One (set, seed, strategy): the rounds from 20% to the whole pool; ``strategy`` None trains the whole pool."""
    import torch

    from search.delivery.label_suggestions import outputs, rank

    torch.set_num_threads(1)
    ds, seed, epochs, strategy = _data(job["set"]), job["seed"], job["epochs"], job["strategy"]
    pool, start = ds.pool, time.perf_counter()
    if strategy is None:
        _, accuracy = _train(ds, np.arange(len(pool)), seed, epochs)
        return {**job, "rows": [len(pool)], "accuracy": [accuracy], "seconds": time.perf_counter() - start}
    labelled = first_rows(pool.labels, START, seed)
    step = max(1, round(STEP * len(pool)))
    rng = np.random.default_rng(1000 + seed)
    rows, accuracy = [], []
    while True:
        model, acc = _train(ds, labelled, seed, epochs)
        rows.append(len(labelled))
        accuracy.append(acc)
        left = np.setdiff1d(np.arange(len(pool)), labelled)
        if len(left) <= step:  # the last round would label everything: that is the whole-pool run
            break
        if strategy == "random":
            picks = rng.choice(len(left), size=step, replace=False)
        else:
            seen = outputs([model], pool.take(left))
            known = outputs([model], pool.take(labelled)) if strategy == "kcenter" else None
            picks, _ = rank(strategy, seen, known, step, seed)
        labelled = np.concatenate([labelled, left[picks]])
    return {**job, "rows": rows, "accuracy": accuracy, "seconds": time.perf_counter() - start}


def needed(chain: dict, full: float, pool: int, stay: bool = False) -> int:
    """Labels at the chain's first round within WITHIN of the whole pool's accuracy (the whole pool if none);
    ``stay``: the first round from which every later round is within it too."""
    close = [a >= full - WITHIN - 1e-9 for a in chain["accuracy"]]
    for i, r in enumerate(chain["rows"]):
        if close[i] and (not stay or all(close[i:])):
            return r
    return pool


def _gain(chains: list[dict], base: dict[int, float]) -> str:
    """The mean accuracy over the rounds after the first, less random's on the same seed: mean +- std in points."""
    diff = [100 * (np.mean(c["accuracy"][1:]) - base[c["seed"]]) for c in chains if c["seed"] in base]
    return f"{statistics.mean(diff):+.1f} +- {statistics.pstdev(diff):.1f}" if diff else "-"


def report(results: list[dict], args, minutes: float) -> str:
    lines = ["# Simulated labelling: labels each strategy needs", "", "Recorded with:", "",
             f"    python bench/label_suggestions.py {' '.join(sys.argv[1:])}", "",
             f"Start: a seeded stratified {START:.0%} of the training pool labelled (train + validation rows, the "
             f"official train split); each round labels {STEP:.0%} of the pool more, chosen by the strategy from the "
             "unlabelled rest, and trains the fixed candidate again on every labelled row (" + json.dumps(MODEL) +
             f", patch_len = length // 24, AdamW lr {LR:g}, batch {BATCH}, {args.epochs} epochs every round); test "
             "accuracy on the official test split. The strategies score with "
             "`search.delivery.label_suggestions.rank` on the round's one model (the command uses the candidate's "
             "fold models). "
             f"Seeds {args.seeds} (first rows, initialisation, random picks; strategies paired by seed). "
             f"{sum(r['seconds'] for r in results) / 60:.0f} min of single-threaded training and scoring in all"
             + (f", {minutes:.1f} min of wall time on {args.workers} processes" if minutes else "") +
             ", on this 2-core machine shared with other work.", ""]
    for name in args.sets:
        ds = _data(name)
        pool = len(ds.pool)
        full = {r["seed"]: r["accuracy"][0] for r in results if r["set"] == name and r["strategy"] is None}
        chains = [r for r in results if r["set"] == name and r["strategy"] is not None]
        lines += [f"## {name}: pool {pool} rows, {len(ds.classes)} classes, test {len(ds.test)} rows", "",
                  f"Whole pool: test accuracy {statistics.mean(full.values()):.3f} +- "
                  f"{statistics.pstdev(full.values()):.3f} (seeds {sorted(full)}).", ""]
        rounds = chains[0]["rows"]
        lines += ["| strategy | " + " | ".join(f"{r} ({r / pool:.0%})" for r in rounds) +
                  " | labels to within 1 point: first (mean; per seed) | ... and staying | mean over rounds, "
                  "paired difference to random (points) |",
                  "|---|" + "---:|" * (len(rounds) + 3)]
        base = {c["seed"]: np.mean(c["accuracy"][1:]) for c in chains if c["strategy"] == "random"}
        for strategy in STRATEGIES:
            mine = [c for c in chains if c["strategy"] == strategy]
            if not mine:
                continue
            cells = []
            for i in range(len(rounds)):
                acc = [c["accuracy"][i] for c in mine]
                cells.append(f"{statistics.mean(acc):.3f} +- {statistics.pstdev(acc):.3f}")
            need = [needed(c, full[c["seed"]], pool) for c in mine]
            stays = [needed(c, full[c["seed"]], pool, stay=True) for c in mine]
            lines.append(f"| {strategy} | " + " | ".join(cells) +
                         f" | {statistics.mean(need):.1f} ({statistics.mean(need) / pool:.0%}); "
                         f"{', '.join(map(str, need))} | {statistics.mean(stays):.1f} "
                         f"({statistics.mean(stays) / pool:.0%}); {', '.join(map(str, stays))} | "
                         f"{_gain(mine, base)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["gunpoint", "italypowerdemand", "basicmotions"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--raw", type=Path, default=None, help="also write every chain as JSON lines")
    parser.add_argument("--from-raw", action="store_true", help="only write the report from --raw's chains")
    args = parser.parse_args()
    args.seeds = list(range(args.seeds))
    jobs = [{"set": s, "seed": seed, "strategy": strategy, "epochs": args.epochs}
            for s in args.sets for seed in args.seeds for strategy in [None, *args.strategies]]
    start, results = time.perf_counter(), []
    if args.from_raw:
        jobs, results = [], [json.loads(line) for line in args.raw.read_text().splitlines()]
        results = [r for r in results if r["set"] in args.sets and r["seed"] in args.seeds]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for r in pool.imap_unordered(run_chain, jobs):
            results.append(r)
            print(f"[{time.perf_counter() - start:7.1f}s] {r['set']} seed {r['seed']} {r['strategy'] or 'whole pool'}: "
                  + " ".join(f"{n}:{a:.3f}" for n, a in zip(r["rows"], r["accuracy"])) + f" ({r['seconds']:.0f}s)",
                  flush=True)
            if args.raw:
                with args.raw.open("a") as f:
                    f.write(json.dumps(r) + "\n")
    text = report(results, args, 0.0 if args.from_raw else (time.perf_counter() - start) / 60)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
