"""Classical baselines: aeon's classifiers on exactly the candidates' folds and refit, cached by data content, and
never a reason for a search to stop (a failure or a slow baseline is a skip with its reason)."""

from __future__ import annotations

import numpy as np
import pytest
from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

from emule_models.data import load_builtin, synthetic
from emule_models.data.dataset import stratified_folds
from search.spec.schema import DataSection
from search.trial import baselines
from search.trial.baselines import METHODS, Method, run_baselines, series_matrix
from search.trial.validation import selection_folds


@pytest.fixture(scope="module")
def gunpoint():
    return load_builtin("gunpoint")


def test_scored_on_the_candidates_folds_and_refit_on_the_pool(gunpoint):
    folds = selection_folds(DataSection(name="gunpoint", cv_folds=5, seed=0), gunpoint)
    out = run_baselines(gunpoint, folds, ["nn_euclidean"], cache_dir=None)["nn_euclidean"]
    x, y = series_matrix(gunpoint.pool, gunpoint), gunpoint.pool.labels
    by_hand = []
    for fit_rows, val_rows in folds:
        clf = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="euclidean").fit(x[fit_rows], y[fit_rows])
        by_hand.append(np.mean(clf.predict(x[val_rows]) == y[val_rows]))
    assert out["val_accuracy"] == pytest.approx(np.mean(by_hand))
    assert out["val_accuracy_std"] == pytest.approx(np.std(by_hand))
    assert out["test_accuracy"] == pytest.approx(0.913, abs=0.001)  # the published 1-NN ED score on GunPoint
    assert out["fit_seconds"] > 0 and out["label"] == "1-NN Euclidean"


def test_series_modalities_become_channels_images_are_ignored():
    ds = synthetic(n=40, channels=2, image=True, seed=0)
    assert series_matrix(ds.train, ds).shape == (len(ds.train), 2, ds.modalities[0].length)
    image_only = synthetic(n=40, image=True, seed=0)
    image_only = type(image_only)(image_only.name, tuple(m for m in image_only.modalities if m.kind == "image"),
                                  image_only.classes, *(_drop_series(s) for s in (image_only.train, image_only.val,
                                                                                   image_only.test)))
    folds = stratified_folds(image_only.pool.labels, 2, seed=0)
    out = run_baselines(image_only, folds, ["nn_euclidean"], cache_dir=None)
    assert out["nn_euclidean"]["skipped"].startswith("no series modality")


def _drop_series(split):
    return type(split)({k: v for k, v in split.inputs.items() if v.ndim == 4}, split.labels, {})


def test_a_failing_baseline_is_a_skip_with_its_reason(gunpoint, monkeypatch):
    def broken(seed):
        raise RuntimeError("no such kernel")

    monkeypatch.setitem(METHODS, "nn_euclidean", Method("1-NN Euclidean", broken, baselines._pairs))
    folds = selection_folds(DataSection(name="gunpoint", cv_folds=2), gunpoint)
    out = run_baselines(gunpoint, folds, ["nn_euclidean"], cache_dir=None)
    assert out["nn_euclidean"]["skipped"] == "failed: RuntimeError: no such kernel"


def test_over_the_time_bound_rocket_falls_back_then_skips(gunpoint):
    folds = selection_folds(DataSection(name="gunpoint", cv_folds=2), gunpoint)
    out = run_baselines(gunpoint, folds, ["rocket", "nn_dtw"], max_seconds=1e-6, cache_dir=None)
    assert "ROCKET estimated" in out["rocket"]["skipped"] and "MiniRocket estimated" in out["rocket"]["skipped"]
    assert "search.baseline_seconds=1e-06" in out["nn_dtw"]["skipped"]


def test_results_are_cached_by_data_and_folds(gunpoint, tmp_path, monkeypatch):
    folds = selection_folds(DataSection(name="gunpoint", cv_folds=2), gunpoint)
    first = run_baselines(gunpoint, folds, ["nn_euclidean"], cache_dir=tmp_path)
    monkeypatch.setattr(baselines, "_run", lambda *a, **k: pytest.fail("recomputed a cached baseline"))
    assert run_baselines(gunpoint, folds, ["nn_euclidean"], cache_dir=tmp_path) == first
    other_folds = selection_folds(DataSection(name="gunpoint", cv_folds=3), gunpoint)
    with pytest.raises(pytest.fail.Exception):
        run_baselines(gunpoint, other_folds, ["nn_euclidean"], cache_dir=tmp_path)


def test_over_the_time_bound_full_dtw_falls_back_to_a_10_percent_band(gunpoint, monkeypatch):
    real = baselines._estimate
    monkeypatch.setattr(baselines, "_estimate",
                        lambda method, *a: 1e9 if method.label == "1-NN DTW" else real(method, *a))
    folds = selection_folds(DataSection(name="gunpoint", cv_folds=2), gunpoint)
    out = run_baselines(gunpoint, folds, ["nn_dtw"], max_seconds=300, cache_dir=None)["nn_dtw"]
    assert out["label"] == "1-NN DTW (10% window) (for 1-NN DTW)"
    assert out["note"].startswith("1-NN DTW estimated 1000000000 s > search.baseline_seconds=300")
    x, y = series_matrix(gunpoint.pool, gunpoint), gunpoint.pool.labels
    banded = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw", distance_params={"window": 0.1})
    by_hand = banded.fit(x, y).predict(series_matrix(gunpoint.test, gunpoint))
    assert out["test_accuracy"] == pytest.approx(np.mean(by_hand == gunpoint.test.labels))


@pytest.mark.slow  # numba compiles the transforms: about 30 s
def test_multirocket_hydra_is_a_yardstick_a_spec_can_name(gunpoint):
    folds = selection_folds(DataSection(name="gunpoint", cv_folds=3, seed=0), gunpoint)
    out = run_baselines(gunpoint, folds, ["multirocket_hydra"], cache_dir=None)["multirocket_hydra"]
    assert out["label"] == "MultiRocket-Hydra", out
    # the bake-off redux: MultiRocket-Hydra 1.000 on GunPoint's official split (resample 0)
    assert out["test_accuracy"] >= 0.98 and out["val_accuracy"] >= 0.9
