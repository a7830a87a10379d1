"""EMuLe: multi-objective searches for small, fast, data-frugal multimodal Transformers, from Python.

    import search

    spec = search.load_spec("spaces/quickstart.yaml")      # checked before any compute
    result = search.run_search(spec, num_cpus=2)            # Ray Tune + Optuna, recorded in MLflow
    result.front                                             # the Pareto front, a pandas DataFrame
    result.best, result.knee, result.baselines, result.mlflow_url
    search.export(result, "exports/", how="knee")            # YAML files to train and deploy
    search.train("exports/<file>.yaml", "model.pt")          # trained again from scratch, test metrics back

    later, from any folder: search.open_search(result.name, tracking_uri=...)
    after a crash or Ctrl-C: search.resume_search(result.name)

The names above are the API; the subpackages (the spec, the trial, the front, the record, the driver, delivery)
are internal and may change. The command line (``emule``) offers the same and more.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.api import Search, SpecError, export, load_spec, open_search, resume_search, run_search, train

__all__ = ["Search", "SpecError", "export", "load_spec", "open_search", "resume_search", "run_search", "train"]


def __getattr__(name: str) -> Any:
    # The API is imported on first use: Ray's workers and the CLI import modules of this package without paying
    # for Ray, MLflow and pandas at start-up.
    if name in __all__:
        return getattr(importlib.import_module("search.api"), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
