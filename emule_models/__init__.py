"""EMuLe's model family: multimodal Transformer classifiers with pluggable efficient attention.

Imports torch only; knows nothing of Ray, Optuna or MLflow.
"""

from emule_models.config import ModalitySpec, ModelConfig
from emule_models.model import MultimodalClassifier, build_model

__all__ = ["ModalitySpec", "ModelConfig", "MultimodalClassifier", "build_model"]
