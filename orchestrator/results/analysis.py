"""Numbers behind the report's pictures: confusion matrix, per-class accuracy, ROC and the
size check of verification sets. Pure numpy over the values ``rundata`` reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    labels: list[str]
    matrix: np.ndarray          # [true, predicted] counts

    @property
    def per_class(self) -> tuple[list[float], list[int]]:
        counts = self.matrix.sum(axis=1)
        acc = [float(self.matrix[i, i] / c) if c else 0.0 for i, c in enumerate(counts)]
        return acc, [int(c) for c in counts]


def confusion(predictions, class_names: list[str] | None = None) -> Confusion | None:
    """From scored predictions (``expected`` and ``predicted_label`` both set); None when
    no prediction was scored. Labels: the data set's classes in order, then any other
    label the model answered."""
    scored = [p for p in predictions if p.get("expected") is not None and p.get("predicted_label") is not None]
    if not scored:
        return None
    labels = list(class_names or [])
    for p in scored:
        for label in (p["expected"], p["predicted_label"]):
            if label not in labels:
                labels.append(label)
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for p in scored:
        matrix[index[p["expected"]], index[p["predicted_label"]]] += 1
    return Confusion(labels, matrix)


def roc(distances, issame) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) of the rule "same when distance < t" for every distinct threshold t."""
    dist, same = np.asarray(distances, float), np.asarray(issame, bool)
    order = np.argsort(dist, kind="stable")
    same_sorted = same[order]
    n_same, n_diff = max(int(same.sum()), 1), max(int((~same).sum()), 1)
    tar = np.concatenate([[0.0], np.cumsum(same_sorted) / n_same])
    far = np.concatenate([[0.0], np.cumsum(~same_sorted) / n_diff])
    return far, tar


def too_small(name: str, issame, folds: int, far_target: float) -> str | None:
    """A warning when a set has fewer different-person pairs per fold than 1/FAR, so its
    VAL@FAR is measured on a FAR that cannot be resolved (one false accept is already more)."""
    n_diff = int((~np.asarray(issame, bool)).sum())
    per_fold = n_diff / max(folds, 1)
    needed = 1.0 / far_target
    if per_fold >= needed:
        return None
    return (f"{name}: {n_diff} different-person pairs, {per_fold:.0f} per fold of {folds}: fewer than the "
            f"{needed:.0f} per fold needed to measure VAL at FAR={far_target:g}; its VAL@FAR is not meaningful "
            f"(one false accept is a FAR of {1 / max(per_fold, 1):.3g})")
