"""The CLI as tests run it. ``run_search_on`` runs ``emule search`` on many bad specs in one process and checks each
was refused cleanly: exit code 2, one stderr line ``emule search: ...`` containing the text the spec's first line
expects (``# expect: <text>``), no traceback, Ray never imported (shared by the bad-spec and bad-dataset corpora).
``cli`` runs one command in this process."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

from search.cli import main

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


def run_search_on(specs: list[Path], cwd: Path) -> dict[str, dict]:
    """``emule search <spec>`` for each spec, in one process started in the empty folder ``cwd``; each spec's
    outcome by its path. Asserts that nothing was written to ``cwd`` (no mlflow.db, no runs)."""
    proc = subprocess.run([sys.executable, "-c", RUNNER, *map(str, specs)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not any(cwd.iterdir()), f"something was written: {list(cwd.iterdir())}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def assert_refused(result: dict, path: Path) -> None:
    """One line naming the problem, exit code 2, no traceback, nothing started."""
    lines = result["stderr"].strip().splitlines()
    assert result["code"] == 2, result
    assert len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    assert lines[0].startswith("emule search: ")
    assert expected(path) in lines[0], lines[0]
    assert not result["ray"]


def cli(*args: str) -> tuple[int, str, str]:
    """``emule ARGS`` in this process: exit code, stdout, stderr (picklable streams: Tune pickles the search's
    callback, which prints to the stdout of its start)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()
