"""``ModelArtsBackend``: the backend interface (``backends/base.py``) on Huawei Cloud.

Data on OBS (``storage.py``), training through the ModelArts SDK (``training.py``), models
and services through signed v1 REST calls (``models.py``, ``services.py``). The same code
runs against the real cloud and against ``python -m orchestrator.emulator`` + any
S3-compatible server; only the endpoints in the profile differ. ``root`` is a local folder
for the ledger, run folders, temporary data and upload checkpoints.

Everything a run creates carries its run id in its name (jobs, models, services) or its
OBS prefix (``<bucket>/<pipeline>/<run id>/``, a job's code copy
``<bucket>/orchestrator-code/<job name>/``), so ``list_resources`` finds it by listing,
even when the ledger missed it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkmodelarts.v1 import ModelArtsClient

from orchestrator.errors import UserError

from ..base import (BackendError, JobRef, JobSpec, JobState, ModelRef, ModelSpec, Prediction, Resource,
                    ServiceConfig, ServiceRef, ServiceSpec)
from .models import Models
from .rest import RestClient, Retry
from .services import Services, Waits
from .storage import ObsStorage
from .training import CODE_ROOT, TrainingJobs

RUN_ID = re.compile(r"\d{6}-\d{6}-[0-9a-f]{4}")


def run_of(name: str) -> str | None:
    match = RUN_ID.search(name or "")
    return match.group(0) if match else None


class ModelArtsBackend:
    """Blocking calls; see ``base.py`` for the contract. Construction makes no network call;
    ``preflight`` makes one cheap signed call per service so bad credentials fail fast.
    ``ttl_unit``: the finest unit of a service's auto-stop schedule, ``MINUTES`` (ModelArts)
    or ``SECONDS`` (accepted by the emulator only, for tests)."""

    name = "modelarts"

    def __init__(self, root: Path, *, project_id: str, ak: str, sk: str, modelarts_endpoint: str,
                 obs_endpoint: str, region: str = "", verify_ssl: bool = True, path_style: bool = False,
                 obs_signature: str = "obs", create_bucket: bool = False, engine_name: str = "MXNet",
                 engine_version: str = "", timeout_s: float = 60.0, retries: int = 5,
                 credentials_hint: str = "the AK/SK", poll_s: float = 2.0, ttl_unit: str = "MINUTES"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        retry = Retry(attempts=retries)
        self.storage = ObsStorage(obs_endpoint, ak, sk, root / "obs-state", path_style=path_style,
                                  signature=obs_signature, verify_ssl=verify_ssl, create_bucket=create_bucket,
                                  region=region, timeout=int(timeout_s), retry=retry, credentials_hint=credentials_hint)
        config = HttpConfig.get_default_config()
        config.timeout = (5, timeout_s)
        config.ignore_ssl_verification = not verify_ssl
        client = (ModelArtsClient.new_builder().with_credentials(BasicCredentials(ak, sk, project_id))
                  .with_endpoint(modelarts_endpoint).with_http_config(config).build())
        self.training = TrainingJobs(client, self.storage, engine_name=engine_name, engine_version=engine_version,
                                     retry=retry, credentials_hint=credentials_hint)
        rest = RestClient(modelarts_endpoint, project_id, ak, sk, timeout=(5, timeout_s), retry=retry,
                          verify_ssl=verify_ssl, credentials_hint=credentials_hint)
        self.models = Models(rest, self.storage.https_url, poll_s=poll_s, storage=self.storage)
        self.services = Services(rest, Waits(poll_s=poll_s), finest_unit=ttl_unit)

    def preflight(self, buckets: tuple[str, ...] = ()) -> None:
        """Fail fast (``UserError``) on rejected credentials or a missing bucket."""
        self.training.check()
        for bucket in buckets:
            self.storage.ensure_bucket(bucket)

    # training
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

    # models and services
    def import_model(self, spec: ModelSpec) -> ModelRef:
        return self.models.import_model(spec)

    def delete_model(self, ref: ModelRef) -> None:
        self.models.delete(ref)

    def deploy(self, spec: ServiceSpec) -> ServiceRef:
        return self.services.deploy(spec)

    def update_service(self, ref: ServiceRef, configs: tuple[ServiceConfig, ...] | None = None,
                       status: str | None = None) -> ServiceRef:
        return self.services.update(ref, configs=configs, status=status)

    def predict(self, ref: ServiceRef, filename: str, content: bytes) -> Prediction:
        return self.services.predict(ref, filename, content)

    def service_status(self, ref: ServiceRef) -> str:
        try:
            return self.services.show(ref).get("status", "unknown")
        except BackendError:
            return "deleted"

    def delete_service(self, ref: ServiceRef) -> None:
        self.services.delete(ref)

    # reconciliation
    def temp_dir(self, run_id: str) -> Path:
        return self.root / "tmp" / run_id

    def list_resources(self, run_id: str | None = None) -> list[Resource]:
        def mine(name: str) -> str | None:
            rid = run_of(name)
            return rid if rid and run_id in (None, rid) else None

        found = [Resource("service", s["service_id"], s["service_name"], rid, s.get("status", ""))
                 for s in self.services.list() if (rid := mine(s.get("service_name", "")))]
        found += [Resource("model", m["model_id"], f"{m['model_name']} {m['model_version']}", rid,
                           m.get("model_status", "")) for m in self.models.list() if (rid := mine(m.get("model_name", "")))]
        found += [Resource("job", jid, name, rid) for jid, name in self.training.list() if (rid := mine(name))]
        for bucket in self.storage.buckets():
            for top in self.storage.folders(bucket):
                if top == f"{CODE_ROOT}/":        # job code copies, named for their job
                    found += [Resource("object_prefix", uri, uri, rid, "code of a training job")
                              for job, uri in self.training.code_prefixes(bucket) if (rid := mine(job))]
                    continue
                for sub in self.storage.folders(bucket, top):
                    rid = sub.rstrip("/").rsplit("/", 1)[-1]
                    if RUN_ID.fullmatch(rid) and run_id in (None, rid):
                        uri = f"obs://{bucket}/{sub}"
                        found.append(Resource("object_prefix", uri, uri, rid))
        for tmp in sorted((self.root / "tmp").glob("*")):
            if tmp.is_dir() and run_id in (None, tmp.name):
                found.append(Resource("temp_dir", str(tmp), str(tmp), tmp.name))
        return found

    def delete_resource(self, resource: Resource) -> None:
        """Delete anything ``list_resources`` or the ledger names; idempotent."""
        kind = resource.kind
        if kind == "service":
            self.services.delete(ServiceRef(resource.id, resource.name, ""))
        elif kind == "model":
            self.models.delete(ModelRef(resource.id, resource.name, ""))
        elif kind == "job":
            self.training.delete(JobRef(resource.id, resource.name))
        elif kind == "object_prefix":
            self.storage.delete(resource.id)
        elif kind == "temp_dir":
            path = Path(resource.id).resolve()
            if (self.root / "tmp").resolve() not in path.parents:
                raise BackendError(f"refusing to delete {path}: not a temporary folder of this backend")
            shutil.rmtree(path, ignore_errors=True)
        else:
            raise BackendError(f"unknown resource kind '{kind}'")


def from_profile(name: str, prof, root: Path) -> ModelArtsBackend:
    """The backend of a ``modelarts`` profile of config.json, with the AK/SK from the
    environment variables the profile names (never from a file)."""
    ak, sk = os.environ.get(prof.ak_env, ""), os.environ.get(prof.sk_env, "")
    missing = [var for var, value in ((prof.ak_env, ak), (prof.sk_env, sk)) if not value]
    if missing:
        raise UserError(f"profile '{name}' reads the access key and secret key from the environment, but "
                        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
                        hint=f"export {prof.ak_env}=... {prof.sk_env}=... (IAM > My Credentials > Access Keys)")
    modelarts, obs = prof.endpoints()
    return ModelArtsBackend(root, project_id=prof.project_id, ak=ak, sk=sk, modelarts_endpoint=modelarts,
                            obs_endpoint=obs, region=prof.region, verify_ssl=prof.verify_ssl,
                            path_style=prof.path_style, obs_signature=prof.obs_signature,
                            create_bucket=prof.create_bucket, engine_name=prof.engine_name,
                            engine_version=prof.engine_version, timeout_s=prof.request_timeout, retries=prof.retries,
                            credentials_hint=f"{prof.ak_env} and {prof.sk_env} (profile '{name}')",
                            poll_s=prof.poll_interval)
