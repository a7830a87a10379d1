"""Ablation of the training recipe: each component on its own, and all together, against the plain recipe.

One fixed mid-size model (softmax attention, depth 2, width 64, 4 heads, about 24 tokens per series) is fit on
every training row of a set and scored on its official test split, once per seed (the seed drives the
initialisation, the batch order and the augmentation). Components: ``series_norm: sample``, ``tokenizer: conv``
(kernel 7), ``augment: light`` / ``strong``, ``label_smoothing: 0.1``, ``ema: 0.99``, ``drop_path: 0.1``,
``pretrain_epochs: 100`` (masked-patch reconstruction on the training rows' inputs, mask ratio 0.4, before the
supervised epochs).

    python bench/recipe.py --out bench/results/recipe.md
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {
    "plain": ({}, {}),
    "series_norm": ({"series_norm": "sample"}, {}),
    "conv tokens": ({"tokenizer": "conv"}, {}),
    "augment light": ({}, {"augment": "light"}),
    "augment strong": ({}, {"augment": "strong"}),
    "label smoothing": ({}, {"label_smoothing": 0.1}),
    "ema": ({}, {"ema": 0.99}),
    "drop_path": ({"drop_path": 0.1}, {}),
    "pretrain": ({}, {"pretrain_epochs": 100}),
    "all": ({"series_norm": "sample", "tokenizer": "conv", "drop_path": 0.1},
            {"augment": "strong", "label_smoothing": 0.1, "ema": 0.99}),
    "all + pretrain": ({"series_norm": "sample", "tokenizer": "conv", "drop_path": 0.1},
                       {"augment": "strong", "label_smoothing": 0.1, "ema": 0.99, "pretrain_epochs": 100}),
    "light + norm + pretrain": ({"series_norm": "sample"}, {"augment": "light", "pretrain_epochs": 100}),
}


def run_one(job: dict) -> dict:
    import torch

    from emule_models import ModelConfig, build_model
    from emule_models.data import load_builtin
    from emule_models.pretrain import pretrain
    from emule_models.train import TrainConfig, evaluate, fit

    torch.set_num_threads(1)
    ds = load_builtin(job["set"])
    length = min(m.length for m in ds.modalities if m.kind == "series")
    model_fields, train_fields = VARIANTS[job["variant"]]
    cfg = ModelConfig(modalities=ds.modalities, num_classes=len(ds.classes), depth=2, width=64, heads=4,
                      patch_len=max(2, length // 24), **model_fields)
    torch.manual_seed(job["seed"])
    model = build_model(cfg)
    start = time.perf_counter()
    recipe = TrainConfig(epochs=job["epochs"], batch_size=32, lr=job["lr"], seed=job["seed"], **train_fields)
    pretrain(model, ds.pool, recipe)  # reads the inputs only; nothing without pretrain_epochs
    fit(model, ds.pool, None, recipe)
    return {**job, "test": evaluate(model, ds.test)["accuracy"], "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["osuleaf", "gunpoint"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budgets", nargs="+", default=["60:1e-3", "200:3e-3"],
                    help="epochs:learning-rate pairs; one table each")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    budgets = [(int(b.split(":")[0]), float(b.split(":")[1])) for b in args.budgets]
    jobs = [{"set": s, "variant": v, "seed": seed, "epochs": e, "lr": lr}
            for e, lr in budgets for s in args.sets for v in args.variants for seed in range(args.seeds)]
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.processes) as pool:
        results = pool.map(run_one, jobs)
    wall = time.perf_counter() - start
    lines = ["# Training recipe ablation", "", "Recorded with:", "",
             f"    {' '.join(['python', 'bench/recipe.py', *sys.argv[1:]])}", "",
             "Model: softmax attention, depth 2, width 64, 4 heads, patch = series length / 24; AdamW, batch 32, "
             "cosine schedule, fit on every training row; test accuracy on the official test split, mean +- std over "
             f"{args.seeds} seeds (init, batch order, augmentation). Whole run {wall / 60:.1f} min, "
             f"{args.processes} processes on this 2-core machine.", "",
             "Variants: " + "; ".join(f"`{v}` = " + (", ".join(f"{k} {x}" for k, x in {**m, **t}.items()) or "AdamW + "
                                      "cosine on linear patch tokens, nothing else") for v, (m, t) in VARIANTS.items()
                                      if v in args.variants) + "."]
    for e, lr in budgets:
        lines += ["", f"## {e} epochs, lr {lr:g}", "",
                  "| variant | " + " | ".join(args.sets) + " | mean change vs plain (points) |",
                  "|---|" + "---:|" * (len(args.sets) + 1)]
        acc = {}
        for r in results:
            if (r["epochs"], r["lr"]) == (e, lr):
                acc.setdefault((r["set"], r["variant"]), []).append(r["test"])
        for v in args.variants:
            cells = [f"{statistics.mean(acc[(s, v)]):.3f} +- {statistics.pstdev(acc[(s, v)]):.3f}" for s in args.sets]
            change = statistics.mean(100 * (statistics.mean(acc[(s, v)]) - statistics.mean(acc[(s, "plain")]))
                                     for s in args.sets)
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {change:+.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
