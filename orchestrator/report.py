"""The run report: per-step status, time and facts, saved atomically to
``<run_dir>/report.json`` after every step so a crashed run still leaves one."""

from __future__ import annotations

import time
import traceback
from contextlib import contextmanager

from .files import write_json
from .errors import StepFailed, UserError


class Report:
    def __init__(self, plan):
        self.plan = plan
        self.steps: dict[str, dict] = {}
        self.paths = {"run_dir": str(plan.run_dir), "report": str(plan.run_dir / "report.json"),
                      "html": str(plan.run_dir / "report.html"), "logs": str(plan.run_dir / "logs")}
        self.tracking: dict | None = None   # where MLflow has the run, once logged
        self.status = "running"
        self.error: str | None = None
        self.started_at = time.time()
        self.ended_at: float | None = None

    @contextmanager
    def step(self, name: str, emit):
        info: dict = {"status": "running", "started_at": time.time()}
        self.steps[name] = info
        emit("step_start", name)
        start = time.perf_counter()
        try:
            yield info
        except BaseException as exc:
            info["status"] = "failed"
            info["error"] = _short(exc)
            raise
        else:
            if info["status"] == "running":     # a step may end as "skipped"
                info["status"] = "succeeded"
        finally:
            info["seconds"] = round(time.perf_counter() - start, 3)
            emit("step_end", name, info["status"], **info)
            self.save()

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = _short(exc)
        if not isinstance(exc, (UserError, StepFailed, KeyboardInterrupt)):
            try:
                with open(self.plan.run_dir / "logs" / "orchestrator.log", "a") as fh:
                    fh.write("".join(traceback.format_exception(exc)))
            except OSError:   # e.g. a full disk: the teardown that follows matters more
                pass

    def finish(self, status: str) -> None:
        self.status, self.ended_at = status, time.time()
        self.save()

    @property
    def data(self) -> dict:
        predict = self.steps.get("predict", {})
        return {"run_id": self.plan.run_id, "pipeline": self.plan.pipeline, "backend": self.plan.backend,
                "profile": self.plan.profile, "status": self.status, "error": self.error,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "seconds": round((self.ended_at or time.time()) - self.started_at, 3),
                "accuracy": predict.get("accuracy"), "steps": self.steps, "notes": list(self.plan.notes),
                "parameters": {name: {"value": value, "source": source} for name, value, source in self.plan.params},
                "resources": {"job": self.plan.job.name, "model": self.plan.model.name,
                              "service": self.plan.service.name, "objects": self.plan.run_prefix},
                "paths": self.paths, **({"tracking": self.tracking} if self.tracking else {})}

    def save(self) -> None:
        """Write report.json; on a full disk the run goes on (teardown must not wait for space)."""
        if self.plan.run_dir.exists():
            try:
                write_json(self.plan.run_dir / "report.json", self.data)
            except OSError:
                pass


def _short(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return str(exc) or type(exc).__name__
