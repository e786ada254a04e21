"""``LocalBackend``: the backend interface (``backends/base.py``) on this machine only.

Layout under ``root``: ``obs/`` (object store), ``jobs/``, ``models/`` + ``registry.sqlite``,
``services/``, ``tmp/<run_id>/`` (temporary folders of runs). Everything a run creates
carries its run id, so ``list_resources`` finds it even when the ledger does not.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..base import (BackendError, JobRef, JobSpec, JobState, ModelRef, ModelSpec, Prediction, Resource,
                    ServiceConfig, ServiceRef, ServiceSpec)
from .jobs import JobRunner
from .registry import Registry
from .services import Services
from .storage import LocalObjectStore

RUN_ID = re.compile(r"^\d{6}-\d{6}-[0-9a-f]{4}$")


class LocalBackend:
    name = "local"

    def __init__(self, root: Path, predictor_host: str = "127.0.0.1"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.storage = LocalObjectStore(root)
        self.jobs = JobRunner(root)
        self.registry = Registry(root, self.storage)
        self.services = Services(root, self.registry, predictor_host)

    # training
    def submit_job(self, spec: JobSpec) -> JobRef:
        return self.jobs.submit(spec)

    def job_status(self, ref: JobRef) -> JobState:
        return self.jobs.status(ref)

    def job_logs(self, ref: JobRef, since: int = 0) -> tuple[list[str], int]:
        return self.jobs.logs(ref, since)

    def stop_job(self, ref: JobRef) -> None:
        self.jobs.stop(ref)

    def delete_job(self, ref: JobRef) -> None:
        self.jobs.delete(ref)

    # models and services
    def import_model(self, spec: ModelSpec) -> ModelRef:
        return self.registry.import_model(spec)

    def delete_model(self, ref: ModelRef) -> None:
        self.registry.delete(ref.id)

    def deploy(self, spec: ServiceSpec) -> ServiceRef:
        return self.services.deploy(spec)

    def update_service(self, ref: ServiceRef, configs: tuple[ServiceConfig, ...] | None = None,
                       status: str | None = None) -> ServiceRef:
        return self.services.update(ref.id, configs, status)

    def predict(self, ref: ServiceRef, filename: str, content: bytes) -> Prediction:
        return self.services.predict(ref, filename, content)

    def service_status(self, ref: ServiceRef) -> str:
        return self.services.live_status(ref.id)

    def delete_service(self, ref: ServiceRef) -> None:
        self.services.delete(ref.id)

    # reconciliation
    def temp_dir(self, run_id: str) -> Path:
        return self.root / "tmp" / run_id

    def list_resources(self, run_id: str | None = None) -> list[Resource]:
        found = self.services.list_resources(run_id) + self.registry.list_resources(run_id) \
            + self.jobs.list_resources(run_id)
        for bucket in self.storage.buckets():
            for top in sorted((self.storage.path_for(f"obs://{bucket}/")).glob("*/*")):
                if top.is_dir() and RUN_ID.match(top.name) and run_id in (None, top.name):
                    uri = f"obs://{bucket}/{top.parent.name}/{top.name}/"
                    found.append(Resource("object_prefix", uri, uri, top.name))
        for tmp in sorted((self.root / "tmp").glob("*")):
            if tmp.is_dir() and run_id in (None, tmp.name):
                found.append(Resource("temp_dir", str(tmp), str(tmp), tmp.name))
        return found

    def delete_resource(self, resource: Resource) -> None:
        """Delete anything ``list_resources`` or the ledger names; idempotent."""
        kind = resource.kind
        if kind == "service":
            self.services.delete(resource.id)
        elif kind == "model":
            self.registry.delete(resource.id)
        elif kind == "job":
            self.jobs.delete(JobRef(resource.id, resource.name))
        elif kind == "object_prefix":
            self.storage.delete(resource.id)
        elif kind == "temp_dir":
            path = Path(resource.id).resolve()
            if (self.root / "tmp") not in path.parents:
                raise BackendError(f"refusing to delete {path}: not a temporary folder of this backend")
            shutil.rmtree(path, ignore_errors=True)
        else:
            raise BackendError(f"unknown resource kind '{kind}'")
