"""Data efficiency on PLAID: test accuracy vs training-data fraction for each subset-selection strategy.

One fixed mid-size model (width 32, depth 2, 4 heads, series patch 32, plus a spectrogram view of the current
with 8 x 8 image patches) is trained on subsets of PLAID's train split chosen by each strategy in
``emule_models.data.selection.STRATEGIES`` at each fraction, over several seeds (the seed drives both the subset
draw and the model's initialisation; strategies are compared paired by seed). Proxy scores (EL2N, embeddings) are
computed once, up front, and shared with every run - as a search does.

Two training budgets:

- ``steps``: every run sees the same number of samples as the full-data run (a subset of 10% is trained for 10x
  the epochs), so the comparison isolates *which* data is kept.
- ``epochs``: every run trains for the same number of epochs, so a subset also saves compute in proportion.

The recipe is the plain one unless ``--augment`` / ``--label-smoothing`` / ``--pretrain-epochs`` say otherwise.
With ``--pretrain-epochs`` every run first pretrains (masked-patch reconstruction, ``emule_models.pretrain``) on
the inputs of the whole train split - labels unread, the subset is the labelled share - once per seed, cached and
shared by every strategy and fraction of that seed.

    python bench/data_efficiency.py --out bench/results/data_efficiency.md
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = {"width": 32, "depth": 2, "heads": 4, "patch_len": 32, "image_patch": 8}


def _dataset(view: str | None):
    from emule_models.data import load_builtin

    return load_builtin("plaid", seed=0, val_fraction=0.2, view=view)


def _init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core


def run_one(job: dict) -> dict:
    """Train the fixed model on one subset; return its test accuracy."""
    import torch

    from emule_models import ModelConfig, build_model
    from emule_models.data import select
    from emule_models.pretrain import load_pretrained, pretrained_state
    from emule_models.train import TrainConfig, evaluate, fit

    ds = _dataset(job["view"])
    rows = select(ds.train.labels, job["fraction"], job["strategy"], seed=job["seed"], scores=job["el2n"],
                  embeddings=job["embeddings"])
    epochs = job["epochs"]
    if job["budget"] == "steps":
        epochs = max(1, round(epochs * len(ds.train) / len(rows)))
    arch = ModelConfig(ds.modalities, len(ds.classes), **MODEL)
    torch.manual_seed(job["seed"])
    model = build_model(arch)
    start = time.perf_counter()
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=job["lr"], seed=job["seed"], **job["recipe"])
    if cfg.pretrain_epochs:  # every train input, labelled or not in this run; cached per seed
        load_pretrained(model, pretrained_state(arch, ds.train, cfg, cache_dir=job["pretrain_cache"])[0])
    fit(model, ds.train.take(rows), ds.val.take(rows[:0]), cfg)  # no per-epoch validation: only test is reported
    test = evaluate(model, ds.test)["accuracy"]
    return {**{k: job[k] for k in ("strategy", "fraction", "seed", "budget")}, "rows": len(rows),
            "epochs": epochs, "test": test, "seconds": time.perf_counter() - start}


def pretrain_once(job: dict) -> None:
    """Fill the pretraining cache for one seed, so the runs of that seed (in any worker) all read it."""
    from emule_models import ModelConfig
    from emule_models.pretrain import pretrained_state
    from emule_models.train import TrainConfig

    ds = _dataset(job["view"])
    cfg = TrainConfig(epochs=job["epochs"], batch_size=32, lr=job["lr"], seed=job["seed"], **job["recipe"])
    pretrained_state(ModelConfig(ds.modalities, len(ds.classes), **MODEL), ds.train, cfg,
                     cache_dir=job["pretrain_cache"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    p.add_argument("--strategies", nargs="+", default=["random", "el2n", "kcenter", "ccs"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=40, help="epochs of the full-data run")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--budgets", nargs="+", default=["steps", "epochs"], choices=["steps", "epochs"])
    p.add_argument("--view", default="spectrogram", help="derived image view of the current; 'none' for none")
    p.add_argument("--augment", default="none", help="augmentation policy (emule_models.augment)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--pretrain-epochs", type=int, default=0, help="masked-patch pretraining on every train input")
    p.add_argument("--proxy-epochs", type=int, default=10)
    p.add_argument("--proxy-seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path(".emule/scores"))
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    view = None if args.view == "none" else args.view
    _init()
    from emule_models.data import proxy_scores

    started = time.perf_counter()
    ds = _dataset(view)
    proxy_start = time.perf_counter()
    scores = proxy_scores(ds, epochs=args.proxy_epochs, seeds=args.proxy_seeds, cache_dir=args.cache)
    proxy_s = time.perf_counter() - proxy_start
    jobs = [{"strategy": "random", "fraction": 1.0, "budget": "full", "seed": s} for s in range(args.seeds)]
    jobs += [{"strategy": st, "fraction": f, "budget": b, "seed": s} for b in args.budgets for f in args.fractions
             for st in args.strategies for s in range(args.seeds)]
    recipe = {"augment": args.augment, "label_smoothing": args.label_smoothing, "pretrain_epochs": args.pretrain_epochs}
    for j in jobs:
        j.update(view=view, epochs=args.epochs, lr=args.lr, el2n=scores["el2n"], embeddings=scores["embeddings"],
                 recipe=recipe, pretrain_cache=str(args.cache.parent.resolve() / "pretrain"))
    jobs.sort(key=lambda j: -(j["fraction"] if j["budget"] == "epochs" else 1.0))  # longest first: fewer idle cores
    with mp.get_context("spawn").Pool(args.workers, initializer=_init) as pool:
        if args.pretrain_epochs:
            pool.map(pretrain_once, [j for j in jobs if j["budget"] == "full"], chunksize=1)  # one per seed
        results = pool.map(run_one, jobs, chunksize=1)
    total_s = time.perf_counter() - started
    text = report(results, args, ds, proxy_s, total_s)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def report(results: list[dict], args, ds, proxy_s: float, total_s: float) -> str:
    by = {}
    for r in results:
        by.setdefault((r["budget"], r["strategy"], r["fraction"]), {})[r["seed"]] = r["test"]
    full = by[("full", "random", 1.0)]
    full_mean, full_std = _stats([100 * v for v in full.values()])
    lines = [
        "# Data efficiency on PLAID",
        "",
        "Recorded with:",
        "",
        "    " + " ".join(["python", "bench/data_efficiency.py", *sys.argv[1:]]),
        "",
        f"Data: PLAID (sktime 1.2), {len(ds.train)} train / {len(ds.val)} val / {len(ds.test)} test, 11 classes, "
        f"series z-normalised per sample{' + ' + args.view + ' view' if args.view != 'none' else ''}. "
        f"Model: {MODEL} ({', '.join(m.name for m in ds.modalities)}), AdamW lr {args.lr}, batch 32, cosine schedule, "
        f"{args.epochs} epochs on the full train split; recipe: augment {args.augment}, label smoothing "
        f"{args.label_smoothing:g}, "
        + (f"{args.pretrain_epochs} epochs of masked-patch pretraining on every train input first"
           if args.pretrain_epochs else "no pretraining") + ". Test accuracy (%) of the final model, mean +- std over "
        f"{args.seeds} seeds (seed = subset draw and model init). Proxy: {args.proxy_seeds} seeds x "
        f"{args.proxy_epochs} epochs of a width-32, depth-1 model, {proxy_s:.0f} s once. "
        f"Whole run: {total_s / 60:.1f} min on {args.workers} processes (2-core machine shared with other work).",
        "",
        f"**Full data (100%): {full_mean:.1f} +- {full_std:.1f}**",
        "",
    ]
    for budget in args.budgets:
        title = ("same samples seen as the full run (subset trained for proportionally more epochs)"
                 if budget == "steps" else f"same epochs ({args.epochs}) for every subset: compute scales with it")
        lines += [f"## Budget `{budget}`: {title}", "",
                  "| strategy | " + " | ".join(f"{f:.0%}" for f in args.fractions) + " |",
                  "|---|" + "---:|" * len(args.fractions)]
        for st in args.strategies:
            cells = []
            for f in args.fractions:
                m, s = _stats([100 * v for v in by[(budget, st, f)].values()])
                cells.append(f"{m:.1f} +- {s:.1f}")
            lines.append(f"| {st} | " + " | ".join(cells) + " |")
        lines += ["", "Paired difference to `random` (same seeds), mean +- std, in points:", "",
                  "| strategy | " + " | ".join(f"{f:.0%}" for f in args.fractions) + " |",
                  "|---|" + "---:|" * len(args.fractions)]
        for st in args.strategies:
            if st == "random":
                continue
            cells = []
            for f in args.fractions:
                a, b = by[(budget, st, f)], by[(budget, "random", f)]
                m, s = _stats([100 * (a[k] - b[k]) for k in sorted(a)])
                cells.append(f"{m:+.1f} +- {s:.1f}")
            lines.append(f"| {st} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Against the targets", ""]
    for budget in args.budgets:
        best = []
        for f in args.fractions:
            if f > 0.5:
                continue
            for st in args.strategies:
                m, _ = _stats([100 * v for v in by[(budget, st, f)].values()])
                best.append((m, st, f))
        m, st, f = max(best)
        lines.append(f"- `{budget}`: best at <= 50% of the data is {st} at {f:.0%}: {m:.1f}, "
                     f"{m - full_mean:+.1f} points from full data (target: within 1 point).")
        wins = []
        for f in args.fractions:
            if not 0.1 <= f <= 0.25:
                continue
            for st in args.strategies:
                if st == "random":
                    continue
                a, b = by[(budget, st, f)], by[(budget, "random", f)]
                d, s = _stats([100 * (a[k] - b[k]) for k in sorted(a)])
                if d > s:
                    wins.append(f"{st} at {f:.0%} ({d:+.1f} +- {s:.1f})")
        lines.append(f"- `{budget}`: beats random by more than the seed spread of the paired difference at 10-25%: "
                     + (", ".join(wins) if wins else "none") + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
