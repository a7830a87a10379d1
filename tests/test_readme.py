"""The README's serving snippets run as written: its Python blocks of "Deploying a candidate", in order in one
namespace, against small PLAID candidates trained and exported here with the real CLI (ONNX Runtime, a SQLite
MLflow registry). Only the placeholder file names are replaced. Their outputs must equal the trained model's on
the same rows as the loader decodes them, so the inputs the README builds (padding, masks, normalisation, a
derived view) are the ones the model was trained on. The `mlflow models serve` shell block is not run here."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emule_models.data import load_data
from search.cli import main
from search.driver.checks import parse_spec
from search.trial.candidate import load_weights, resolve, spec_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Deploying a candidate"


def python_blocks(text: str, section: str) -> list[str]:
    """The ```python blocks of one ``## `` section, in order."""
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def trained_candidate(folder: Path, name: str, data: dict) -> Path:
    """A small PLAID candidate, exported as `emule export` writes it and trained by `emule train` (one epoch)."""
    spec = parse_spec({"name": name, "data": data, "baselines": [],
                       "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0}],
                       "space": {"depth": [1]}, "training": {"epochs": 1, "batch_size": 64}})
    dataset = spec_dataset(spec)
    cand = resolve(spec, {"attention": "linear", "depth": 1, "width": 8, "heads": 2, "patch_len": 64},
                   dataset.modalities, len(dataset.classes))
    config = folder / f"{name}-a1b2c3.yaml"
    config.write_text(yaml.safe_dump(cand.to_dict(), sort_keys=False))
    assert main(["train", str(config), "--threads", "1"]) == 0
    return config


@pytest.mark.slow
def test_readme_serving_snippets_run_as_written(tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.chdir(tmp_path)  # the README's sqlite:///mlflow.db, and MLflow's ./mlruns, live here
    exports = tmp_path / "exports"
    exports.mkdir()
    plain = trained_candidate(exports, "plaid", {"name": "plaid", "cv_folds": "holdout"})
    gaf = trained_candidate(exports, "plaid-gaf", {"name": "plaid", "cv_folds": "holdout", "view": "gaf"})
    assert main(["export", str(plain), "--format", "onnx", "--register", "plaid-classifier",
                 "--tracking-uri", "sqlite:///mlflow.db"]) == 0
    assert main(["export", str(gaf), "--format", "onnx"]) == 0
    capsys.readouterr()

    blocks = python_blocks(README.read_text(), SECTION)
    assert len(blocks) == 4, "the section's Python blocks changed: update this test"
    names = {"exports/plaid-...-<trial>.onnx": plain.with_suffix(".onnx"),
             "exports/plaid-gaf-...-<trial>.onnx": gaf.with_suffix(".onnx")}
    before = os.environ.get("MLFLOW_TRACKING_URI")
    namespace: dict = {}
    outputs = []
    try:
        for block in blocks:
            for placeholder, path in names.items():
                block = block.replace(f'"{placeholder}"', repr(str(path)))
            assert "<trial>" not in block, block
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
            outputs.append((namespace.get("logits"), printed.getvalue()))
            namespace.pop("logits", None)
    finally:
        mlflow.set_tracking_uri(before)

    def torch_logits(config: Path, data: dict) -> np.ndarray:
        """The trained model on the last five test rows, as the loader decodes them (the README's five rows)."""
        test = load_data(data).test
        inputs, valid, _ = test.batch(np.arange(len(test) - 5, len(test)))
        with torch.no_grad():
            return load_weights(config.with_suffix(".pt")).eval()(inputs, valid).numpy()

    expected = torch_logits(plain, {"name": "plaid"})
    (none, _), (onnx, printed), (onnx_gaf, _), (registered, _) = outputs
    assert none is None and expected.shape == (5, 11)
    np.testing.assert_allclose(onnx, expected, rtol=1e-3, atol=1e-4)
    classes = load_data({"name": "plaid"}).classes
    assert printed.strip() == str([classes[i] for i in expected.argmax(1)])
    np.testing.assert_allclose(onnx_gaf, torch_logits(gaf, {"name": "plaid", "view": "gaf"}), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(registered, expected, rtol=1e-3, atol=1e-4)
