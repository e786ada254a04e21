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
from pathlib import Path

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkmodelarts.v1 import ModelArtsClient

from orchestrator.errors import UserError
from orchestrator.spec import ModelArtsProfile

from ..base import Backend, BackendError, ModelRef, Resource, ServiceConfig, ServiceRef
from ..parts import SharedParts
from .models import Models
from .rest import RestClient, Retry
from .services import Services, Waits
from .storage import ObsStorage
from .training import CODE_ROOT, TrainingJobs

RUN_ID = re.compile(r"\d{6}-\d{6}-[0-9a-f]{4}")


def run_of(name: str) -> str | None:
    match = RUN_ID.search(name or "")
    return match.group(0) if match else None


class ModelArtsBackend(SharedParts, Backend):
    """Blocking calls; see ``base.py`` for the contract. Construction makes no network call;
    ``preflight`` makes one cheap signed call per service so bad credentials fail fast.
    ``prof``: the ``modelarts`` profile of config.json (endpoints, addressing, engine,
    timeouts); ``profile_name`` names it in error messages. ``ttl_unit``: the finest unit of a
    service's auto-stop schedule, ``MINUTES`` (ModelArts) or ``SECONDS`` (accepted by the
    emulator only, for tests)."""

    name = "modelarts"

    def __init__(self, root: Path, prof: ModelArtsProfile, ak: str, sk: str, *, profile_name: str = "modelarts",
                 ttl_unit: str = "MINUTES"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        modelarts_endpoint, obs_endpoint = prof.endpoints()
        project_id, verify_ssl, timeout_s = prof.project_id, prof.verify_ssl, prof.request_timeout
        credentials_hint = f"{prof.ak_env} and {prof.sk_env} (profile '{profile_name}')"
        retry = Retry(attempts=prof.retries)
        self.storage = ObsStorage(obs_endpoint, ak, sk, root / "obs-state", path_style=prof.path_style,
                                  signature=prof.obs_signature, verify_ssl=verify_ssl,
                                  create_bucket=prof.create_bucket, region=prof.region, timeout=int(timeout_s),
                                  retry=retry, credentials_hint=credentials_hint)
        config = HttpConfig.get_default_config()
        config.timeout = (5, timeout_s)
        config.ignore_ssl_verification = not verify_ssl
        client = (ModelArtsClient.new_builder().with_credentials(BasicCredentials(ak, sk, project_id))
                  .with_endpoint(modelarts_endpoint).with_http_config(config).build())
        self.training = TrainingJobs(client, self.storage, engine_name=prof.engine_name,
                                     engine_version=prof.engine_version, retry=retry, credentials_hint=credentials_hint)
        rest = RestClient(modelarts_endpoint, project_id, ak, sk, timeout=(5, timeout_s), retry=retry,
                          verify_ssl=verify_ssl, credentials_hint=credentials_hint)
        self.models = Models(rest, self.storage.https_url, poll_s=prof.poll_interval, storage=self.storage)
        self.services = Services(rest, Waits(poll_s=prof.poll_interval), finest_unit=ttl_unit)

    def preflight(self, buckets: tuple[str, ...] = ()) -> None:
        """Fail fast (``UserError``) on rejected credentials or a missing bucket."""
        self.training.check()
        for bucket in buckets:
            self.storage.ensure_bucket(bucket)

    # models and services
    def delete_model(self, ref: ModelRef) -> None:
        self.models.delete(ref)

    def update_service(self, ref: ServiceRef, configs: tuple[ServiceConfig, ...] | None = None,
                       status: str | None = None) -> ServiceRef:
        return self.services.update(ref, configs=configs, status=status)

    def service_status(self, ref: ServiceRef) -> str:
        try:
            return self.services.show(ref).get("status", "unknown")
        except BackendError:
            return "deleted"

    def delete_service(self, ref: ServiceRef) -> None:
        self.services.delete(ref)

    # reconciliation
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
        return found + self.temp_dirs(run_id)


def from_profile(name: str, prof: ModelArtsProfile, root: Path) -> ModelArtsBackend:
    """The backend of a ``modelarts`` profile of config.json, with the AK/SK from the
    environment variables the profile names (never from a file)."""
    ak, sk = os.environ.get(prof.ak_env, ""), os.environ.get(prof.sk_env, "")
    missing = [var for var, value in ((prof.ak_env, ak), (prof.sk_env, sk)) if not value]
    if missing:
        raise UserError(f"profile '{name}' reads the access key and secret key from the environment, but "
                        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
                        hint=f"export {prof.ak_env}=... {prof.sk_env}=... (IAM > My Credentials > Access Keys)")
    return ModelArtsBackend(root, prof, ak, sk, profile_name=name)
