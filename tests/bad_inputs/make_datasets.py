"""Write the malformed-dataset corpus in tests/bad_inputs/datasets: for each case a small data file (real OSULeaf
rows, broken in one way) and a spec of the same stem whose ``data`` section points at it, with a first line
``# expect: <text the one-line error must contain>``. Run it again after changing a case:

    python tests/bad_inputs/make_datasets.py

Every case starts from the same valid table (``leaves``, accepted by ``emule search`` as it is) and breaks one thing.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image

OUT = Path(__file__).resolve().parent / "datasets"
COLUMNS = {"outline": "series", "photo": {"kind": "image"}}


def png(image: np.ndarray) -> bytes:
    """(H, W) in [0, 1] -> grayscale PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray((image * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def leaves(per_class: int = 10, classes: int = 3, steps: int = 32) -> dict[str, list]:
    """OSULeaf as a user would bring it: a species name, a split, the outline (every 13th point) and the
    silhouette (16 x 16 PNG); ``per_class`` rows of each of the first ``classes`` species, 6:2:2 train/val/test."""
    from emule_models.data import load_builtin

    data = load_builtin("osuleaf")
    part = data.train
    rows: dict[str, list] = {"species": [], "split": [], "outline": [], "photo": []}
    for c in range(classes):
        for k, i in enumerate(np.flatnonzero(part.labels == c)[:per_class]):
            rows["species"].append(f"species-{data.classes[c]}")
            rows["split"].append("train" if k < 0.6 * per_class else "val" if k < 0.8 * per_class else "test")
            rows["outline"].append(np.round(part.inputs["outline"][i, 0, ::13][:steps].astype(float), 3).tolist())
            rows["photo"].append(png(part.inputs["silhouette"][i, 0, ::2, ::2]))
    return rows


def table(rows: dict[str, list], **types: pa.DataType) -> pa.Table:
    default = {"species": pa.string(), "split": pa.string(), "outline": pa.list_(pa.float32()), "photo": pa.binary()}
    types = {**default, **types}
    return pa.table({k: pa.array(v, type=types.get(k)) for k, v in rows.items()})


def spec(data: dict[str, Any]) -> dict[str, Any]:
    """A complete, valid search spec around a ``data`` section."""
    return {
        "name": "leaves",
        "data": data,
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "params", "mode": "min", "reference": 1.0e6, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": 1, "width": 16, "heads": 2, "patch_len": 8},
        "training": {"epochs": 2, "batch_size": 8},
        "search": {"sampler": "random", "trials": 2, "concurrency": 1, "seed": 0},
        "tracking": {"uri": None, "experiment": "emule"},
    }


@dataclass(frozen=True)
class Case:
    """One malformed dataset.

    Args:
        name: file stem of the spec and its data.
        expect: what the one-line error must contain.
        make: ``leaves()`` rows -> the broken table, written as ``<name>.parquet``; with ``raw``, the path
            ``<corpus>/<name>`` -> the path the spec names, after writing whatever is there.
        raw: ``make`` writes the data itself (a folder, a text file, nothing).
        data: changes to the spec's ``data`` section (None drops a key).
    """

    name: str
    expect: str
    make: Callable[..., Any]
    raw: bool = False
    data: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {}


def case(expect: str, raw: bool = False, **data: Any) -> Callable:
    """Register the decorated function as the case of its name."""
    def register(make: Callable) -> Callable:
        assert make.__name__ not in CASES, make.__name__
        CASES[make.__name__] = Case(make.__name__, expect, make, raw, data)
        return make
    return register


def nested_images(rows: dict[str, list]) -> list:
    """The silhouettes as H x W float lists."""
    return [(np.asarray(Image.open(io.BytesIO(raw)), np.float32) / 255).round(2).tolist() for raw in rows["photo"]]


# ---------------------------------------------------------------------------------------- files and folders
@case("no_such_file.parquet' does not exist", raw=True)
def path_missing(stem: Path) -> Path:
    return stem.with_name("no_such_file.parquet")


@case("directory_without_parquet' holds no Parquet files", raw=True)
def directory_without_parquet(stem: Path) -> Path:
    stem.mkdir()
    (stem / ".gitkeep").write_text("")  # so git keeps the folder; Parquet readers skip dot files
    return stem


@case("not_parquet.csv' is not readable as Parquet", raw=True)
def not_parquet(stem: Path) -> Path:
    rows = leaves()
    lines = [f'{y},{s},"{" ".join(map(str, o))}"' for y, s, o in zip(rows["species"], rows["split"], rows["outline"],
                                                                     strict=True)]
    path = stem.with_suffix(".csv")
    path.write_text("\n".join(["species,split,outline", *lines]) + "\n")
    return path


@case("is not one table: column outline is list<element: float> in part-0.parquet but string in part-1.parquet",
      raw=True)
def directory_mixed_schema(stem: Path) -> Path:
    """Two files of one dataset; the second stores the outline as text."""
    stem.mkdir()
    rows = leaves()
    half = len(rows["species"]) // 2
    first, second = ({k: v[part] for k, v in rows.items()} for part in (slice(None, half), slice(half, None)))
    second["outline"] = [" ".join(map(str, o)) for o in second["outline"]]
    pq.write_table(table(first), stem / "part-0.parquet")
    pq.write_table(table(second, outline=pa.string()), stem / "part-1.parquet")
    return stem


# ---------------------------------------------------------------------------------------- columns and types
@case("data.label: 'species' - not in the table; accepted: one of its columns ['split', 'outline', 'photo', 'class']")
def missing_label_column(rows: dict[str, list]) -> pa.Table:
    rows["class"] = rows.pop("species")
    return table(rows)


@case("data.columns.photo: not in the table")
def missing_modality_column(rows: dict[str, list]) -> pa.Table:
    del rows["photo"]
    return table(rows)


@case("data.columns.outline.kind: 'audio' not accepted", columns={**COLUMNS, "outline": "audio"})
def unknown_column_kind(rows: dict[str, list]) -> pa.Table:
    return table(rows)


@case("data.label: 'species' - label type list<element: string> not accepted")
def label_of_lists(rows: dict[str, list]) -> pa.Table:
    rows["species"] = [[y] for y in rows["species"]]
    return table(rows, species=pa.list_(pa.string()))


@case("data.label: 'species' - label type double not accepted")
def label_of_floats(rows: dict[str, list]) -> pa.Table:
    rows["species"] = [float(y.removeprefix("species-")) for y in rows["species"]]
    return table(rows, species=pa.float64())


@case("data.columns.outline: type string is not a series")
def series_of_strings(rows: dict[str, list]) -> pa.Table:
    rows["outline"] = [" ".join(map(str, o)) for o in rows["outline"]]
    return table(rows, outline=pa.string())


@case("data.columns.photo: type int64 is not an image")
def image_of_ints(rows: dict[str, list]) -> pa.Table:
    rows["photo"] = [len(p) for p in rows["photo"]]
    return table(rows, photo=pa.int64())


@case("data.split: 'split' - split type int64 not accepted")
def split_of_integers(rows: dict[str, list]) -> pa.Table:
    rows["split"] = [("train", "val", "test").index(s) for s in rows["split"]]
    return table(rows, split=pa.int64())


# ---------------------------------------------------------------------------------------- values
@case("data.label: 'species' - the table has no rows")
def empty_table(rows: dict[str, list]) -> pa.Table:
    return table(rows).slice(0, 0)


@case("data.label: 'species' - 1 unlabelled (null) label(s) in the 'test' split, first at row 8")
def null_label_in_test(rows: dict[str, list]) -> pa.Table:
    rows["species"][8] = None  # a null label in train is an unlabelled row, read by pretraining only
    return table(rows)


@case("data.label: 'species' - every label is null")
def labels_all_null(rows: dict[str, list]) -> pa.Table:
    rows["species"] = [None] * len(rows["species"])
    return table(rows)


@case("data.columns.outline: 1 NaN/inf value(s) in 1 row(s), first at row 11")
def nan_in_series(rows: dict[str, list]) -> pa.Table:
    rows["outline"][11][-1] = float("nan")
    return table(rows)


@case("data.columns.outline: 1 NaN/inf value(s) in 1 row(s), first at row 4")
def inf_in_series(rows: dict[str, list]) -> pa.Table:
    rows["outline"][4][0] = float("inf")
    return table(rows)


@case("data.columns.outline: 1 null value(s) inside row(s), first at row 9")
def null_in_series(rows: dict[str, list]) -> pa.Table:
    rows["outline"][9][5] = None
    return table(rows)


@case("data.columns.outline: inconsistent channel count: row 0 has 1 channels, row 7 has 2")
def inconsistent_channels(rows: dict[str, list]) -> pa.Table:
    """list<list<float>> with one channel, and from row 7 on two (the outline and its reverse)."""
    rows["outline"] = [[o] if i < 7 else [o, o[::-1]] for i, o in enumerate(rows["outline"])]
    return table(rows, outline=pa.list_(pa.list_(pa.float32())))


@case("data.columns.photo: row 3 is not a decodable image (unknown format, starts b'photos/leaf-')")
def undecodable_image(rows: dict[str, list]) -> pa.Table:
    rows["photo"][3] = b"photos/leaf-0003.tif"  # a path where the bytes belong
    return table(rows)


@case("data.columns.photo: row 8 is not a decodable image (image file is truncated)")
def truncated_image(rows: dict[str, list]) -> pa.Table:
    rows["photo"][8] = rows["photo"][8][:60]
    return table(rows)


@case("data.columns.photo: images of several sizes ['12x12', '16x16']")
def image_sizes_differ(rows: dict[str, list]) -> pa.Table:
    """Every fifth silhouette at 12 x 12, and no ``size`` to resize to."""
    for i in range(0, len(rows["photo"]), 5):
        img = Image.open(io.BytesIO(rows["photo"][i])).resize((12, 12))
        rows["photo"][i] = png(np.asarray(img, np.float32) / 255)
    return table(rows)


@case("data.columns.photo: inconsistent image size: dimension 1 is 16 in row 0 but 15 in row 13",
      columns={"outline": "series", "photo": "image"})
def image_lists_inconsistent(rows: dict[str, list]) -> pa.Table:
    """H x W float lists, one of them a column short."""
    images = nested_images(rows)
    images[13] = [line[:-1] for line in images[13]]
    return table({**rows, "photo": images}, photo=pa.list_(pa.list_(pa.float32())))


# ---------------------------------------------------------------------------------------- classes and splits
@case("data.label: 'species' - one class ['species-1']")
def one_class(rows: dict[str, list]) -> pa.Table:
    rows["species"] = ["species-1"] * len(rows["species"])
    return table(rows)


@case("data.label: 'species' - class 'species-3' has 2 rows, too few for test_fraction=0.2 and val_fraction=0.2",
      split=None)
def class_too_small(rows: dict[str, list]) -> pa.Table:
    """No split column: test and val are carved from each class, and species-3 has two rows."""
    return table({k: v[:22] for k, v in rows.items()})


@case("data.label: 'species' - class 'species-3' has 0 training rows, too few for training; accepted: at least one "
      "training row per class")
def class_missing_from_train(rows: dict[str, list]) -> pa.Table:
    rows["split"] = ["test" if y == "species-3" else s for y, s in zip(rows["species"], rows["split"], strict=True)]
    return table(rows)


@case("data.split: 'split' - split values ['dev'] not accepted")
def split_value_unknown(rows: dict[str, list]) -> pa.Table:
    rows["split"] = ["dev" if s == "val" else s for s in rows["split"]]
    return table(rows)


@case("data.split: 'split' - no 'train' rows")
def split_without_train(rows: dict[str, list]) -> pa.Table:
    rows["split"] = ["val" if s == "train" else s for s in rows["split"]]
    return table(rows)


def write_case(case: Case, out: Path = OUT) -> Path:
    """Write a case's data and spec into ``out``; returns the spec's path."""
    if case.raw:
        target = case.make(out / case.name)
    else:
        target = out / f"{case.name}.parquet"
        pq.write_table(case.make(leaves()), target)
    data = {"path": target.name, "label": "species", "split": "split", "columns": COLUMNS, **case.data}
    data = {k: v for k, v in data.items() if v is not None}
    path = out / f"{case.name}.yaml"
    path.write_text(f"# expect: {case.expect}\n" + yaml.safe_dump(spec(data), sort_keys=False))
    return path


def write_baseline(out: Path) -> Path:
    """The unbroken table and its spec, which ``emule search`` accepts (not part of the corpus)."""
    return write_case(Case("leaves", "", table), out)


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    for c in CASES.values():
        write_case(c)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(CASES)} cases, {total / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    main()
