"""What runs on the driver while a search runs: the spec checked before any compute, the cost plan, Ray start-up,
the Tune loop with its searcher and schedulers, the callback that records every trial, stop signals, crashes and
resume."""
