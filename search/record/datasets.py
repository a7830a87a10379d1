"""What a search trained on, as MLflow's dataset inputs describe it: name, digest, source, schema and profile.

Pure Python over the decoded ``Dataset``; ``search.record.tracking.Tracker.log_dataset`` turns it into MLflow's form.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emule_models.data import Dataset
from emule_models.data.scoring import fingerprint
from search.spec.schema import DataSection


@dataclass(frozen=True)
class DatasetRecord:
    """``columns``: (name, dtype, shape) per array a row holds; shapes lead with -1 (any number of rows)."""

    name: str
    digest: str
    source_type: str
    source: dict[str, Any]
    columns: tuple[tuple[str, str, tuple[int, ...]], ...]
    profile: dict[str, Any]


def describe(dataset: Dataset, section: DataSection) -> DatasetRecord:
    """The dataset a search loaded from its spec's ``data`` section.

    The digest is over the decoded content of every split (what the candidates saw, after padding), so two
    searches on the same data show the same digest whatever file it came from.
    """
    h = hashlib.sha256()
    for split in (dataset.train, dataset.val, dataset.test):
        h.update(fingerprint(split).encode())
    if section.path:
        source_type, source = "local", {"uri": str(Path(section.path).resolve()), "format": "parquet"}
    else:
        source_type, source = "code", {"tags": {"builtin": dataset.name, "loader": "emule_models.data"}}
    columns = []
    for m in dataset.modalities:
        shape = (m.channels, m.length) if m.kind == "series" else (m.channels, m.height, m.width)
        columns.append((m.name, "float32", (-1, *shape)))
        if m.kind == "series" and m.name in dataset.train.valid:  # padded series carry a mask of real steps
            columns.append((f"{m.name}_valid", "bool", (-1, m.length)))
    columns.append(("label", "int64", (-1,)))
    profile = {**{k: v for k, v in dataset.describe().items() if k != "modalities"},
               "class_names": list(dataset.classes)}
    return DatasetRecord(dataset.name, h.hexdigest()[:12], source_type, source, tuple(columns), profile)
