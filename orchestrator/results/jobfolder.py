"""A notebook SDK training job as a run folder, so the SDK gets the same ``report.html`` and
MLflow logging as a pipeline run: ``<session run dir>/jobs/<job name>/`` with report.json,
plan.json (the job's settings), metrics.json, the job's log and its model package."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from ..files import write_json


def write(folder: Path, *, session, job_name: str, spec, state, started_at: float, ended_at: float,
          log_file: Path) -> Path:
    """Fill ``folder`` from the finished job (blocking; what cannot be fetched is left out)."""
    from ..backends.base import BackendError
    from ..errors import UserError

    (folder / "logs").mkdir(parents=True, exist_ok=True)
    if log_file.is_file():
        shutil.copyfile(log_file, folder / "logs" / "train.log")
    for name in ("metrics.json", "verification_pairs.json", "model/"):
        try:
            if session.storage.exists(spec.train_url + name):
                session.storage.get(spec.train_url + name, str(folder / name.rstrip("/")))
        except (BackendError, UserError, OSError):
            continue
    status = "succeeded" if state.phase == "Completed" else "failed"
    job = {k: v for k, v in asdict(spec).items() if k not in ("envs", "run_id")}
    write_json(folder / "plan.json", {"run_id": session.run_id, "pipeline": session.name, "job": job,
                                      "data": {"task": None}})
    write_json(folder / "report.json", {
        "run_id": session.run_id, "job": job_name, "pipeline": session.name, "backend": session.backend.name,
        "profile": session.profile, "status": status, "started_at": started_at, "ended_at": ended_at,
        "seconds": round(ended_at - started_at, 3), "error": None if status == "succeeded" else state.reason,
        "steps": {"train": {"status": status, "started_at": started_at, "seconds": round(ended_at - started_at, 3)}},
        "notes": []})
    return folder
