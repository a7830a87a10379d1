"""The names and units of what a trial reports, in one place.

The model size is ``param_count``, not ``params``: MLflow shows run *parameters* under "Parameters", and a metric
called ``params`` beside them confused its pickers. ``params`` stays accepted in specs and old records.
"""

from __future__ import annotations

from collections.abc import Mapping

SIZE = "param_count"
# Former metric names -> current ones. Specs, exports and runs recorded before a rename still read.
ALIASES = {"params": SIZE}

# Measured once per candidate, before training (they do not change per epoch): logged once, at step 0.
STATIC = (SIZE, "flops", "latency_ms", "latency_train_batch_ms", "peak_memory_bytes", "serve_memory_bytes")

UNITS = {
    "val_accuracy": "fraction correct, 0-1 (mean over the selection folds)",
    "val_accuracy_std": "fraction, 0-1 (spread over the selection folds)",
    "test_accuracy": "fraction correct, 0-1 (refit on all training rows, official test split)",
    SIZE: "trainable parameters (count)",
    "flops": "FLOPs per sample, one forward pass",
    "latency_ms": "milliseconds per forward pass, batch 1",
    "latency_train_batch_ms": "milliseconds per forward pass, one training batch",
    "peak_memory_bytes": "bytes, peak during one training step",
    "serve_memory_bytes": "bytes, peak during one batch-1 forward pass",
    "training_compute": "FLOPs, 3 x forward x samples seen (every fold, pretraining)",
    "train_time_s": "seconds of training so far",
    "pareto": "1 on the Pareto front, else 0",
    "knee": "1 for the front's knee (balanced compromise), else 0",
}

# Short forms for table headers and axes.
SHORT_UNITS = {SIZE: "count", "flops": "FLOPs/sample", "latency_ms": "ms", "training_compute": "FLOPs",
               "train_time_s": "s", "peak_memory_bytes": "bytes", "serve_memory_bytes": "bytes",
               "val_accuracy": "0-1", "test_accuracy": "0-1"}


def canonical(name: str) -> str:
    """The current name of a metric (a former name maps to its successor)."""
    return ALIASES.get(name, name)


def upgrade(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics as recorded, plus their current names where they were recorded under a former one."""
    out = dict(metrics)
    for old, new in ALIASES.items():
        if old in out and new not in out:
            out[new] = out[old]
    return out


def label(metric: str) -> str:
    """``metric (unit)`` for axes and column headers."""
    unit = SHORT_UNITS.get(metric)
    return f"{metric} ({unit})" if unit else metric
