"""Classical baselines beside every search: 1-NN Euclidean, 1-NN DTW and ROCKET from aeon by default;
MultiRocket-Hydra (the strongest of them, and the slowest) where a spec names it.

They are judged exactly as candidates are: validation accuracy is the mean over the search's selection folds (or
its holdout split), test accuracy comes from one fit on the whole training pool. They see the series modalities
only, concatenated as channels and zero-padded to the longest (as the models see them); images are ignored, and
data without any series modality gets no baseline.

Each baseline's run time is estimated before it runs (a short calibration on a few rows, extrapolated by the
method's cost: pairs of series for 1-NN, series transformed for ROCKET); one whose estimate is above the spec's
``search.baseline_seconds`` is skipped with the reason - ROCKET falls back to MiniRocket and full-window DTW to a
10% band first. Results are cached by data content, folds and settings, so a rerun or another search on the same
data gets them at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emule_models.data import Dataset, Split
from emule_models.data.scoring import fingerprint
from emule_models.registry import Registry

CACHE = Path(".emule") / "baselines"
VERSION = 1  # bump when how a baseline is run changes, so old cached results are not reused


@dataclass(frozen=True)
class Method:
    label: str
    make: Callable[[int], Any]  # seed -> an unfitted aeon classifier
    work: Callable[[int, int], float]  # (rows fitted, rows predicted) -> cost units, for the time estimate
    fallback: str | None = None  # run instead when this one would exceed the time bound


def _knn(distance: str, **params: float) -> Callable[[int], Any]:
    def make(seed: int):
        from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

        return KNeighborsTimeSeriesClassifier(n_neighbors=1, distance=distance, distance_params=params or None)

    return make


def _rocket(seed: int):
    from aeon.classification.convolution_based import RocketClassifier

    return RocketClassifier(n_kernels=10_000, random_state=seed)


def _minirocket(seed: int):
    from aeon.classification.convolution_based import MiniRocketClassifier

    return MiniRocketClassifier(random_state=seed)


def _multirocket_hydra(seed: int):
    # the strongest convolution-based yardstick of the bake-off redux short of the HIVE-COTE ensembles: Hydra's
    # competing-kernel counts beside MultiRocket's four pooled features, one ridge classifier over both
    from aeon.classification.convolution_based import MultiRocketHydraClassifier

    return MultiRocketHydraClassifier(random_state=seed)


def _pairs(fitted: int, predicted: int) -> float:
    return fitted * predicted


def _rows(fitted: int, predicted: int) -> float:
    return fitted + predicted


METHODS: Registry[Method] = Registry("baseline", field="baselines")
METHODS.add("nn_euclidean", Method("1-NN Euclidean", _knn("euclidean"), _pairs))
# a Sakoe-Chiba band of 10% of the length: the UCR archive's usual constrained DTW, about 5x cheaper on long series
METHODS.add("nn_dtw", Method("1-NN DTW", _knn("dtw"), _pairs, fallback="nn_dtw_window"))
METHODS.add("nn_dtw_window", Method("1-NN DTW (10% window)", _knn("dtw", window=0.1), _pairs))
METHODS.add("rocket", Method("ROCKET", _rocket, _rows, fallback="minirocket"))
METHODS.add("minirocket", Method("MiniRocket", _minirocket, _rows))
METHODS.add("multirocket_hydra", Method("MultiRocket-Hydra", _multirocket_hydra, _rows, fallback="minirocket"))
BASELINES = tuple(METHODS)
DEFAULT = ("nn_euclidean", "nn_dtw", "rocket")


def series_matrix(split: Split, dataset: Dataset) -> np.ndarray | None:
    """(N, C, L) float64: every series modality as channels, zero-padded to the longest; None without series."""
    names = [m.name for m in dataset.modalities if m.kind == "series"]
    if not names:
        return None
    length = max(split.inputs[n].shape[-1] for n in names)
    parts = [np.pad(split.inputs[n], ((0, 0), (0, 0), (0, length - split.inputs[n].shape[-1]))) for n in names]
    return np.concatenate(parts, axis=1).astype(np.float64)


def run_baselines(dataset: Dataset, folds: Sequence[tuple[np.ndarray, np.ndarray]], names: Sequence[str],
                  seed: int = 0, max_seconds: float = 300.0, cache_dir: str | Path | None = CACHE) -> dict[str, dict]:
    """Each named baseline on the selection folds and the test split.

    Returns, per name, either ``{"label", "method", "val_accuracy", "val_accuracy_std", "test_accuracy",
    "fit_seconds"}`` or ``{"label", "skipped": reason}``. Never raises for a baseline that fails: that is a
    skip with its reason, so the search around it goes on.
    """
    pool, test = series_matrix(dataset.pool, dataset), series_matrix(dataset.test, dataset)
    out = {}
    for name in names:
        method = METHODS[name]
        if pool is None:
            out[name] = {"label": method.label, "skipped": "no series modality (baselines see series only)"}
            continue
        path = _cache_path(cache_dir, dataset, folds, name, seed, max_seconds)
        if path is not None and path.is_file():
            out[name] = json.loads(path.read_text())
            continue
        try:
            out[name] = _run(name, pool, dataset.pool.labels, test, dataset.test.labels, folds, seed, max_seconds)
        except Exception as e:  # a baseline is a yardstick: its failure must not stop the search
            out[name] = {"label": method.label, "skipped": f"failed: {type(e).__name__}: {str(e)[:200]}"}
        if path is not None and "skipped" not in out[name]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(out[name]))
    return out


def _run(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
         folds: Sequence[tuple[np.ndarray, np.ndarray]], seed: int, max_seconds: float) -> dict:
    method, note = METHODS[name], ""
    jobs = [(len(fit), len(val)) for fit, val in folds] + [(len(y), len(y_test))]
    estimate = _estimate(method, x, y, seed, jobs)
    if estimate > max_seconds and method.fallback:
        note = f"{method.label} estimated {estimate:.0f} s > search.baseline_seconds={max_seconds:g}; "
        method = METHODS[method.fallback]
        estimate = _estimate(method, x, y, seed, jobs)
    if estimate > max_seconds:
        return {"label": METHODS[name].label, "skipped": f"{note}{method.label} estimated {estimate:.0f} s > "
                f"search.baseline_seconds={max_seconds:g}"}
    start = time.perf_counter()
    accuracy = [_fit_score(method, x[fit], y[fit], x[val], y[val], seed) for fit, val in folds]
    test = _fit_score(method, x, y, x_test, y_test, seed)
    result = {"label": method.label, "method": method.label, "val_accuracy": float(np.mean(accuracy)),
              "val_accuracy_std": float(np.std(accuracy)), "test_accuracy": test,
              "fit_seconds": time.perf_counter() - start}
    if note:
        result["label"] = f"{method.label} (for {METHODS[name].label})"
        result["note"] = note + f"{method.label} instead"
    return result


def _fit_score(method: Method, x: np.ndarray, y: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
               seed: int) -> float:
    with warnings.catch_warnings():  # aeon's numba and sklearn notices are not the user's concern here
        warnings.simplefilter("ignore")
        clf = method.make(seed)
        clf.fit(x, y)
        return float(np.mean(clf.predict(x_eval) == y_eval))


def _estimate(method: Method, x: np.ndarray, y: np.ndarray, seed: int, jobs: list[tuple[int, int]]) -> float:
    """Seconds for ``jobs`` (rows fitted, rows predicted), extrapolated from a timed run on a few rows of each
    class (after one untimed run that pays for compilation)."""
    rows = np.concatenate([np.flatnonzero(y == c)[:4] for c in np.unique(y)])[:24]
    fit, pred = rows, rows[: max(2, len(rows) // 2)]
    _fit_score(method, x[fit], y[fit], x[pred], y[pred], seed)
    start = time.perf_counter()
    _fit_score(method, x[fit], y[fit], x[pred], y[pred], seed)
    per_unit = (time.perf_counter() - start) / method.work(len(fit), len(pred))
    return per_unit * sum(method.work(f, p) for f, p in jobs)


def _cache_path(cache_dir: str | Path | None, dataset: Dataset, folds, name: str, seed: int,
                max_seconds: float) -> Path | None:
    if cache_dir is None:
        return None
    # the bound is in the key: raised, it may let ROCKET run where MiniRocket stood in
    h = hashlib.sha256(f"{VERSION}:{name}:{seed}:{max_seconds:g}:{fingerprint(dataset.pool)}:"
                       f"{fingerprint(dataset.test)}".encode())
    for fit, val in folds:
        h.update(np.asarray(fit, np.int64).tobytes() + b"|" + np.asarray(val, np.int64).tobytes() + b";")
    return Path(cache_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', dataset.name)}-{name}-{h.hexdigest()[:20]}.json"
