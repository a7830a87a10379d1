"""A distillation teacher's soft labels, computed once per search on the driver and shared with every trial.

The teacher is an exported candidate (or several: an ensemble, logits averaged). For cross-validation fold k a
teacher model is trained from the teacher's config on fold k's fit rows only and labels those rows; the rows fold
k validates on get no label (NaN), so no student ever learns from a teacher that saw its validation rows. The
refit's labels come from the teacher's own weights (what ``emule train`` fit on the whole pool) when they lie
beside its YAML, else from a teacher refit on the whole pool. Each teacher model's logits are cached by the
teacher's config, its weights and the content of the rows it learns from and labels, so a second search - or
``emule train`` of a student - trains none again.

Cross-fitted labels (``cross_fit`` K >= 2): a teacher that learned a row labels it close to its one-hot label on
small data (it fits its training rows), which leaves a student little beyond the labels themselves. With K, the rows
a fold (or the refit) learns from are dealt into K parts, class by class, and K teacher models each learn from the
other parts and label theirs: every row's soft label comes from a teacher that never saw it (K times the teacher
models; the refit's then come from K models, not the teacher's weights).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emule_models.data import Dataset
from emule_models.data.scoring import fingerprint
from emule_models.distill import predict_logits
from emule_models.train import fit
from search.trial.candidate import Candidate, load_section, load_weights, read_candidate, spec_dataset
from search.trial.validation import PRETRAIN_CACHE, Folds, refit, selection_scores, start_model, subset

SOFT_LABELS_CACHE = Path(".emule") / "soft_labels"
VERSION = 1  # bump when how soft labels are made changes, so old caches are not reused


@dataclass(frozen=True)
class Teacher:
    candidate: Candidate
    weights: Path | None  # trained on the whole pool by `emule train`; None: refit here
    source: str  # the YAML it came from

    def ref(self) -> dict[str, Any]:
        """What a student's exported candidate records of its teacher (enough to make its soft labels again)."""
        return {"candidate": self.candidate.to_dict(), "weights": str(self.weights) if self.weights else None,
                "weights_sha256": _file_sha(self.weights) if self.weights else None, "source": self.source}

    @classmethod
    def from_ref(cls, ref: dict[str, Any]) -> Teacher:
        weights = Path(ref["weights"]) if ref.get("weights") else None
        if weights is not None and (not weights.is_file() or _file_sha(weights) != ref.get("weights_sha256")):
            raise ValueError(f"distill.teacher: weights {weights} are missing or changed since the student was "
                             "searched; accepted: the teacher's weights as they were")
        return cls(Candidate.from_dict(ref["candidate"]), weights, ref.get("source", ""))


@dataclass(frozen=True)
class SoftLabels:
    """A teacher's logits over the training pool (rows of ``dataset.pool``), one array per selection fold and one
    for the refit. ``fold_logits[k]`` is NaN on every row fold k's teacher was not allowed to learn from."""

    folds: tuple[np.ndarray, ...]  # validation rows of each fold, to check a trial uses the same folds
    fold_logits: tuple[np.ndarray, ...]  # (N, K) each
    refit_logits: np.ndarray | None  # (N, K)
    taught_on: tuple[np.ndarray, ...]  # the rows each fold's teacher models learned from
    trained: int  # teacher models trained to make these (0: every one came from the cache)

    def for_fold(self, k: int, val_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Fold k's teacher logits on ``rows`` (of the pool); refused for folds other than the ones labelled."""
        if k >= len(self.folds) or not np.array_equal(self.folds[k], val_rows):
            raise ValueError(f"teacher soft labels: fold {k} differs from the folds they were made for; accepted: "
                             "the search's own folds (data.cv_folds, data.seed)")
        return self.fold_logits[k][rows]

    def for_refit(self, rows: np.ndarray) -> np.ndarray:
        if self.refit_logits is None:
            raise ValueError("teacher soft labels: none for the refit; accepted: soft labels made with refit=True")
        return self.refit_logits[rows]


def read_teachers(spec_teacher: str | list[str]) -> list[Teacher]:
    """The teachers a spec's ``distill.teacher`` names (YAML paths, made absolute by the spec)."""
    paths = [spec_teacher] if isinstance(spec_teacher, str) else list(spec_teacher)
    return [_read(p, os.stat(p).st_mtime_ns if os.path.exists(p) else 0) for p in paths]


@functools.lru_cache(maxsize=16)
def _read(path: str, _mtime: int) -> Teacher:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"distill.teacher: {path} is not a file; accepted: a candidate YAML written by `emule export`")
    try:
        cand, _ = read_candidate(p)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"distill.teacher: {path} is not an exported candidate ({str(e).splitlines()[0]}); "
                         "accepted: a YAML written by `emule export`") from None
    if cand.training.distill_alpha:
        raise ValueError(f"distill.teacher: {path} is itself distilled (distill_alpha={cand.training.distill_alpha}); "
                         "accepted: a teacher trained from labels")
    weights = p.with_suffix(".pt")
    return Teacher(cand, weights if weights.is_file() else None, str(p))


def teacher_refs(spec) -> list[dict[str, Any]] | None:
    """What a distilled candidate of ``spec`` records of its teachers (None without a ``distill`` section)."""
    if spec.distill is None or not spec.distill.paths():
        return None
    return [t.ref() for t in read_teachers(spec.distill.teacher)]


def check_teachers(spec) -> None:
    """Refuse teachers that cannot label the spec's data: missing or malformed files, another dataset's shape or
    classes, weights that do not fit the teacher or were fit on other training rows."""
    if not spec.distill.paths():
        return  # {search: NAME}: resolved, and checked, when the search starts
    dataset = spec_dataset(spec)
    for t in read_teachers(spec.distill.teacher):
        check_teacher(t, dataset)


def check_teacher(t: Teacher, dataset: Dataset) -> None:
    if t.candidate.model.modalities != dataset.modalities or t.candidate.model.num_classes != len(dataset.classes):
        raise ValueError(f"distill.teacher: {t.source} was built for other data ({t.candidate.model.num_classes} "
                         f"classes, inputs {[m.name for m in t.candidate.model.modalities]}); accepted: a candidate "
                         f"of this dataset ({len(dataset.classes)} classes, inputs "
                         f"{[m.name for m in dataset.modalities]})")
    if t.weights is not None and fingerprint(load_section(t.candidate.data_section).pool) != fingerprint(dataset.pool):
        raise ValueError(f"distill.teacher: the weights {t.weights} were fit on other training rows than this "
                         "search's pool; accepted: a teacher exported from a search of the same data section "
                         "(name, val_fraction, seed), or its YAML without weights (it is then refit)")


def soft_labels(teachers: list[Teacher], dataset: Dataset, folds: Folds, with_refit: bool = True,
                cache_dir: str | Path | None = SOFT_LABELS_CACHE, device: str = "cpu", log=None,
                cross_fit: int = 1) -> SoftLabels:
    """The teachers' (mean) logits per fold and for the refit; see the module docstring for who learns from what."""
    pool = dataset.pool
    trained, fold_logits = 0, []
    for fit_rows, _ in folds:
        mean = np.zeros((len(pool), len(dataset.classes)), np.float32)
        for t in teachers:
            logits, fresh = _labels(t, dataset, fit_rows, cross_fit, cache_dir, device, log)
            mean[fit_rows] += logits / len(teachers)
            trained += fresh
        out = np.full_like(mean, np.nan)  # rows this fold validates on stay unlabelled
        out[fit_rows] = mean[fit_rows]
        fold_logits.append(out)
    refit_logits = None
    if with_refit:
        refit_logits = np.zeros((len(pool), len(dataset.classes)), np.float32)
        for t in teachers:
            logits, fresh = _labels(t, dataset, None, cross_fit, cache_dir, device, log)
            refit_logits += logits / len(teachers)
            trained += fresh
    return SoftLabels(tuple(val for _, val in folds), tuple(fold_logits), refit_logits,
                      tuple(fit for fit, _ in folds), trained)


def cross_fit_parts(labels: np.ndarray, rows: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """``rows`` dealt into ``k`` parts, class by class (each part holds about 1/k of every class)."""
    shuffled = np.random.default_rng(seed).permutation(rows)
    dealt = shuffled[np.argsort(labels[shuffled], kind="stable")]
    return [np.sort(dealt[j::k]) for j in range(k)]


def _labels(t: Teacher, dataset: Dataset, fit_rows: np.ndarray | None, cross_fit: int, cache_dir, device,
            log) -> tuple[np.ndarray, int]:
    """One teacher's logits on ``fit_rows`` (None: the whole pool), in-sample or cross-fitted; and the number of
    teacher models trained now."""
    if cross_fit < 2:
        logits, fresh = _teacher_logits(t, dataset, fit_rows, cache_dir, device, log)
        return logits, int(fresh)
    rows = np.arange(len(dataset.pool)) if fit_rows is None else np.asarray(fit_rows)
    where = np.full(len(dataset.pool), -1)
    where[rows] = np.arange(len(rows))  # pool row -> its place in ``rows``
    out, trained = np.zeros((len(rows), len(dataset.classes)), np.float32), 0
    for held in cross_fit_parts(dataset.pool.labels, rows, cross_fit):
        learn = np.setdiff1d(rows, held)
        logits, fresh = _teacher_logits(t, dataset, learn, cache_dir, device, log, label_rows=held)
        out[where[held]] = logits
        trained += fresh
    return out, trained


def dataset_classes(dataset: Dataset) -> int:
    return len(dataset.classes)


def _teacher_logits(t: Teacher, dataset: Dataset, fit_rows: np.ndarray | None, cache_dir: str | Path | None,
                    device: str, log, label_rows: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """One teacher model's logits on ``label_rows`` of the pool, by default the rows it learned from:
    ``fit_rows`` of the pool, or the whole pool (the refit: its weights when it has them). Returns (logits,
    whether a model was trained now)."""
    pool = dataset.pool
    learns_from = pool if fit_rows is None else pool.take(fit_rows)
    labelled = learns_from if label_rows is None else pool.take(label_rows)
    path = None
    if cache_dir is not None:
        key = _key(t, dataset, learns_from, fit_rows is None, None if label_rows is None else labelled)
        path = Path(cache_dir) / f"{key}.npy"
        if path.exists():
            return np.load(path), False
    use_weights = fit_rows is None and t.weights is not None
    if log is not None:
        what = "whole pool" if fit_rows is None else f"{len(fit_rows)} fit rows of a fold"
        if label_rows is not None:
            what += f", labelling {len(label_rows)} others"
        log(f"teacher {Path(t.source).stem}: {'its weights on' if use_weights else 'training on'} the {what}")
    if use_weights:
        model = load_weights(t.weights)
    elif fit_rows is None:
        model, _, _ = refit(t.candidate, dataset, device=device, pretrain_cache=PRETRAIN_CACHE.resolve())
    else:
        cand = t.candidate
        model, _ = start_model(cand, dataset, learns_from, device, PRETRAIN_CACHE.resolve())
        rows = subset(cand, pool.labels, fit_rows, selection_scores(cand, dataset, None))
        fit(model, pool.take(rows), None, cand.training, device=device)
    logits = predict_logits(model, labelled, device=device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, logits)
        os.replace(tmp, path)
    return logits, not use_weights


def _key(t: Teacher, dataset: Dataset, rows, whole_pool: bool, labelled=None) -> str:
    settings = {"version": VERSION, "torch": torch.__version__, "teacher": t.candidate.to_dict(),
                "weights": _file_sha(t.weights) if whole_pool and t.weights else None}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(fingerprint(rows).encode())
    if labelled is not None:  # other rows than it learned from (cross-fitted)
        h.update(b"labels:" + fingerprint(labelled).encode())
    if dataset.unlabelled is not None:  # a pretraining teacher also learns from these
        h.update(fingerprint(dataset.unlabelled).encode())
    return h.hexdigest()[:32]


def _file_sha(path: Path) -> str:
    return _sha(str(path), os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha(path: str, _mtime: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
