"""Model selection on little data: stratified, seeded folds over the training pool; the fold mean is what a trial
reports; the refit learns from every training row and never from the test split."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from emule_models import ModelConfig
from emule_models.data import synthetic
from emule_models.data.dataset import stratified_folds
from emule_models.train import TrainConfig, evaluate, fit
from search.trial import validation
from search.trial.candidate import Candidate, build_seeded, ensemble_size
from search.trial.validation import (
    AUTO,
    HOLDOUT,
    cross_validate,
    fit_seed_ensemble,
    refit,
    resolve_setting,
    selection_folds,
)


def _dataset(n: int = 120, classes: int = 3):
    return synthetic(n=n, classes=classes, seed=0)


def _candidate(dataset, cv_folds, epochs: int = 2, fraction: float = 1.0) -> Candidate:
    model = ModelConfig(modalities=dataset.modalities, num_classes=len(dataset.classes), width=16, depth=1, heads=2,
                        patch_len=8, image_patch=4, dropout=0.0)
    data = {"name": "synthetic", "cv_folds": cv_folds, "seed": 0, "data_fraction": fraction, "selection": "random",
            "subset_seed": 0}
    return Candidate(model, TrainConfig(epochs=epochs, batch_size=16, seed=0), data)


def test_folds_are_stratified_disjoint_and_cover_every_row_once():
    labels = np.repeat([0, 1, 2], [30, 20, 10])
    folds = stratified_folds(labels, 5, seed=3)
    assert len(folds) == 5
    validated = np.concatenate([val for _, val in folds])
    assert sorted(validated) == list(range(len(labels)))  # every row validated exactly once
    for fit_rows, val_rows in folds:
        assert not set(fit_rows) & set(val_rows)
        assert len(fit_rows) + len(val_rows) == len(labels)
        assert np.bincount(labels[val_rows], minlength=3).tolist() == [6, 4, 2]  # each class in proportion


def test_folds_are_seeded():
    labels = np.repeat([0, 1], 20)
    same = [stratified_folds(labels, 4, seed=1), stratified_folds(labels, 4, seed=1)]
    other = stratified_folds(labels, 4, seed=2)
    assert all((a[1] == b[1]).all() for a, b in zip(*same))
    assert any((a[1] != b[1]).any() for a, b in zip(same[0], other))


def test_folds_refuse_a_class_smaller_than_k():
    with pytest.raises(ValueError, match="data.cv_folds: 5 needs >= 5 training rows of each class; the smallest"):
        stratified_folds(np.array([0] * 10 + [1] * 3), 5, seed=0)


@pytest.mark.parametrize(("setting", "labels", "expected"), [
    (AUTO, np.repeat([0, 1], 100), 5),  # a small pool: k-fold
    (AUTO, np.repeat([0, 1], 600), HOLDOUT),  # a large one: holdout
    (AUTO, np.array([0] * 50 + [1] * 3), 3),  # no more folds than the smallest class fills
    (AUTO, np.array([0] * 50 + [1]), HOLDOUT),  # a class of one row cannot be folded
    (3, np.repeat([0, 1], 10), 3),
    (HOLDOUT, np.repeat([0, 1], 10), HOLDOUT),
])
def test_resolve_setting(setting, labels, expected):
    assert resolve_setting(setting, labels) == expected


@pytest.mark.parametrize("bad", [1, 0, -2, 2.5, "tenfold", True, None])
def test_bad_settings_refused(bad):
    with pytest.raises(ValueError, match=r"data.cv_folds: .* not accepted; accepted: auto, holdout"):
        resolve_setting(bad, np.repeat([0, 1], 10))


def test_holdout_fold_is_the_carved_validation_split():
    ds = _dataset()
    [(fit_rows, val_rows)] = selection_folds(_candidate(ds, cv_folds=HOLDOUT).data_section, ds)
    pool = ds.pool
    assert (pool.labels[fit_rows] == ds.train.labels).all() and (pool.labels[val_rows] == ds.val.labels).all()


def test_cross_validation_reports_the_fold_mean():
    ds = _dataset()
    cand = _candidate(ds, cv_folds=3)
    folds = selection_folds(cand.data_section, ds)
    reported = list(cross_validate(cand, ds, folds))
    assert [m["epoch"] for m in reported] == [1, 2]
    separately = []  # each fold trained alone, as the report claims to average
    for fit_rows, val_rows in folds:
        model = build_seeded(cand)
        fit(model, ds.pool.take(fit_rows), None, cand.training)
        separately.append(evaluate(model, ds.pool.take(val_rows))["accuracy"])
    assert reported[-1]["val_accuracy"] == pytest.approx(np.mean(separately))
    assert reported[-1]["val_accuracy_std"] == pytest.approx(np.std(separately))
    # training compute counts every fold: samples seen are summed over them
    assert reported[-1]["samples_seen"] == 2 * sum(len(f) for f, _ in folds)


def test_refit_uses_every_training_row_and_never_the_test_split(monkeypatch):
    ds = _dataset()
    poisoned = dataclasses.replace(ds, test=dataclasses.replace(
        ds.test, inputs={k: np.full_like(v, np.nan) for k, v in ds.test.inputs.items()}))
    seen = {}
    real_fit = validation.fit

    def spy(model, train, val, cfg, **kw):
        seen["labels"], seen["inputs"], seen["val"] = train.labels, train.inputs, val
        return real_fit(model, train, val, cfg, **kw)

    monkeypatch.setattr(validation, "fit", spy)
    model, rows, samples = refit(_candidate(poisoned, cv_folds=3, epochs=1), poisoned)
    pool = poisoned.pool
    assert rows == len(pool) == len(ds.train) + len(ds.val) and samples == len(pool)
    assert (seen["labels"] == pool.labels).all() and seen["val"] is None
    assert all(np.isfinite(v).all() for v in seen["inputs"].values())  # no test row (all NaN here) reached it
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_refit_keeps_the_candidates_data_fraction():
    ds = _dataset()
    _, rows, _ = refit(_candidate(ds, cv_folds=3, epochs=1, fraction=0.5), ds)
    assert abs(rows - 0.5 * len(ds.pool)) <= len(ds.classes)  # per-class rounding


def test_a_seed_ensemble_is_refits_from_consecutive_seeds_on_the_same_rows():
    """Its first member is the candidate's own refit; the others start from the next seeds and learn from the same
    rows (its data fraction, seeded by the data, not by the training seed)."""
    ds = _dataset()
    cand = _candidate(ds, cv_folds=3, epochs=1, fraction=0.5)
    cand = dataclasses.replace(cand, training=dataclasses.replace(cand.training, final="seed_ensemble",
                                                                  ensemble_seeds=3))
    ensemble, rows, seen = fit_seed_ensemble(cand, ds)
    alone, alone_rows, alone_seen = refit(cand, ds)
    assert len(ensemble.members) == 3 and ensemble_size(cand) == 3
    assert rows == alone_rows and seen == 3 * alone_seen
    first, second = (torch.cat([p.flatten() for p in m.parameters()]) for m in ensemble.members[:2])
    assert torch.equal(first, torch.cat([p.flatten() for p in alone.parameters()]))  # the same seed, the same model
    assert not torch.equal(first, second)
    probs = torch.stack([torch.softmax(m(*ds.test.batch(np.arange(8))[:2]), -1) for m in ensemble.members]).mean(0)
    assert torch.allclose(torch.softmax(ensemble(*ds.test.batch(np.arange(8))[:2]), -1), probs, atol=1e-6)



def test_training_stops_at_the_next_batch_past_its_time_limit():
    """``time_limit`` (what ``search.max_trial_seconds`` sets around a trial): past it, training raises
    TimeLimitExceeded between batches; without a limit the same training runs to the end."""
    from emule_models.train import TimeLimitExceeded, time_limit

    dataset = _dataset(n=24)
    cand = _candidate(dataset, HOLDOUT, epochs=1)
    with time_limit(0.0), pytest.raises(TimeLimitExceeded, match="time limit of 0 s"):
        fit(build_seeded(cand), dataset.train, None, cand.training)
    with time_limit(None):
        assert fit(build_seeded(cand), dataset.train, None, cand.training)["epoch"] == 1


EXIT_MID_EPOCH = '''
import sys, threading, time
from emule_models.data import synthetic
from emule_models.train import ProcessExiting, TrainConfig, fit, stops_at_exit
from emule_models import ModelConfig, build_model

def train():  # the model lives in frames below the block, as in the trainable (its generators)
    ds = synthetic(n=256, length=256, seed=0)
    model = build_model(ModelConfig(modalities=ds.modalities, num_classes=len(ds.classes), width=64, patch_len=8))
    fit(model, ds.train, None, TrainConfig(epochs=10_000, batch_size=64))

def trial():  # the trainable's shape: the block around the training
    try:
        with stops_at_exit():
            train()
    except ProcessExiting:
        print("training stopped", flush=True)

class SlowTeardown:  # an interpreter that takes its time to finalise, as a Ray actor's does
    def __del__(self, sleep=time.sleep):
        sleep(1.0)

keep = SlowTeardown()
threading.Thread(target=trial, daemon=True).start()
time.sleep(3.0)
sys.exit(0)
'''


def test_a_process_exiting_mid_epoch_stops_its_training_first():
    """A daemon thread still inside torch when the interpreter finalises is ended by pthread_exit, which aborts the
    process through torch's C++ frames ("terminate called", exit code 134): what a Ray actor shut down mid-epoch
    printed. Inside ``stops_at_exit`` the training stops at its next batch and the exit waits for it."""
    import subprocess
    import sys

    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", EXIT_MID_EPOCH], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "training stopped" in done.stdout and "terminate called" not in done.stderr


def test_tiny_data_keeps_a_floor_of_rows_per_class_and_says_so():
    tiny = np.repeat([0, 1], [10, 30])  # the rarest class under validation.TINY_CLASS_ROWS
    roomy = np.repeat([0, 1], [20, 30])
    assert validation.class_floor(tiny) == validation.TINY_MIN_ROWS and validation.class_floor(roomy) == 1
    assert "tiny data: the smallest class has 10 training rows" in validation.tiny_data_note(tiny)
    assert validation.tiny_data_note(roomy) is None
    cand = type("Cand", (), {"data": {"data_fraction": 0.1, "selection": "random", "subset_seed": 0}})()
    rows = validation.subset(cand, tiny, np.arange(len(tiny)), None)
    assert np.bincount(tiny[rows]).tolist() == [5, 5]  # 10% would have been 1 and 3 rows
    rows = validation.subset(cand, roomy, np.arange(len(roomy)), None)
    assert np.bincount(roomy[rows]).tolist() == [2, 3]
