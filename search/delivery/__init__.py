"""After a search: export and retrain, ONNX and the model registry, distillation into a new search, submission to a
cluster, learning curves and which rows to label next."""
