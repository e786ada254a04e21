"""Offline inference with a model package, without a service: ``batch_predict`` (every file
under a folder or obs:// prefix) and ``evaluate`` (the held-out set, scored)."""
