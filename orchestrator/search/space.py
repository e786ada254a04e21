"""The trials of a search: hyperparameter assignments drawn from ``train.search.space``.

Grid search takes the cartesian product (a range contributes ``steps`` evenly spaced
values, log-spaced with ``log: true``), in a fixed order, at most ``trials`` of them.
Random search draws ``trials`` assignments with ``random.Random(seed)``: choices
uniformly, ranges uniformly (or log-uniformly). Both are deterministic for a given spec,
so a resumed search sees the same trials under the same names.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from ..spec import ChoicesSpec, RangeSpec, SearchSpec


def check_space(search: SearchSpec) -> list[str]:
    """Problems with the space (one line each, naming the hyperparameter)."""
    problems = []
    for name, dim in search.space.items():
        if isinstance(dim, RangeSpec):
            low, high = dim.range
            if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                problems.append(f"{name}: range [{low}, {high}] must have low < high")
            elif dim.log and low <= 0:
                problems.append(f"{name}: a log range needs low > 0 (got {low})")
            elif dim.type == "int" and math.floor(high) < math.ceil(low):
                problems.append(f"{name}: the int range [{low}, {high}] holds no whole number")
    return problems


def trials(search: SearchSpec) -> list[dict[str, Any]]:
    if search.algorithm == "grid":
        axes = [[(name, v) for v in _grid_values(dim)] for name, dim in search.space.items()]
        return [dict(combo) for combo in itertools.islice(itertools.product(*axes), search.trials)]
    rng = random.Random(search.seed)
    return [{name: _draw(dim, rng) for name, dim in search.space.items()} for _ in range(search.trials)]


def grid_size(search: SearchSpec) -> int:
    return math.prod(len(_grid_values(dim)) for dim in search.space.values())


def _grid_values(dim: ChoicesSpec | RangeSpec) -> list:
    if isinstance(dim, ChoicesSpec):
        return list(dim.choices)
    low, high = dim.range
    if dim.log:
        values = [math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (dim.steps - 1))
                  for i in range(dim.steps)]
    else:
        values = [low + i * (high - low) / (dim.steps - 1) for i in range(dim.steps)]
    if dim.type == "int":
        return sorted(set(int(round(v)) for v in values))
    return [_round(v) for v in values]


def _draw(dim: ChoicesSpec | RangeSpec, rng: random.Random):
    if isinstance(dim, ChoicesSpec):
        return rng.choice(dim.choices)
    low, high = dim.range
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if dim.log else rng.uniform(low, high)
    if dim.type == "int":
        return min(max(int(round(value)), math.ceil(low)), math.floor(high))
    return _round(value)


def _round(value: float) -> float:
    """6 significant digits: short job arguments, same values on every machine."""
    return float(f"{value:.6g}")
