"""A teacher's soft labels: one teacher model per fold trained on that fold's fit rows only (its validation rows
get no label), one for the refit, made once and cached; trials use them and never make their own."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from emule_models import ModelConfig
from emule_models.data import synthetic
from emule_models.data.dataset import stratified_folds
from emule_models.distill import predict_logits
from emule_models.train import TrainConfig, fit
from search.driver.checks import parse_spec
from search.spec.schema import SpecError
from search.trial.candidate import Candidate, build_seeded, resolve, spec_dataset
from search.trial.teacher import Teacher, cross_fit_parts, soft_labels
from search.trial.validation import cross_validate, refit


def _candidate(data, epochs: int = 2, alpha: float = 0.0, seed: int = 0, width: int = 16) -> Candidate:
    model = ModelConfig(modalities=data.modalities, num_classes=len(data.classes), width=width, depth=1, heads=2,
                        patch_len=8, image_patch=4, dropout=0.0)
    data_section = {"name": "synthetic", "cv_folds": 3, "seed": 0, "data_fraction": 1.0, "selection": "random",
                    "subset_seed": 0}
    return Candidate(model, TrainConfig(epochs=epochs, batch_size=16, seed=seed, distill_alpha=alpha), data_section)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    data = synthetic(n=90, classes=3, seed=0)
    folds = stratified_folds(data.pool.labels, 3, seed=0)
    cache = tmp_path_factory.mktemp("soft")
    teacher = Teacher(_candidate(data), None, "teacher.yaml")
    return data, folds, teacher, cache, soft_labels([teacher], data, folds, cache_dir=cache)


def test_a_fold_teacher_learns_from_its_fit_rows_alone_and_labels_only_them(made):
    data, folds, teacher, _, soft = made
    pool = data.pool
    for k, (fit_rows, val_rows) in enumerate(folds):
        assert np.isnan(soft.fold_logits[k][val_rows]).all()  # no label from a teacher of this fold
        assert np.isfinite(soft.fold_logits[k][fit_rows]).all()
        assert not set(soft.taught_on[k]) & set(val_rows)
        # exactly what a teacher trained on the fit rows alone gives: no validation row reached it
        model = build_seeded(teacher.candidate)
        fit(model, pool.take(fit_rows), None, teacher.candidate.training)
        np.testing.assert_allclose(soft.fold_logits[k][fit_rows], predict_logits(model, pool.take(fit_rows)),
                                   rtol=1e-5, atol=1e-5)
    refit_model, _, _ = refit(teacher.candidate, data, pretrain_cache=None)
    np.testing.assert_allclose(soft.refit_logits, predict_logits(refit_model, pool), rtol=1e-5, atol=1e-5)


def test_cross_fitted_labels_come_from_teachers_that_never_saw_the_row(made, tmp_path):
    data, folds, teacher, _, soft = made
    pool, k = data.pool, 2
    crossed = soft_labels([teacher], data, folds, cache_dir=tmp_path, cross_fit=k)
    assert crossed.trained == k * (len(folds) + 1)
    fit_rows, val_rows = folds[0]
    assert np.isnan(crossed.fold_logits[0][val_rows]).all()
    parts = cross_fit_parts(pool.labels, fit_rows, k)
    # a partition of the fold's fit rows, each part holding about 1/k of every class
    assert sorted(np.concatenate(parts)) == sorted(fit_rows)
    for c in range(len(data.classes)):
        counts = [int((pool.labels[p] == c).sum()) for p in parts]
        assert max(counts) - min(counts) <= 1
    for held in parts:  # labelled by a model of the other parts alone: neither these rows nor the fold's validation
        model = build_seeded(teacher.candidate)
        fit(model, pool.take(np.setdiff1d(fit_rows, held)), None, teacher.candidate.training)
        np.testing.assert_allclose(crossed.fold_logits[0][held], predict_logits(model, pool.take(held)),
                                   rtol=1e-5, atol=1e-5)
    assert not np.allclose(crossed.fold_logits[0][fit_rows], soft.fold_logits[0][fit_rows])
    assert soft_labels([teacher], data, folds, cache_dir=tmp_path, cross_fit=k).trained == 0  # cached


def test_a_retrained_student_gets_the_cross_fitted_labels_it_was_searched_with(made, tmp_path, monkeypatch):
    from search.delivery.export import student_soft_labels
    from search.trial.teacher import SOFT_LABELS_CACHE

    data, folds, teacher, _, _ = made
    monkeypatch.chdir(tmp_path)  # the cache a search leaves in its working directory
    searched = soft_labels([teacher], data, folds, cache_dir=SOFT_LABELS_CACHE.resolve(), cross_fit=2)
    student = _candidate(data, epochs=1, alpha=0.5, width=8)
    student = Candidate(student.model, student.training, student.data, {"teachers": [teacher.ref()], "cross_fit": 2})
    again = student_soft_labels(student, data, log=lambda m: None)
    assert again.trained == 0  # the search's own labels, from its cache
    np.testing.assert_array_equal(again.refit_logits, searched.refit_logits)


def test_made_once_then_read_from_the_cache(made):
    data, folds, teacher, cache, soft = made
    assert soft.trained == len(folds) + 1
    assert len(list(cache.glob("*.npy"))) == len(folds) + 1
    again = soft_labels([teacher], data, folds, cache_dir=cache)
    assert again.trained == 0  # nothing trained a second time
    for a, b in zip(soft.fold_logits, again.fold_logits):
        np.testing.assert_array_equal(a, b)
    # another teacher config is another entry, never a stale hit
    other = Teacher(_candidate(data, seed=1), None, "other.yaml")
    assert soft_labels([other], data, folds[:1], with_refit=False, cache_dir=cache).trained == 1


def test_an_ensemble_averages_its_teachers_logits(made, tmp_path):
    data, folds, teacher, cache, soft = made
    other = Teacher(_candidate(data, seed=1), None, "other.yaml")
    alone = soft_labels([other], data, folds, cache_dir=cache)
    both = soft_labels([teacher, other], data, folds, cache_dir=cache)
    assert both.trained == 0
    np.testing.assert_allclose(both.refit_logits, (soft.refit_logits + alone.refit_logits) / 2, rtol=1e-6)
    np.testing.assert_allclose(both.fold_logits[0], (soft.fold_logits[0] + alone.fold_logits[0]) / 2, rtol=1e-6)


def test_a_distilled_candidate_trains_on_the_folds_the_labels_were_made_for(made):
    data, folds, _, _, soft = made
    student = _candidate(data, epochs=1, alpha=0.7, width=8)
    rows = list(cross_validate(student, data, folds, soft=soft, pretrain_cache=None))
    assert len(rows) == 1 and 0 <= rows[0]["val_accuracy"] <= 1
    _, n, _ = refit(student, data, soft=soft, pretrain_cache=None)
    assert n == len(data.pool)
    other_folds = stratified_folds(data.pool.labels, 3, seed=1)
    with pytest.raises(ValueError, match="fold 0 differs from the folds they were made for"):
        next(cross_validate(student, data, other_folds, soft=soft, pretrain_cache=None))
    with pytest.raises(ValueError, match="without the teacher's soft labels"):
        next(cross_validate(student, data, folds, pretrain_cache=None))


# --- the spec's distill section ---

def _spec(tmp_path, **extra):
    raw = {"name": "d", "data": {"name": "gunpoint", "cv_folds": 3}, "baselines": [],
           "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
           "space": {"width": [8, 16], "depth": 1, "heads": 1, "patch_len": 16},
           "training": {"epochs": 1}, "search": {"storage": str(tmp_path / "runs")}}
    raw.update(extra)
    return raw


def _export_teacher(tmp_path, data_name: str = "gunpoint", name: str = "teacher.yaml"):
    spec = parse_spec(_spec(tmp_path, data={"name": data_name, "cv_folds": 3}))
    data = spec_dataset(spec)
    cand = resolve(spec, {"width": 16, "patch_len": 8 if data_name == "italypowerdemand" else 16}, data.modalities,
                   len(data.classes))
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**cand.to_dict(), "source": {"search": "hand-made"}}))
    return path


def test_a_teacher_yaml_is_read_and_its_path_made_absolute(tmp_path):
    _export_teacher(tmp_path)
    spec = parse_spec(_spec(tmp_path, distill={"teacher": "teacher.yaml", "alpha": 0.3},
                            space={"width": [8], "depth": 1, "heads": 1, "patch_len": 16,
                                   "distill_alpha": {"low": 0.2, "high": 0.8}}), base_dir=tmp_path)
    assert spec.distill.teacher == str(tmp_path / "teacher.yaml")
    cand = resolve(spec, {"distill_alpha": 0.6}, spec_dataset(spec).modalities, 2, teachers=[{"candidate": {}}])
    assert cand.training.distill_alpha == 0.6 and cand.training.distill_temperature == 4.0
    assert cand.to_dict()["distill"] == {"teachers": [{"candidate": {}}]}
    assert resolve(spec, {}, spec_dataset(spec).modalities, 2).training.distill_alpha == 0.3  # the section's default
    crossed = spec.model_copy(update={"distill": spec.distill.model_copy(update={"cross_fit": 3})})
    cand = resolve(crossed, {"distill_alpha": 0.6}, spec_dataset(spec).modalities, 2, teachers=[{"candidate": {}}])
    assert cand.to_dict()["distill"] == {"teachers": [{"candidate": {}}], "cross_fit": 3}  # what a retrain needs


@pytest.mark.parametrize(("extra", "expected"), [
    ({"space": {"width": [8], "distill_alpha": [0.5]}}, "space.distill_alpha: searched without a teacher"),
    ({"distill": {"teacher": "missing.yaml"}}, "missing.yaml is not a file"),
    ({"distill": {"teacher": "italy.yaml"}}, "was built for other data"),
    ({"distill": {"teacher": "teacher.yaml", "alpha": 2}}, "distill.alpha: 2 - Input should be less than or equal"),
    ({"distill": {"teacher": {"search": "x", "select": "knee"}}}, "accepted: a candidate YAML path"),
    ({"distill": {"teacher": {"search": "x", "top": 0}}}, "top: K >= 1"),
    ({"distill": {"teacher": "teacher.yaml", "cross_fit": 0}}, "distill.cross_fit: 0 - Input should be greater"),
    ({"distill": {"teacher": "teacher.yaml"}, "space": {"width": [8], "distill_alpha": [1.5]}},
     "distill_alpha: 1.5 not accepted; accepted: numbers in [0, 1]"),
])
def test_bad_distill_sections_are_refused_in_one_line(tmp_path, extra, expected):
    _export_teacher(tmp_path)
    _export_teacher(tmp_path, "italypowerdemand", "italy.yaml")
    raw = _spec(tmp_path)
    raw.update(extra)
    if "space" in extra:
        raw["space"] = {**_spec(tmp_path)["space"], **extra["space"]}
    with pytest.raises(SpecError) as e:
        parse_spec(raw, base_dir=tmp_path)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_a_distilled_teacher_is_refused(tmp_path):
    path = _export_teacher(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["training"]["distill_alpha"] = 0.5
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match="is itself distilled"):
        parse_spec(_spec(tmp_path, distill={"teacher": "teacher.yaml"}), base_dir=tmp_path)

