"""What a search is: the spec's schema, its space as Optuna sees it, the trial contract (result keys and metric
names), the budget ladder and where a search is kept. Imports nothing else of ``search``."""
