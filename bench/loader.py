"""Loader throughput: samples/s from a Parquet file into training batches vs an in-memory NumPy baseline.

Both paths make the same shuffled mini-batches (torch tensors of the inputs, the valid masks and the labels) for
``epochs`` epochs of the train split. The Parquet path starts from the file: read the declared columns, validate,
decode (flatten + scatter into padded arrays), split, then batch. The baseline starts from NumPy arrays already in
memory and batches them with a plain fancy index. A third path - a per-sample ``__getitem__`` plus collate, as a
``torch.utils.data.Dataset`` would do it - shows what a per-sample Python loop on the hot path costs.

The same comparison is then made for training itself: ``epochs`` of a small model fed from the Parquet file
(load included) vs fed from the in-memory arrays - what a trial actually sees.

With ``--ray``, the decoded dataset also goes through the Ray object store (``ray.put`` once, ``ray.get`` in a
task, as trials receive it) and is batched there.

    python bench/loader.py --out bench/results/loader.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emule_models.data import read_parquet, synthetic, write_parquet  # noqa: E402
from emule_models.data.dataset import Split  # noqa: E402


def epochs_of_batches(split: Split, epochs: int, batch_size: int, seed: int = 0) -> int:
    """What a trainer does with the data: shuffled batches as tensors. Returns the samples served."""
    rng, served = np.random.default_rng(seed), 0
    for _ in range(epochs):
        order = rng.permutation(len(split))
        for s in range(0, len(split), batch_size):
            inputs, valid, labels = split.batch(order[s:s + batch_size])
            served += len(labels)
    return served


def numpy_baseline(arrays: dict[str, np.ndarray], labels: np.ndarray, epochs: int, batch_size: int,
                   seed: int = 0) -> int:
    rng, served = np.random.default_rng(seed), 0
    for _ in range(epochs):
        order = rng.permutation(len(labels))
        for s in range(0, len(labels), batch_size):
            idx = order[s:s + batch_size]
            batch = {k: torch.from_numpy(v[idx]) for k, v in arrays.items()}
            y = torch.from_numpy(labels[idx])
            served += len(y)
            del batch
    return served


def per_sample_loop(split: Split, epochs: int, batch_size: int, seed: int = 0) -> int:
    """``__getitem__`` per row + ``default_collate``: the pattern vectorised batching replaces."""
    from torch.utils.data import default_collate

    rng, served = np.random.default_rng(seed), 0
    for _ in range(epochs):
        order = rng.permutation(len(split))
        for s in range(0, len(split), batch_size):
            rows = [({k: v[i] for k, v in split.inputs.items()}, {k: v[i] for k, v in split.valid.items()},
                     split.labels[i]) for i in order[s:s + batch_size]]
            served += len(default_collate(rows)[2])
    return served


def train_model(split: Split, modalities, classes: int, epochs: int, batch_size: int) -> None:
    from emule_models import ModelConfig, build_model
    from emule_models.train import TrainConfig, fit

    cfg = ModelConfig(modalities, classes, width=32, depth=2, heads=4, patch_len=32, image_patch=8)
    empty = split.take(np.arange(0))
    fit(build_model(cfg), split, empty, TrainConfig(epochs=epochs, batch_size=batch_size, seed=0))


def timed(fn, repeats: int) -> float:
    return min(_once(fn) for _ in range(repeats))


def interleaved(fns: list, repeats: int) -> list[float]:
    """Best-of-``repeats`` seconds of each function, run in turns (order rotated each round). On a machine shared
    with other work the best run is the one least disturbed; taking turns exposes every path to the same drift."""
    times = [[] for _ in fns]
    for r in range(repeats):
        for i in np.roll(np.arange(len(fns)), r):
            times[i].append(_once(fns[i]))
    return [min(t) for t in times]


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ray_path(dataset, epochs: int, batch_size: int) -> tuple[float, float]:
    """(seconds for ray.put, seconds for ray.get + batching inside a task)."""
    import os

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        start = time.perf_counter()
        ref = ray.put(dataset)
        put_s = time.perf_counter() - start

        @ray.remote
        def consume(ds):  # the object store hands the NumPy arrays over without copying them
            torch.set_num_threads(1)
            start = time.perf_counter()
            epochs_of_batches(ds.train, epochs, batch_size)
            return time.perf_counter() - start

        ray.get(consume.remote(ref))  # warm the worker (imports)
        start = time.perf_counter()
        ray.get(consume.remote(ref))
        return put_s, time.perf_counter() - start
    finally:
        ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10000)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, nargs="+", default=[1, 5, 20])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--train-epochs", type=int, nargs="*", default=[1, 3])
    p.add_argument("--train-repeats", type=int, default=3)
    p.add_argument("--ray", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)

    ds = synthetic(args.rows, args.length, 4, channels=args.channels, image=True, image_size=32,
                   variable_length=True, val_fraction=0.0, test_fraction=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_parquet(ds, Path(tmp) / "bench.parquet")
        size_mb = path.stat().st_size / 2**20
        train = ds.train
        n = len(train)
        assert len(read_parquet(path).train) == n, "the Parquet path must serve the same rows"
        arrays = {**{k: v.copy() for k, v in train.inputs.items()}, **{f"valid.{k}": v.copy()
                                                                        for k, v in train.valid.items()}}
        labels = train.labels.copy()
        epochs_of_batches(read_parquet(path).train, 1, args.batch_size)  # warm up (page cache, first imports)
        load_s = timed(lambda: read_parquet(path), args.repeats)
        loaded = read_parquet(path)
        rows = []
        b = args.batch_size
        for e in args.epochs:
            parquet_s, batches_s, numpy_s = interleaved([
                lambda e=e: epochs_of_batches(read_parquet(path).train, e, b),
                lambda e=e: epochs_of_batches(loaded.train, e, b),
                lambda e=e: numpy_baseline(arrays, labels, e, b)], args.repeats)
            rows.append((e, n * e / parquet_s, n * e / batches_s, n * e / numpy_s))
        loop_s = timed(lambda: per_sample_loop(loaded.train, 1, args.batch_size), 1)
        memory = Split({k: v for k, v in arrays.items() if not k.startswith("valid.")}, labels,
                       {k[len("valid."):]: v for k, v in arrays.items() if k.startswith("valid.")})
        fits = []
        k = len(ds.classes)
        train_model(memory.take(np.arange(256)), ds.modalities, k, 1, b)  # warm up torch
        for e in args.train_epochs:
            from_file, from_memory = interleaved([
                lambda e=e: train_model(read_parquet(path).train, ds.modalities, k, e, b),
                lambda e=e: train_model(memory, ds.modalities, k, e, b)], args.train_repeats)
            fits.append((e, n * e / from_file, n * e / from_memory))
        ray_row = ray_path(loaded, max(args.epochs), args.batch_size) if args.ray else None

    shape = f"series {args.channels}x<= {args.length} (variable length) + image 1x32x32"
    lines = [
        "# Loader throughput: Parquet -> training batches vs in-memory NumPy",
        "",
        "Recorded with:",
        "",
        "    " + " ".join(["python", "bench/loader.py", *sys.argv[1:]]),
        "",
        f"Data: synthetic, {n} rows, {shape}; Parquet file {size_mb:.0f} MiB. Batch size {args.batch_size}, "
        f"shuffled, torch tensors of inputs + valid masks + labels. One thread (`torch.set_num_threads(1)`); "
        f"best of {args.repeats} runs (training: {args.train_repeats}), the paths compared taking turns.",
        "",
        f"Read + validate + decode the file: {load_s:.3f} s ({n / load_s:,.0f} rows/s).",
        "",
        "| epochs | Parquet file -> batches (samples/s) | decoded Dataset -> batches | NumPy baseline | "
        "ratio Parquet / NumPy | ratio decoded / NumPy |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for e, pq_rate, ds_rate, np_rate in rows:
        lines.append(f"| {e} | {pq_rate:,.0f} | {ds_rate:,.0f} | {np_rate:,.0f} | {pq_rate / np_rate:.2f} | "
                     f"{ds_rate / np_rate:.2f} |")
    lines += ["", f"Per-sample `__getitem__` + `default_collate` (1 epoch, from the decoded arrays): "
              f"{n / loop_s:,.0f} samples/s ({n / loop_s / rows[0][3]:.2f} x the NumPy baseline)."]
    if fits:
        lines += ["", "Training a small model (width 32, depth 2, 4 heads, series patch 32, image patch 8; AdamW) on "
                  "the same train split - the Parquet column includes reading and decoding the file:", "",
                  "| epochs | from Parquet file (samples/s) | from in-memory NumPy | ratio |", "|---:|---:|---:|---:|"]
        lines += [f"| {e} | {a:,.0f} | {b:,.0f} | {a / b:.2f} |" for e, a, b in fits]
    if ray_row:
        put_s, get_s = ray_row
        e = max(args.epochs)
        lines += ["", f"Through the Ray object store: `ray.put` {put_s:.3f} s once; `ray.get` + {e} epochs of batches "
                  f"in a task: {n * e / get_s:,.0f} samples/s (task call included)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
