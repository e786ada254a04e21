"""Reads training progress out of job log lines (MXNet's Speedometer and epoch-end lines,
plus the ``Start training:`` line our jobs print), the same way for every backend."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

START = re.compile(r"Start training: num_epochs=(\d+) epoch_size=(\d+)")
BATCH = re.compile(r"Epoch\[(\d+)\] Batch \[(\d+)-(\d+)\]\s+Speed: ([\d.]+) samples/sec(.*)")
EPOCH_END = re.compile(r"Epoch\[(\d+)\] Time cost=")
EPOCH_METRIC = re.compile(r"Epoch\[(\d+)\] (Train|Validation)-([\w-]+)=([-+\d.eE]+)")
METRIC = re.compile(r"([\w-]+)=([-+\d.eE]+)")
VAL_LABEL = re.compile(r"Validation metric: (.+)$")          # face job: which set Validation-accuracy is
PHASE = re.compile(r"Phase\[(\d+)/(\d+)\] (\w+): loss (\w+).*?epochs (\d+)-(\d+)")


@dataclass(frozen=True)
class TrainingProgress:
    num_epochs: int | None = None
    epoch_size: int | None = None     # batches per epoch
    epochs_done: int = 0
    batch: int = 0                    # batches done in the current epoch
    validated: int = 0                # epochs whose validation metrics were logged
    speed: float | None = None        # samples/s
    metrics: dict = field(default_factory=dict)   # latest values, e.g. {"Validation-accuracy": 0.93}
    val_label: str = "val acc"        # what Validation-accuracy measures, e.g. "lfw acc"
    phase: str | None = None          # e.g. "pretrain softmax 1/2, epochs 1-8" while a job has phases


def update(progress: TrainingProgress, line: str) -> TrainingProgress | None:
    """The new progress after ``line``, or None when the line says nothing about it."""
    if m := VAL_LABEL.search(line):
        return replace(progress, val_label=m.group(1).replace("accuracy", "acc"))
    if m := PHASE.search(line):
        if m.group(2) == "1":
            return None
        return replace(progress, phase=f"{m.group(3)} {m.group(4)} {m.group(1)}/{m.group(2)}, "
                                       f"epochs {int(m.group(5)) + 1}-{int(m.group(6)) + 1}")
    if m := START.search(line):
        return replace(progress, num_epochs=int(m.group(1)), epoch_size=int(m.group(2)))
    if m := BATCH.search(line):
        metrics = {**progress.metrics, **{f"Train-{k}": float(v) for k, v in METRIC.findall(m.group(5))}}
        return replace(progress, epochs_done=int(m.group(1)), batch=int(m.group(3)), speed=float(m.group(4)),
                       metrics=metrics)
    if m := EPOCH_END.search(line):
        return replace(progress, epochs_done=int(m.group(1)) + 1, batch=0)
    if m := EPOCH_METRIC.search(line):
        validated = int(m.group(1)) + 1 if m.group(2) == "Validation" else progress.validated
        return replace(progress, validated=validated,
                       metrics={**progress.metrics, f"{m.group(2)}-{m.group(3)}": float(m.group(4))})
    return None
