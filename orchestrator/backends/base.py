"""The backend interface: one small contract, several executors (local, modelarts).

Value objects are frozen dataclasses. Every method may block for the network or disk;
``deploy`` blocks until the service is running, failed, or its timeout passed. Every
``delete_*``/``stop_*`` is idempotent: deleting what is already gone is not an error.
Errors a user can fix raise ``orchestrator.errors.UserError``; everything else raises
``BackendError`` with a message that names the resource.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Protocol

JOB_TERMINAL = frozenset({"Completed", "Failed", "Terminated"})   # after Creating -> Pending -> Running
MAX_SERVICE_TTL_S = 7 * 86400      # ModelArts' auto-stop: 1 minute to 7 days
TTL_HINT = "set service.ttl to at most 7d (604800 s), or leave it out"


class BackendError(Exception):
    """A backend operation failed (not the user's input)."""


def service_ttl_problem(ttl_s: float | None) -> str | None:
    """Why ModelArts would refuse this service ttl, or None (also for no ttl). The one rule:
    the plan reports it with the file's line, the ModelArts backend for direct callers."""
    if ttl_s is not None and not 0 < ttl_s <= MAX_SERVICE_TTL_S:
        return f"service ttl {ttl_s:g}s is out of range: ModelArts' auto-stop takes 1 minute to 7 days"
    return None


@dataclass(frozen=True)
class JobSpec:
    name: str                      # unique, carries the run id
    run_id: str
    code_dir: str                  # local folder holding the training code
    boot_file: str                 # relative to code_dir
    data_url: str                  # obs:// prefix staged as --data_url
    train_url: str                 # obs:// prefix receiving the outputs
    hyperparameters: tuple[tuple[str, str], ...] = ()
    flavor: str = "modelarts.vm.cpu.8u"
    instance_count: int = 1
    envs: tuple[tuple[str, str], ...] = ()
    max_runtime_s: float | None = None
    include_dirs: tuple[str, ...] = ()   # folders merged into the code folder, files copied next to the boot file
    image: str = ""                # custom image (SWR URL) to run in instead of the preset engine; "" = none
    shipped: tuple[tuple[str, str], ...] = ()   # (local file or folder, its path inside the code folder)

    @classmethod
    def from_json(cls, data: dict) -> "JobSpec":
        """The spec that ``dataclasses.asdict`` wrote as JSON (lists back to tuples; other
        keys of ``data`` are ignored)."""
        def frozen(value):
            return tuple(frozen(v) for v in value) if isinstance(value, list) else value
        names = {f.name for f in fields(cls)}
        return cls(**{k: frozen(v) for k, v in data.items() if k in names})


@dataclass(frozen=True)
class JobRef:
    id: str
    name: str


@dataclass(frozen=True)
class JobState:
    phase: str                     # Creating, Pending, Running, or one of JOB_TERMINAL
    reason: str = ""
    since: float = field(default_factory=time.time)

    @property
    def terminal(self) -> bool:
        return self.phase in JOB_TERMINAL


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    run_id: str
    source_location: str           # obs:// prefix whose model/ folder is the package
    model_type: str = "MXNet"
    model_algorithm: str = "image_classification"
    runtime: str | None = None     # None: the package's config.json decides (ModelArts: python2.7 when unset)
    image: str = ""                # custom image (SWR URL): imported as model_type Image, served by the image


@dataclass(frozen=True)
class ModelRef:
    id: str
    name: str
    version: str


@dataclass(frozen=True)
class ServiceConfig:
    model_id: str
    weight: int = 100
    flavor: str = "modelarts.vm.cpu.2u"
    instance_count: int = 1
    envs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    run_id: str
    configs: tuple[ServiceConfig, ...]
    deploy_timeout_s: float = 300.0
    ttl_s: float | None = None     # stopped this long after it is running, even with the orchestrator gone
                                   # (see service_ttl_problem for ModelArts' range)


@dataclass(frozen=True)
class ServiceRef:
    id: str
    name: str
    url: str                       # where predictions are POSTed


@dataclass(frozen=True)
class Prediction:
    status: int
    body: Any                      # the answer's JSON: usually an object, but a list or scalar is valid too
    seconds: float


@dataclass(frozen=True)
class Resource:
    """Something a run created that costs money or space until deleted."""

    kind: str                      # object_prefix | job | model | service | temp_dir
    id: str
    name: str
    run_id: str
    detail: str = ""


class Storage(Protocol):
    def put(self, local_path: str, uri: str) -> "TransferStats": ...
    def get(self, uri: str, local_path: str) -> "TransferStats": ...
    def exists(self, uri: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, prefix: str) -> int: ...


@dataclass(frozen=True)
class TransferStats:
    files: int = 0
    skipped: int = 0
    bytes: int = 0


class Backend(Protocol):
    """What the pipeline and the SDK need from an executor. See the module docstring for the
    rules. ``backends/parts.py`` holds what the implementations share."""

    name: str
    storage: Storage
    root: Path                     # this machine's folder of the backend: ledger, tmp/, local state

    def preflight(self, buckets: tuple[str, ...] = ()) -> None:
        """Fail fast (``UserError``) when this backend cannot run at all: rejected
        credentials, a missing bucket. Called before a run starts; may be a no-op."""
    def temp_dir(self, run_id: str) -> Path:
        """The folder temporary files of run ``run_id`` go to (listed as ``temp_dir``)."""

    def submit_job(self, spec: JobSpec) -> JobRef: ...
    def job_status(self, ref: JobRef) -> JobState: ...
    def job_logs(self, ref: JobRef, since: int = 0) -> tuple[list[str], int]:
        """Log lines after offset ``since`` and the new offset (poll with it)."""
    def stop_job(self, ref: JobRef) -> None: ...
    def delete_job(self, ref: JobRef) -> None: ...
    def import_model(self, spec: ModelSpec) -> ModelRef: ...
    def delete_model(self, ref: ModelRef) -> None: ...
    def deploy(self, spec: ServiceSpec) -> ServiceRef: ...
    def update_service(self, ref: ServiceRef, configs: tuple[ServiceConfig, ...] | None = None,
                       status: str | None = None) -> ServiceRef:
        """Change a deployed service in place and block until the change is live.

        ``configs`` replaces the model configs (weights, versions, instance counts): new
        versions are loaded and warm before they get traffic, and requests in flight on
        replaced ones finish. ``status`` is ``'running'`` (start a stopped service) or
        ``'stopped'`` (stop it after in-flight requests finished); both may be given.
        Returns the service's current ref (its url may change when it is restarted).
        Raises ``BackendError`` when the service does not exist or the change failed (the
        previous configs keep serving)."""
    def service_status(self, ref: ServiceRef) -> str:
        """``'running'`` only when the service can answer now (locally: its predictor is
        alive and ``/health`` says so); else its state (``'failed'``, ``'stopped'``,
        ``'deploying'``, ``'deleted'``, ...). Never raises for a missing service."""
    def predict(self, ref: ServiceRef, filename: str, content: bytes) -> Prediction: ...
    def delete_service(self, ref: ServiceRef) -> None: ...
    def list_resources(self, run_id: str | None = None) -> Iterable[Resource]: ...
    def delete_resource(self, resource: Resource) -> None: ...
