"""What runs for one candidate, on a Ray worker or wherever a candidate is trained again: the candidate resolved
from a sampler's parameters, its validation and final fit, a distillation teacher's soft labels, the classical
baselines, and the trial function that reports to Tune."""
