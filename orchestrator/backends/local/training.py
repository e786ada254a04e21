"""Training jobs as supervised subprocesses (see ``supervisor.py`` for the life cycle).

Each job has a folder ``<root>/jobs/<name>/`` with ``job.json`` (the spec), ``state.json``
(phase, reason, history, the processes started), ``logs/`` (one log per process plus
``job.log``, their lines merged by the supervisor) and the staged code, data and outputs.
``submit`` returns once the supervisor is started; ``status`` and ``logs`` only read files,
so they work from any process, including after the orchestrator that submitted the job
died. ``stop`` and ``delete`` stop the supervisor and every process it recorded.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..base import JOB_TERMINAL, BackendError, JobRef, JobSpec, JobState, Resource
from . import procs


class JobRunner:
    def __init__(self, root: Path):
        self.root = root
        self.jobs_dir = root / "jobs"
        self._children: list = []           # Popen handles, polled so they don't linger as zombies

    def dir(self, ref: JobRef | str) -> Path:
        return self.jobs_dir / (ref if isinstance(ref, str) else ref.id)

    def submit(self, spec: JobSpec) -> JobRef:
        job_dir = self.dir(spec.name)
        if (job_dir / "job.json").exists():
            raise BackendError(f"training job {spec.name} already exists")
        (job_dir / "logs").mkdir(parents=True)
        procs.write_json(job_dir / "job.json", {**asdict(spec), "store_root": str(self.root), "submitted_at": time.time()})
        procs.write_json(job_dir / "state.json", {"phase": "Creating", "reason": "submitted", "history": []})
        proc, ident = procs.spawn([sys.executable, "-m", "orchestrator.backends.local.supervisor", str(job_dir)],
                                  log_path=job_dir / "logs" / "supervisor.log", env=procs.child_env())
        self._children.append(proc)
        state = procs.read_json(job_dir / "state.json")
        procs.write_json(job_dir / "state.json", {**state, "supervisor": ident.to_dict()})
        return JobRef(id=spec.name, name=spec.name)

    def status(self, ref: JobRef) -> JobState:
        for child in self._children:
            child.poll()
        state = procs.read_json(self.dir(ref) / "state.json")
        if state is None:
            raise BackendError(f"training job {ref.name} does not exist")
        phase, reason = state["phase"], state.get("reason", "")
        since = state["history"][-1]["at"] if state.get("history") else time.time()
        if phase not in JOB_TERMINAL:
            supervisor = procs.ProcId.from_dict(state.get("supervisor"))
            if supervisor and not procs.alive(supervisor):
                state = procs.read_json(self.dir(ref) / "state.json")   # it may have just finished
                if state["phase"] not in JOB_TERMINAL:
                    _stop_processes(state, grace_s=2)   # nobody watches them any more
                    tail = procs.tail(self.dir(ref) / "logs" / "supervisor.log", 3)
                    return JobState("Failed", "the job supervisor died" + (f": {tail}" if tail else ""), time.time())
                phase, reason = state["phase"], state.get("reason", "")
        return JobState(phase, reason, since)

    def logs(self, ref: JobRef, since: int = 0) -> tuple[list[str], int]:
        path = self.dir(ref) / "logs" / "job.log"
        try:
            with open(path, "rb") as fh:
                fh.seek(since)
                chunk = fh.read()
        except FileNotFoundError:
            return [], since
        end = chunk.rfind(b"\n") + 1            # only whole lines; the rest comes next poll
        return chunk[:end].decode("utf-8", "replace").splitlines(), since + end

    def stop(self, ref: JobRef, grace_s: float = 15.0) -> None:
        state = procs.read_json(self.dir(ref) / "state.json") or {}
        if state.get("phase") in JOB_TERMINAL | {None}:
            return
        supervisor = procs.ProcId.from_dict(state.get("supervisor"))
        if procs.alive(supervisor):
            os.kill(supervisor.pid, signal.SIGTERM)   # it stops the script and records Terminated
            deadline = time.time() + grace_s
            while procs.alive(supervisor) and time.time() < deadline:
                time.sleep(0.1)
        state = procs.read_json(self.dir(ref) / "state.json") or state   # it may have started more
        _stop_processes(state, grace_s=2)   # whatever is still there after the grace period
        procs.stop(supervisor, grace_s=2)
        if state.get("phase") not in JOB_TERMINAL:
            state.setdefault("history", []).append({"phase": "Terminated", "reason": "stopped", "at": time.time()})
            procs.write_json(self.dir(ref) / "state.json", {**state, "phase": "Terminated", "reason": "stopped"})

    def delete(self, ref: JobRef) -> None:
        if self.dir(ref).exists():
            self.stop(ref)
            shutil.rmtree(self.dir(ref), ignore_errors=True)

    def list_resources(self, run_id: str | None) -> list[Resource]:
        out = []
        for job_json in sorted(self.jobs_dir.glob("*/job.json")):
            job = procs.read_json(job_json) or {}
            if run_id in (None, job.get("run_id")):
                out.append(Resource("job", job_json.parent.name, job_json.parent.name, job.get("run_id", "")))
        return out


def _stop_processes(state: dict, grace_s: float) -> None:
    """Stop every process of the job that state.json records (all roles of a multi-node job)."""
    for ident in (state.get("processes") or {"worker-0": state.get("worker")}).values():
        procs.stop(procs.ProcId.from_dict(ident), grace_s=grace_s)
