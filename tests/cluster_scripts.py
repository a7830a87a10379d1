"""cluster/ holds scripts, not a package: load one as a module for the tests that drive it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def load(name: str):
    """``cluster/<name>.py`` as a module (registered in sys.modules: its dataclasses look their module up)."""
    module_name = f"emule_cluster_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if str(CLUSTER) not in sys.path:  # the scripts import each other, as when run from cluster/
        sys.path.insert(0, str(CLUSTER))
    spec = importlib.util.spec_from_file_location(module_name, CLUSTER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
