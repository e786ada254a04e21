"""``LocalBackend``: the backend interface (``backends/base.py``) on this machine only.

Layout under ``root``: ``obs/`` (object store), ``jobs/``, ``models/`` + ``registry.sqlite``,
``services/``, ``tmp/<run_id>/`` (temporary folders of runs). Everything a run creates
carries its run id, so ``list_resources`` finds it even when the ledger does not.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..base import Backend, ModelRef, Resource, ServiceConfig, ServiceRef
from ..parts import SharedParts
from .models import Registry
from .services import Services
from .storage import LocalObjectStore
from .training import JobRunner

RUN_ID = re.compile(r"^\d{6}-\d{6}-[0-9a-f]{4}$")


class LocalBackend(SharedParts, Backend):
    name = "local"

    def __init__(self, root: Path, predictor_host: str = "127.0.0.1"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.storage = LocalObjectStore(root)
        self.training = JobRunner(root)
        self.models = Registry(root, self.storage)
        self.services = Services(root, self.models, predictor_host)

    def preflight(self, buckets: tuple[str, ...] = ()) -> None:
        """Nothing to check: no credentials, and buckets are folders made on first write."""

    # models and services
    def delete_model(self, ref: ModelRef) -> None:
        self.models.delete(ref.id)

    def update_service(self, ref: ServiceRef, configs: tuple[ServiceConfig, ...] | None = None,
                       status: str | None = None) -> ServiceRef:
        return self.services.update(ref.id, configs, status)

    def service_status(self, ref: ServiceRef) -> str:
        return self.services.live_status(ref.id)

    def delete_service(self, ref: ServiceRef) -> None:
        self.services.delete(ref.id)

    # reconciliation
    def list_resources(self, run_id: str | None = None) -> list[Resource]:
        found = self.services.list_resources(run_id) + self.models.list_resources(run_id) \
            + self.training.list_resources(run_id)
        for bucket in self.storage.buckets():
            for top in sorted((self.storage.path_for(f"obs://{bucket}/")).glob("*/*")):
                if top.is_dir() and RUN_ID.match(top.name) and run_id in (None, top.name):
                    uri = f"obs://{bucket}/{top.parent.name}/{top.name}/"
                    found.append(Resource("object_prefix", uri, uri, top.name))
        return found + self.temp_dirs(run_id)
