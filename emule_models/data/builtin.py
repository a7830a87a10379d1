"""Built-in real datasets, loaded offline from a package that bundles them (sktime)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from emule_models.config import ModalitySpec
from emule_models.data.dataset import Dataset, Split, stratified_split
from emule_models.data.views import polar_silhouette

BUILTIN: dict[str, Callable[[int, float], Dataset]] = {}
DESCRIPTIONS: dict[str, str] = {}


def builtin(name: str, description: str):
    def wrap(fn):
        if name in BUILTIN:
            raise ValueError(f"dataset {name!r} registered twice")
        BUILTIN[name], DESCRIPTIONS[name] = fn, description
        return fn
    return wrap


def load_builtin(name: str, seed: int = 0, val_fraction: float = 0.2) -> Dataset:
    if name not in BUILTIN:
        raise ValueError(f"data.name: {name!r} is not a built-in dataset; accepted: {sorted(BUILTIN)}")
    return BUILTIN[name](seed, val_fraction)


def _sktime(loader_name: str):
    try:
        import sktime.datasets as sk
    except ImportError as e:  # pragma: no cover - sktime is a declared dependency
        raise ImportError("built-in datasets need sktime: pip install 'sktime>=1.2'") from e
    loader = getattr(sk, loader_name)
    out = {}
    for split in ("train", "test"):
        x, y = loader(split=split, return_type="numpy3D")
        out[split] = (np.asarray(x, dtype=np.float32), np.asarray(y).astype(str))
    return out


def _splits(train_x: dict, train_y, test_x: dict, test_y, seed: int, val_fraction: float):
    """Official train/test; validation carved from train, seeded and stratified."""
    classes = tuple(sorted(set(train_y) | set(test_y), key=_natural))
    index = {c: i for i, c in enumerate(classes)}
    ytr = np.array([index[c] for c in train_y], dtype=np.int64)
    yte = np.array([index[c] for c in test_y], dtype=np.int64)
    keep, val = stratified_split(ytr, val_fraction, seed)
    full = Split(train_x, ytr)
    return classes, full.take(keep), full.take(val), Split(test_x, yte)


def _natural(label: str):
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


@builtin("osuleaf", "OSULeaf: leaf outlines (6 classes, length 427) + a silhouette image rendered from them")
def osuleaf(seed: int = 0, val_fraction: float = 0.2) -> Dataset:
    raw = _sktime("load_osuleaf")
    size = 32

    def views(x):
        return {"outline": x, "silhouette": polar_silhouette(x[:, 0], size)}

    classes, train, val, test = _splits(views(raw["train"][0]), raw["train"][1], views(raw["test"][0]),
                                        raw["test"][1], seed, val_fraction)
    length = raw["train"][0].shape[-1]
    modalities = (ModalitySpec("outline", "series", 1, length=length),
                  ModalitySpec("silhouette", "image", 1, height=size, width=size))
    return Dataset("osuleaf", modalities, classes, train, val, test)
