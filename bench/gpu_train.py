"""Trials on a GPU: the same candidates trained on CUDA (bf16 autocast) and on the CPU, with the cost measures
taken on each device (CUDA events for latency, max allocated memory on the GPU).

Needs only torch, numpy and pyarrow (what a GPU worker image has), reading OSULeaf from a Parquet file made by
``emule_models.data.write_parquet`` (so sktime need not be on the GPU machine):

    python -c "from emule_models.data import load_builtin, write_parquet; \\
               write_parquet(load_builtin('osuleaf'), '.gpu/osuleaf.parquet')"
    python bench/gpu_train.py --data .gpu/osuleaf.parquet --out bench/results/gpu_train.md
"""

from __future__ import annotations

import argparse
import time

import torch

from emule_models import ModelConfig, build_model
from emule_models.cost import count_parameters, forward_flops, measure
from emule_models.data import read_parquet
from emule_models.train import TrainConfig, evaluate, fit

CANDIDATES = [
    {"attention": "softmax", "fusion": "early", "depth": 2, "width": 64, "heads": 4},
    {"attention": "linear", "fusion": "early", "depth": 2, "width": 64, "heads": 4},
    {"attention": "performer", "fusion": "cross", "depth": 2, "width": 64, "heads": 4},
    {"attention": "nystrom", "fusion": "bottleneck", "depth": 3, "width": 128, "heads": 4},
]


def run(data, arch: dict, device: str, epochs: int) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(modalities=data.modalities, num_classes=len(data.classes), patch_len=16, **arch)
    model = build_model(cfg)
    costs = measure(model, cfg, 32, device)
    start = time.perf_counter()
    fit(model, data.train, data.val, TrainConfig(epochs=epochs, batch_size=32, lr=2e-3), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    test = evaluate(model, data.test, device=device)
    return {"params": count_parameters(model), "flops": forward_flops(cfg), "train_s": seconds,
            "test_accuracy": test["accuracy"], **costs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", default=None)
    ap.add_argument("--devices", default="cuda,cpu", help="compared devices (cpu alone only checks the script)")
    args = ap.parse_args()
    data = read_parquet(args.data)
    torch.set_num_threads(1)  # as in a 1-CPU trial
    command = f"python bench/gpu_train.py --data {args.data} --epochs {args.epochs}"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [f"# Trials on GPU vs CPU\n\n```\n{command}\n```\n",
             f"GPU: {gpu}; torch {torch.__version__}; CPU side: 1 thread; OSULeaf "
             f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test), {args.epochs} epochs, batch "
             "32; CUDA trains under bf16 autocast, the CPU in fp32.\n",
             "| candidate | params | device | train s | test acc | latency b1 ms | latency b32 ms | peak train MiB |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for arch in CANDIDATES:
        name = f"{arch['attention']}/{arch['fusion']} d{arch['depth']} w{arch['width']}"
        rows = {device: run(data, arch, device, args.epochs) for device in args.devices.split(",")}
        if len(rows) < 2:
            continue
        for device, r in rows.items():
            lines.append(f"| {name} | {r['params']} | {device} | {r['train_s']:.2f} | {r['test_accuracy']:.3f} | "
                         f"{r['latency_ms_batch1']:.3f} | {r['latency_ms_train_batch']:.3f} | "
                         f"{r['peak_memory_bytes_train_step'] / 2**20:.1f} |")
        lines.append(f"| {name} | | cpu/cuda train-time ratio | {rows['cpu']['train_s'] / rows['cuda']['train_s']:.2f}x"
                     f" | acc diff {rows['cuda']['test_accuracy'] - rows['cpu']['test_accuracy']:+.3f} | | | |")
        print(lines[-3], lines[-2], lines[-1], sep="\n", flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
