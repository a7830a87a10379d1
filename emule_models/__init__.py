"""EMuLe's model family: multimodal Transformer classifiers with pluggable efficient attention.

Imports torch only; knows nothing of Ray, Optuna or MLflow. The names below are loaded on first use (PEP 562): a
torch-free module of the package - the built-in datasets' catalogue that ``emule datasets`` lists - then starts
without importing torch, which alone takes over a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emule_models.config import ModalitySpec, ModelConfig
    from emule_models.model import MultimodalClassifier, build_model

_HOME = {"ModalitySpec": "config", "ModelConfig": "config", "MultimodalClassifier": "model", "build_model": "model"}
__all__ = ["ModalitySpec", "ModelConfig", "MultimodalClassifier", "build_model"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value  # looked up once
    return value
