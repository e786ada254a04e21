"""float32 against bfloat16 (``--dtype``, MXNet AMP) training at equal epochs, for
benchmarks/train_classification.py and benchmarks/train_face.py: alternating runs, medians
with their spread, the ratio to float32 and the verdict (bf16 only pays if it is faster at
equal accuracy)."""
from __future__ import annotations

import statistics
from typing import Callable

DTYPES = ("float32", "bfloat16")


def compare(run: Callable[[str, int], tuple[float, float | None]], rounds: int, tolerance: float,
            label: str, accuracy: str) -> bool | None:
    """``run(dtype, round)`` -> (training images/s, final accuracy or None), called float32
    first in even rounds and bfloat16 first in odd ones, so drifts of a shared machine hit
    both. Prints every run, then the table and the verdict: bfloat16 is worth it when its
    median images/s is higher and its median accuracy at most ``tolerance`` below float32's.
    Returns that verdict, or None on a CPU without bf16 instructions (nothing to compare)."""
    from jobs.common.runtime import cpu_has_bf16

    if not cpu_has_bf16():
        print(f"\n{label}: this CPU has no avx512_bf16/amx_bf16 instructions; --dtype=bfloat16 trains in float32 "
              "here, nothing to compare", flush=True)
        return None
    runs: dict[str, list] = {d: [] for d in DTYPES}
    print(f"\n{label}: float32 vs bfloat16, {rounds} alternating rounds", flush=True)
    for r in range(rounds):
        for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
            speed, acc = run(dtype, r)
            runs[dtype].append((speed, acc))
            print(f"  round {r + 1}: {dtype:9}{speed:9.1f} img/s  {accuracy} "
                  f"{'-' if acc is None else f'{acc:.3f}'}", flush=True)
    speed = {d: [v[0] for v in runs[d]] for d in DTYPES}
    acc = {d: [v[1] for v in runs[d] if v[1] is not None] for d in DTYPES}
    print(f"  {'--dtype':10}{'images/s (min-max)':>26}{'ratio':>7}{accuracy + ' (min-max)':>28}")
    for d in DTYPES:
        ratio = statistics.median(speed[d]) / statistics.median(speed["float32"])
        print(f"  {d:10}{spread(speed[d], '.1f'):>26}{ratio:7.2f}{spread(acc[d], '.3f'):>28}")
    faster = statistics.median(speed["bfloat16"]) > statistics.median(speed["float32"])
    same = bool(acc["float32"]) and bool(acc["bfloat16"]) and \
        statistics.median(acc["bfloat16"]) >= statistics.median(acc["float32"]) - tolerance
    print(f"  bfloat16 is {'faster' if faster else 'NOT faster'} at {'equal' if same else 'LOWER'} accuracy "
          f"(tolerance {tolerance:g}): {'worth turning on' if faster and same else 'keep float32 (the default)'}",
          flush=True)
    return faster and same


def spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"
