"""requirements.lock, what `make setup` and CI install, agrees with pyproject.toml: every package the project and its
test and deploy extras name is pinned there, at a version its range accepts, and no CUDA package came in with torch."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as the lock itself
ROOT = Path(__file__).parents[1]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def test_every_declared_dependency_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"] + \
        project["optional-dependencies"]["deploy"]
    locked = pins()
    for text in declared:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "torch":  # installed first, from the Makefile's TORCH (the CPU build), not from the lock
            assert name not in locked
            continue
        assert name in locked, f"{req.name} is declared in pyproject.toml but not pinned: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), \
            f"{req.name}=={locked[name]} in requirements.lock is outside pyproject's {req.specifier}: run `make lock`"


def test_the_lock_holds_no_cuda_packages():
    assert not [name for name in pins() if name.startswith("nvidia-")]
