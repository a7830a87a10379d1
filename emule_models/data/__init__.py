"""Datasets: Arrow tables (built-in real data, a user's Parquet) decoded into padded arrays, derived views,
training-subset selection and the proxy scores it uses.

Entry points: ``load_data(spec["data"])`` -> ``Dataset``; ``proxy_scores(dataset, cache_dir=...)`` once per search;
``select(dataset.train.labels, fraction, strategy, seed, scores=..., embeddings=...)`` per trial.
"""

from emule_models.data.arrow import ColumnSpec, TableSpec, dataset_from_table, dataset_to_table
from emule_models.data.builtin import BUILTIN, Builtin, describe_builtins, load_builtin
from emule_models.data.dataset import Dataset, Split
from emule_models.data.load import load_data
from emule_models.data.parquet import read_parquet, write_parquet
from emule_models.data.scoring import proxy_scores
from emule_models.data.selection import STRATEGIES, needs_scores, select
from emule_models.data.synthetic import synthetic
from emule_models.data.views import VIEWS, with_view

__all__ = ["BUILTIN", "STRATEGIES", "VIEWS", "Builtin", "ColumnSpec", "Dataset", "Split", "TableSpec",
           "dataset_from_table", "dataset_to_table", "describe_builtins", "load_builtin", "load_data",
           "needs_scores", "proxy_scores", "read_parquet", "select", "synthetic", "with_view", "write_parquet"]
