"""From a finished search to deployable configs, and back to a trained model.

``export`` writes one YAML per chosen front member: the full candidate (model + data + training) plus where it
came from and what it scored. ``retrain`` reads such a file, trains it again and saves the weights;
``emule_models.build_model(candidate["model"])`` rebuilds the same architecture (``search.candidate.load_weights``
the saved model, a fold ensemble's k models included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from emule_models.cost import count_parameters
from emule_models.train import evaluate
from search.candidate import (
    Candidate,
    build_seeded,
    candidate_dataset,
    data_in_place,
    ensemble_size,
    read_candidate,
)
from search.front import Front, Record
from search.metrics import upgrade
from search.results import EPOCH, SIZE, TEST_ACCURACY, TRAIN_SAMPLES
from search.spec import AUTO, Objective, Spec, parse_schema
from search.tracking import Tracker, redact
from search.validation import HOLDOUT, describe, fit_fold_ensemble, refit, selection_folds
from search.yardstick import best_by_validation

SELECTIONS = ("front", "knee", "budget")


@dataclass
class SearchRecord:
    """A finished search as MLflow holds it. ``dataset``: its recorded dataset input (``source``, ``profile``),
    None for a search that recorded none."""

    name: str
    parent_id: str
    spec: Spec
    front: Front
    dataset: dict[str, Any] | None = None

    def pool_rows(self) -> int | None:
        """The rows of the training pool (train + validation) the search recorded, None where it recorded none."""
        profile = (self.dataset or {}).get("profile") or {}
        if "train" not in profile or "val" not in profile:
            return None
        return int(profile["train"]) + int(profile["val"])

    def require_data(self) -> None:
        """Refuse, in one line, a search whose Parquet data is no longer where it read it (before training on it)."""
        data_in_place(self.spec.data, self.name)


def load_search(tracker: Tracker, name: str) -> SearchRecord:
    """A search's spec and front, rebuilt from MLflow (candidates that finished their full budget). Reads no data:
    the search reopens from any folder, and after its data moved (``require_data`` says so where it is needed)."""
    parent_id = tracker.find_search(name)
    if parent_id is None:
        raise LookupError(f"search: no search named {name!r} in this experiment of {redact(tracker.uri)}; run "
                          "`emule search SPEC` first, or name the store and experiment it is in (--tracking-uri or "
                          "MLFLOW_TRACKING_URI, --experiment)")
    dataset = tracker.search_dataset(parent_id)
    spec = recorded_spec(yaml.safe_load(tracker.spec_text(parent_id)), dataset,
                         tracker.search_param(parent_id, "data.cv_folds"))
    front = tracker.search_state(parent_id, spec.objectives).front
    return SearchRecord(tracker.search_name(parent_id), parent_id, spec, front, dataset)


def spec_yaml(spec: Spec) -> str:
    """The spec as a search runs it, as YAML for its parent run (``spec.yaml``): its file paths (data, warm-start
    candidates, teachers) absolute and ``data.cv_folds`` resolved, so the search reopens from any folder."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)


def recorded_spec(raw: Any, dataset: dict[str, Any] | None = None, cv_folds: str | None = None) -> Spec:
    """The spec a search's parent run recorded (``spec.yaml``), against the schema alone: no data is read.

    Searches record their spec with absolute paths. Older ones recorded the spec file as written, its
    ``data.path`` relative to a folder the record does not name: the path comes from the recorded ``dataset``
    input (resolved when it was logged) where there is one. ``data.cv_folds`` is the scheme the search resolved
    (the parent run's param ``cv_folds``; searches from before cross-validation used the holdout split).
    """
    data = raw.get("data") if isinstance(raw, dict) else None
    if isinstance(data, dict):
        path = data.get("path")
        if path and not Path(path).is_absolute():
            data["path"] = ((dataset or {}).get("source") or {}).get("uri") or path  # else: the working directory
        if data.get("cv_folds") in (None, AUTO):
            folds = cv_folds or HOLDOUT
            data["cv_folds"] = int(folds) if folds.isdigit() else folds
    return parse_schema(raw)


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


def candidate_path(out: Path, record: SearchRecord, chosen: Record) -> Path:
    """Where ``write_candidates`` writes a chosen member's YAML."""
    return out / f"{record.name}-{chosen.trial_id}.yaml"


def write_candidates(tracker: Tracker, record: SearchRecord, chosen: Sequence[Record], out: Path) -> list[Path]:
    """One YAML per chosen record in ``out``: its candidate and ``source`` (search, trial, run, fit, metrics)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in chosen:
        doc = tracker.candidate(r.run_id)
        cand = Candidate.from_dict(doc)
        doc["source"] = {"search": record.name, "trial_id": r.trial_id, "run_id": r.run_id,
                         "fit": fit_description(cand, record.pool_rows()),
                         "tracking_uri": redact(tracker.uri), "metrics": {k: r.metrics[k] for k in sorted(r.metrics)}}
        path = candidate_path(out, record, r)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths


def retrain(path: Path, weights: Path, device: str = "cpu", log=print) -> dict[str, float]:
    """Fit an exported candidate again from scratch, as the search fit its reported model: once on every
    training row (train + validation; its data fraction of them), its own recipe and epochs - or, for a fold
    ensemble, one model per selection fold, averaged; the test split only scores it. Saves ``{"candidate",
    "state_dict"}`` to ``weights``."""
    cand, source = read_candidate(path)
    data_in_place(cand.data, source.get("search"), path)
    dataset = candidate_dataset(cand)
    size = ensemble_size(cand)
    params = size * count_parameters(build_seeded(cand))
    logged = upgrade(source.get("metrics", {})).get(SIZE)  # exports before the rename say "params"
    if logged is not None and int(logged) != params:
        raise RuntimeError(f"model: rebuilt with {params} parameters but the search logged {int(logged)}")
    log(f"training {path.name}: {cand.model.attention} depth {cand.model.depth} width {cand.model.width}, "
        f"{params} parameters, {fit_description(cand, len(dataset.pool))}")
    report = lambda m: log(f"  epoch {m[EPOCH]:>3}: train_loss {m['train_loss']:.4f}")  # noqa: E731
    if size > 1:
        folds = selection_folds(cand.data, dataset)
        soft = student_soft_labels(cand, dataset, device, log, folds)
        model, rows = fit_fold_ensemble(cand, dataset, device=device, soft=soft, report=report)
    else:
        model, rows, _ = refit(cand, dataset, device=device, soft=student_soft_labels(cand, dataset, device, log),
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
    from search.teacher import SOFT_LABELS_CACHE, Teacher, check_teacher, soft_labels

    refs = (cand.distill or {}).get("teachers")
    if not refs:
        raise ValueError(f"training.distill_alpha: {cand.training.distill_alpha} but the candidate names no teacher; "
                         "accepted: a candidate exported from a distilled search (it holds `distill.teachers`)")
    teachers = [Teacher.from_ref(r) for r in refs]
    for t in teachers:
        check_teacher(t, dataset)
    return soft_labels(teachers, dataset, list(folds), with_refit=not folds, cache_dir=SOFT_LABELS_CACHE.resolve(),
                       device=device, log=log, cross_fit=int(cand.distill.get("cross_fit", 1)))


def fit_description(cand: Candidate, pool_rows: int | None) -> str:
    """How the final model of a candidate is fit, in words (written into exports). ``pool_rows``: the training
    rows, None where the search recorded no count."""
    fraction, selection = cand.data.get("data_fraction", 1.0), cand.data.get("selection", "random")
    subset = "all of them" if fraction >= 1 else f"{fraction:.0%} of them chosen by {selection}"
    rows = "every training row" if pool_rows is None else f"the {pool_rows} training rows"
    pretrained = (f"after {cand.training.pretrain_epochs} epochs of masked-patch pretraining on the inputs of all "
                  f"{'of them' if pool_rows is None else pool_rows} (and any unlabelled rows), "
                  if cand.training.pretrain_epochs else "")
    t = cand.training
    distilled = (f"distilled (alpha {t.distill_alpha:g}, temperature {t.distill_temperature:g}) from the teacher's "
                 "logits on those rows, " if t.distill_alpha else "")
    grown = ("; the first epochs on a growing share of those rows: "
             + ", ".join(f"{share:.0%} up to epoch {last}" for last, share in t.data_schedule)
             if t.data_schedule else "")
    if ensemble_size(cand) > 1:
        k = ensemble_size(cand)
        share = f"{k - 1}/{k} of {'the training rows' if pool_rows is None else rows}"
        return (f"the {k} fold models of {describe(cand.data)}, probabilities averaged (no refit): each trained on "
                f"{share} (train + validation; {subset}) for {cand.training.epochs} epochs{grown}, "
                f"{pretrained}{distilled}the test split only scores it")
    return (f"refit on {rows} (train + validation; {subset}) for {cand.training.epochs} epochs{grown}, "
            f"{pretrained}{distilled}after selection by {describe(cand.data)}; the test split only scores it")


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
