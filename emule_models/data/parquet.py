"""User datasets from Parquet: a file or a directory of files (hive partitions such as ``split=train/`` work)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from emule_models.data.arrow import TableSpec, check_columns, dataset_from_table, dataset_to_table, spec_from_metadata
from emule_models.data.dataset import Dataset


def read_table(path: str | Path, spec: TableSpec | Mapping[str, Any] | None = None) -> tuple[pa.Table, TableSpec]:
    """Read only the declared columns of a Parquet file or directory, after checking names and types against the
    schema (so a wrong spec fails before any row is read). Left out, the spec comes from the file's metadata."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"data.path: {str(path)!r} does not exist; accepted: a Parquet file or a directory of them")
    try:
        source = pads.dataset(path, format="parquet", partitioning="hive")
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"data.path: {str(path)!r} is not readable as Parquet ({e}); "
                         "accepted: a Parquet file or a directory of them") from None
    if not source.files:
        raise ValueError(f"data.path: {str(path)!r} holds no Parquet files; "
                         "accepted: a Parquet file or a directory of them")
    if spec is None:
        spec = spec_from_metadata(source.schema)
        if spec is None:
            raise ValueError(f"data.columns: {str(path)!r} declares no columns; "
                             "accepted: label and columns in the spec")
    elif not isinstance(spec, TableSpec):
        spec = TableSpec.from_dict(spec)
    check_columns(source.schema, spec)
    wanted = [spec.label, *spec.columns, *([spec.split] if spec.split else []), *([spec.id] if spec.id else [])]
    try:
        return source.to_table(columns=wanted), spec
    except pa.ArrowException as e:  # e.g. the files of a directory disagree on a column's type
        raise ValueError(f"data.path: {str(path)!r} {_unreadable(source, wanted, e)}") from None


def _unreadable(source: pads.FileSystemDataset, columns: list[str], error: Exception) -> str:
    """Why the files do not read as one table (the schema is the first file's): the first file that fails and,
    where that is a type, the column it disagrees on."""
    first = Path(source.files[0]).name
    for fragment in source.get_fragments():
        try:
            fragment.to_table(schema=source.schema, columns=columns)
        except pa.ArrowException as e:
            error, name, types = e, Path(fragment.path).name, fragment.physical_schema
            for col in columns:
                want = source.schema.field(col).type
                if col in types.names and types.field(col).type != want:
                    return (f"is not one table: column {col} is {want} in {first} but {types.field(col).type} in "
                            f"{name}; accepted: one type per column in every file")
            break
    return f"is not readable ({str(error).splitlines()[0]}); accepted: a Parquet file or a directory of them"


def read_parquet(path: str | Path, spec: TableSpec | Mapping[str, Any] | None = None) -> Dataset:
    """A ``Dataset`` from a Parquet file or directory; see ``emule_models.data.arrow`` for the accepted columns."""
    table, spec = read_table(path, spec)
    if spec.name == "table":  # the default name: name the dataset after its file, for caches and logs
        spec = replace(spec, name=Path(path).stem)
    return dataset_from_table(table, spec)


def write_parquet(dataset: Dataset, path: str | Path, **kwargs: Any) -> Path:
    """Write a ``Dataset`` (all splits, with a split column and its spec in the metadata) as one Parquet file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(dataset_to_table(dataset), path, **kwargs)
    return path


__all__ = ["read_parquet", "read_table", "write_parquet"]
