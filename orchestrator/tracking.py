"""The bookkeeping both front ends share (``Pipeline`` and the notebook SDK's ``Session``):
one ledger run owned by this process, every resource recorded before it exists
(intend -> create -> created), and a job followed to its end with its log kept.

``Tracker.track(kind, name)`` is the one way a front end makes a resource::

    with tracker.track("model", spec.name, {"key": key}) as made:
        ref = backend.import_model(spec)       # a crash here leaves the 'intent' row for cleanup
        made.created(ref.id)
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import psutil

from .backends.base import JobRef, JobState
from .ledger import LIVE_STATES, Ledger
from .progress import TrainingProgress, update
from .reconcile import live


class Made:
    """What ``Tracker.track`` yields: call ``created(ref_id, detail)`` once the backend made it."""

    def __init__(self, tracker: "Tracker", kind: str, rid: int | None):
        self.tracker, self.kind, self.rid = tracker, kind, rid

    def created(self, ref_id: str, detail: dict | None = None) -> None:
        if self.rid is None:          # recorded before (track(..., once=True))
            return
        self.tracker.ledger.created(self.rid, ref_id, detail)
        self.tracker.rids[(self.kind, ref_id)] = self.rid


class Tracker:
    """One run of ``ledger`` and what it made. ``earlier(kind, name)`` may return a live row of
    an earlier attempt of the run (``run --resume``): its row is reused instead of a new one.
    Blocking SQLite calls; not thread-safe (one front end in one thread)."""

    def __init__(self, ledger: Ledger, run_id: str, run_dir: Path, earlier: Callable | None = None):
        self.ledger, self.run_id, self.run_dir = ledger, run_id, Path(run_dir)
        self.earlier = earlier or (lambda kind, name: None)
        self.rids: dict[tuple[str, str], int] = {}      # (kind, ref id) -> row id, for this process
        self.started = False

    def start(self, pipeline: str, spec_path: Path | str, backend: str, profile: str, resume: bool = False) -> None:
        """Record the run as owned by this process (idempotent); ``resume`` takes over an
        existing run of the same id. Creates the run folder's ``logs/``."""
        if self.started:
            return
        me = psutil.Process()
        self.run_dir.joinpath("logs").mkdir(parents=True, exist_ok=True)
        if resume and self.ledger.run(self.run_id) is not None:
            self.ledger.resume_run(self.run_id, me.pid, me.create_time(), owned=live)   # one takeover only
        else:
            self.ledger.start_run(self.run_id, pipeline, str(spec_path), backend, profile, me.pid, me.create_time(),
                                  str(self.run_dir))
        self.started = True

    @contextmanager
    def track(self, kind: str, name: str, detail: dict | None = None, once: bool = False):
        """Write the resource's row (state 'intent') before the body creates it; the body calls
        ``created`` on what this yields. On an exception the row stays 'intent' for cleanup.
        ``once``: when this process already recorded ``name`` (an upload repeated), write nothing."""
        if once and self.has(kind, name):
            yield Made(self, kind, None)
            return
        row = self.earlier(kind, name)
        rid = row.rid if row is not None else self.ledger.intend(self.run_id, kind, name, detail or {})
        yield Made(self, kind, rid)

    def has(self, kind: str, ref_id: str) -> bool:
        """Whether this process recorded that resource and it is still live."""
        rid = self.rids.get((kind, ref_id))
        return rid is not None and self.ledger.resource(rid).state in LIVE_STATES


class FollowTimeout(Exception):
    """The job did not end within the time given to ``JobFollower.follow`` (it still runs)."""


class JobFollower:
    """Follows one training job: polls its status and new log lines (the same on every
    backend), appends the lines to ``log_path`` and reads training progress out of them.
    ``follow`` can be called again after an interruption: it continues where it stopped."""

    def __init__(self, backend, ref: JobRef, log_path: Path, poll_interval: float):
        self.backend, self.ref, self.log_path, self.poll_interval = backend, ref, Path(log_path), poll_interval
        self.progress = TrainingProgress()
        self.offset = 0

    def follow(self, on_line: Callable[[str], None] = lambda line: None,
               on_progress: Callable[[TrainingProgress], None] = lambda progress: None,
               on_state: Callable[[JobState], None] = lambda state: None, timeout_s: float | None = None) -> JobState:
        """Block until the job is terminal and its log is drained; returns its last state.
        ``on_line`` sees every new line (before ``self.progress`` takes it in), ``on_progress``
        every change of progress, ``on_state`` every polled state. Raises ``FollowTimeout``
        after ``timeout_s``."""
        deadline = time.time() + timeout_s if timeout_s else None
        with open(self.log_path, "a") as log:
            while True:
                state = self.backend.job_status(self.ref)
                on_state(state)
                lines, self.offset = self.backend.job_logs(self.ref, self.offset)
                for line in lines:
                    log.write(line + "\n")
                    on_line(line)
                    new = update(self.progress, line)
                    if new is not None:
                        self.progress = new
                        on_progress(new)
                log.flush()
                if state.terminal and not lines:
                    return state
                if deadline is not None and time.time() > deadline:
                    raise FollowTimeout(f"job {self.ref.name} did not finish within {timeout_s:.0f}s")
                time.sleep(0.05 if lines else self.poll_interval)
