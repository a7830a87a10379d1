"""A search on a user's own Parquet data, declared only in the spec: real OSULeaf rows written as Parquet with a
series column (list<float>) and an image column (PNG bytes), searched over data fraction and every selection
strategy with a real Ray, Optuna and MLflow store. The proxy's quality scores are computed once per search."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from emule_models.data import load_builtin
from search.driver.checks import load_spec
from search.driver.runner import run_search
from search.record.tracking import Tracker
from search.spec.schema import SpecError
from search.trial import validation

pytestmark = pytest.mark.slow


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((image[0] * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_leaves(path):
    """OSULeaf as a user would bring it: one row per leaf, a species name, a split column."""
    data = load_builtin("osuleaf")
    rows = {"species": [], "split": [], "outline": [], "photo": []}
    for split in ("train", "val", "test"):
        part = data.split(split)
        rows["species"] += [f"species-{data.classes[i]}" for i in part.labels]
        rows["split"] += [split] * len(part)
        rows["outline"] += [row[0].tolist() for row in part.inputs["outline"]]
        rows["photo"] += [png(img) for img in part.inputs["silhouette"]]
    table = pa.table({"species": rows["species"], "split": rows["split"],
                      "outline": pa.array(rows["outline"], type=pa.list_(pa.float32())),
                      "photo": pa.array(rows["photo"], type=pa.binary())})
    pq.write_table(table, path)
    return table


def spec_file(tmp_path, **data_changes):
    data = {"path": "leaves.parquet", "label": "species", "split": "split",
            "columns": {"outline": "series", "photo": {"kind": "image", "size": [32, 32]}}, **data_changes}
    path = tmp_path / "leaves.yaml"
    path.write_text(yaml.safe_dump({
        "name": "leaves", "data": data, "proxy": {"epochs": 2, "seeds": 2, "width": 16},
        "baselines": [],  # the baselines have tests of their own (test_accuracy.py)
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "training_compute", "mode": "min", "reference": 1e13, "log": True}],
        "space": {"attention": ["softmax", "linear"], "depth": 1, "width": 16, "heads": 2, "patch_len": 32,
                  "data_fraction": [0.3, 0.6], "selection": ["random", "el2n", "kcenter", "ccs"]},
        "training": {"epochs": 2},
        "search": {"sampler": "random", "trials": 6, "concurrency": 2, "seed": 2, "storage": str(tmp_path / "runs")},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "leaves"},
    }))
    return path


def test_search_on_user_parquet(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the score cache (.emule/scores) lands here
    write_leaves(tmp_path / "leaves.parquet")
    spec = load_spec(spec_file(tmp_path))  # relative path: taken from the spec's folder
    out = io.StringIO()
    result = run_search(spec, name="leaves-1", out=out)
    assert result.status == "complete" and result.finished == 6, out.getvalue()
    assert out.getvalue().count("quality scores for subset selection") == 1  # once per search, not per trial
    assert len(list((tmp_path / ".emule" / "scores").glob("*.npz"))) == 1
    runs = Tracker(spec.tracking.uri, "leaves").candidates(result.parent_run_id)
    # the refit behind test_accuracy learns from its fraction of OSULeaf's whole train split, per class - with a
    # floor of rows per class, since OSULeaf's rarest class has fewer rows than tiny data's threshold
    per_class = np.bincount(load_builtin("osuleaf").pool.labels)
    floor = validation.class_floor(load_builtin("osuleaf").pool.labels)
    assert floor > 1
    for r in runs:
        fraction = float(r.data.params["data_fraction"])
        expected = sum(min(n, max(floor, round(fraction * n))) for n in per_class)
        assert r.data.metrics["train_samples"] == expected
        assert r.data.metrics["training_compute"] > 0
    assert {r.data.params["selection"] for r in runs} <= {"random", "el2n", "kcenter", "ccs"}


def test_bad_user_data_refused_before_ray(tmp_path):
    write_leaves(tmp_path / "leaves.parquet")
    with pytest.raises(SpecError, match=r"data.columns.shape"):
        load_spec(spec_file(tmp_path, columns={"outline": "series", "shape": {"kind": "image"}}))
