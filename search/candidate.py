"""One candidate: the flat parameters a sampler proposes, resolved against the spec and the dataset into the
model, training and data-subset settings that train it. Export writes this same structure as YAML."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from emule_models import ModalitySpec, ModelConfig, MultimodalClassifier, build_model
from emule_models.data import Dataset, load_builtin, select
from emule_models.train import TrainConfig
from search.spec import DATA_KEYS, MODEL_KEYS, TRAINING_KEYS, Spec

OPTION_SEP = "."  # sampler parameter "performer.features" -> attention_options["features"] of performer


@dataclass(frozen=True)
class Candidate:
    model: ModelConfig
    training: TrainConfig
    data: dict[str, Any]  # name, val_fraction, seed, data_fraction, selection

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "training": asdict(self.training), "data": dict(self.data)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        unknown = sorted(set(d) - {"model", "training", "data"})
        if unknown:
            raise ValueError(f"candidate: unknown keys {unknown}; accepted: ['data', 'model', 'training']")
        return cls(ModelConfig.from_dict(d["model"]), TrainConfig(**d["training"]), dict(d["data"]))


@functools.lru_cache(maxsize=4)
def load_data(name: str, seed: int, val_fraction: float) -> Dataset:
    return load_builtin(name, seed=seed, val_fraction=val_fraction)


def spec_dataset(spec: Spec) -> Dataset:
    return load_data(spec.data.name, spec.data.seed, spec.data.val_fraction)


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


def resolve(spec: Spec, flat: dict[str, Any], modalities: tuple[ModalitySpec, ...], num_classes: int) -> Candidate:
    """Turn sampled parameters into a full candidate; settings not in the space take the spec's defaults."""
    model = ModelConfig(modalities=modalities, num_classes=num_classes, **_model_kwargs(flat, {}))
    training = {**spec.training.model_dump(), **{k: flat[k] for k in TRAINING_KEYS if k in flat}}
    training = TrainConfig(epochs=training["epochs"], batch_size=int(training["batch_size"]), lr=float(training["lr"]),
                           weight_decay=float(training["weight_decay"]), seed=spec.search.seed)
    data = {**spec.data.model_dump(), "data_fraction": 1.0, "selection": "random", "subset_seed": spec.search.seed,
            **{k: flat[k] for k in DATA_KEYS if k in flat}}
    return Candidate(model, training, data)


def build_seeded(cand: Candidate) -> MultimodalClassifier:
    """The candidate's model with its initial weights drawn from the candidate's seed, so retraining repeats it."""
    torch.manual_seed(cand.training.seed)
    return build_model(cand.model)


def training_rows(cand: Candidate, dataset: Dataset) -> np.ndarray:
    """The train-split rows this candidate learns from (its data fraction, chosen by its selection strategy)."""
    return select(dataset.train.labels, cand.data["data_fraction"], cand.data["selection"],
                  seed=cand.data["subset_seed"])


def candidate_dataset(cand: Candidate) -> Dataset:
    return load_data(cand.data["name"], cand.data["seed"], cand.data["val_fraction"])
