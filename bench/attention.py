"""Forward time and peak memory of every attention variant against sequence length, beside softmax SDPA.

Each measurement is one ``MultiHeadAttention`` layer (q/kv/out projections around the variant: what a model pays
per layer) in eval mode without autograd, on a random ``(batch, L, width)`` input, every variant with its default
options. Time is the median over repeated forward passes after one warm-up (CUDA synchronised). Peak memory is
``emule_models.cost.peak_memory_bytes`` over one forward: bytes allocated above those held before it (weights
and input excluded) - on CUDA from ``torch.cuda.max_memory_allocated``, on CPU from the profiler's allocation
events (see ``emule_models.cost``).

    python bench/attention.py --out bench/results/attention_cpu.md
    python bench/attention.py --device cuda --out bench/results/attention_cuda.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import statistics
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from emule_models.attention import ATTENTION, AttentionShape
from emule_models.cost import peak_memory_bytes
from emule_models.layers import MultiHeadAttention

TARGET_SPEEDUP, TARGET_MEMORY, TARGET_GROWTH, AT = 5.0, 5.0, 10.0, 4096
# Softmax through SDPA's plain math backend, which keeps the (L, L) score matrix: the quadratic memory that the
# fused SDPA kernels (flash on CPU, flash or memory-efficient on CUDA) avoid. Reported beside, never the reference.
MATH = "[math]"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(variant: str, length: int, args: argparse.Namespace, device: torch.device) -> tuple[float, int, int]:
    """(median forward ms, peak bytes, timed runs) of one layer at one length."""
    shape = AttentionShape(heads=args.heads, head_dim=args.width // args.heads, max_q=length, max_k=length, options={})
    torch.manual_seed(0)
    layer = MultiHeadAttention(args.width, args.heads, variant.removesuffix(MATH), shape).to(device).eval()
    x = torch.randn(args.batch, length, args.width, device=device)  # (B, L, W)
    times = []
    clock = time.process_time if args.clock == "process" else time.perf_counter
    backend = sdpa_kernel(SDPBackend.MATH) if variant.endswith(MATH) else contextlib.nullcontext()
    with torch.no_grad(), backend:
        layer(x)  # warm-up: kernel selection, allocator caches
        sync(device)
        spent = time.perf_counter()
        # Repeats stop early once the budget is spent, so the long softmax runs fit the whole benchmark's cap.
        while len(times) < args.repeats and (len(times) < args.min_repeats
                                             or time.perf_counter() - spent < args.budget_s):
            start = clock()
            layer(x)
            sync(device)
            times.append((clock() - start) * 1e3)
        peak = peak_memory_bytes(lambda: layer(x), device)
    return statistics.median(times), peak, len(times)


CLOCKS = {"wall": "wall-clock", "process": "the process's CPU time (single thread)"}


def load_average() -> str:
    try:
        return "; load average over the last 1/5/15 min at the end: {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    except OSError:
        return ""


def ratios(results: dict, variant: str, reference: str, length: int) -> tuple[float, float]:
    """(speed-up, memory ratio) of ``variant`` over ``reference``: above 1 means better than the reference."""
    (ms, peak, _), (ref_ms, ref_peak, _) = results[variant, length], results[reference, length]
    return ref_ms / ms, ref_peak / max(peak, 1)


def complexity(variant: str) -> str:
    return ATTENTION[variant.removesuffix(MATH)].complexity


def crossover(lengths: list[int], faster: dict[int, bool]) -> str:
    """The shortest length from which the variant is faster than softmax at that and every longer length."""
    from_here = None
    for length in reversed(lengths):
        if not faster[length]:
            break
        from_here = length
    if from_here is None:
        return f"none up to {lengths[-1]}"
    return "at every length measured" if from_here == lengths[0] else f"L >= {from_here}"


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {torch.get_num_threads()} thread(s)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", nargs="+", type=int, default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--variants", nargs="+", default=sorted(ATTENTION), choices=sorted(ATTENTION))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7, help="timed forward passes at most")
    parser.add_argument("--min-repeats", type=int, default=3, help="timed forward passes at least")
    parser.add_argument("--budget-s", type=float, default=3.0, help="no new repeat after this many seconds")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the CPU is shared: 1 is steadier)")
    parser.add_argument("--clock", choices=["auto", "wall", "process"], default="auto",
                        help="what a forward's time is: wall-clock, or this process's CPU time (auto: CPU time on "
                             "CPU, wall-clock on CUDA)")
    parser.add_argument("--math-max-len", type=int, default=4096,
                        help="longest L for softmax through the math backend (0: never); its (L, L) scores need "
                             "batch x heads x L^2 x 4 bytes, twice")
    parser.add_argument("--out", help="also write the report here, with the command on top")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "auto":
        # On a CPU shared with other work, wall-clock time counts the time other processes hold the cores; the CPU
        # time of a single-threaded process counts only its own work.
        args.clock = "process" if device.type == "cpu" else "wall"
    if args.clock == "process" and (device.type != "cpu" or args.threads != 1):
        parser.error("--clock process measures only single-threaded CPU work: use it with --device cpu --threads 1")
    math = "softmax" + MATH
    variants = ["softmax", math] + [v for v in args.variants if v != "softmax"]  # the reference first

    results: dict[tuple[str, int], tuple[float, int, int]] = {}
    start = time.perf_counter()
    for length in args.lengths:
        for variant in variants:
            if variant == math and length > args.math_max_len:
                continue
            results[variant, length] = measure(variant, length, args, device)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next layer starts from the same empty cache
            ms, peak, runs = results[variant, length]
            print(f"L={length} {variant}: {ms:.2f} ms ({runs} runs), peak {peak / 2**20:.1f} MiB", file=sys.stderr,
                  flush=True)
    total = time.perf_counter() - start

    lines = [f"Device: {device.type} ({machine(device)}); torch {torch.__version__}; batch {args.batch}, width "
             f"{args.width}, {args.heads} heads, float32; one MultiHeadAttention layer (projections included), "
             f"default options of each variant; median of {args.min_repeats} to {args.repeats} forwards "
             f"(no new one after {args.budget_s:g} s), timed by {CLOCKS[args.clock]}; total {total:.0f} s wall-clock"
             f"{load_average()}.", ""]
    skipped = [n for n in args.lengths if n > args.math_max_len]
    if skipped:
        lines += [f"{math} not measured at L = {skipped}: its score matrices alone would take "
                  f"{2 * args.batch * args.heads * skipped[0] ** 2 * 4 / 2**30:.1f} GiB at L = {skipped[0]}.", ""]
    lines += ["| L | variant | complexity | forward ms | speed-up vs softmax | peak MiB | memory ratio vs softmax "
              "| runs |", "|---:|---|---|---:|---:|---:|---:|---:|"]
    for length in args.lengths:
        for variant in variants:
            if (variant, length) in results:
                ms, peak, runs = results[variant, length]
                speedup, memory = ratios(results, variant, "softmax", length)
                lines.append(f"| {length} | {variant} | {complexity(variant)} | {ms:.2f} | {speedup:.2f}x "
                             f"| {peak / 2**20:.2f} | {memory:.2f}x | {runs} |")
    first, last = (1024, 8192) if {1024, 8192} <= set(args.lengths) else (args.lengths[0], args.lengths[-1])
    lines += ["", f"| variant | T({last})/T({first}) | faster than softmax from | at L={AT}: speed-up, memory ratio "
              f"vs softmax (targets >= {TARGET_SPEEDUP:g}x, >= {TARGET_MEMORY:g}x) | at L={AT}: speed-up, memory "
              f"ratio vs {math} | T({last})/T({first}) <= {TARGET_GROWTH:g} |", "|---|---:|---|---|---|---|"]
    for variant in variants:
        growth = (f"{results[variant, last][0] / results[variant, first][0]:.1f}"
                  if (variant, last) in results and (variant, first) in results else "-")
        faster = {n: (variant, n) in results and results[variant, n][0] < results["softmax", n][0]
                  for n in args.lengths}
        cross = "-" if variant.startswith("softmax") else crossover(args.lengths, faster)
        target, versus_math, grows = "-", "-", "-"
        if complexity(variant) == "linear":
            grows = "met" if float(growth) <= TARGET_GROWTH else "missed"
            if AT in args.lengths:
                speedup, memory = ratios(results, variant, "softmax", AT)
                met = speedup >= TARGET_SPEEDUP and memory >= TARGET_MEMORY
                target = f"{speedup:.1f}x, {memory:.1f}x: {'met' if met else 'missed'}"
                if (math, AT) in results:
                    versus_math = "{:.1f}x, {:.1f}x".format(*ratios(results, variant, math, AT))
        lines.append(f"| {variant} | {growth} | {cross} | {target} | {versus_math} | {grows} |")
    report = "\n".join(lines)
    print(report)
    if args.out:
        command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
        with open(args.out, "w") as f:
            f.write(f"# Attention variants vs sequence length ({device.type})\n\n```\n{command}\n```\n\n{report}\n")


if __name__ == "__main__":
    main()
