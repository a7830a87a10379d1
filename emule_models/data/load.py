"""One entry point from a spec's ``data`` section to a ``Dataset``: a built-in by ``name`` or a Parquet ``path``.

Built-in::

    data: {name: plaid, view: gaf}

User Parquet (a file or a directory)::

    data:
      path: data/meters.parquet
      label: appliance            # strings or integers
      split: split                # optional: train / val / test
      id: meter_id                # optional: names each row (strings or integers, unique)
      columns:
        current: series           # list<float> or list<list<float>> (channels x time)
        photo: {kind: image, size: [32, 32]}   # PNG/JPEG bytes or nested float lists
      val_fraction: 0.2
      test_fraction: 0.2
      seed: 0

Everything is validated here, on the driver, so bad data fails before Ray starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emule_models.data.builtin import load_builtin
from emule_models.data.dataset import Dataset
from emule_models.data.views import with_view

BUILTIN_KEYS = ("name", "seed", "val_fraction", "view", "view_size")
PARQUET_KEYS = ("path", "label", "columns", "split", "id", "seed", "val_fraction", "test_fraction", "view",
                "view_size")


def load_data(section: Mapping[str, Any], root: str | Path | None = None) -> Dataset:
    """The dataset a spec's ``data`` section describes.

    Args:
        section: ``name`` of a built-in, or ``path`` to Parquet with ``label`` and ``columns``; see the module doc.
        root: directory a relative ``path`` is relative to (e.g. the spec file's); default the working directory.
    """
    section = dict(section)
    if ("name" in section) == ("path" in section):
        raise ValueError(f"data: {sorted(section)} not accepted; accepted: either name (a built-in) or path "
                         "(a Parquet file or directory), not both")
    allowed = BUILTIN_KEYS if "name" in section else PARQUET_KEYS
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ValueError(f"data: unknown keys {unknown}; accepted: {list(allowed)}")
    view, view_size = section.pop("view", None), int(section.pop("view_size", 32))
    if "name" in section:
        return load_builtin(section["name"], int(section.get("seed", 0)), float(section.get("val_fraction", 0.2)),
                            view=view, view_size=view_size)
    from emule_models.data.parquet import read_parquet

    path = Path(section.pop("path"))
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    dataset = read_parquet(path, section)
    return with_view(dataset, view, view_size) if view else dataset
