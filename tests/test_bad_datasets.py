"""The bad-dataset corpus: every malformed dataset in tests/bad_inputs/datasets (a Parquet file, folder or other
file, and a spec of the same stem pointing at it) is refused by the real CLI with one line naming the problem and
exit code 2, with no traceback and nothing started (Ray never imported, no runs, no MLflow store).

Each spec's first line says what the error must contain: ``# expect: <text>``. The corpus is written by
tests/bad_inputs/make_datasets.py, each case one defect away from a table that ``emule search`` accepts.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from cli_runner import assert_refused, run_search_on

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
SPECS = sorted((CORPUS / "datasets").glob("*.yaml"))


def _generator():
    """tests/bad_inputs/make_datasets.py as a module (registered first: its dataclasses look themselves up)."""
    if "make_datasets" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_datasets", CORPUS / "make_datasets.py")
        sys.modules["make_datasets"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["make_datasets"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_search_on(SPECS, tmp_path_factory.mktemp("bad-datasets"))


def test_corpus_is_large_enough_and_current():
    assert len(SPECS) >= 15
    assert sorted(p.stem for p in SPECS) == sorted(_generator().CASES)  # rerun make_datasets.py after a change
    size = sum(p.stat().st_size for p in (CORPUS / "datasets").rglob("*") if p.is_file())
    assert size < 1_000_000


def test_unbroken_table_is_accepted(tmp_path):
    """Each case breaks one thing of this table: the refusals are about the defect, not about the rest."""
    from search.driver.checks import load_spec

    spec = load_spec(_generator().write_baseline(tmp_path))
    assert spec.data.path == str(tmp_path / "leaves.parquet")


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bad_dataset_refused_cleanly(outcomes, path):
    assert_refused(outcomes[str(path)], path)
