"""Hyperparameter search: the space (space.py), the local core accounting (scheduler.py),
the median stopping rule (stopping.py) and the trial runner (runner.py)."""
