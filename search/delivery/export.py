"""From a finished search to deployable configs, and back to a trained model.

``export`` writes one YAML per chosen front member: the full candidate (model + data + training) plus where it
came from and what it scored. ``retrain`` reads such a file, trains it again and saves the weights;
``emule_models.build_model(candidate["model"])`` rebuilds the same architecture (``search.trial.candidate.load_weights``
the saved model, an ensemble's k models included).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from emule_models.cost import count_parameters
from emule_models.train import FOLD_ENSEMBLE, evaluate
from search.front.state import Front, Record
from search.front.yardstick import best_by_validation
from search.record.searches import SearchRecord, fit_description, load_search, write_candidates
from search.record.tracking import Tracker
from search.spec.metrics import upgrade
from search.spec.results import EPOCH, SIZE, TEST_ACCURACY, TRAIN_SAMPLES
from search.spec.schema import Objective
from search.trial.candidate import (
    Candidate,
    build_seeded,
    candidate_dataset,
    data_in_place,
    ensemble_size,
    read_candidate,
)
from search.trial.validation import fit_final, fit_fold_ensemble, selection_folds

SELECTIONS = ("front", "knee", "budget")


def choose(front: Front, how: str, limits: dict[str, float] | None = None,
           first: Objective | None = None) -> list[Record]:
    """``front``: every member; ``knee``: the balanced one; ``budget``: the member best on ``first`` (the first
    objective) among those within ``limits`` (metric -> largest value accepted), or none."""
    if how not in SELECTIONS:
        raise ValueError(f"--select: {how!r} not accepted; accepted: {list(SELECTIONS)}")
    if how == "front":
        return list(front.members)
    if how == "knee":
        return [front.knee] if front.knee else []
    if not limits:
        raise ValueError("--select budget needs at least one limit, e.g. --max-params 20000")
    within = [r for r in front.members if all(r.metrics.get(k, float("inf")) <= v for k, v in limits.items())]
    if not within or first is None:
        return within
    return [(max if first.mode == "max" else min)(within, key=lambda r: r.metrics[first.metric])]


def pick_candidate(tracker: Tracker, record: SearchRecord, select: str = "best") -> tuple[Record, Candidate]:
    """One finished candidate of a search, for commands that train it again: ``best`` (by validation), ``knee``
    (the front's balanced member) or a trial id."""
    finished = [*record.front.members, *record.front.others]
    if select == "best":
        chosen = best_by_validation(finished)
    elif select == "knee":
        chosen = record.front.knee
    else:
        chosen = next((r for r in finished if r.trial_id == select), None)
        if chosen is None:
            ids = sorted(r.trial_id for r in finished)
            raise ValueError(f"--select: {select!r} is not a finished trial of search {record.name}; accepted: best, "
                             f"knee, or one of {ids[:12]}{' ...' if len(ids) > 12 else ''}")
    if chosen is None:
        raise LookupError(f"search: {record.name} has no finished candidate yet; run or resume it first")
    return chosen, Candidate.from_dict(tracker.candidate(chosen.run_id))


def export(tracker: Tracker, name: str, out: Path, how: str = "front",
           limits: dict[str, float] | None = None) -> list[Path]:
    record, chosen = select(tracker, name, how, limits)
    return write_candidates(tracker, record, chosen, out)


def select(tracker: Tracker, name: str, how: str = "front",
           limits: dict[str, float] | None = None) -> tuple[SearchRecord, list[Record]]:
    """The search ``name`` and the front members ``choose`` picks from it (nothing written)."""
    record = load_search(tracker, name)
    return record, choose(record.front, how, limits, record.spec.objectives[0])


def retrain(path: Path, weights: Path, device: str = "cpu", log=print) -> dict[str, float]:
    """Fit an exported candidate again from scratch, as the search fit its reported model: once on every
    training row (train + validation; its data fraction of them), its own recipe and epochs - or, for a fold
    ensemble, one model per selection fold, averaged; for a seed ensemble, one such refit per seed, averaged; the
    test split only scores it. Saves ``{"candidate",
    "state_dict"}`` to ``weights``."""
    cand, source = read_candidate(path)
    data_in_place(cand.data_section, source.get("search"), path)
    dataset = candidate_dataset(cand)
    size = ensemble_size(cand)
    params = size * count_parameters(build_seeded(cand))
    logged = upgrade(source.get("metrics", {})).get(SIZE)  # exports before the rename say "params"
    if logged is not None and int(logged) != params:
        raise RuntimeError(f"model: rebuilt with {params} parameters but the search logged {int(logged)}")
    log(f"training {path.name}: {cand.model.attention} depth {cand.model.depth} width {cand.model.width}, "
        f"{params} parameters, {fit_description(cand, len(dataset.pool))}")
    report = lambda m: log(f"  epoch {m[EPOCH]:>3}: train_loss {m['train_loss']:.4f}")  # noqa: E731
    if cand.training.final == FOLD_ENSEMBLE:
        folds = selection_folds(cand.data_section, dataset)
        soft = student_soft_labels(cand, dataset, device, log, folds)
        model, rows = fit_fold_ensemble(cand, dataset, device=device, soft=soft, report=report)
    else:
        model, rows, _ = fit_final(cand, dataset, device=device, soft=student_soft_labels(cand, dataset, device, log),
                                   report=report)
    test = evaluate(model, dataset.test, device=device)
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"candidate": cand.to_dict(), "state_dict": model.state_dict()}, weights)
    return {SIZE: params, TRAIN_SAMPLES: rows, TEST_ACCURACY: test["accuracy"]}


def student_soft_labels(cand: Candidate, dataset, device: str = "cpu", log=print, folds=()):
    """The soft labels of a distilled candidate, from the teachers it records (cached: the search that found it
    made them): for the refit, or for each of ``folds`` (a fold ensemble); None for a candidate that does not
    distill."""
    if not cand.training.distill_alpha:
        return None
    from search.trial.teacher import SOFT_LABELS_CACHE, Teacher, check_teacher, soft_labels

    refs = (cand.distill or {}).get("teachers")
    if not refs:
        raise ValueError(f"training.distill_alpha: {cand.training.distill_alpha} but the candidate names no teacher; "
                         "accepted: a candidate exported from a distilled search (it holds `distill.teachers`)")
    teachers = [Teacher.from_ref(r) for r in refs]
    for t in teachers:
        check_teacher(t, dataset)
    return soft_labels(teachers, dataset, list(folds), with_refit=not folds, cache_dir=SOFT_LABELS_CACHE.resolve(),
                       device=device, log=log, cross_fit=int(cand.distill.get("cross_fit", 1)))


def _number(text: str) -> Any:
    """MLflow keeps params as strings; show numbers as numbers."""
    try:
        return float(text) if "." in text or "e" in text else int(text)
    except ValueError:
        return text


def front_rows(front: Front, metrics: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for r in sorted(front.members, key=lambda r: r.metrics.get(SIZE, 0)):
        row = {"trial": r.trial_id, **{m: r.metrics.get(m) for m in metrics}}
        row["test_accuracy"] = r.metrics.get("test_accuracy")
        for k in ("tokenizer", "attention", "depth", "width", "heads", "data_fraction", "selection", "final"):
            if k in r.params:
                row[k] = _number(r.params[k])
        if row.get("depth") == 0:  # the convolution-only end: no attention layer, whatever was sampled for it
            row.update({k: "-" for k in ("attention", "heads") if k in row})
        row["knee"] = "*" if r is front.knee else ""
        rows.append(row)
    return rows
