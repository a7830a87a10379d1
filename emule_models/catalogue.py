"""The built-in datasets as ``emule datasets`` lists them, as plain data: listing them then imports neither torch
nor the package that bundles them and decodes nothing (several seconds otherwise).

The loaders are ``emule_models.data.builtin.BUILTIN``, registered under these names with these descriptions;
``tests/test_data.py`` checks every entry against the decoded dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One built-in dataset.

    Args:
        classes: number of classes.
        train, val, test: rows of each split as ``data: {name: NAME}`` loads it (validation carved from the
            official train split with the defaults, seed 0 and val_fraction 0.2).
        modalities: name -> kind and the shape of one sample, e.g. ``series(1, 427)``.
    """

    name: str
    description: str
    classes: int
    train: int
    val: int
    test: int
    modalities: dict[str, str] = field(default_factory=dict)


CATALOGUE: dict[str, Entry] = {e.name: e for e in (
    Entry("osuleaf", "OSULeaf: leaf outlines (6 classes, 200 train / 242 test, length 427) + a silhouette image "
          "rendered from them", 6, 159, 41, 242, {"outline": "series(1, 427)", "silhouette": "image(1, 32, 32)"}),
    Entry("plaid", "PLAID: appliance current (11 classes, 537 train / 537 test, variable length 100-1344, "
          "z-normalised per sample)", 11, 428, 109, 537, {"current": "series(1, 1344)"}),
    Entry("basicmotions", "BasicMotions: smartwatch accelerometer and gyroscope, two 3-channel series modalities "
          "(4 activities, 40 train / 40 test, length 100)", 4, 32, 8, 40,
          {"accel": "series(3, 100)", "gyro": "series(3, 100)"}),
    Entry("gunpoint", "GunPoint: hand position while drawing a gun or pointing (2 classes, 50 train / 150 test, "
          "length 150)", 2, 40, 10, 150, {"position": "series(1, 150)"}),
    Entry("italypowerdemand", "ItalyPowerDemand: a day of Italian electricity demand, winter or summer (2 classes, "
          "67 train / 1029 test, length 24)", 2, 53, 14, 1029, {"demand": "series(1, 24)"}),
)}
