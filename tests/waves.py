"""A tiny user dataset as Parquet (two kinds of wave, 48 rows of 32 steps) and a spec that searches it in seconds:
one candidate, one epoch, no baselines, the holdout split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml


def write_waves(path: Path, rows: int = 48, length: int = 32) -> Path:
    """Sines and square waves with noise, a ``kind`` label and a ``split`` column (train / val / test)."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4 * np.pi, length)
    kinds = np.array(["sine", "square"])[np.arange(rows) % 2]
    waves = [np.sin(t) if k == "sine" else np.sign(np.sin(t)) for k in kinds]
    series = [(w + 0.2 * rng.standard_normal(length)).astype(np.float32).tolist() for w in waves]
    split = np.array(["train", "train", "val", "test"])[(np.arange(rows) // 2) % 4]
    pq.write_table(pa.table({"kind": kinds.tolist(), "split": split.tolist(),
                             "wave": pa.array(series, type=pa.list_(pa.float32()))}), path)
    return path


def waves_spec(folder: Path, tracking_uri: str | None, storage: Path, data_path: str = "waves.parquet",
               experiment: str = "waves") -> Path:
    """``waves.yaml`` in ``folder``, its data path as given (relative to the spec file by default)."""
    spec = {
        "name": "waves",
        "data": {"path": data_path, "label": "kind", "split": "split", "columns": {"wave": "series"},
                 "cv_folds": "holdout"},
        "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"width": [8], "depth": 1, "heads": 1, "patch_len": 8},
        "training": {"epochs": 1, "batch_size": 16},
        "search": {"sampler": "random", "trials": 1, "concurrency": 1, "storage": str(storage)},
        "tracking": {"uri": tracking_uri, "experiment": experiment},
    }
    path = folder / "waves.yaml"
    path.write_text("# waves, as a user writes them\n" + yaml.safe_dump(spec, sort_keys=False))
    return path
