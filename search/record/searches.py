"""A finished search read back from MLflow (its spec and front, no data read), and its chosen candidates written as
YAML files: what reopening a search needs, whether to extend it, export from it or teach with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emule_models.train import SEED_ENSEMBLE
from search.front.state import Front, Record
from search.record.tracking import Tracker, redact
from search.spec.schema import AUTO, HOLDOUT, Spec, parse_schema
from search.trial.candidate import Candidate, data_in_place, ensemble_size
from search.trial.validation import describe


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
    k = ensemble_size(cand)
    if t.final == SEED_ENSEMBLE:
        return (f"{k} refits from seeds {t.seed} to {t.seed + k - 1}, probabilities averaged: each on {rows} (train + "
                f"validation; {subset}) for {t.epochs} epochs{grown}, {pretrained}{distilled}after selection by "
                f"{describe(cand.data_section)}; the test split only scores it")
    if k > 1:
        share = f"{k - 1}/{k} of {'the training rows' if pool_rows is None else rows}"
        return (f"the {k} fold models of {describe(cand.data_section)}, probabilities averaged (no refit): each "
                f"trained on {share} (train + validation; {subset}) for {cand.training.epochs} epochs{grown}, "
                f"{pretrained}{distilled}the test split only scores it")
    return (f"refit on {rows} (train + validation; {subset}) for {cand.training.epochs} epochs{grown}, "
            f"{pretrained}{distilled}after selection by {describe(cand.data_section)}; the test split only scores it")
