"""Datasets: built-in real data, decoded into padded arrays, and training-subset selection."""

from emule_models.data.builtin import BUILTIN, DESCRIPTIONS, load_builtin
from emule_models.data.dataset import Dataset, Split
from emule_models.data.selection import STRATEGIES, select

__all__ = ["BUILTIN", "DESCRIPTIONS", "STRATEGIES", "Dataset", "Split", "load_builtin", "select"]
