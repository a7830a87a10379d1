"""int8 dynamic quantization on OSULeaf: size ratio and test-accuracy change, per attention variant and width.

Trains a small model on OSULeaf (outline series + silhouette image, early fusion) with ``emule_models.train.fit``,
evaluates it on the official test split, quantizes every ``nn.Linear`` to int8 (``emule_models.compress``) and
evaluates again. Sizes are the bytes of the serialised state_dicts. Prints a markdown table; ``--out`` also
writes it, with the command on top.

    python bench/quantize.py --out bench/results/quantize.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from emule_models import ModelConfig, build_model
from emule_models.attention import ATTENTION
from emule_models.compress import quantize_int8
from emule_models.cost import count_parameters
from emule_models.data import load_builtin
from emule_models.train import TrainConfig, evaluate, fit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attention", nargs="+", default=sorted(ATTENTION), choices=sorted(ATTENTION))
    parser.add_argument("--widths", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the table here, with the command on top")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_builtin("osuleaf", seed=args.seed)
    rows = ["| attention | width | params | float32 bytes | int8 bytes | ratio | test acc float32 | test acc int8 "
            "| change (points) | test loss float32 | test loss int8 |", "|---|" + "---:|" * 10]
    ratios, changes = [], []
    start = time.perf_counter()
    for width in args.widths:
        for attention in args.attention:
            cfg = ModelConfig(modalities=data.modalities, num_classes=len(data.classes), attention=attention,
                              width=width, heads=4, depth=2, patch_len=16, image_patch=8)
            torch.manual_seed(args.seed)
            model = build_model(cfg)
            fit(model, data.train, data.val, TrainConfig(epochs=args.epochs, seed=args.seed))
            before = evaluate(model, data.test)
            quantized, sizes = quantize_int8(model)
            after = evaluate(quantized, data.test)
            change = 100 * (after["accuracy"] - before["accuracy"])
            ratios.append(sizes.ratio)
            changes.append(change)
            rows.append(f"| {attention} | {width} | {count_parameters(model)} | {sizes.float_bytes} "
                        f"| {sizes.int8_bytes} | {sizes.ratio:.2f} | {100 * before['accuracy']:.1f} "
                        f"| {100 * after['accuracy']:.1f} | {change:+.1f} | {before['loss']:.4f} "
                        f"| {after['loss']:.4f} |")
            print(rows[-1], flush=True)
    within = sum(abs(c) <= 1.0 for c in changes)
    mean, mean_abs = sum(changes) / len(changes), sum(abs(c) for c in changes) / len(changes)
    lines = [f"OSULeaf, {len(data.test)} test samples (one sample = {100 / len(data.test):.2f} points); "
             f"{args.epochs} epochs, depth 2, 4 heads, early fusion, patch 16, image patch 8; "
             f"torch {torch.__version__}, {args.threads} CPU thread(s); {time.perf_counter() - start:.0f} s.", "",
             *rows, "",
             f"Size ratio: {min(ratios):.2f}x to {max(ratios):.2f}x. Accuracy change: mean {mean:+.2f} points, mean "
             f"|change| {mean_abs:.2f}, largest |change| {max(abs(c) for c in changes):.1f}; within 1 point in "
             f"{within} of {len(changes)} models."]
    print("\n".join(lines))
    if args.out:
        command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
        with open(args.out, "w") as f:
            f.write(f"# int8 dynamic quantization on OSULeaf\n\n```\n{command}\n```\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
