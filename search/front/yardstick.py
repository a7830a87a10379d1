"""Where a search's result stands: its best-by-validation candidate, the selection gap (how much validation
overstated test accuracy) and the classical baselines measured on the same folds. Used by the end-of-search
lines, `emule pareto` and the parent run's metrics."""

from __future__ import annotations

from collections.abc import Iterable

from search.front.state import Record
from search.spec.metrics import SIZE


def best_by_validation(records: Iterable[Record]) -> Record | None:
    """The finished candidate with the highest validation accuracy (fewer parameters break ties)."""
    scored = [r for r in records if "val_accuracy" in r.metrics and "test_accuracy" in r.metrics]
    if not scored:
        return None
    return max(scored, key=lambda r: (r.metrics["val_accuracy"], -r.metrics.get(SIZE, 0.0)))


def selection_gap(best: Record | None) -> float | None:
    """Validation minus test accuracy of the best-by-validation candidate."""
    return None if best is None else best.metrics["val_accuracy"] - best.metrics["test_accuracy"]


def baseline_metrics(results: dict[str, dict]) -> dict[str, float]:
    """Parent-run metrics ``baseline_<name>_{val_accuracy,val_accuracy_std,test_accuracy,fit_seconds}``."""
    out = {}
    for name, r in results.items():
        for key in ("val_accuracy", "val_accuracy_std", "test_accuracy", "fit_seconds"):
            if key in r:
                out[f"baseline_{name}_{key}"] = float(r[key])
    return out


def lines(best: Record | None, results: dict[str, dict], validation: str) -> list[str]:
    """Human-readable lines: the best candidate, then each baseline (or why it was skipped)."""
    out = []
    if best is not None:
        m = best.metrics
        spread = f" +- {m['val_accuracy_std']:.3f}" if m.get("val_accuracy_std") else ""
        out.append(f"best by validation: {best.trial_id} val_accuracy {m['val_accuracy']:.3f}{spread} ({validation}), "
                   f"test_accuracy {m['test_accuracy']:.3f} (refit on all training rows); selection gap "
                   f"{selection_gap(best):+.3f}")
    for r in results.values():
        if "skipped" in r:
            out.append(f"  baseline {r['label']}: skipped - {r['skipped']}")
        else:
            out.append(f"  baseline {r['label']}: val_accuracy {r['val_accuracy']:.3f}, test_accuracy "
                       f"{r['test_accuracy']:.3f} ({r['fit_seconds']:.1f} s)")
    return out
