"""Arrow/Parquet datasets: round trips, real Parquet files and directories, bad-data errors, images, views,
built-ins and the synthetic generator. Tiny data; every Parquet file is real (pytest tmp_path)."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emule_models.data import (
    BUILTIN,
    VIEWS,
    Dataset,
    TableSpec,
    dataset_from_table,
    dataset_to_table,
    load_builtin,
    load_data,
    read_parquet,
    synthetic,
    with_view,
    write_parquet,
)
from emule_models.data.arrow import nested_array, series_array
from emule_models.data.dataset import SPLITS


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _table(n: int = 12, classes: int = 3, **overrides) -> pa.Table:
    """A small valid table: 2-channel variable-length series, H x W float images, string labels."""
    rng = np.random.default_rng(0)
    lengths = 5 + np.arange(n) % 4
    series = [rng.normal(size=(2, n_steps)).tolist() for n_steps in lengths]
    columns = {"sig": series, "img": [rng.random((4, 4)).tolist() for _ in range(n)],
               "y": [f"k{i % classes}" for i in range(n)]}
    columns.update(overrides)
    return pa.table(columns)


SPEC = {"label": "y", "columns": {"sig": "series", "img": "image"}}


def _assert_error(fn, column: str, *words: str) -> None:
    """One line that starts with the spec field naming ``column`` (the label is ``y``, the split ``split``)."""
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    field = {"y": "data.label: 'y' -", "split": "data.split: 'split' -", "key": "data.id: 'key' -"}.get(
        column, f"data.columns.{column}:")
    assert message.startswith(field), message
    assert "accepted:" in message, message
    for w in words:
        assert w in message, message


def _same(a: Dataset, b: Dataset) -> None:
    assert a.classes == b.classes and a.modalities == b.modalities
    for s in SPLITS:
        x, y = a.split(s), b.split(s)
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.inputs.keys() == y.inputs.keys() and x.valid.keys() == y.valid.keys()
        for k in x.inputs:
            np.testing.assert_allclose(x.inputs[k], y.inputs[k], rtol=0, atol=1e-6)
        for k in x.valid:
            np.testing.assert_array_equal(x.valid[k], y.valid[k])


# ------------------------------------------------------------------------------------------------ decoding
def test_variable_length_series_padded_with_valid_mask():
    table = pa.table({"s": [[1.0, 2.0, 3.0], [4.0], [5.0, 6.0]], "y": [0, 1, 0]})
    ds = dataset_from_table(table, {"label": "y", "columns": {"s": "series"}, "val_fraction": 0, "test_fraction": 0})
    x, valid = ds.train.inputs["s"], ds.train.valid["s"]
    assert x.shape == (3, 1, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], [[1, 2, 3], [4, 0, 0], [5, 6, 0]])
    np.testing.assert_array_equal(valid, [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    assert ds.classes == ("0", "1") and ds.modalities[0].length == 3


def test_channels_by_time_and_nested_image():
    ds = dataset_from_table(_table(), {**SPEC, "val_fraction": 0, "test_fraction": 0})
    sig, img = ds.modalities
    assert (sig.kind, sig.channels, sig.length) == ("series", 2, 8)
    assert (img.kind, img.channels, img.height, img.width) == ("image", 1, 4, 4)
    assert ds.train.inputs["img"].shape == (12, 1, 4, 4)
    steps = ds.train.valid["sig"].sum(1)
    assert sorted(set(steps)) == [5, 6, 7, 8]
    x = ds.train.inputs["sig"]
    assert np.all(x[np.broadcast_to(~ds.train.valid["sig"][:, None], x.shape)] == 0)  # padding is zero


def test_sample_normalisation_over_real_steps():
    table = pa.table({"s": [[1.0, 3.0, 5.0], [2.0, 2.0], [100.0, 300.0, 500.0]], "y": [0, 1, 0]})
    spec = {"label": "y", "columns": {"s": {"kind": "series", "normalize": "sample"}}, "val_fraction": 0,
            "test_fraction": 0}
    x = dataset_from_table(table, spec).train.inputs["s"][:, 0]
    np.testing.assert_allclose(x[0], [-1.2247449, 0, 1.2247449], rtol=1e-5)
    np.testing.assert_allclose(x[2], x[0], rtol=1e-5)  # amplitude removed
    np.testing.assert_array_equal(x[1], [0, 0, 0])  # constant -> zeros, padding stays zero
    with pytest.raises(ValueError, match=r"^data.columns.s.normalize: 'minmax' not accepted"):
        TableSpec.from_dict({**spec, "columns": {"s": {"kind": "series", "normalize": "minmax"}}})


def test_integer_labels_sorted_numerically_and_strings_naturally():
    ds = dataset_from_table(pa.table({"s": [[1.0]] * 6, "y": [10, 2, 1, 10, 2, 1]}),
                            {"label": "y", "columns": {"s": "series"}, "val_fraction": 0, "test_fraction": 0})
    assert ds.classes == ("1", "2", "10")
    ds = dataset_from_table(pa.table({"s": [[1.0]] * 4, "y": ["10", "9", "b", "a"]}),
                            {"label": "y", "columns": {"s": "series"}, "val_fraction": 0, "test_fraction": 0})
    assert ds.classes == ("9", "10", "a", "b")


def test_split_column_used_and_val_carved_from_train():
    n = 30
    split = ["test" if i % 5 == 0 else "train" for i in range(n)]
    table = _table(n, split=split)
    ds = dataset_from_table(table, {**SPEC, "split": "split", "val_fraction": 0.25})
    assert len(ds.test) == 6 and len(ds.train) + len(ds.val) == 24 and len(ds.val) > 0
    assert set(np.unique(ds.val.labels)) == {0, 1, 2}


def test_stratified_split_without_split_column_is_seeded():
    table = _table(60)
    a = dataset_from_table(table, {**SPEC, "seed": 1})
    b = dataset_from_table(table, {**SPEC, "seed": 1})
    c = dataset_from_table(table, {**SPEC, "seed": 2})
    _same(a, b)
    assert not np.array_equal(a.test.inputs["img"], c.test.inputs["img"])
    for s in SPLITS:
        assert set(np.unique(a.split(s).labels)) == {0, 1, 2}
    assert len(a.test) == 12 and len(a.val) == 9 and len(a.train) == 39


def test_png_and_jpeg_bytes_decoded_and_resized():
    rng = np.random.default_rng(0)
    gray = [rng.integers(0, 256, (6, 5), dtype=np.uint8) for _ in range(6)]
    table = pa.table({"pic": [_png(g) for g in gray], "s": [[0.0, 1.0]] * 6, "y": ["a", "b"] * 3})
    spec = {"label": "y", "columns": {"pic": "image", "s": "series"}, "val_fraction": 0, "test_fraction": 0}
    ds = dataset_from_table(table, spec)
    x = ds.train.inputs["pic"]
    assert x.shape == (6, 1, 6, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], np.stack(gray) / 255.0, atol=1e-6)  # PNG is lossless

    rgb = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    table = pa.table({"pic": [_png(r, "JPEG") for r in rgb], "s": [[0.0, 1.0]] * 6, "y": ["a", "b"] * 3})
    spec["columns"]["pic"] = {"kind": "image", "size": [4, 4]}
    ds = dataset_from_table(table, spec)
    assert ds.train.inputs["pic"].shape == (6, 3, 4, 4)
    assert ds.modalities[0].channels == 3 and 0 <= ds.train.inputs["pic"].min() <= ds.train.inputs["pic"].max() <= 1


# ------------------------------------------------------------------------------------------------ bad data
BAD = [
    ("missing column", lambda: _table(), {**SPEC, "columns": {"sig": "series", "photo": "image"}}, "photo",
     ["not in the table"]),
    ("series of strings", lambda: _table(sig=["a"] * 12), SPEC, "sig", ["type string", "list<float>"]),
    ("series of lists of strings", lambda: _table(sig=[["a"]] * 12), SPEC, "sig", ["is not a series"]),
    ("image of ints", lambda: _table(img=list(range(12))), SPEC, "img", ["is not an image"]),
    ("float labels", lambda: _table(y=[0.5] * 12), SPEC, "y", ["label type double"]),
    ("inconsistent channel count", lambda: _table(sig=[[[1.0, 2.0]] * (1 + i % 2) for i in range(12)]), SPEC,
     "sig", ["inconsistent channel count", "row 1"]),
    ("channels of different lengths", lambda: _table(sig=[[[1.0, 2.0], [1.0]]] * 12), SPEC, "sig",
     ["row 0", "lengths"]),
    ("NaN in a series", lambda: _table(sig=[[[1.0, 2.0]]] * 7 + [[[1.0, float("nan")]]] + [[[1.0, 2.0]]] * 4), SPEC,
     "sig", ["NaN/inf", "row 7"]),
    ("inf in an image", lambda: _table(img=[[[1.0, 2.0]]] * 3 + [[[float("inf"), 2.0]]] + [[[1.0, 2.0]]] * 8), SPEC,
     "img", ["NaN/inf", "row 3"]),
    ("null row", lambda: _table(sig=[None] + [[1.0]] * 11), SPEC, "sig", ["null", "row 0"]),
    ("null value", lambda: _table(sig=[[1.0]] * 5 + [[1.0, None]] + [[1.0]] * 6), SPEC, "sig", ["null", "row 5"]),
    ("empty series", lambda: _table(sig=[[1.0]] * 4 + [[]] + [[1.0]] * 7), SPEC, "sig", ["row 4", "empty"]),
    ("image sizes differ", lambda: _table(img=[[[1.0, 2.0]]] * 6 + [[[1.0, 2.0, 3.0]]] * 6), SPEC, "img",
     ["inconsistent image size", "row 6"]),
    ("class too small", lambda: _table(y=["a"] * 6 + ["b"] * 4 + ["c"] * 2), SPEC, "y",
     ["class 'c' has 2 rows", "val_fraction=0.2", "test_fraction=0.2"]),
    ("bad split value", lambda: _table(split=["train"] * 10 + ["holdout"] * 2), {**SPEC, "split": "split"}, "split",
     ["holdout"]),
    ("class missing from train", lambda: _table(split=["train"] * 10 + ["test"] * 2, y=["a", "b"] * 5 + ["c"] * 2),
     {**SPEC, "split": "split"}, "y", ["class 'c' has 0 training rows", "at least 2 training rows per class"]),
    ("class only in test, nothing to carve", lambda: _table(split=["train"] * 8 + ["val", "val", "test", "test"],
                                                            y=["a", "b"] * 5 + ["c"] * 2),
     {**SPEC, "split": "split"}, "y", ["class 'c' has 0 training rows", "accepted: at least one training row per "
                                       "class"]),
    ("one class", lambda: _table(y=["a"] * 12), SPEC, "y", ["one class"]),
]


@pytest.mark.parametrize("case, make, spec, column, words", BAD, ids=[b[0] for b in BAD])
def test_bad_data_one_line_error_naming_the_column(case, make, spec, column, words):
    _assert_error(lambda: dataset_from_table(make(), spec), column, *words)


def test_missing_label_or_split_column_is_named_as_the_spec_names_it():
    """Under the field the user wrote (data.label, data.split), with the value and the table's own columns."""
    columns = "not in the table; accepted: one of its columns ['sig', 'img', 'y']"
    with pytest.raises(ValueError) as info:
        dataset_from_table(_table(), {**SPEC, "label": "target"})
    assert str(info.value) == f"data.label: 'target' - {columns}"
    with pytest.raises(ValueError) as info:
        dataset_from_table(_table(), {**SPEC, "split": "fold"})
    assert str(info.value) == f"data.split: 'fold' - {columns}"


def test_empty_table():
    _assert_error(lambda: dataset_from_table(_table().slice(0, 0), SPEC), "y", "no rows")


def test_undecodable_image_bytes():
    table = pa.table({"pic": [b"not an image"] * 4, "s": [[1.0]] * 4, "y": ["a", "b"] * 2})
    spec = {"label": "y", "columns": {"pic": "image", "s": "series"}, "val_fraction": 0, "test_fraction": 0}
    _assert_error(lambda: dataset_from_table(table, spec), "pic", "row 0", "starts b'not an image'", "PNG or JPEG")
    with pytest.raises(ValueError, match="^(?!.*BytesIO)"):  # Pillow's message names only an object address
        dataset_from_table(table, spec)
    whole = _png(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8))
    table = table.set_column(0, "pic", pa.array([whole, whole[:len(whole) // 2], whole, whole]))
    _assert_error(lambda: dataset_from_table(table, spec), "pic", "row 1", "image file is truncated")


def test_encoded_images_of_several_sizes_need_a_size():
    table = pa.table({"pic": [_png(np.zeros((4, 4), np.uint8)), _png(np.zeros((5, 4), np.uint8))] * 2,
                      "s": [[1.0]] * 4, "y": ["a", "b"] * 2})
    spec = {"label": "y", "columns": {"pic": "image", "s": "series"}, "val_fraction": 0, "test_fraction": 0}
    _assert_error(lambda: dataset_from_table(table, spec), "pic", "several sizes", "size: [height, width]")
    spec["columns"]["pic"] = {"kind": "image", "size": [3, 3]}
    assert dataset_from_table(table, spec).train.inputs["pic"].shape == (4, 1, 3, 3)


def test_spec_errors_name_the_field():
    with pytest.raises(ValueError, match=r"^data.columns.sig.kind: 'video' not accepted"):
        TableSpec.from_dict({**SPEC, "columns": {"sig": "video"}})
    with pytest.raises(ValueError, match=r"^data: unknown keys \['labels'\]"):
        TableSpec.from_dict({"labels": "y", "columns": {"sig": "series"}})
    with pytest.raises(ValueError, match=r"^data.columns.img: unknown keys \['resize'\]"):
        TableSpec.from_dict({**SPEC, "columns": {"img": {"kind": "image", "resize": 3}}})
    with pytest.raises(ValueError, match=r"^data.val_fraction"):
        TableSpec.from_dict({**SPEC, "val_fraction": 1.5})


# ------------------------------------------------------------------------------------------------ Parquet
def test_arrow_roundtrip_keeps_every_split():
    ds = synthetic(90, 16, 3, channels=2, image=True, variable_length=True)
    table = dataset_to_table(ds)
    assert table.column("series").type == pa.list_(pa.list_(pa.float32()))
    back = dataset_from_table(table)  # the spec comes from the table's metadata
    _same(ds, back)


def test_parquet_file_roundtrip(tmp_path):
    ds = synthetic(60, 12, 3, image=True, variable_length=True)
    path = write_parquet(ds, tmp_path / "syn.parquet")
    _same(ds, read_parquet(path))
    spec = {"label": "label", "split": "split", "columns": {"series": "series", "image": "image"}}
    back = read_parquet(path, spec)
    _same(ds, back)
    assert back.name == "syn"


def test_roundtrip_keeps_empty_splits_empty(tmp_path):
    ds = synthetic(30, 8, 3, val_fraction=0.0, test_fraction=0.0)
    assert len(ds.train) == 30 and len(ds.val) == len(ds.test) == 0
    _same(ds, read_parquet(write_parquet(ds, tmp_path / "all-train.parquet")))


def test_parquet_directory_and_hive_split(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 36), ("test", 9)):
        part = tmp_path / "data" / f"split={split}"
        part.mkdir(parents=True)
        for i in range(3):  # several files per partition
            rows = n // 3
            pq.write_table(pa.table({"x": rng.normal(size=(rows, 7)).tolist(), "y": [0, 1, 2] * (rows // 3)}),
                           part / f"part-{i}.parquet")
    spec = {"label": "y", "split": "split", "columns": {"x": "series"}}
    ds = read_parquet(tmp_path / "data", spec)
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (36, 9)
    assert ds.train.inputs["x"].shape[1:] == (1, 7) and not ds.train.valid


def test_parquet_schema_checked_before_rows_are_read(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(_table(), path)
    _assert_error(lambda: read_parquet(path, {**SPEC, "columns": {"nope": "series"}}), "nope", "not in the table")
    with pytest.raises(ValueError, match=r"^data.label: 'sig' - label type list<"):
        read_parquet(path, {**SPEC, "columns": {"y": "series"}, "label": "sig"})
    with pytest.raises(ValueError, match=r"^data.path: .* does not exist"):
        read_parquet(tmp_path / "missing.parquet", SPEC)
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"^data.path: .* not readable as Parquet"):
        read_parquet(tmp_path / "junk.parquet", SPEC)


def test_parquet_directory_without_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".gitkeep").write_text("")
    with pytest.raises(ValueError, match=r"^data.path: .*empty' holds no Parquet files; accepted: a Parquet file"):
        read_parquet(tmp_path / "empty", SPEC)


def test_parquet_files_disagreeing_on_a_column_type(tmp_path):
    """Arrow takes the schema from the first file and fails to cast the others: the error names column and file."""
    (tmp_path / "d").mkdir()
    pq.write_table(_table(), tmp_path / "d" / "a.parquet")
    pq.write_table(_table(sig=["1 2 3"] * 12), tmp_path / "d" / "b.parquet")
    with pytest.raises(ValueError) as info:
        read_parquet(tmp_path / "d", SPEC)
    message = str(info.value)
    assert "\n" not in message and message.startswith("data.path: "), message
    assert "column sig is list<element: list<element: double>> in a.parquet but string in b.parquet" in message
    assert "accepted: one type per column in every file" in message


def test_load_data_from_a_spec_section(tmp_path):
    table = _table(30, split=["train"] * 24 + ["test"] * 6)
    pq.write_table(table, tmp_path / "mine.parquet")
    section = {"path": "mine.parquet", "label": "y", "split": "split", "view": "gaf", "view_size": 8,
               "columns": {"sig": "series", "img": {"kind": "image"}}}
    ds = load_data(section, root=tmp_path)
    assert [m.name for m in ds.modalities] == ["sig", "img", "sig_gaf"]
    assert ds.train.inputs["sig_gaf"].shape[1:] == (2, 8, 8)
    with pytest.raises(ValueError, match="either name .* or path"):
        load_data({"name": "osuleaf", "path": "x"})
    with pytest.raises(ValueError, match=r"unknown keys \['label'\]"):
        load_data({"name": "osuleaf", "label": "y"})


def test_search_style_data_trains(tmp_path):
    """A Parquet file with a series and an image column, declared only in the spec, trains a model."""
    from emule_models import ModelConfig, build_model
    from emule_models.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    n = 24
    labels = np.arange(n) % 2
    images = [_png((rng.random((8, 8)) * 255 * (0.5 + c / 2)).astype(np.uint8)) for c in labels]
    series = [(rng.normal(size=10 + i % 3) + c).tolist() for i, c in enumerate(labels)]
    pq.write_table(pa.table({"sig": series, "pic": images, "cls": ["on" if c else "off" for c in labels]}),
                   tmp_path / "d.parquet")
    ds = load_data({"path": str(tmp_path / "d.parquet"), "label": "cls", "columns": {"sig": "series",
                                                                                       "pic": "image"}})
    cfg = ModelConfig(ds.modalities, len(ds.classes), width=8, heads=2, depth=1, patch_len=4, image_patch=4)
    metrics = fit(build_model(cfg), ds.train, ds.val, TrainConfig(epochs=1, batch_size=8))
    assert 0 <= metrics["val_accuracy"] <= 1


# ------------------------------------------------------------------------------------------------ writers
def test_series_and_nested_arrays():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert series_array(x, np.array([4, 2])).to_pylist()[1] == [[12, 13], [16, 17], [20, 21]]
    assert nested_array(x).to_pylist() == x.tolist()


# ------------------------------------------------------------------------------------------------ views
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_views_shapes_and_variable_length(view):
    ds = synthetic(30, 40, 3, channels=2, variable_length=True)
    out = with_view(ds, view, size=8)
    image = out.train.inputs[f"series_{view}"]
    channels = 1 if view == "silhouette" else 2
    assert image.shape == (len(ds.train), channels, 8, 8) and np.isfinite(image).all()
    assert out.modalities[-1].channels == channels


def test_gaf_is_symmetric_and_in_range():
    from emule_models.data.views import gramian_angular_field

    g = gramian_angular_field(np.random.default_rng(0).normal(size=(4, 1, 50)).astype(np.float32), size=16)
    np.testing.assert_allclose(g, g.swapaxes(-1, -2), atol=1e-6)
    assert g.min() >= -1 - 1e-6 and g.max() <= 1 + 1e-6
    ramp = gramian_angular_field(np.linspace(0, 1, 30, dtype=np.float32)[None, None], size=5)[0, 0]
    assert ramp[0, 0] == pytest.approx(1) and ramp[-1, -1] == pytest.approx(1)  # cos(2 * pi), cos(0)
    assert ramp[0, -1] == pytest.approx(-1, abs=1e-6)  # cos(pi + 0)


def test_view_of_a_missing_series():
    ds = synthetic(30, 16, 3)
    with pytest.raises(ValueError, match=r"^data.view: 'fft' not accepted"):
        with_view(ds, "fft")
    with pytest.raises(ValueError, match=r"^data.view: 'gaf' needs a series modality named 'x'"):
        with_view(ds, "gaf", source="x")


# ------------------------------------------------------------------------------------------------ built-ins
def test_builtins_load_offline_and_match_descriptions():
    assert {"osuleaf", "plaid", "basicmotions"} <= set(BUILTIN)
    plaid = load_builtin("plaid")
    assert len(plaid.classes) == 11 and plaid.modalities[0].length == 1344
    assert len(plaid.train) + len(plaid.val) == 537 and len(plaid.test) == 537
    steps = np.concatenate([plaid.split(s).valid["current"].sum(1) for s in SPLITS])
    assert steps.min() == 100 and steps.max() == 1344
    motions = load_builtin("basicmotions", view="spectrogram", view_size=8)
    assert [m.name for m in motions.modalities] == ["accel", "gyro", "accel_spectrogram", "gyro_spectrogram"]
    assert motions.train.inputs["gyro"].shape[1:] == (3, 100)
    leaf = load_builtin("osuleaf")
    assert [m.name for m in leaf.modalities] == ["outline", "silhouette"]
    for name in BUILTIN:
        ds = load_builtin(name)
        numbers = [int(v) for v in re.findall(r"\d+", BUILTIN[name].description)]
        assert len(ds.classes) in numbers and len(ds.test) in numbers


def test_the_catalogue_lists_what_the_builtins_decode_to():
    """`emule datasets` reads the catalogue, not the data: every entry must say what loading gives."""
    from emule_models.catalogue import CATALOGUE
    from emule_models.data import describe_builtins

    assert list(CATALOGUE) == list(BUILTIN)
    for row in describe_builtins():
        entry = CATALOGUE[row["name"]]
        assert (entry.classes, entry.train, entry.val, entry.test, entry.modalities) == (
            row["classes"], row["train"], row["val"], row["test"], row["modalities"]), row["name"]
        assert entry.description == row["description"] and row["unlabelled"] == 0


def test_builtin_as_parquet(tmp_path):
    ds = load_builtin("basicmotions")
    _same(ds, read_parquet(write_parquet(ds, tmp_path / "bm.parquet")))


def test_a_builtin_is_parsed_once_then_read_back_from_the_cache(tmp_path, monkeypatch):
    from emule_models.data.builtin import CACHE_ENV, cached_table, table_cache_dir

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    parse = BUILTIN["gunpoint"].table.__wrapped__  # the parser itself, past the per-process memo
    parsed = []

    def counted() -> pa.Table:
        parsed.append(1)
        return parse()

    stale = table_cache_dir() / "gunpoint-0000000000000000.arrow"  # an earlier layout's: replaced
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    first = cached_table("gunpoint", counted)
    [path] = table_cache_dir().glob("gunpoint-*.arrow")
    assert cached_table("gunpoint", counted).equals(first, check_metadata=True) and len(parsed) == 1
    path.write_bytes(path.read_bytes()[:1000])  # a file left partial: parsed again and written whole
    assert cached_table("gunpoint", counted).equals(first, check_metadata=True) and len(parsed) == 2
    assert cached_table("gunpoint", counted).equals(first, check_metadata=True) and len(parsed) == 2
    assert [p.name for p in table_cache_dir().iterdir()] == [path.name]  # no temporary file left beside it
    monkeypatch.setenv(CACHE_ENV, "/proc/no-cache-here")  # a cache that cannot be written costs only the parse
    assert cached_table("gunpoint", counted).equals(first, check_metadata=True) and len(parsed) == 3


def test_a_process_loading_a_cached_builtin_does_not_import_its_package(tmp_path):
    """What the cache is for: each trial's actor, each command, loads the table without importing sktime."""
    import subprocess
    import sys

    env = {**os.environ, "EMULE_CACHE_DIR": str(tmp_path)}
    load = ("import sys; from emule_models.data import load_builtin; d = load_builtin('osuleaf'); "
            "print(len(d.train), 'sktime' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", load], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs == ["159 True\n", "159 False\n"], runs


# ------------------------------------------------------------------------------------------------ synthetic
def test_synthetic():
    ds = synthetic(200, 32, 4, label_noise=0.25, channels=3, image=True, seed=1)
    assert ds.train.inputs["series"].shape[1:] == (3, 32) and ds.train.inputs["image"].shape[1:] == (1, 16, 16)
    assert set(np.unique(ds.test.labels)) == {0, 1, 2, 3}
    clean = synthetic(200, 32, 4, label_noise=0.0, channels=3, image=True, seed=1)
    flipped = (clean.train.labels != ds.train.labels).mean()
    assert 0.1 < flipped < 0.4
    np.testing.assert_array_equal(clean.test.labels, ds.test.labels)  # val/test stay clean
    _same(synthetic(50, 8, 2, seed=3), synthetic(50, 8, 2, seed=3))
    with pytest.raises(ValueError, match="label_noise"):
        synthetic(50, 8, 2, label_noise=1.0)


# ------------------------------------------------------------------------------------------------ unlabelled rows
def test_null_labels_are_unlabelled_rows_in_no_split(tmp_path):
    n = 30
    labels = [None if i % 6 == 5 else f"k{i % 3}" for i in range(n)]
    split = ["test" if i % 5 == 0 and labels[i] else "train" for i in range(n)]
    ds = dataset_from_table(_table(n, y=labels, split=split), {**SPEC, "split": "split", "val_fraction": 0.25})
    assert len(ds.unlabelled) == 5 and (ds.unlabelled.labels == -1).all()
    assert len(ds.train) + len(ds.val) + len(ds.test) == n - 5
    assert all((ds.split(s).labels >= 0).all() for s in SPLITS)
    assert ds.describe()["unlabelled"] == 5
    np.testing.assert_array_equal(ds.unlabelled.valid["sig"].sum(1), [5 + i % 4 for i in range(5, n, 6)])
    back = read_parquet(write_parquet(ds, tmp_path / "semi.parquet"))  # written back as null labels in train
    _same(ds, back)
    np.testing.assert_allclose(back.unlabelled.inputs["sig"], ds.unlabelled.inputs["sig"])
    viewed = with_view(ds, "spectrogram", 8)  # a view covers the unlabelled rows too
    assert viewed.unlabelled.inputs["sig_spectrogram"].shape[0] == 5


def test_unlabelled_rows_keep_their_row_number_and_id(tmp_path):
    """Each unlabelled row names where it came from: its 0-based row in the table, and its id where data.id is set
    (integers or strings); a labelled-only table keeps none, and nothing else changes."""
    n = 30
    labels = [None if i % 6 == 5 else f"k{i % 3}" for i in range(n)]
    split = ["test" if i % 5 == 0 and labels[i] else "train" for i in range(n)]
    table = _table(n, y=labels, split=split, key=[f"id-{i}" for i in range(n)])
    spec = {**SPEC, "split": "split", "val_fraction": 0.25}
    plain = dataset_from_table(table, spec)
    np.testing.assert_array_equal(plain.unlabelled_rows, np.arange(5, n, 6))
    assert plain.unlabelled_ids is None
    named = dataset_from_table(table, {**spec, "id": "key"})
    assert named.unlabelled_ids.tolist() == [f"id-{i}" for i in range(5, n, 6)]
    _same(plain, named)
    whole = dataset_from_table(_table(n, y=labels, split=split, key=list(range(100, 100 + n))), {**spec, "id": "key"})
    assert whole.unlabelled_ids.tolist() == list(range(105, 100 + n, 6))
    pq.write_table(table, tmp_path / "t.parquet")
    loaded = load_data({"path": str(tmp_path / "t.parquet"), **spec, "id": "key"})
    np.testing.assert_array_equal(loaded.unlabelled_rows, np.arange(5, n, 6))
    assert loaded.unlabelled_ids.tolist() == named.unlabelled_ids.tolist()
    labelled = dataset_from_table(_table(), SPEC)
    assert labelled.unlabelled is None and labelled.unlabelled_rows is None and labelled.unlabelled_ids is None
    assert "id" not in TableSpec(label="y", columns={"s": "series"}).to_dict()  # stored specs read as before


def test_a_bad_id_column_is_refused_in_one_line():
    spec = {**SPEC, "id": "key"}
    _assert_error(lambda: dataset_from_table(_table(key=[f"r{i}" for i in range(11)] + ["r3"]), spec), "key",
                  "1 value(s) on more than one row, first 'r3' at rows [3, 11]", "a unique value per row")
    _assert_error(lambda: dataset_from_table(_table(key=[None] + [f"r{i}" for i in range(11)]), spec), "key",
                  "1 null value(s), first at row 0")
    _assert_error(lambda: dataset_from_table(_table(key=[float(i) for i in range(12)]), spec), "key",
                  "id type double not accepted", "string or integer ids")
    _assert_error(lambda: dataset_from_table(_table(), spec), "key", "not in the table")
    with pytest.raises(ValueError, match="data.id: 'y' is also the label"):
        TableSpec(label="y", columns={"sig": "series"}, id="y")


def test_unlabelled_rows_refused_in_validation_or_test():
    labels = [f"k{i % 3}" for i in range(12)]
    labels[10] = None
    split = ["train"] * 9 + ["test"] * 3
    _assert_error(lambda: dataset_from_table(_table(y=labels, split=split), {**SPEC, "split": "split"}), "y",
                  "1 unlabelled (null) label(s) in the 'test' split, first at row 10", "'train' only")
    _assert_error(lambda: dataset_from_table(_table(y=pa.array([None] * 12, pa.string())), SPEC), "y",
                  "every label is null")
