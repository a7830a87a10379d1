"""Attention variants, one module each, registered by name in ``ATTENTION`` (an ``emule_models.registry.Registry``).

Variants are imported explicitly here (no directory scanning): adding one means adding a module and a line.
"""

from emule_models.attention import (  # noqa: F401  (registers the variants)
    cosformer,
    linear,
    linformer,
    local,
    nystrom,
    performer,
    softmax,
)
from emule_models.attention.base import ATTENTION, Attention, AttentionShape

__all__ = ["ATTENTION", "Attention", "AttentionShape"]
