"""The units and labels of what a trial reports, and the names its metrics had before (the names themselves are
defined in ``search.spec.results``).

The model size is ``param_count``, not ``params``: MLflow shows run *parameters* under "Parameters", and a metric
called ``params`` beside them confused its pickers. ``params`` stays accepted in specs and old records.
"""

from __future__ import annotations

from collections.abc import Mapping

from search.spec.results import (
    FLOPS,
    LATENCY_MS,
    LATENCY_TRAIN_BATCH_MS,
    PEAK_MEMORY_BYTES,
    SERVE_MEMORY_BYTES,
    SIZE,
    STATIC,
    TEST_ACCURACY,
    TRAINING_COMPUTE,
)

__all__ = ["ALIASES", "SHORT_UNITS", "SIZE", "STATIC", "UNITS", "canonical", "fmt", "label", "rounded", "upgrade"]

# Former metric names -> current ones. Specs, exports and runs recorded before a rename still read.
ALIASES = {"params": SIZE}

UNITS = {
    "val_accuracy": "fraction correct, 0-1 (mean over the selection folds)",
    "val_accuracy_std": "fraction, 0-1 (spread over the selection folds)",
    TEST_ACCURACY: "fraction correct, 0-1 (refit on all training rows, official test split)",
    SIZE: "trainable parameters (count)",
    FLOPS: "FLOPs per sample, one forward pass",
    LATENCY_MS: "milliseconds per forward pass, batch 1",
    LATENCY_TRAIN_BATCH_MS: "milliseconds per forward pass, one training batch",
    PEAK_MEMORY_BYTES: "bytes, peak during one training step",
    SERVE_MEMORY_BYTES: "bytes, peak during one batch-1 forward pass",
    TRAINING_COMPUTE: "FLOPs, 3 x forward x samples seen (every fold, pretraining)",
    "train_time_s": "seconds of training so far",
    "pareto": "1 on the Pareto front, else 0",
    "knee": "1 for the front's knee (balanced compromise), else 0",
}

# Short forms for table headers and axes.
SHORT_UNITS = {SIZE: "count", FLOPS: "FLOPs/sample", LATENCY_MS: "ms", TRAINING_COMPUTE: "FLOPs",
               "train_time_s": "s", PEAK_MEMORY_BYTES: "bytes", SERVE_MEMORY_BYTES: "bytes",
               "val_accuracy": "0-1", TEST_ACCURACY: "0-1"}


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


def fmt(v: float | int | str) -> str:
    """A number as people read it: 0.732, 21.5k, 1.31M, 42G, 6.32e-4 (a learning rate). Text that is no number
    is returned as it is."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if v == 0 or 1e-3 <= abs(v) < 1000:
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.4g}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if scale <= abs(v) < scale * 1000:
            return f"{v / scale:.3g}{suffix}"
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def rounded(v: float | int | str, digits: int = 4) -> float | int | str:
    """A value for a table people read (``pareto.csv``): an integral number as an int, any other number to
    ``digits`` significant digits (0.6199999999999999 -> 0.62), text that is no number as it is."""
    if isinstance(v, bool):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    if not f.is_integer():
        f = float(f"{f:.{digits}g}")
    return int(f) if f.is_integer() and abs(f) < 1e15 else f
