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


def leaves(per_class: int = 10, classes: int = 3, steps: int = 48) -> dict[str, list]:
    """OSULeaf as a user would bring it: a species name, a split, the outline (every 9th point) and the
    silhouette (16 x 16 PNG); ``per_class`` rows of each of the first ``classes`` species, 6:2:2 train/val/test."""
    from emule_models.data import load_builtin

    data = load_builtin("osuleaf")
    part = data.train
    rows: dict[str, list] = {"species": [], "split": [], "outline": [], "photo": []}
    for c in range(classes):
        for k, i in enumerate(np.flatnonzero(part.labels == c)[:per_class]):
            rows["species"].append(f"species-{data.classes[c]}")
            rows["split"].append("train" if k < 0.6 * per_class else "val" if k < 0.8 * per_class else "test")
            rows["outline"].append(np.round(part.inputs["outline"][i, 0, ::9][:steps], 3).tolist())
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


@dataclass
class Case:
    """One malformed dataset.

    Args:
        name: file stem of the spec and its data.
        expect: what the one-line error must contain.
        write: writes the data at the given path (without suffix) and returns the path the spec names.
        data: changes to the spec's ``data`` section.
    """

    name: str
    expect: str
    write: Callable[[Path], Path]
    data: dict[str, Any] = field(default_factory=dict)


def parquet(make: Callable[[dict[str, list]], pa.Table]) -> Callable[[Path], Path]:
    """A writer of one Parquet file holding ``make(leaves())``."""
    def write(stem: Path) -> Path:
        path = stem.with_suffix(".parquet")
        pq.write_table(make(leaves()), path)
        return path
    return write


def changed(**columns: Any) -> Callable[[dict[str, list]], dict[str, list]]:
    """Rows with some columns replaced, each by a function of the rows."""
    return lambda rows: {**rows, **{k: f(rows) for k, f in columns.items()}}


def at(row: int, value: Any, column: str) -> Callable[[dict[str, list]], list]:
    """A column with one row replaced."""
    return lambda rows: [value if i == row else v for i, v in enumerate(rows[column])]


def drop(column: str) -> Callable[[dict[str, list]], dict[str, list]]:
    return lambda rows: {k: v for k, v in rows.items() if k != column}


def resized(size: tuple[int, int], every: int) -> Callable[[dict[str, list]], list]:
    """The photo column with every ``every``-th image resized (so the images differ in size)."""
    def photos(rows: dict[str, list]) -> list:
        out = []
        for i, raw in enumerate(rows["photo"]):
            img = Image.open(io.BytesIO(raw))
            out.append(png(np.asarray(img.resize(size[::-1]), np.float32) / 255) if i % every == 0 else raw)
        return out
    return photos


def two_channels_from(row: int) -> Callable[[dict[str, list]], list]:
    """The outline as list<list<float>>: one channel, and from ``row`` on two (outline and its reverse)."""
    return lambda rows: [[s] if i < row else [s, s[::-1]] for i, s in enumerate(rows["outline"])]


def empty_directory(stem: Path) -> Path:
    stem.mkdir()
    (stem / ".gitkeep").write_text("")  # git keeps the folder; Parquet readers skip dot files
    return stem


def csv_text(stem: Path) -> Path:
    rows = leaves()
    path = stem.with_suffix(".csv")
    path.write_text("species,split,outline\n" + "".join(f'{y},{s},"{" ".join(map(str, o))}"\n' for y, s, o in
                                                         zip(rows["species"], rows["split"], rows["outline"],
                                                             strict=True)))
    return path


def mixed_schema_directory(stem: Path) -> Path:
    """Two Parquet files of one dataset whose outline columns have different types."""
    stem.mkdir()
    rows = leaves()
    half = len(rows["species"]) // 2
    first = {k: v[:half] for k, v in rows.items()}
    second = {**{k: v[half:] for k, v in rows.items()}, "outline": [str(o) for o in rows["outline"][half:]]}
    pq.write_table(table(first), stem / "part-0.parquet")
    pq.write_table(table(second, outline=pa.string()), stem / "part-1.parquet")
    return stem


def nowhere(stem: Path) -> Path:
    return stem.with_name("no_such_file.parquet")


def image_lists(rows: dict[str, list]) -> list:
    """Silhouettes as H x W float lists (decoded from the PNGs)."""
    return [(np.asarray(Image.open(io.BytesIO(raw)), np.float32) / 255).round(2).tolist() for raw in rows["photo"]]


NAN, INF = float("nan"), float("inf")
NESTED = {"outline": "series", "photo": "image"}
CASES = [
    Case("missing_label_column", "data.columns.species: not in the table",
         parquet(lambda r: table(drop("species")(r) | {"class": r["species"]}))),
    Case("missing_modality_column", "data.columns.photo: not in the table",
         parquet(lambda r: table(drop("photo")(r)))),
    Case("label_of_lists", "data.columns.species: label type list<item: string> not accepted",
         parquet(lambda r: table(changed(species=lambda r: [[y] for y in r["species"]])(r),
                                 species=pa.list_(pa.string())))),
    Case("label_of_floats", "data.columns.species: label type double not accepted",
         parquet(lambda r: table(changed(species=lambda r: [float(y[-1]) for y in r["species"]])(r),
                                 species=pa.float64()))),
    Case("series_of_strings", "data.columns.outline: type string is not a series",
         parquet(lambda r: table(changed(outline=lambda r: [" ".join(map(str, o)) for o in r["outline"]])(r),
                                 outline=pa.string()))),
    Case("image_of_ints", "data.columns.photo: type int64 is not an image",
         parquet(lambda r: table(changed(photo=lambda r: [len(p) for p in r["photo"]])(r), photo=pa.int64()))),
    Case("inconsistent_channels", "data.columns.outline: inconsistent channel count: row 0 has 1 channels, row 7 has 2",
         parquet(lambda r: table(changed(outline=two_channels_from(7))(r), outline=pa.list_(pa.list_(pa.float32()))))),
    Case("empty_table", "data.columns.species: the table has no rows",
         parquet(lambda r: table(r).slice(0, 0))),
    Case("nan_in_series", "data.columns.outline: 1 NaN/inf value(s) in 1 row(s), first at row 11",
         parquet(lambda r: table(changed(outline=at(11, [*r["outline"][11][:-1], NAN], "outline"))(r)))),
    Case("inf_in_series", "data.columns.outline: 1 NaN/inf value(s) in 1 row(s), first at row 4",
         parquet(lambda r: table(changed(outline=at(4, [INF, *r["outline"][4][1:]], "outline"))(r)))),
    Case("null_in_series", "data.columns.outline: 1 null value(s) inside row(s), first at row 9",
         parquet(lambda r: table(changed(outline=at(9, [*r["outline"][9][:5], None], "outline"))(r)))),
    Case("null_label", "data.columns.species: 1 null value(s), first at row 5",
         parquet(lambda r: table(changed(species=at(5, None, "species"))(r)))),
    Case("one_class", "data.columns.species: one class ['species-1']",
         parquet(lambda r: table(changed(species=lambda r: ["species-1"] * len(r["species"]))(r)))),
    Case("class_too_small", "data.columns.species: class 'species-3' has 2 rows, too few for test_fraction=0.2 and "
         "val_fraction=0.2", parquet(lambda r: table({k: v[:22] for k, v in r.items()})),
         data={"split": None}),
    Case("class_missing_from_train", "data.columns.species: class 'species-3' has 0 training rows",
         parquet(lambda r: table(changed(split=lambda r: [s if y != "species-3" else "test"
                                                          for s, y in zip(r["split"], r["species"], strict=True)])(r)))),
    Case("undecodable_image", "data.columns.photo: row 3 is not a decodable image",
         parquet(lambda r: table(changed(photo=at(3, b"GIF89a-not-really" * 4, "photo"))(r)))),
    Case("truncated_image", "data.columns.photo: row 0 is not a decodable image",
         parquet(lambda r: table(changed(photo=at(0, r["photo"][0][:40], "photo"))(r)))),
    Case("image_sizes_differ", "data.columns.photo: images of several sizes ['12x12', '16x16']",
         parquet(lambda r: table(changed(photo=resized((12, 12), every=5))(r)))),
    Case("image_lists_inconsistent", "data.columns.photo: inconsistent image size: dimension 1 is 16 in row 0 but 15",
         parquet(lambda r: table(changed(photo=lambda r: [im if i != 13 else [row[:-1] for row in im]
                                                         for i, im in enumerate(image_lists(r))])(r),
                                 photo=pa.list_(pa.list_(pa.float32())))), data={"columns": NESTED}),
    Case("split_value_unknown", "data.columns.split: split values ['dev'] not accepted",
         parquet(lambda r: table(changed(split=lambda r: [s.replace("val", "dev") for s in r["split"]])(r)))),
    Case("split_without_train", "data.columns.split: no 'train' rows",
         parquet(lambda r: table(changed(split=lambda r: [s.replace("train", "val") for s in r["split"]])(r)))),
    Case("split_of_integers", "data.columns.split: split type int64 not accepted",
         parquet(lambda r: table(changed(split=lambda r: [("train", "val", "test").index(s) for s in r["split"]])(r),
                                 split=pa.int64()))),
    Case("unknown_column_kind", "data.columns.outline.kind: 'audio' not accepted",
         parquet(lambda r: table(r)), data={"columns": {"outline": "audio", "photo": {"kind": "image"}}}),
    Case("directory_without_parquet", "holds no Parquet files", empty_directory),
    Case("directory_mixed_schema", "part-1.parquet", mixed_schema_directory),
    Case("path_missing", "data.path: ", nowhere),
    Case("not_parquet", "is not readable as Parquet", csv_text),
]


def write_case(case: Case, out: Path = OUT) -> Path:
    """Write a case's data and spec into ``out``; returns the spec's path."""
    target = case.write(out / case.name)
    data = {"path": target.name, "label": "species", "split": "split", "columns": COLUMNS}
    data = {k: v for k, v in {**data, **case.data}.items() if v is not None}
    path = out / f"{case.name}.yaml"
    path.write_text(f"# expect: {case.expect}\n" + yaml.safe_dump(spec(data), sort_keys=False))
    return path


def write_baseline(out: Path) -> Path:
    """The untouched table and its spec (not part of the corpus: ``emule search`` accepts it)."""
    return write_case(Case("leaves", "", parquet(table)), out)


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    for case in CASES:
        write_case(case)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(CASES)} cases, {total / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    main()
