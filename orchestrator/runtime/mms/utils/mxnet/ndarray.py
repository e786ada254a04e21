"""NDArray helpers of MMS (``mms.utils.mxnet.ndarray``) for custom services.

Contract: ``top_probability(data, labels, top=5)`` takes the scores of the FIRST sample of
a batch (shape ``(N, C)`` or ``(N, C, 1, 1...)``, NDArray or numpy) and returns the
``top`` best as ``[{'probability': float, 'class': labels[i]}, ...]``, best first.
"""

from __future__ import annotations

import numpy as np


def _to_numpy(data) -> np.ndarray:
    return data.asnumpy() if hasattr(data, "asnumpy") else np.asarray(data)


def top_probability(data, labels, top: int = 5) -> list[dict]:
    """See module docstring. ``labels`` must have one entry per class."""
    scores = _to_numpy(data)
    if scores.ndim > 2:  # (N, C, 1, 1) from convolutional heads
        scores = scores.reshape(scores.shape[0], -1)
    first = scores[0] if scores.ndim == 2 else scores
    if len(labels) < first.shape[0]:
        raise ValueError(f"{len(labels)} labels for {first.shape[0]} classes")
    order = np.argsort(-first, kind="stable")[:top]
    return [{"probability": float(first[i]), "class": labels[i]} for i in order]


def to_list(data) -> list:
    """NDArray/numpy -> nested Python lists (JSON-friendly)."""
    return _to_numpy(data).tolist()
