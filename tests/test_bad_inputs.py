"""The bad-input corpus: every malformed spec in tests/bad_inputs/specs is refused by the real CLI with one
line naming the problem and a non-zero exit, with no traceback and nothing started (Ray never imported, no
experiment folder, no MLflow store).

Each file's first line says what the error must contain: ``# expect: <text>``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
SPECS = sorted((CORPUS / "specs").glob("*.yaml"))

# One process runs the CLI on every file: the start-up cost is paid once, and `ray` staying unimported across
# all of them shows that none got as far as starting anything.
RUNNER = """
import contextlib, io, json, sys
from search.cli import main
out = {}
for path in sys.argv[1:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["search", path])
        except SystemExit as e:
            code = e.code
        except BaseException as e:
            code, err = "raised", io.StringIO(repr(e))
    out[path] = {"code": code, "stderr": err.getvalue(), "ray": "ray" in sys.modules}
print(json.dumps(out))
"""


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("bad-specs")
    proc = subprocess.run([sys.executable, "-c", RUNNER, *map(str, SPECS)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not any(cwd.iterdir()), f"something was written: {list(cwd.iterdir())}"  # no mlflow.db, no runs
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_corpus_is_large_enough():
    assert len(SPECS) >= 30


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bad_spec_refused_cleanly(outcomes, path):
    result = outcomes[str(path)]
    lines = result["stderr"].strip().splitlines()
    assert result["code"] == 2, result
    assert len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    assert lines[0].startswith("emule search: ")
    assert expected(path) in lines[0], lines[0]
    assert not result["ray"]
