"""A synthetic classification dataset of any size, for unit tests and scale benchmarks.

Class ``c`` is a noisy sinusoid of frequency ``c + 1`` cycles per series (a random phase per sample and channel);
the optional image is a noisy Gaussian blob whose position encodes the class. Label noise flips a share of the
*training* labels to another class, so validation and test measure the clean task.
"""

from __future__ import annotations

import numpy as np

from emule_models.config import ModalitySpec
from emule_models.data.dataset import Dataset, Split, stratified_split


def synthetic(n: int = 600, length: int = 64, classes: int = 4, label_noise: float = 0.0, channels: int = 1,
              image: bool = False, seed: int = 0, variable_length: bool = False, image_size: int = 16,
              noise: float = 0.5, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Dataset:
    """Args:
        n: rows over all splits.
        length: series length (the longest, with ``variable_length``).
        classes: number of classes (>= 2).
        label_noise: share of training labels flipped to a different class, in [0, 1).
        channels: series channels.
        image: add an ``image`` modality (1 x image_size x image_size).
        variable_length: real lengths drawn from [length // 2, length], padded, with a ``valid`` mask.
        noise: standard deviation of the additive Gaussian noise.
    """
    if classes < 2 or n < 3 * classes:
        raise ValueError(f"synthetic: n={n}, classes={classes}; accepted: classes >= 2 and n >= 3 * classes")
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"synthetic.label_noise: {label_noise}; accepted: a number in [0, 1)")
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes  # balanced
    rng.shuffle(labels)
    steps = rng.integers(max(1, length // 2), length + 1, n) if variable_length else np.full(n, length)
    t = np.arange(length)[None, None] / steps[:, None, None]  # (N, 1, L): time in cycles of the real part
    phase = rng.uniform(0, 2 * np.pi, (n, channels, 1))
    x = np.sin(2 * np.pi * (labels[:, None, None] + 1) * t + phase)  # (N, C, L)
    x = (x + noise * rng.standard_normal(x.shape)).astype(np.float32)
    valid = np.arange(length)[None] < steps[:, None]  # (N, L)
    x *= valid[:, None]
    inputs = {"series": x}
    modalities = [ModalitySpec("series", "series", channels, length=length)]
    if image:
        angle = 2 * np.pi * labels / classes
        centre = image_size / 2 + image_size / 4 * np.stack([np.cos(angle), np.sin(angle)], 1)  # (N, 2)
        centre += rng.normal(0, 1.0, centre.shape)
        yy, xx = np.meshgrid(np.arange(image_size), np.arange(image_size), indexing="ij")
        d2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2  # (N, S, S)
        img = np.exp(-d2 / (2 * (image_size / 8) ** 2)) + noise * 0.5 * rng.standard_normal(d2.shape)
        inputs["image"] = img[:, None].astype(np.float32)  # (N, 1, S, S)
        modalities.append(ModalitySpec("image", "image", 1, height=image_size, width=image_size))
    full = Split(inputs, labels.astype(np.int64), {"series": valid} if variable_length else {})
    rest, test = _split(full.labels, test_fraction, seed)
    keep, val = _split(full.labels[rest], val_fraction, seed)
    train = full.take(rest[keep])
    if label_noise > 0:
        flip = rng.random(len(train)) < label_noise
        shift = rng.integers(1, classes, len(train))  # never the true class
        noisy = np.where(flip, (train.labels + shift) % classes, train.labels)
        train = Split(train.inputs, noisy.astype(np.int64), train.valid)
    names = tuple(f"c{i}" for i in range(classes))
    return Dataset(f"synthetic-{n}x{length}-{classes}c-noise{label_noise}-s{seed}", tuple(modalities), names,
                   train, full.take(rest[val]), full.take(test))


def _split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if fraction == 0:  # stratified_split carves at least one row per class; zero means none
        return np.arange(len(labels)), np.arange(0)
    return stratified_split(labels, fraction, seed)
