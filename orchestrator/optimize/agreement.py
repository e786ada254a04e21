"""How far a converted network's answers are from fp32's (pure numpy, no mxnet).

* ``top1_agreement(a, b)``: share of rows whose arg-max is the same (classification).
* ``verification_accuracy(emb, identities, threshold)``: accuracy of same/different-person
  decisions (cosine >= threshold) over every same-identity pair of the held-out faces and
  as many different-identity pairs (chosen deterministically); ``None`` with fewer than 2
  identities or no same-identity pair.
* ``check(report, min_top1, max_verification_drop)``: the problems (empty when it passes).
"""

from __future__ import annotations

import itertools

import numpy as np


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))) if len(a) else float("nan")


def pairs(identities: list) -> list[tuple[int, int, bool]]:
    same = [(i, j, True) for i, j in itertools.combinations(range(len(identities)), 2)
            if identities[i] == identities[j]]
    different = [(i, j, False) for i, j in itertools.combinations(range(len(identities)), 2)
                 if identities[i] != identities[j]]
    step = max(1, len(different) // max(1, len(same)))
    return same + different[::step][:len(same)]


def verification_accuracy(emb: np.ndarray, identities: list, threshold: float) -> float | None:
    chosen = pairs(identities)
    if not chosen or all(not s for _, _, s in chosen) or all(s for _, _, s in chosen):
        return None
    emb = np.asarray(emb, dtype=np.float64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    right = sum((float(emb[i] @ emb[j]) >= threshold) == same for i, j, same in chosen)
    return right / len(chosen)


def check(report: dict, min_top1: float, max_verification_drop: float) -> list[str]:
    problems = []
    top1 = report.get("top1_agreement")
    if top1 is not None and top1 < min_top1:
        problems.append(f"top-1 agreement with fp32 is {top1:.2%} on {report['images']} held-out images, "
                        f"below the required {min_top1:.2%}")
    fp32, converted = report.get("verification_fp32"), report.get("verification_converted")
    if fp32 is not None and converted is not None and (fp32 - converted) * 100 > max_verification_drop:
        problems.append(f"verification accuracy fell from {fp32:.2%} to {converted:.2%}, more than "
                        f"{max_verification_drop:g} point(s)")
    return problems
