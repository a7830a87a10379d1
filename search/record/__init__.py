"""The search's record in MLflow: the one module that talks to MLflow, the writes batched for it, the datasets as
MLflow describes them, and a finished search read back from it."""
