"""EMuLe's search: specs, Ray Tune + Optuna orchestration, MLflow tracking, Pareto fronts, export."""
