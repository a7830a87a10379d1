"""Built-in real datasets, loaded offline from a package that bundles them (sktime 1.2).

Each built-in is first an Arrow table (one row per sample, a ``split`` column with the official ``train``/``test``
split, its spec in the schema metadata) and is decoded by the same code as a user's Parquet file. Validation is
carved from train, seeded and stratified. ``BUILTIN[name].table()`` gives the table, e.g. to write it as Parquet.
Each built-in's description and sizes are listed, without decoding it, in ``emule_models.catalogue``.

The table is parsed from the package's files once per machine and kept as an Arrow IPC file in the user's cache
folder (``$EMULE_CACHE_DIR``, else ``platformdirs.user_cache_dir("emule")``): importing sktime to parse it takes
seconds, and every process that loads the dataset - each trial's actor, each ``emule`` command - would pay them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from emule_models.catalogue import CATALOGUE
from emule_models.data.arrow import METADATA_KEY, ColumnSpec, TableSpec, dataset_from_table, series_array
from emule_models.data.dataset import Dataset
from emule_models.data.views import with_view
from emule_models.registry import Registry


@dataclass(frozen=True)
class Builtin:
    """One built-in dataset.

    Args:
        name: its name in ``BUILTIN`` (what a spec's ``data.name`` says).
        description: one line for ``emule datasets``.
        table: the dataset's Arrow table, parsed once per process.
        views: (view, source, name) image views always added to it.
    """

    name: str
    description: str
    table: Callable[[], pa.Table]
    views: tuple[tuple[str, str, str], ...] = ()

    def load(self, seed: int = 0, val_fraction: float = 0.2, view: str | None = None,
             view_size: int = 32) -> Dataset:
        """The dataset decoded and split; see ``load_builtin``."""
        table = self.table()
        spec = TableSpec.from_dict({**json.loads(table.schema.metadata[METADATA_KEY]),
                                    "seed": seed, "val_fraction": val_fraction})
        dataset = dataset_from_table(table, spec)
        for v, source, vname in self.views:
            dataset = with_view(dataset, v, 32, source=source, name=vname)
        return with_view(dataset, view, view_size) if view else dataset


BUILTIN: Registry[Builtin] = Registry("dataset", field="data.name", unknown="is not a built-in dataset")


def builtin(name: str, views: tuple[tuple[str, str, str], ...] = ()):
    """Register a function returning the dataset's table under ``name``, described by its entry in
    ``emule_models.catalogue.CATALOGUE``. ``views``: (view, source, name) always added."""

    def wrap(table_fn: Callable[[], pa.Table]) -> Callable[[], pa.Table]:
        @functools.cache  # tables are immutable: parsed once per machine, read once per process
        @functools.wraps(table_fn)
        def cached() -> pa.Table:
            return cached_table(name, table_fn)

        BUILTIN.add(name, Builtin(name, CATALOGUE[name].description, cached, views))
        return cached

    return wrap


CACHE_ENV = "EMULE_CACHE_DIR"


def table_cache_dir() -> Path:
    """Where parsed built-in tables are kept: ``$EMULE_CACHE_DIR``, else the user's cache folder for EMuLe."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "datasets"
    import platformdirs

    return Path(platformdirs.user_cache_dir("emule")) / "datasets"


def cached_table(name: str, parse: Callable[[], pa.Table]) -> pa.Table:
    """``parse()``'s table, read from the cache file when there is one. The file's name carries the bundling
    package's version and a digest of the code that builds tables, so a new sktime or a changed layout parses
    again. A cache that cannot be written (a read-only home) only costs the parse."""
    path = table_cache_dir() / f"{name}-{_table_fingerprint()}.arrow"
    try:
        with pa.OSFile(str(path), "rb") as source:
            return ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid):  # absent, or not whole
        pass
    table = parse()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}-")
        with os.fdopen(fd, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)  # whole or absent: a process loading it meanwhile never reads a partial file
        for stale in path.parent.glob(f"{name}-*.arrow"):  # left by an earlier sktime or layout
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
    return table


@functools.cache
def _table_fingerprint() -> str:
    h = hashlib.sha256(metadata.version("sktime").encode())
    for module in (__file__, Path(__file__).with_name("arrow.py")):  # how the tables are built
        h.update(Path(module).read_bytes())
    return h.hexdigest()[:16]


def load_builtin(name: str, seed: int = 0, val_fraction: float = 0.2, view: str | None = None,
                 view_size: int = 32) -> Dataset:
    """A built-in dataset, decoded and split.

    Args:
        name: a name in ``BUILTIN``.
        seed: seed of the validation split carved from train.
        val_fraction: share of train held out for validation.
        view: an image view derived from each series modality (``emule_models.data.views.VIEWS``); it adds no
            new information, only another way for the model to look at the same series.
        view_size: side of the derived image.
    """
    return BUILTIN.lookup(name).load(seed, val_fraction, view=view, view_size=view_size)


def _sktime(loader_name: str) -> dict[str, tuple[list[list[np.ndarray]], np.ndarray]]:
    """Official splits as per-sample lists of channel arrays (lengths may differ between samples)."""
    try:
        import sktime.datasets as sk
    except ImportError as e:  # pragma: no cover - sktime is a declared dependency
        raise ImportError("built-in datasets need sktime: pip install 'sktime>=1.2,<1.3'") from e
    out = {}
    for split in ("train", "test"):
        x, y = getattr(sk, loader_name)(split=split)  # nested pandas: one cell per sample and channel
        rows = [[np.asarray(cell, dtype=np.float32) for cell in row] for row in x.itertuples(index=False)]
        out[split] = (rows, np.asarray(y).astype(str))
    return out


def _table(name: str, raw: dict, modalities: dict[str, list[int]], normalize: str = "none") -> pa.Table:
    """One table over both official splits: a ``list<list<float>>`` column per modality (channels picked from the
    raw channels), ``label`` and ``split``; the values as the package ships them, ``normalize`` in the spec."""
    rows = raw["train"][0] + raw["test"][0]
    steps = np.array([len(r[0]) for r in rows])
    columns = {}
    for mod, channels in modalities.items():
        x = np.zeros((len(rows), len(channels), steps.max()), np.float32)  # (N, C, L)
        for i, r in enumerate(rows):  # once per process (the table is cached), not per trial
            x[i, :, : steps[i]] = np.stack([r[c] for c in channels])
        columns[mod] = series_array(x, steps)
    columns["label"] = pa.array(np.concatenate([raw["train"][1], raw["test"][1]]).astype(object), pa.string())
    columns["split"] = pa.array(["train"] * len(raw["train"][0]) + ["test"] * len(raw["test"][0]), pa.string())
    columns_spec = {m: ColumnSpec("series", normalize=normalize) for m in modalities}
    spec = TableSpec(label="label", columns=columns_spec, split="split", name=name)
    return pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(spec.to_dict()).encode()})


@builtin("osuleaf", views=(("silhouette", "outline", "silhouette"),))
def osuleaf_table() -> pa.Table:
    return _table("osuleaf", _sktime("load_osuleaf"), {"outline": [0]})


@builtin("plaid")
def plaid_table() -> pa.Table:
    # amplitudes span four orders of magnitude between appliances; as stored, quiet ones look like zeros
    return _table("plaid", _sktime("load_plaid"), {"current": [0]}, normalize="sample")


@builtin("basicmotions")
def basicmotions_table() -> pa.Table:
    return _table("basicmotions", _sktime("load_basic_motions"), {"accel": [0, 1, 2], "gyro": [3, 4, 5]})


@builtin("gunpoint")
def gunpoint_table() -> pa.Table:
    return _table("gunpoint", _sktime("load_gunpoint"), {"position": [0]})


@builtin("italypowerdemand")
def italypowerdemand_table() -> pa.Table:
    return _table("italypowerdemand", _sktime("load_italy_power_demand"), {"demand": [0]})


def describe_builtins() -> list[dict]:
    """One row per built-in: name, description and the sizes read from the decoded data (what
    ``emule_models.catalogue`` lists without decoding)."""
    return [{"name": name, "description": entry.description, **entry.load().describe()}
            for name, entry in BUILTIN.items()]
