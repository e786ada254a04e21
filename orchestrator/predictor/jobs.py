"""The pool's parts: its errors, a queued request (``Job``) and a worker slot (``Worker``).

``PoolError`` carries the HTTP status, error code and ``Retry-After`` to answer a request
with; ``LoadFailed`` the exit code (2 malformed package, 1 otherwise) of a service that
could not load. ``retry_after_seconds`` is the backlog arithmetic behind ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math

from orchestrator.predictor import channel, protocol


class PoolError(Exception):
    """A request the pool could not run; ``status``/``code`` say how to answer it."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class LoadFailed(Exception):
    """A worker could not instantiate the service during ``start()``."""

    def __init__(self, exit_code: int, message: str, details: str = ""):
        super().__init__(message)
        self.exit_code, self.message, self.details = exit_code, message, details


def retry_after_seconds(queued: int, workers: int, service_s: float) -> int:
    """Whole seconds (1..60) until ``queued`` requests (waiting + running) have been served
    by ``workers`` at ``service_s`` each: a Retry-After a client can act on."""
    return max(1, min(60, math.ceil(queued * service_s / max(1, workers))))


def serialisable(payload) -> bool:
    try:
        protocol.frame(payload)
        return True
    except Exception:
        return False


class Job:
    """One request from ``enqueue`` until it is answered or dropped."""

    __slots__ = ("id", "payload", "done", "worker", "queued_at", "started_at", "timeout", "deadline", "timer",
                 "settled")

    def __init__(self, job_id: int, payload, done, now: float, timeout: float):
        self.id, self.payload, self.done, self.queued_at = job_id, payload, done, now
        self.worker: Worker | None = None
        self.started_at = 0.0
        self.timeout, self.deadline = timeout, now + timeout
        self.timer: asyncio.TimerHandle | None = None
        self.settled = False   # done was called, or the client went away


class Worker:
    """One worker process as the pool tracks it: state, the jobs it holds, its watchdog."""

    def __init__(self, initial: bool):
        self.initial = initial
        self.process: channel.WorkerProcess | None = None
        self.state = "loading"  # -> warming -> idle <-> busy -> exiting -> dead
        self.jobs: dict[int, Job] = {}
        self.load_error: protocol.LoadFailed | None = None
        self.killed_reason: str | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.batch_started, self.batch_n = 0.0, 0   # when the jobs it holds were sent, how many

    @property
    def proc(self):
        return self.process.proc

    def send(self, message) -> None:
        self.process.send(message)

    def kill(self, reason: str) -> None:
        """Kill the process; its exit fails its requests and starts a replacement."""
        if self.proc.returncode is None:
            self.killed_reason = self.killed_reason or reason
            self.proc.kill()

    def disarm(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
