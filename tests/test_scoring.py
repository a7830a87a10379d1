"""Proxy scores: shapes, what EL2N ranks high, and the cache (a hit trains nothing)."""

from __future__ import annotations

import numpy as np
import pytest

from emule_models.data import scoring, select, synthetic
from emule_models.data.dataset import Split

SETTINGS = {"epochs": 2, "seeds": 2, "width": 8, "heads": 2}


@pytest.fixture(scope="module")
def dataset():
    return synthetic(96, 16, 3, channels=2, image=True, variable_length=True, seed=0)


@pytest.fixture
def count_trainings(monkeypatch):
    calls = []
    original = scoring._train_proxy

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(scoring, "_train_proxy", counted)
    return calls


def test_shapes_and_select_with_scores(dataset):
    out = scoring.proxy_scores(dataset, **SETTINGS)
    n = len(dataset.train)
    assert out["el2n"].shape == (n,) and out["embeddings"].shape == (n, 2 * 8)
    assert np.all((out["el2n"] >= 0) & (out["el2n"] <= np.sqrt(2)))
    for strategy in ("el2n", "kcenter", "ccs"):
        idx = select(dataset.train.labels, 0.3, strategy, 0, scores=out["el2n"], embeddings=out["embeddings"])
        assert set(dataset.train.labels[idx]) == {0, 1, 2}


def test_cache_hit_does_not_train(dataset, tmp_path, count_trainings):
    first = scoring.proxy_scores(dataset, cache_dir=tmp_path, **SETTINGS)
    assert len(count_trainings) == 2  # one proxy per seed
    (path,) = tmp_path.glob("*.npz")
    stamp = path.stat().st_mtime_ns
    again = scoring.proxy_scores(dataset, cache_dir=tmp_path, **SETTINGS)
    assert len(count_trainings) == 2 and path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first["el2n"], again["el2n"])
    np.testing.assert_array_equal(first["embeddings"], again["embeddings"])
    assert path.name.startswith("synthetic-")


def test_cache_key_changes_with_settings_and_content(dataset, tmp_path, count_trainings):
    scoring.proxy_scores(dataset, cache_dir=tmp_path, **SETTINGS)
    scoring.proxy_scores(dataset, cache_dir=tmp_path, **{**SETTINGS, "epochs": 1})
    train = dataset.train
    changed = type(dataset)(dataset.name, dataset.modalities, dataset.classes,
                            Split({k: v + (k == "image") for k, v in train.inputs.items()}, train.labels, train.valid),
                            dataset.val, dataset.test)
    scoring.proxy_scores(changed, cache_dir=tmp_path, **SETTINGS)
    assert len(list(tmp_path.glob("*.npz"))) == 3 and len(count_trainings) == 6


def test_el2n_ranks_flipped_labels_high():
    """Mislabelled rows are hard for the proxy: their mean EL2N is well above the clean rows'."""
    noisy = synthetic(240, 32, 3, label_noise=0.2, seed=2, noise=0.3)
    clean = synthetic(240, 32, 3, label_noise=0.0, seed=2, noise=0.3)
    flipped = noisy.train.labels != clean.train.labels
    el2n = scoring.proxy_scores(noisy, epochs=10, seeds=2, width=16, heads=2, lr=1e-2, patch_len=8)["el2n"]
    assert el2n[flipped].mean() > el2n[~flipped].mean() + 0.2
