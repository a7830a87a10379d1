"""How far a spec travels on the driver: the modules of ``search`` whose functions receive it, from ``run_search``
until the search ends - a measure of how the driver's code is laid out, not of its speed.

A tiny real search (GunPoint, 2 candidates x 1 epoch, a local Ray instance, MLflow in a temp dir) runs under a
profiler that records every call into a module of ``search`` whose arguments include the ``Spec`` object, or an
object that holds it as ``spec`` (a method's ``self``); the spec's own methods do not count. Printed: the distinct
modules called so, and how often the calls come back to a module they had left (the sequence of modules with repeats
collapsed: A B A counts one return). Run on another checkout (``git worktree``), it measures that layout: modules
are found by their name in either layout (``search.runner`` or ``search.driver.runner``).

    python bench/spec_path.py
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def module(*names: str):
    """The first of ``names`` that imports (the module's path in this layout)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {names}")


def main() -> None:
    parse_spec = module("search.driver.checks", "search.spec_checks").parse_spec
    spec_type = module("search.spec.schema", "search.spec").Spec
    run_search = module("search.driver.runner", "search.runner").run_search
    tmp = tempfile.mkdtemp(prefix="emule-spec-path-")
    spec = parse_spec({
        "name": "trace", "data": {"name": "gunpoint", "cv_folds": "holdout"}, "baselines": [],
        "objectives": [{"metric": "val_accuracy", "mode": "max", "reference": 0.0},
                       {"metric": "param_count", "mode": "min", "reference": 1e6, "log": True}],
        "space": {"attention": ["softmax"], "depth": [1], "width": [16], "heads": [1], "patch_len": [16]},
        "training": {"epochs": 1, "batch_size": 32},
        "search": {"sampler": "random", "trials": 2, "concurrency": 1, "seed": 1, "storage": f"{tmp}/runs"},
        "tracking": {"uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "trace"},
    })
    os.chdir(tmp)  # caches land in the temp dir
    calls: list[str] = []

    def profile(frame, event, arg):  # noqa: ARG001  (the profiler's signature)
        name = frame.f_globals.get("__name__", "")
        if event != "call" or not name.startswith("search."):
            return
        code = frame.f_code
        arguments = list(frame.f_locals.values())[: code.co_argcount + code.co_kwonlyargcount]
        if name == spec_type.__module__ and arguments and isinstance(arguments[0], spec_type):
            return  # the spec's own methods and properties (spec.metrics, spec.storage_uri()): no hand-off
        # the spec itself, or an object that carries it (a method's ``self`` holding ``spec``)
        if any(isinstance(v, spec_type) or isinstance(getattr(v, "spec", None), spec_type) for v in arguments):
            calls.append(name)

    sys.setprofile(profile)
    try:
        run_search(spec, name="trace-run", out=io.StringIO(), num_cpus=2)
    finally:
        sys.setprofile(None)
    path = [m for i, m in enumerate(calls) if i == 0 or calls[i - 1] != m]
    seen: set[str] = set()
    returns = 0
    for m in path:
        returns += m in seen
        seen.add(m)
    print(f"modules the spec passes through: {len(seen)}; calls that return to a module left before: {returns}")
    print("  " + " ".join(sorted(seen)))
    if "--path" in sys.argv:
        print("  path: " + " > ".join(m.removeprefix("search.") for m in path))


if __name__ == "__main__":
    main()
