"""What an earlier attempt of the same run left behind, for ``run --resume``.

The ledger says what the attempt created (each job, model and service row carries the key
of the step that made it, see ``stepkeys.py``) and which steps finished with which key; the
backend says what still exists. A resource is reused only when its key matches this plan's
and it is alive; a stale one is removed first, so the step starts afresh under its name.
"""

from __future__ import annotations

from typing import Callable

from .backends.base import BackendError, Resource
from .reconcile import remove


class EarlierAttempt:
    """Blocking ledger and backend lookups; with ``enabled`` False every lookup finds nothing."""

    def __init__(self, plan, backend, ledger, enabled: bool, emit: Callable):
        self.plan, self.backend, self.ledger, self.enabled, self.emit = plan, backend, ledger, enabled, emit

    def row(self, kind: str, name: str):
        """The newest live ledger row of this run for ``kind``/``name``, or None."""
        if self.enabled:
            for row in self.ledger.live_resources(self.plan.run_id):   # newest first
                if row.kind == kind and row.name == name:
                    return row
        return None

    def step_done(self, step: str) -> bool:
        return self.enabled and self.ledger.step_done(self.plan.run_id, step, self.plan.key(step))

    def reuse(self, kind: str, name: str, step: str, make_ref, key: str | None = None):
        """A ref to what the earlier attempt made for ``step`` (with ``key``, default the
        step's key) if still usable: a job that is running or completed, a model or
        service the backend still lists. Else None."""
        row = self.row(kind, name)
        if row is None:
            return None
        if row.state == "created" and row.detail.get("key") == (key or self.plan.key(step)):
            ref = make_ref(row)
            if self._alive(kind, ref, row.ref_id):
                return ref
        remove(self.backend, self.ledger, [(Resource(kind, row.ref_id or row.name, row.name, row.run_id), row.rid)],
               lambda message: self.emit("log", step, message + " (left by an earlier attempt)"))
        return None

    def _alive(self, kind: str, ref, ref_id: str) -> bool:
        if kind == "job":
            try:
                return self.backend.job_status(ref).phase not in ("Failed", "Terminated")
            except BackendError:
                return False
        if kind == "service":   # listed is not enough: its front may have died (then it is redeployed)
            return self.backend.service_status(ref) == "running"
        return any(r.kind == kind and r.id == ref_id for r in self.backend.list_resources(self.plan.run_id))
