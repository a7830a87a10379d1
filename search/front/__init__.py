"""The search's Pareto front: its math (pure NumPy), which candidates are on it, its files (Parquet, CSV, plot,
interactive page), its description in words, and where it stands against the baselines."""
