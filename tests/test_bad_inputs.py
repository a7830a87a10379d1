"""The bad-input corpus: every malformed spec in tests/bad_inputs/specs is refused by the real CLI with one
line naming the problem and a non-zero exit, with no traceback and nothing started (Ray never imported, no
experiment folder, no MLflow store).

Each file's first line says what the error must contain: ``# expect: <text>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import assert_refused, run_search_on

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
SPECS = sorted((CORPUS / "specs").glob("*.yaml"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_search_on(SPECS, tmp_path_factory.mktemp("bad-specs"))


def test_corpus_is_large_enough():
    assert len(SPECS) >= 30


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bad_spec_refused_cleanly(outcomes, path):
    assert_refused(outcomes[str(path)], path)
