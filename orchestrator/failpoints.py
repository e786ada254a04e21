"""Fault injection for the reliability tests: ``ORCHESTRATOR_FAILPOINT=<step>:<point>``
makes the orchestrator kill itself with SIGKILL at that point (no cleanup of any kind
runs), so tests can prove that ``cleanup`` and ``run --resume`` recover from a crash
anywhere. Points: ``<step>:start``, ``<step>:end`` (before the step is recorded as done),
``train:running``, ``train:trial_done`` (a search trial ended), ``predict:running``, ``teardown:running`` (after the first line of
progress, prediction or deletion). Unset in normal use: then this costs one dict lookup."""

from __future__ import annotations

import os
import signal

ENV = "ORCHESTRATOR_FAILPOINT"


def hit(point: str) -> None:
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
