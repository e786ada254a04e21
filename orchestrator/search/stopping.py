"""The median stopping rule (as in Google Vizier and Katib): stop a trial when its best
objective so far is worse than the median of the other trials' running averages at the
same epoch. Pure functions over curves ({trial: [objective per epoch]})."""

from __future__ import annotations

import statistics


def should_stop(curve: list[float], others: list[list[float]], *, goal: str, min_epochs: int,
                min_trials: int) -> bool:
    """Whether a trial with ``curve`` (its objective after each epoch so far) is clearly
    behind the ``others`` (curves of other trials, finished or further along)."""
    epoch = len(curve)
    if epoch < min_epochs:
        return False
    peers = [c[:epoch] for c in others if len(c) >= epoch]
    if len(peers) < min_trials:
        return False
    averages = [sum(c) / len(c) for c in peers]
    median = statistics.median(averages)
    best = max(curve) if goal == "max" else min(curve)
    return best < median if goal == "max" else best > median
