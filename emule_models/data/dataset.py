"""The decoded, in-memory form of a dataset: padded NumPy arrays per split, ready to batch without Python loops.

Arrow is the storage and interchange format (see ``emule_models.data.arrow``); a ``Dataset`` is what trials
train on. Its arrays are plain NumPy, so a Ray object store shares them between trials without copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from emule_models.config import ModalitySpec

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split. ``inputs``: series (N, C, L) / image (N, C, H, W) float32; ``valid``: per series (N, L) bool,
    True on real (unpadded) steps; ``labels``: (N,) int64 class indices."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    valid: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> Split:
        return Split({k: v[idx] for k, v in self.inputs.items()}, self.labels[idx],
                     {k: v[idx] for k, v in self.valid.items()})

    def by_length(self) -> np.ndarray:
        """Row indices, shortest series first (as given when no series is padded): batches of neighbouring rows
        then carry little padding, which the stems skip (``emule_models.embed.real_extent``)."""
        if not self.valid:
            return np.arange(len(self))
        steps = sum(v.sum(1) for v in self.valid.values())  # (N,)
        return np.argsort(steps, kind="stable")

    def batch(self, idx: np.ndarray, device: torch.device | str = "cpu"):
        """Tensors for the rows ``idx``: (inputs, valid, labels), one fancy-index per array."""
        inputs = {k: torch.from_numpy(v[idx]).to(device) for k, v in self.inputs.items()}
        valid = {k: torch.from_numpy(v[idx]).to(device) for k, v in self.valid.items()}
        return inputs, valid, torch.from_numpy(self.labels[idx]).to(device)


@dataclass(frozen=True)
class Dataset:
    name: str
    modalities: tuple[ModalitySpec, ...]
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    unlabelled: Split | None = None  # rows without a label (label -1): read by pretraining, never validated on
    # where each unlabelled row comes from, row for row: its 0-based row number in the table as read (a Parquet
    # file's row order; a folder's files in path order), and its value in the data's ``id`` column where it has one
    unlabelled_rows: np.ndarray | None = None
    unlabelled_ids: np.ndarray | None = None

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"split: {name!r} not accepted; accepted: {list(SPLITS)}")
        return getattr(self, name)

    @property
    def pool(self) -> Split:
        """Every labelled training row: the train split followed by the validation rows carved from it. Model
        selection folds, refits and the classical baselines all work on this one pool."""
        return concat(self.train, self.val)

    def describe(self) -> dict:
        return {"name": self.name, "classes": len(self.classes), "train": len(self.train), "val": len(self.val),
                "test": len(self.test), "unlabelled": len(self.unlabelled) if self.unlabelled is not None else 0,
                "modalities": {m.name: m.kind + str(_shape(m)) for m in self.modalities}}


def concat(a: Split, b: Split) -> Split:
    """The rows of ``a`` then those of ``b`` (same modalities)."""
    return Split({k: np.concatenate([a.inputs[k], b.inputs[k]]) for k in a.inputs},
                 np.concatenate([a.labels, b.labels]), {k: np.concatenate([a.valid[k], b.valid[k]]) for k in a.valid})


def _shape(m: ModalitySpec) -> tuple[int, ...]:
    return (m.channels, m.length) if m.kind == "series" else (m.channels, m.height, m.width)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of row indices: (kept, carved) with about ``fraction`` of each class carved
    (at least one per class where the class has two or more rows)."""
    rng = np.random.default_rng(seed)
    kept, carved = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n = min(len(rows) - 1, max(1, round(fraction * len(rows)))) if len(rows) > 1 else 0
        carved.append(rows[:n])
        kept.append(rows[n:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(carved))


def smallest_class(labels: np.ndarray) -> int:
    """Rows of the rarest class (0 without rows)."""
    return int(np.unique(labels, return_counts=True)[1].min()) if len(labels) else 0


def check_fold_count(labels: np.ndarray, k: int) -> None:
    """Refuse ``k`` folds when a class has fewer than ``k`` rows (a fold would lack it) or ``k`` < 2."""
    smallest = smallest_class(labels)
    if k < 2 or smallest < k:
        raise ValueError(f"data.cv_folds: {k} needs >= {k} training rows of each class; the smallest class has "
                         f"{smallest}; accepted: 2..{smallest}, auto, or holdout")


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified k-fold over row indices: ``k`` pairs (fit rows, validation rows); every row is validated
    exactly once. Needs at least ``k`` rows of each class."""
    from sklearn.model_selection import StratifiedKFold

    check_fold_count(labels, k)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(fit), np.sort(val)) for fit, val in splitter.split(np.zeros(len(labels)), labels)]
