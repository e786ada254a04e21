"""What a running pipeline tells its observers (the live display, a notebook, tests)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    kind: str          # step_start | step_end | progress | log | prediction
    step: str
    message: str = ""
    data: dict = field(default_factory=dict)
