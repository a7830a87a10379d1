"""One candidate: the flat parameters a sampler proposes, resolved against the spec and the dataset into the
model, training and data-subset settings that train it. Export writes this same structure as YAML."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from emule_models import ModalitySpec, ModelConfig, MultimodalClassifier, build_model
from emule_models.data import Dataset, load_data, needs_scores, proxy_scores
from emule_models.ensemble import build_ensemble
from emule_models.train import FOLD_ENSEMBLE, SEED_ENSEMBLE, TrainConfig
from search.spec.fidelity import search_schedule
from search.spec.schema import DATA_KEYS, MODEL_KEYS, OPTION_SEP, TRAINING_KEYS, TRAINING_TYPES, DataSection, Spec

SCORES_CACHE = Path(".emule") / "scores"


@dataclass(frozen=True)
class Candidate:
    model: ModelConfig
    training: TrainConfig
    data: dict[str, Any]  # the spec's data section (name, val_fraction, seed, cv_folds, ...), data_fraction, selection
    # {"teachers": [Teacher.ref(), ...], "cross_fit": K (when >= 2)}: who made its soft labels, and how
    distill: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"model": self.model.to_dict(), "training": asdict(self.training), "data": dict(self.data)}
        if self.distill is not None:
            out["distill"] = self.distill
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        unknown = sorted(set(d) - {"model", "training", "data", "distill"})
        if unknown:
            raise ValueError(f"candidate: unknown keys {unknown}; accepted: ['data', 'distill', 'model', 'training']")
        return cls(ModelConfig.from_dict(d["model"]), TrainConfig(**d["training"]), dict(d["data"]), d.get("distill"))

    @property
    def data_section(self) -> DataSection:
        """The spec's ``data`` section that ``data`` carries (which dataset, and how candidates were validated on
        it), less the candidate's own keys (``data_fraction``, ``selection``, ``subset_seed``, ``proxy``). Built
        without validating again: it was validated as the spec's, and the loader checks what it reads."""
        return DataSection.model_construct(**{k: v for k, v in self.data.items() if k in DataSection.model_fields})


@functools.lru_cache(maxsize=4)
def _load(section_json: str) -> Dataset:
    return load_data(json.loads(section_json))


def load_section(section: DataSection) -> Dataset:
    """The dataset a spec's ``data`` section names (a candidate's: ``Candidate.data_section``); decoded once per
    process. The loader (``emule_models.data.load_data``) takes the section's keys as a plain mapping."""
    return _load(json.dumps(section.source(), sort_keys=True))


def spec_dataset(spec: Spec) -> Dataset:
    return load_section(spec.data)


def _model_kwargs(flat: dict[str, Any], fixed_options: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in flat.items() if k in MODEL_KEYS}
    attention = kwargs.get("attention", "softmax")
    prefix = attention + OPTION_SEP
    options = {**fixed_options, **{k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}}
    return {**kwargs, "attention_options": options}


def model_config_problems(spec: Spec, values: dict[str, Any], options: dict[str, Any]) -> list[str]:
    """Why the model with these space values cannot be built on the spec's data (empty when it can)."""
    data = spec_dataset(spec)
    kwargs = {**_model_kwargs(values, {}), "attention_options": options}
    try:
        ModelConfig(modalities=data.modalities, num_classes=len(data.classes), **kwargs)
    except ValueError as e:
        return [str(e)]
    return []


def resolve(spec: Spec, flat: dict[str, Any], modalities: tuple[ModalitySpec, ...], num_classes: int,
            teachers: list[dict[str, Any]] | None = None) -> Candidate:
    """Turn sampled parameters into a full candidate; settings not in the space take the spec's defaults.
    ``teachers``: the distillation teachers' records (``search.trial.teacher.Teacher.ref``), kept in the candidate so
    that a retrain makes the same soft labels; the trials themselves need none (they get the soft labels)."""
    model = ModelConfig(modalities=modalities, num_classes=num_classes, **_model_kwargs(flat, {}))
    training = _training(spec, flat)
    data = {**spec.data.as_dict(), "data_fraction": 1.0, "selection": "random", "subset_seed": spec.search.seed,
            **{k: flat[k] for k in DATA_KEYS if k in flat}}
    if needs_scores(data["selection"]):
        data["proxy"] = spec.proxy.model_dump()
    if not (training.distill_alpha and teachers):
        return Candidate(model, training, data)
    k = spec.distill.cross_fit if spec.distill is not None else 1
    return Candidate(model, training, data, {"teachers": list(teachers), **({"cross_fit": k} if k > 1 else {})})


def _training(spec: Spec, flat: dict[str, Any]) -> TrainConfig:
    """Each training key from the sampled parameters, else the spec's ``training:`` (``distill:`` for the two
    ``distill_`` keys), else ``TrainConfig``'s default; cast to its field's type (a sampler may give 3 for a
    float key)."""
    distill = ({"distill_alpha": spec.distill.alpha, "distill_temperature": spec.distill.temperature}
               if spec.distill is not None else {})
    given = {**spec.training.model_dump(), **distill, **{k: flat[k] for k in TRAINING_KEYS if k in flat}}
    values = {k: TRAINING_TYPES[k](given[k]) for k in TRAINING_KEYS if k in given}
    return TrainConfig(epochs=spec.training.epochs, seed=spec.search.seed, final=spec.training.final,
                       ensemble_seeds=spec.training.ensemble_seeds,
                       data_schedule=search_schedule(spec.search, spec.training.epochs), **values)


def quality_scores(dataset: Dataset, proxy: dict[str, Any], cache_dir: str | Path = SCORES_CACHE,
                   log=None) -> dict[str, np.ndarray]:
    """EL2N scores and proxy embeddings of every row of the training pool (``dataset.pool``, row for row):
    computed once (a few proxy trainings), then cached by dataset content and proxy settings, so a search and
    every retrain share them."""
    if log is not None:
        log(f"quality scores for subset selection: proxy width {proxy['width']}, {proxy['epochs']} epochs x "
            f"{proxy['seeds']} seeds (cached in {cache_dir})")
    pool = dataset.pool
    pooled = replace(dataset, train=pool, val=pool.take(np.arange(0)))
    return proxy_scores(pooled, epochs=proxy["epochs"], seeds=proxy["seeds"], width=proxy["width"],
                        cache_dir=cache_dir)


def build_seeded(cand: Candidate) -> MultimodalClassifier:
    """The candidate's model with its initial weights drawn from the candidate's seed, so retraining repeats it."""
    torch.manual_seed(cand.training.seed)
    return build_model(cand.model)


def ensemble_size(cand: Candidate) -> int:
    """How many models the candidate deploys: its k fold models for ``final: fold_ensemble``, ``ensemble_seeds``
    refits for ``final: seed_ensemble``, else 1 (the refit). Its parameters, FLOPs, latency and serving memory are
    that many times one model's."""
    if cand.training.final == FOLD_ENSEMBLE:
        return int(cand.data["cv_folds"])
    return cand.training.ensemble_seeds if cand.training.final == SEED_ENSEMBLE else 1


def candidate_dataset(cand: Candidate) -> Dataset:
    return load_section(cand.data_section)


def refuse_distilled(cand: Candidate) -> None:
    """Refuse, in one line, a distilled candidate for an analysis that trains it again on other rows than the
    search's (its teacher's soft labels were made once per search, for the search's own rows)."""
    if cand.training.distill_alpha:
        raise ValueError("--select: the candidate distills from a teacher (training.distill_alpha "
                         f"{cand.training.distill_alpha:g}); accepted: a candidate that does not distill")


def data_in_place(section: DataSection, search: str | None = None, config: str | Path | None = None,
                  need: str = "to train") -> None:
    """Refuse, in one line, a Parquet ``data.path`` that no longer exists where search ``search`` read it, before
    anything reads it (``need``: what for). ``section``: a spec's ``data`` section (a candidate's:
    ``Candidate.data_section``). ``config``: the exported YAML that names the path (it may be edited to the new
    place). Reading the search's results needs no data: the line says so."""
    path = section.path
    if not path or Path(path).exists():
        return
    where = f" - search {search} read its data there" if search else ""
    edit = f", or set data.path in {config} to where it is now" if config is not None else ""
    results = (f"; the search's results are still readable from MLflow (emule pareto {search}, emule export "
               f"{search})" if search else "")
    raise FileNotFoundError(f"data.path: {str(path)!r} does not exist{where}; {need}, put the data back there"
                            f"{edit}{results}")


def read_candidate(path: Path) -> tuple[Candidate, dict[str, Any]]:
    """An exported candidate YAML: the candidate, and its ``source`` (search, trial, run, metrics)."""
    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not an exported candidate (expected a mapping with model, training, data)")
    source = doc.pop("source", {})
    return Candidate.from_dict(doc), source


def load_weights(weights: Path) -> torch.nn.Module:
    """A model saved by ``emule train`` (``search.delivery.export.retrain``), rebuilt from its config - an
    ensemble's k models as one ``MeanEnsemble`` - (weights only: no code is unpickled)."""
    blob = torch.load(weights, map_location="cpu", weights_only=True)
    cand = Candidate.from_dict(blob["candidate"])
    size = ensemble_size(cand)
    model = build_ensemble(cand.model, size) if size > 1 else build_model(cand.model)
    model.load_state_dict(blob["state_dict"])
    return model
