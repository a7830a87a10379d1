"""Arrow tables <-> ``Dataset``: declared modality columns decoded into padded NumPy arrays, with validation.

A table holds one row per sample: a label column (strings or integers), one column per modality and optionally a
split column (``train``/``val``/``test``). A row whose label is null is unlabelled: it joins no split, never
validation or test, and serves pretraining (``Dataset.unlabelled``) and the choice of rows to label next; each keeps
where it came from (``Dataset.unlabelled_rows``: its 0-based row number in the table, and ``Dataset.unlabelled_ids``:
its value in the optional ``id`` column), so a suggestion names the row in the user's own file. Decoding is vectorised:
list columns are flattened once and the flat values are scattered into padded arrays through their lengths, so there
is no per-sample Python loop. Encoded PNG/JPEG images are the exception - Pillow decodes one image at a time - but
that happens once, at load.

Accepted column types:

- ``series``: ``list<number>`` (one channel) or ``list<list<number>>`` (channels x time). The number of channels is
  the same in every row; the length may vary between rows (padded to the longest, with a ``valid`` mask) but not
  between the channels of one row.
- ``image``: ``binary`` (encoded PNG or JPEG), ``list<list<number>>`` (H x W) or ``list<list<list<number>>>``
  (C x H x W), the same size in every row (encoded images may be resized to a declared ``size`` instead).

Every problem is a ``ValueError`` of one line that starts with the spec field naming the column - where the user
will look: ``data.columns.<col>: <problem>; accepted: <what would do>`` for a modality column,
``data.label: '<col>' - <problem>; accepted: ...`` for the label column, ``data.split: '<col>' - ...`` for the split.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emule_models.config import MODALITY_KINDS, ModalitySpec
from emule_models.data.dataset import SPLITS, Dataset, Split, stratified_split

NORMALIZE = ("none", "sample")
METADATA_KEY = b"emule.data"  # schema metadata: the TableSpec that reads this table back
_SERIES_TYPES = "list<float> (one channel) or list<list<float>> (channels x time)"
_IMAGE_TYPES = "binary PNG/JPEG bytes, list<list<float>> (H x W) or list<list<list<float>>> (C x H x W)"


@dataclass(frozen=True)
class ColumnSpec:
    """How one modality column is read.

    Args:
        kind: ``series`` or ``image``.
        size: images only: (height, width) to resize encoded images to; without it they must all share one size.
        channels: encoded images only: 1 (grayscale) or 3 (RGB); inferred from the images when left out.
        normalize: series only: ``none`` (as stored) or ``sample`` (z-normalised per row and channel over the real
            steps - for data whose amplitudes span orders of magnitude; the amplitude itself is then lost).
    """

    kind: str
    size: tuple[int, int] | None = None
    channels: int | None = None
    normalize: str = "none"

    def check(self, col: str) -> None:
        where = f"data.columns.{col}"
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"{where}.kind: {self.kind!r} not accepted; accepted: {list(MODALITY_KINDS)}")
        if self.kind == "series" and (self.size is not None or self.channels is not None):
            raise ValueError(f"{where}: size/channels apply to images only; accepted: kind: image, or drop them")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"{where}.normalize: {self.normalize!r} not accepted; accepted: {list(NORMALIZE)}")
        if self.kind == "image" and self.normalize != "none":
            raise ValueError(f"{where}.normalize: applies to series only; accepted: none for an image")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ValueError(f"{where}.size: {list(self.size)} not accepted; accepted: [height, width], both >= 1")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"{where}.channels: {self.channels} not accepted; accepted: 1 or 3")


@dataclass(frozen=True)
class TableSpec:
    """What a table holds and how it is split.

    Args:
        label: name of the label column (strings or integers).
        columns: modality column name -> ``ColumnSpec``; the column name becomes the modality name.
        split: name of an optional split column with values ``train``/``val``/``test``. Without it the rows are
            split seeded and stratified by class; with it, a missing ``val`` (or ``test``) is carved from ``train``.
        name: dataset name (in caches, logs and fingerprints).
        seed: seed of the stratified splits.
        val_fraction: share of the training rows held out for validation.
        test_fraction: share of all rows held out for test (only when the table has no test rows).
        id: name of an optional column identifying each row (strings or integers, unique, no nulls); unlabelled
            rows are then named by it as well as by their row number.
    """

    label: str
    columns: Mapping[str, ColumnSpec]
    split: str | None = None
    name: str = "table"
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    id: str | None = None

    def __post_init__(self):
        cols = {c: (s if isinstance(s, ColumnSpec) else _column_spec(c, s)) for c, s in dict(self.columns).items()}
        object.__setattr__(self, "columns", cols)
        if not cols:
            raise ValueError("data.columns: empty; accepted: at least one modality column, e.g. {current: series}")
        for c, s in cols.items():
            s.check(c)
            if c in (self.label, self.split):
                raise ValueError(f"data.columns.{c}: is also the label or split column; accepted: a different column")
        if self.split is not None and self.split == self.label:
            raise ValueError(f"data.split: {self.split!r} is the label column; accepted: a different column")
        if self.id is not None and self.id in (self.label, self.split, *cols):
            raise ValueError(f"data.id: {self.id!r} is also the label, split or a modality column; accepted: a "
                             "column of its own")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"data.{key}: {value} not accepted; accepted: a number in [0, 1)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TableSpec:
        """From a spec's ``data`` section (plain YAML types); unknown keys raise.

        ``columns`` maps a column to its kind (``{current: series}``) or to a dict of ``ColumnSpec`` fields
        (``{photo: {kind: image, size: [32, 32]}}``).
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"data: unknown keys {unknown}; accepted: {sorted(known)}")
        if "label" not in d:
            raise ValueError("data.label: missing; accepted: the name of the label column")
        columns = d.get("columns") or {}
        if not isinstance(columns, Mapping):
            raise ValueError(f"data.columns: {columns!r} not accepted; accepted: a mapping column -> kind")
        return cls(**{**d, "columns": {c: _column_spec(c, s) for c, s in columns.items()}})

    def to_dict(self) -> dict[str, Any]:
        columns = {}
        for c, s in self.columns.items():
            extra = {k: v for k, v in (("size", list(s.size) if s.size else None), ("channels", s.channels),
                                       ("normalize", None if s.normalize == "none" else s.normalize)) if v}
            columns[c] = {"kind": s.kind, **extra} if extra else s.kind
        out = {"label": self.label, "columns": columns, "split": self.split, "name": self.name, "seed": self.seed,
               "val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
        return {**out, "id": self.id} if self.id is not None else out


def _column_spec(col: str, s: Any) -> ColumnSpec:
    if isinstance(s, ColumnSpec):
        return s
    if isinstance(s, str):
        return ColumnSpec(kind=s)
    if isinstance(s, Mapping):
        known = set(ColumnSpec.__dataclass_fields__)
        unknown = sorted(set(s) - known)
        if unknown:
            raise ValueError(f"data.columns.{col}: unknown keys {unknown}; accepted: {sorted(known)}")
        if "kind" not in s:
            raise ValueError(f"data.columns.{col}.kind: missing; accepted: {list(MODALITY_KINDS)}")
        size = tuple(s["size"]) if s.get("size") is not None else None
        return ColumnSpec(kind=s["kind"], size=size, channels=s.get("channels"), normalize=s.get("normalize", "none"))
    raise ValueError(f"data.columns.{col}: {s!r} not accepted; accepted: a kind {list(MODALITY_KINDS)} or a mapping")


# --------------------------------------------------------------------------------------------------- reading
def spec_from_metadata(table: pa.Table | pa.Schema) -> TableSpec | None:
    """The ``TableSpec`` stored in a table's schema metadata by ``dataset_to_table``, if any."""
    schema = table.schema if isinstance(table, pa.Table) else table
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return TableSpec.from_dict(json.loads(raw)) if raw else None


def dataset_from_table(table: pa.Table, spec: TableSpec | Mapping[str, Any] | None = None) -> Dataset:
    """Validate and decode a table into a ``Dataset`` (padded arrays, ``valid`` masks, seeded stratified splits).

    Args:
        table: one row per sample.
        spec: a ``TableSpec`` or its dict form; left out, the spec stored in the table's metadata is used.
    """
    if spec is None:
        spec = spec_from_metadata(table)
        if spec is None:
            raise ValueError("data: the table declares no columns; accepted: a spec with label and columns")
    elif not isinstance(spec, TableSpec):
        spec = TableSpec.from_dict(spec)
    check_columns(table.schema, spec)
    if table.num_rows == 0:
        raise ValueError(f"{_field(spec, spec.label)} the table has no rows; accepted: a table with rows")
    labels, classes = _labels(table.column(spec.label), _field(spec, spec.label))
    parts = _assign_splits(table, spec, labels, classes)  # cheap checks first, before decoding the big columns
    ids = _ids(table, spec)
    inputs, valid, modalities = {}, {}, []
    for col, cs in spec.columns.items():
        arr = _combine(table.column(col))
        if cs.kind == "series":
            x, mask = _series(arr, col)
            if cs.normalize == "sample":
                x = normalize_rows(x, mask)
            modalities.append(ModalitySpec(col, "series", x.shape[1], length=x.shape[2]))
            if mask is not None:
                valid[col] = mask
        else:
            x = _image(arr, col, cs)
            modalities.append(ModalitySpec(col, "image", x.shape[1], height=x.shape[2], width=x.shape[3]))
        inputs[col] = x
    full = Split(inputs, labels, valid)
    train, val, test = (full.take(parts[s]) for s in SPLITS)
    unlabelled = np.flatnonzero(labels < 0)
    if not len(unlabelled):
        return Dataset(spec.name, tuple(modalities), classes, train, val, test)
    return Dataset(spec.name, tuple(modalities), classes, train, val, test, full.take(unlabelled),
                   unlabelled_rows=unlabelled, unlabelled_ids=None if ids is None else ids[unlabelled])


def _field(spec: TableSpec, col: str) -> str:
    """Where an error about column ``col`` starts: the spec field that names it, where the user will look."""
    if col == spec.label:
        return f"data.label: {col!r} -"
    if col == spec.split:
        return f"data.split: {col!r} -"
    if col == spec.id:
        return f"data.id: {col!r} -"
    return f"data.columns.{col}:"


def check_columns(schema: pa.Schema, spec: TableSpec) -> None:
    """Names and types only (no data read): what a Parquet schema can tell before the rows are loaded."""
    names = schema.names
    wanted = [(spec.label, "label"), *((c, s.kind) for c, s in spec.columns.items())]
    if spec.split is not None:
        wanted.append((spec.split, "split"))
    if spec.id is not None:
        wanted.append((spec.id, "id"))
    for col, role in wanted:
        if col not in names:
            raise ValueError(f"{_field(spec, col)} not in the table; accepted: one of its columns {names}")
        t = _value_type(schema.field(col).type)
        if role == "label" and not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
            raise ValueError(f"{_field(spec, col)} label type {t} not accepted; accepted: string or integer labels")
        if role == "id" and not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
            raise ValueError(f"{_field(spec, col)} id type {t} not accepted; accepted: string or integer ids")
        if role == "split" and not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise ValueError(f"{_field(spec, col)} split type {t} not accepted; accepted: strings {list(SPLITS)}")
        if role == "series":
            depth, leaf = _nesting(t)
            if depth not in (1, 2) or not _is_number(leaf):
                raise ValueError(f"data.columns.{col}: type {t} is not a series; accepted: {_SERIES_TYPES}")
        if role == "image":
            depth, leaf = _nesting(t)
            encoded = depth == 0 and (pa.types.is_binary(t) or pa.types.is_large_binary(t))
            if not encoded and (depth not in (2, 3) or not _is_number(leaf)):
                raise ValueError(f"data.columns.{col}: type {t} is not an image; accepted: {_IMAGE_TYPES}")


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t  # e.g. a hive partition or a pandas categorical


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _nesting(t: pa.DataType) -> tuple[int, pa.DataType]:
    depth = 0
    while _is_list(t):
        t, depth = t.value_type, depth + 1
    return depth, t


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t)


def _combine(col: pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _no_nulls(arr: pa.Array, col: str, what: str = "null", where: str | None = None) -> None:
    if arr.null_count:
        row = _first(pc.is_null(arr).to_numpy(zero_copy_only=False))
        where = where or f"data.columns.{col}:"
        raise ValueError(f"{where} {arr.null_count} {what} value(s), first at row {row}; "
                         "accepted: no nulls")


def _levels(arr: pa.Array, col: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Per nesting level, the (flat) list lengths; and the flat leaf values as float32, checked finite.

    Row numbers in errors are found by walking the lengths back up to the table row.
    """
    _no_nulls(arr, col)
    lengths: list[np.ndarray] = []
    while _is_list(arr.type):
        _inner_nulls(arr, col, lengths)
        lengths.append(pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64))
        arr = arr.flatten()
    _inner_nulls(arr, col, lengths)
    values = arr.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = _rows_of(np.flatnonzero(bad), lengths)
        raise ValueError(f"data.columns.{col}: {int(bad.sum())} NaN/inf value(s) in {len(np.unique(rows))} row(s), "
                         f"first at row {rows[0]}; accepted: finite numbers")
    return lengths, values


def _inner_nulls(arr: pa.Array, col: str, lengths: list[np.ndarray]) -> None:
    if arr.null_count:
        rows = _rows_of(np.flatnonzero(pc.is_null(arr).to_numpy(zero_copy_only=False)), lengths)
        raise ValueError(f"data.columns.{col}: {arr.null_count} null value(s) inside row(s), first at row {rows[0]}; "
                         "accepted: no nulls")


def _rows_of(flat: np.ndarray, lengths: list[np.ndarray]) -> np.ndarray:
    """Table rows of flat positions at the deepest level."""
    for lens in reversed(lengths):
        flat = np.searchsorted(np.cumsum(lens), flat, side="right")
    return flat


def _pad(values: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Concatenated variable-length rows -> (rows, width), zero padded (one boolean scatter, row-major)."""
    out = np.zeros((len(lengths), width), np.float32)
    out[np.arange(width) < lengths[:, None]] = values
    return out


def _series(arr: pa.Array, col: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Series column -> (N, C, L) padded float32 and an (N, L) valid mask (None when every row is full length)."""
    lengths, values = _levels(arr, col)
    n = len(arr)
    if len(lengths) == 1:
        channels, steps = 1, lengths[0]
    else:
        per_row = lengths[0]
        if (per_row != per_row[0]).any():
            row = _first(per_row != per_row[0])
            raise ValueError(f"data.columns.{col}: inconsistent channel count: row 0 has {per_row[0]} channels, "
                             f"row {row} has {per_row[row]}; accepted: the same channel count in every row")
        channels = int(per_row[0])
        if channels == 0:
            raise ValueError(f"data.columns.{col}: rows have 0 channels; accepted: at least one channel per row")
        inner = lengths[1].reshape(n, channels)  # (N, C)
        uneven = (inner != inner[:, :1]).any(1)
        if uneven.any():
            row = _first(uneven)
            lens = sorted(set(inner[row].tolist()))
            raise ValueError(f"data.columns.{col}: row {row} has channels of lengths {lens}; "
                             "accepted: one length for all channels of a row")
        steps = inner[:, 0]
    if (steps == 0).any():
        raise ValueError(f"data.columns.{col}: row {_first(steps == 0)} is an empty series; "
                         "accepted: at least one step per row")
    width = int(steps.max())
    x = _pad(values, np.repeat(steps, channels), width).reshape(n, channels, width)  # (N, C, L)
    if (steps == width).all():
        return x, None
    return x, np.arange(width)[None, :] < steps[:, None]  # (N, L)


def normalize_rows(x: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Z-normalise each row and channel of (N, C, L) over its real steps; padding stays zero. A constant
    channel becomes zeros (its standard deviation is floored, not divided by zero)."""
    w = np.ones((x.shape[0], 1, x.shape[2]), np.float32) if valid is None else valid[:, None].astype(np.float32)
    n = w.sum(-1, keepdims=True)  # (N, 1, 1)
    mean = (x * w).sum(-1, keepdims=True) / n
    std = np.sqrt((((x - mean) * w) ** 2).sum(-1, keepdims=True) / n)
    return ((x - mean) / np.maximum(std, 1e-8) * w).astype(np.float32)


def _image(arr: pa.Array, col: str, cs: ColumnSpec) -> np.ndarray:
    """Image column -> (N, C, H, W) float32 (encoded images scaled to [0, 1])."""
    if not _is_list(arr.type):
        return _decode_images(arr, col, cs)
    lengths, values = _levels(arr, col)
    dims: list[int] = []
    for level, lens in enumerate(lengths):
        if (lens != lens[0]).any():
            at = _first(lens != lens[0])
            row = at // int(np.prod(dims, dtype=np.int64))  # lists at this level per row: product of outer dims
            raise ValueError(f"data.columns.{col}: inconsistent image size: dimension {level} is {lens[0]} in row 0 "
                             f"but {lens[at]} in row {row}; accepted: one size (H x W or C x H x W) in every row")
        dims.append(int(lens[0]))
    if min(dims) == 0:
        raise ValueError(f"data.columns.{col}: images of size {'x'.join(map(str, dims))}; accepted: non-empty images")
    x = values.reshape(len(arr), *dims)
    return x[:, None] if x.ndim == 3 else x


def _decode_images(arr: pa.Array, col: str, cs: ColumnSpec) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:  # pragma: no cover - Pillow comes with matplotlib
        raise ImportError("encoded images need Pillow: pip install pillow") from e
    _no_nulls(arr, col)
    images = []
    for row, raw in enumerate(arr.to_pylist()):  # once per dataset, never per batch
        try:
            img = Image.open(io.BytesIO(raw))
            img.load()
        except UnidentifiedImageError:  # its message shows only a BytesIO address: show the bytes instead
            raise ValueError(f"data.columns.{col}: row {row} is not a decodable image (unknown format, starts "
                             f"{raw[:12]!r}); accepted: PNG or JPEG bytes") from None
        except OSError as e:
            raise ValueError(f"data.columns.{col}: row {row} is not a decodable image ({e}); "
                             "accepted: PNG or JPEG bytes") from None
        images.append(img)
    gray = {"1", "L", "LA", "I", "I;16", "F"}
    channels = cs.channels or (1 if all(img.mode in gray for img in images) else 3)
    mode = "L" if channels == 1 else "RGB"
    if cs.size is None:
        sizes = {img.size for img in images}
        if len(sizes) > 1:
            shown = sorted(f"{h}x{w}" for w, h in sizes)[:4]
            raise ValueError(f"data.columns.{col}: images of several sizes {shown}; "
                             "accepted: one size, or set size: [height, width] to resize")
    out = []
    for img in images:
        img = img.convert(mode)
        if cs.size is not None and img.size != (cs.size[1], cs.size[0]):
            img = img.resize((cs.size[1], cs.size[0]), Image.BILINEAR)
        out.append(np.asarray(img, dtype=np.float32))
    x = np.stack(out) / 255.0  # (N, H, W) or (N, H, W, 3)
    x = x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(col: pa.ChunkedArray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices (-1 where the label is null: an unlabelled row) and the class names in natural order.
    ``where`` starts an error line (``data.label: 'species' -``)."""
    arr = _combine(col)
    if arr.null_count == len(arr):
        raise ValueError(f"{where} every label is null; accepted: labelled rows (null labels mark "
                         "the unlabelled rows that only pretraining reads)")
    uniq = pc.drop_null(pc.unique(arr))
    values = uniq.to_pylist()
    key = (lambda i: values[i]) if pa.types.is_integer(arr.type) else (lambda i: natural_key(values[i]))
    uniq = uniq.take(pa.array(sorted(range(len(values)), key=key), pa.int64()))
    index = pc.fill_null(pc.index_in(arr, value_set=uniq), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    classes = tuple(str(v) for v in uniq.to_pylist())
    if len(classes) < 2:
        raise ValueError(f"{where} one class {list(classes)}; accepted: at least two classes")
    return index, classes


def _ids(table: pa.Table, spec: TableSpec) -> np.ndarray | None:
    """The ``id`` column's values, row for row (None without one): no nulls, no value twice."""
    if spec.id is None:
        return None
    arr = _combine(table.column(spec.id))
    where = _field(spec, spec.id)
    _no_nulls(arr, spec.id, where=where)
    values = arr.to_numpy(zero_copy_only=False)
    _, first, counts = np.unique(values, return_index=True, return_counts=True)
    if (counts > 1).any():
        value = values[np.flatnonzero(np.isin(values, values[first[counts > 1]]))[0]]
        rows = np.flatnonzero(values == value)[:2].tolist()
        raise ValueError(f"{where} {int((counts > 1).sum())} value(s) on more than one row, first {value!r} at "
                         f"rows {rows}; accepted: a unique value per row")
    return values


def _assign_splits(table: pa.Table, spec: TableSpec, labels: np.ndarray,
                   classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Row indices of the labelled rows per split: from the split column where there is one, carving what is
    missing from train. Unlabelled rows (label -1) join no split; the split column may put them in train only."""
    labelled = np.flatnonzero(labels >= 0)
    if spec.split is not None:
        arr = _combine(table.column(spec.split))
        _no_nulls(arr, spec.split, where=_field(spec, spec.split))
        values = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)
        unknown = sorted(set(values.tolist()) - set(SPLITS))
        if unknown:
            raise ValueError(f"{_field(spec, spec.split)} split values {unknown[:5]} not accepted; "
                             f"accepted: {list(SPLITS)}")
        held_out = np.flatnonzero((labels < 0) & (values != "train"))
        if len(held_out):
            raise ValueError(f"{_field(spec, spec.label)} {len(held_out)} unlabelled (null) label(s) in the "
                             f"{values[held_out[0]]!r} split, first at row {held_out[0]}; accepted: unlabelled rows "
                             "in 'train' only (they serve pretraining, never validation or test)")
        parts = {s: np.flatnonzero((values == s) & (labels >= 0)) for s in SPLITS}
        if len(parts["train"]) == 0:
            raise ValueError(f"{_field(spec, spec.split)} no 'train' rows; accepted: a split column with train rows")
        missing = [s for s in ("test", "val") if len(parts[s]) == 0]
        _check_class_sizes(labels[parts["train"]], classes, spec, carve=missing)
    else:
        _check_class_sizes(labels[labelled], classes, spec, carve=["test", "val"])
        parts = {"train": labelled, "val": np.arange(0), "test": np.arange(0)}
    for s, fraction in (("test", spec.test_fraction), ("val", spec.val_fraction)):
        if len(parts[s]) == 0 and fraction > 0:
            train = parts["train"]
            keep, carved = stratified_split(labels[train], fraction, spec.seed)
            parts["train"], parts[s] = train[keep], train[carved]
    return parts


def _check_class_sizes(labels: np.ndarray, classes: tuple[str, ...], spec: TableSpec, carve: list[str]) -> None:
    """Each class needs one training row plus one row for each split carved from it."""
    fractions = {"test": spec.test_fraction, "val": spec.val_fraction}
    carved = [s for s in carve if fractions[s] > 0]
    need = 1 + len(carved)
    counts = np.bincount(labels, minlength=len(classes))
    small = np.flatnonzero(counts < need)
    if len(small):
        c = small[0]
        asked = " and ".join(f"{s}_fraction={fractions[s]}" for s in carved) or "training"
        what = "training rows" if spec.split is not None else "rows"
        hint = f"at least {need} {what} per class (one per split), or fractions of 0" if carved else \
            f"at least one {what[:-1]} per class"
        raise ValueError(f"{_field(spec, spec.label)} class {classes[c]!r} has {counts[c]} {what}, "
                         f"too few for {asked}; accepted: {hint}")


def natural_key(label: str) -> tuple:
    """Sort key putting digit-only labels in numeric order ('2' before '10'), then the others."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


# --------------------------------------------------------------------------------------------------- writing
def dataset_to_table(dataset: Dataset, label: str = "label", split: str = "split") -> pa.Table:
    """A ``Dataset`` as one table with a split column; series keep their real length (padding dropped), images
    are written as C x H x W float lists. The spec is stored in the schema metadata, so
    ``dataset_from_table(table)`` reads it back unchanged."""
    kinds = {m.name: m.kind for m in dataset.modalities}
    parts = [(s, dataset.split(s)) for s in SPLITS]
    if dataset.unlabelled is not None:  # null labels, in train: read back as unlabelled
        parts.append(("train", dataset.unlabelled))
    columns: dict[str, pa.Array] = {}
    for name, kind in kinds.items():
        chunks = []
        for _, part in parts:
            x = part.inputs[name]
            if kind == "series":
                steps = part.valid[name].sum(1) if name in part.valid else np.full(len(x), x.shape[-1])
                chunks.append(series_array(x, steps))
            else:
                chunks.append(nested_array(x))
        columns[name] = pa.concat_arrays(chunks)
    classes = np.asarray(dataset.classes, dtype=object)
    columns[label] = pa.array(np.concatenate([np.where(p.labels >= 0, classes[p.labels], None) for _, p in parts]),
                              pa.string())
    columns[split] = pa.array(np.concatenate([np.full(len(p), s, dtype=object) for s, p in parts]), pa.string())
    # the split column holds every split as it is: reading back must not carve new ones from train
    spec = TableSpec(label=label, columns=kinds, split=split, name=dataset.name, val_fraction=0.0, test_fraction=0.0)
    meta = {METADATA_KEY: json.dumps(spec.to_dict()).encode()}
    return pa.table(columns).replace_schema_metadata(meta)


def series_array(x: np.ndarray, steps: np.ndarray | None = None) -> pa.Array:
    """(N, C, L) padded series with per-row real lengths ``steps`` -> ``list<list<float>>`` (no Python loop)."""
    n, c, length = x.shape
    steps = np.full(n, length, np.int64) if steps is None else np.asarray(steps, np.int64)
    keep = np.broadcast_to(np.arange(length) < steps[:, None, None], x.shape)  # (N, C, L)
    values = pa.array(np.ascontiguousarray(x, np.float32)[keep])
    inner = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(np.repeat(steps, c))]), pa.int32()),
                                     values)
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1) * c, pa.int32()), inner)


def nested_array(x: np.ndarray) -> pa.Array:
    """(N, d1, ..., dk) regular array -> k-level nested ``list<...<float>>``."""
    arr: pa.Array = pa.array(np.ascontiguousarray(x, np.float32).reshape(-1))
    for dim, count in zip(reversed(x.shape[1:]), reversed(np.cumprod(x.shape[:-1])), strict=True):
        arr = pa.ListArray.from_arrays(pa.array(np.arange(count + 1) * dim, pa.int32()), arr)
    return arr


__all__ = ["ColumnSpec", "TableSpec", "check_columns", "dataset_from_table", "dataset_to_table", "nested_array",
           "natural_key", "series_array", "spec_from_metadata"]
