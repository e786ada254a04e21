"""What the backends (local, modelarts) implement the same way: calls handed to their
``training``, ``models`` and ``services`` parts, deleting any resource by kind, and the
temporary folders of runs under ``root/tmp/<run id>/``."""

from __future__ import annotations

import shutil
from pathlib import Path

from .base import (BackendError, JobRef, JobSpec, JobState, ModelRef, ModelSpec, Prediction, Resource, ServiceRef,
                   ServiceSpec)


class SharedParts:
    """Mixin for a ``Backend`` with ``root``, a ``training`` part (submit, status, logs, stop,
    delete), a ``models`` part (import_model) and a ``services`` part (deploy, predict); see
    ``Backend`` for the contract of each call."""

    root: Path

    def submit_job(self, spec: JobSpec) -> JobRef:
        return self.training.submit(spec)

    def job_status(self, ref: JobRef) -> JobState:
        return self.training.status(ref)

    def job_logs(self, ref: JobRef, since: int = 0) -> tuple[list[str], int]:
        return self.training.logs(ref, since)

    def stop_job(self, ref: JobRef) -> None:
        self.training.stop(ref)

    def delete_job(self, ref: JobRef) -> None:
        self.training.delete(ref)

    def import_model(self, spec: ModelSpec) -> ModelRef:
        return self.models.import_model(spec)

    def deploy(self, spec: ServiceSpec) -> ServiceRef:
        return self.services.deploy(spec)

    def predict(self, ref: ServiceRef, filename: str, content: bytes) -> Prediction:
        return self.services.predict(ref, filename, content)

    def temp_dir(self, run_id: str) -> Path:
        return self.root / "tmp" / run_id

    def temp_dirs(self, run_id: str | None = None) -> list[Resource]:
        """The temporary folders of run ``run_id`` (of every run when None)."""
        return [Resource("temp_dir", str(tmp), str(tmp), tmp.name) for tmp in sorted((self.root / "tmp").glob("*"))
                if tmp.is_dir() and run_id in (None, tmp.name)]

    def delete_resource(self, resource: Resource) -> None:
        """Delete anything ``list_resources`` or the ledger names; idempotent."""
        kind = resource.kind
        if kind == "service":
            self.delete_service(ServiceRef(resource.id, resource.name, ""))
        elif kind == "model":
            self.delete_model(ModelRef(resource.id, resource.name, ""))
        elif kind == "job":
            self.delete_job(JobRef(resource.id, resource.name))
        elif kind == "object_prefix":
            self.storage.delete(resource.id)
        elif kind == "temp_dir":
            self.delete_temp_dir(resource.id)
        else:
            raise BackendError(f"unknown resource kind '{kind}'")

    def delete_temp_dir(self, folder: str) -> None:
        """Remove a temporary folder of this backend (idempotent); refuses any other folder."""
        path = Path(folder).resolve()
        if (self.root / "tmp").resolve() not in path.parents:
            raise BackendError(f"refusing to delete {path}: not a temporary folder of this backend")
        shutil.rmtree(path, ignore_errors=True)
