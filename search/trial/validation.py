"""How a candidate is judged and how its final model is fit.

Selection sees only the training pool (the train split plus the validation rows carved from it): either k
stratified folds of it (``data.cv_folds: k``), one model per fold trained in step so every epoch reports the fold
mean, or the single holdout split. The candidate's test accuracy - and the model a user exports - come from one
refit on the whole pool with the same recipe and epochs, or, with ``training.final: fold_ensemble``, from the k fold
models averaged (``FoldModels``), or, with ``seed_ensemble``, from refits from several seeds averaged. The test split
is never used for any choice.

With ``pretrain_epochs`` each of those models first pretrains (``emule_models.pretrain``) on the inputs of the
rows it learns from - all of them, whatever the data fraction, since pretraining reads no label - and on the
dataset's unlabelled rows; never on the rows that validate it, never on the test split.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from emule_models.data import Dataset, needs_scores, select
from emule_models.data.dataset import Split, check_fold_count, concat, smallest_class, stratified_folds
from emule_models.ensemble import MeanEnsemble
from emule_models.pretrain import load_pretrained, pretrained_state
from emule_models.train import SEED_ENSEMBLE, fit, train_epochs
from search.spec.results import EPOCH, PRETRAIN_SAMPLES, SAMPLES_SEEN
from search.spec.schema import AUTO, HOLDOUT, DataSection, check_cv_folds
from search.trial.candidate import Candidate, build_seeded, quality_scores

if TYPE_CHECKING:
    from search.trial.teacher import SoftLabels

# `auto`: k-fold while the training pool is small enough for one validation split to be noise, holdout above.
AUTO_FOLDS = 5
AUTO_MAX_ROWS = 1000
# Pretrained weights, shared by the candidates (and retrains) of one architecture; a search passes an absolute path.
PRETRAIN_CACHE = Path(".emule") / "pretrain"

Folds = list[tuple[np.ndarray, np.ndarray]]

# Tiny data: a training pool with a class of fewer than TINY_CLASS_ROWS rows. There a fraction of a class is one or
# two rows, from which no model learns the class, and the search's data-fraction axis would only measure that;
# so a candidate's data fraction never leaves a class with fewer than TINY_MIN_ROWS of the rows it may learn from
# (all of them where it has fewer). What was learned from is reported as measured (train_samples, training_compute).
TINY_CLASS_ROWS = 20
TINY_MIN_ROWS = 5


def resolve_setting(value: Any, labels: np.ndarray) -> int | str:
    """``data.cv_folds`` for a training pool with these labels: a fold count, or ``holdout``."""
    check_cv_folds(value)
    if value == AUTO:
        smallest = smallest_class(labels)
        if len(labels) >= AUTO_MAX_ROWS or smallest < 2:
            return HOLDOUT
        return min(AUTO_FOLDS, smallest)
    if value != HOLDOUT:
        check_fold_count(labels, value)
    return value


def scheme(data: DataSection) -> int | str:
    """The (resolved) validation scheme of a spec's ``data`` section (a candidate's: ``Candidate.data_section``): a
    fold count or ``holdout`` (what a search from before cross-validation, with no ``cv_folds``, used)."""
    return HOLDOUT if data.cv_folds is None else data.cv_folds


def describe(data: DataSection) -> str:
    """The validation scheme in words."""
    setting = scheme(data)
    return "holdout split" if setting == HOLDOUT else f"{setting}-fold cross-validation"


def selection_folds(data: DataSection, dataset: Dataset) -> Folds:
    """(fit rows, validation rows) pairs over ``dataset.pool`` for a (resolved) spec's ``data`` section (a
    candidate's: ``Candidate.data_section``): k stratified folds seeded by ``data.seed``, or the holdout split."""
    setting = scheme(data)
    if setting == HOLDOUT:
        n, m = len(dataset.train), len(dataset.val)
        return [(np.arange(n), np.arange(n, n + m))]
    return stratified_folds(dataset.pool.labels, int(setting), seed=int(data.seed or 0))


def class_floor(labels: np.ndarray) -> int:
    """The fewest rows of each class a data fraction keeps, for a training pool with these labels: TINY_MIN_ROWS on
    tiny data (a class under TINY_CLASS_ROWS rows), else 1."""
    return TINY_MIN_ROWS if smallest_class(labels) < TINY_CLASS_ROWS else 1


def tiny_data_note(labels: np.ndarray) -> str | None:
    """One line for the search's start when the pool is tiny data (see TINY_CLASS_ROWS), else None."""
    if class_floor(labels) == 1:
        return None
    return (f"tiny data: the smallest class has {smallest_class(labels)} training rows (< {TINY_CLASS_ROWS}); a "
            f"candidate's data_fraction keeps at least {TINY_MIN_ROWS} rows of each class it learns from (all of a "
            "class with fewer)")


def subset(cand: Candidate, labels: np.ndarray, rows: np.ndarray,
           scores: dict[str, np.ndarray] | None) -> np.ndarray:
    """The rows (of the pool) a model learns from: the candidate's data fraction of ``rows``, chosen by its
    selection strategy, at least ``class_floor`` of each class. ``labels`` and ``scores`` cover the whole pool."""
    scores = scores or {}
    pick = lambda key: scores[key][rows] if key in scores else None  # noqa: E731
    chosen = select(labels[rows], cand.data["data_fraction"], cand.data["selection"], seed=cand.data["subset_seed"],
                    scores=pick("el2n"), embeddings=pick("embeddings"), min_per_class=class_floor(labels))
    return rows[chosen]


@dataclass
class FoldModels:
    """The models ``cross_validate`` trains, one per fold, and the pool rows each learns from: after the last epoch,
    a fold ensemble (``training.final: fold_ensemble``)."""

    models: list[torch.nn.Module] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)

    def ensemble(self) -> MeanEnsemble:
        return MeanEnsemble(self.models)

    def rows_learned_from(self) -> int:
        """Distinct training rows the ensemble learned from (each fold model learns from k-1 folds of them)."""
        return len(np.unique(np.concatenate(self.rows)))


def cross_validate(cand: Candidate, dataset: Dataset, folds: Folds, scores: dict[str, np.ndarray] | None = None,
                   device: str = "cpu", pretrain_cache: str | Path | None = PRETRAIN_CACHE,
                   soft: SoftLabels | None = None, keep: FoldModels | None = None) -> Iterator[dict[str, float]]:
    """One model per fold, trained in step; yields per epoch the fold means (``val_accuracy``, ``val_loss``,
    ``train_loss``), ``val_accuracy_std`` across folds, ``samples_seen`` summed over folds and, with pretraining,
    ``pretrain_samples`` summed over folds. ``soft``: a teacher's soft labels, for a distilled candidate; fold k's
    model learns from fold k's teacher, which never saw fold k's validation rows. ``keep`` receives the fold
    models as they are built (trained once the last epoch is yielded)."""
    pool, scores = dataset.pool, selection_scores(cand, dataset, scores)
    runs, pretrained = [], 0
    for k, (fit_rows, val_rows) in enumerate(folds):
        model, seen = start_model(cand, dataset, pool.take(fit_rows), device, pretrain_cache)
        pretrained += seen
        rows = subset(cand, pool.labels, fit_rows, scores)
        if keep is not None:
            keep.models.append(model)
            keep.rows.append(rows)
        teacher = soft.for_fold(k, val_rows, rows) if distills(cand, soft) else None
        runs.append(train_epochs(model, pool.take(rows), pool.take(val_rows), cand.training, device, teacher))
    start = time.perf_counter()
    for per_fold in zip(*runs):
        accuracy = np.array([m["val_accuracy"] for m in per_fold])
        yield {EPOCH: per_fold[0][EPOCH],
               "train_loss": float(np.mean([m["train_loss"] for m in per_fold])),
               "val_accuracy": float(accuracy.mean()), "val_accuracy_std": float(accuracy.std()),
               "val_loss": float(np.mean([m["val_loss"] for m in per_fold])),
               SAMPLES_SEEN: int(sum(m[SAMPLES_SEEN] for m in per_fold)),
               **({PRETRAIN_SAMPLES: pretrained} if cand.training.pretrain_epochs else {}),
               "train_time_s": time.perf_counter() - start}


def refit(cand: Candidate, dataset: Dataset, scores: dict[str, np.ndarray] | None = None, device: str = "cpu",
          report=None, pretrain_cache: str | Path | None = PRETRAIN_CACHE,
          soft: SoftLabels | None = None) -> tuple[torch.nn.Module, int, int]:
    """The candidate trained once more on the whole pool (its data fraction of it), same recipe and epochs,
    pretrained first where its recipe says so, distilled from ``soft`` (the teacher's refit labels) where it
    distills. Returns (model, training rows, samples seen, pretraining's included)."""
    pool, scores = dataset.pool, selection_scores(cand, dataset, scores)
    rows = subset(cand, pool.labels, np.arange(len(pool)), scores)
    model, pretrained = start_model(cand, dataset, pool, device, pretrain_cache)
    teacher = soft.for_refit(rows) if distills(cand, soft) else None
    last = fit(model, pool.take(rows), None, cand.training, report=report, device=device, teacher=teacher)
    return model, len(rows), pretrained + int(last.get(SAMPLES_SEEN, 0))


def fit_fold_ensemble(cand: Candidate, dataset: Dataset, scores: dict[str, np.ndarray] | None = None,
                      device: str = "cpu", report=None, pretrain_cache: str | Path | None = PRETRAIN_CACHE,
                      soft: SoftLabels | None = None) -> tuple[MeanEnsemble, int]:
    """A ``final: fold_ensemble`` candidate's deployed model, trained again as selection trained it: the same
    folds, seed and recipe, one model per fold, averaged. ``report`` gets each epoch's fold means. Returns (the
    ensemble, distinct training rows learned from)."""
    kept = FoldModels()
    for metrics in cross_validate(cand, dataset, selection_folds(cand.data_section, dataset), scores, device,
                                  pretrain_cache, soft, keep=kept):
        if report is not None:
            report(metrics)
    return kept.ensemble(), kept.rows_learned_from()


def fit_seed_ensemble(cand: Candidate, dataset: Dataset, scores: dict[str, np.ndarray] | None = None,
                      device: str = "cpu", report=None, pretrain_cache: str | Path | None = PRETRAIN_CACHE,
                      soft: SoftLabels | None = None) -> tuple[MeanEnsemble, int, int]:
    """A ``final: seed_ensemble`` candidate's deployed model: ``ensemble_seeds`` refits on the same rows, from the
    candidate's seed and the ones after it, averaged. Returns (the ensemble, training rows, samples seen by all its
    members)."""
    members, seen = [], 0
    for i in range(cand.training.ensemble_seeds):
        seeded = replace(cand, training=replace(cand.training, seed=cand.training.seed + i))
        model, rows, samples = refit(seeded, dataset, scores, device, report, pretrain_cache, soft)
        members.append(model)
        seen += samples
    return MeanEnsemble(members), rows, seen


def fit_final(cand: Candidate, dataset: Dataset, scores: dict[str, np.ndarray] | None = None, device: str = "cpu",
              report=None, pretrain_cache: str | Path | None = PRETRAIN_CACHE,
              soft: SoftLabels | None = None) -> tuple[torch.nn.Module, int, int]:
    """What a candidate that deploys no fold models is fit on every training row for: its seed ensemble
    (``final: seed_ensemble``), else its refit. Returns (model, training rows, samples seen)."""
    fit_on_all = fit_seed_ensemble if cand.training.final == SEED_ENSEMBLE else refit
    return fit_on_all(cand, dataset, scores, device, report, pretrain_cache, soft)


def distills(cand: Candidate, soft: SoftLabels | None) -> bool:
    """Whether ``cand`` learns from a teacher; refused when it should and no soft labels were handed in (a trial
    never makes its own: they are made once per search, see ``search.trial.teacher``)."""
    if not cand.training.distill_alpha:
        return False
    if soft is None:
        raise ValueError(f"training.distill_alpha: {cand.training.distill_alpha} without the teacher's soft labels; "
                         "accepted: soft labels made once per search (search.trial.teacher.soft_labels)")
    return True


def start_model(cand: Candidate, dataset: Dataset, learns_from: Split, device: str = "cpu",
                pretrain_cache: str | Path | None = PRETRAIN_CACHE) -> tuple[torch.nn.Module, int]:
    """The candidate's seeded model, pretrained - when its recipe asks - on the inputs of ``learns_from`` and
    the dataset's unlabelled rows. Returns (model, pretraining samples seen)."""
    model = build_seeded(cand)
    if not cand.training.pretrain_epochs:
        return model.to(device), 0
    rows = learns_from if dataset.unlabelled is None else concat(learns_from, dataset.unlabelled)
    state, seen = pretrained_state(cand.model, rows, cand.training, device, pretrain_cache)
    load_pretrained(model, state)
    return model.to(device), seen


def selection_scores(cand: Candidate, dataset: Dataset,
                     scores: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """The search's shared quality scores; computed here (cached) when the strategy needs them and none were
    passed, as for a retrain."""
    if scores is None and needs_scores(cand.data["selection"]):
        return quality_scores(dataset, cand.data["proxy"])
    return scores
