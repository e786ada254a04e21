"""``Predictor``: a deployed real-time service (``modelarts.model.Predictor``), and
``deploy`` which makes one."""

from __future__ import annotations

import time

from ..backends.base import BackendError, ServiceRef, ServiceSpec
from . import checks, listing
from .config.model_config import ServiceConfig


def deploy(session, service_name: str, configs, description: str | None = None, infer_type: str = "real-time",
           schedule=None, deploy_timeout: float = 300.0) -> "Predictor":
    """Deploy ``configs`` (ServiceConfig objects whose weights add up to 100) as the
    service ``service_name``; blocks until it runs. Recorded in the ledger first."""
    session.check_open()
    checks.choice(infer_type, "infer_type", ["real-time"])
    if schedule:
        raise checks.fail("schedule", "automatic stop schedules are not supported",
                          hint="delete the service with predictor.delete_service() when done")
    if not isinstance(configs, (list, tuple)) or not configs:
        raise checks.fail("configs", f"must be a non-empty list of ServiceConfig, got {configs!r}")
    for i, config in enumerate(configs):
        if not isinstance(config, ServiceConfig):
            raise checks.fail(f"configs[{i}]", f"expected a ServiceConfig, got {type(config).__name__}",
                              hint="configs=[ServiceConfig(model_id=model.get_model_id(), weight='100', ...)]")
        session.flavour(config.specification, f"configs[{i}].specification", "service")
    total = sum(c.weight for c in configs)
    if total != 100:
        raise checks.fail("configs", f"the weights add up to {total}; they must add up to 100")
    name = session.unique_name("service", service_name, "service_name")
    spec = ServiceSpec(name=name, run_id=session.run_id, configs=tuple(c.to_backend() for c in configs),
                       deploy_timeout_s=float(deploy_timeout))
    with session.track("service", name, {"flavor": configs[0].specification}) as made:
        session.say(f"Deploying service {service_name} ({len(configs)} config(s), "
                    f"{sum(c.instance_count for c in configs)} instance(s))")
        start = time.perf_counter()
        ref = session.backend.deploy(spec)
        made.created(ref.id, {"url": ref.url})
    session.say(f"Service {service_name} is running at {ref.url} (ready in {time.perf_counter() - start:.1f}s)")
    return Predictor._attach(session, ref, service_name, list(configs), description)


class Predictor:
    """``Predictor(session, service_id=...)`` attaches to a live service recorded in the
    ledger. ``predict(data=<local image>, data_type="images")`` sends the file as the
    multipart field ``images`` and returns the answer's JSON (usually a dict; a list or a
    scalar when the service answers one); a service error
    raises ``BackendError`` with its status and message. ``delete_service()`` is idempotent.
    """

    def __init__(self, session, service_id: str | None = None):
        checks.required(service_id, "service_id")
        row = session.recorded("service", service_id)
        if row is None or row.state not in ("created", "delete_failed") or "url" not in row.detail:
            raise checks.fail("service_id", f"no running service {service_id!r} in the ledger",
                              hint="`python -m orchestrator status RUN_ID` lists a run's services")
        self._init(session, ServiceRef(service_id, row.name, row.detail["url"]), row.name, [], None)

    @classmethod
    def _attach(cls, session, ref: ServiceRef, name: str, configs: list, description: str | None) -> "Predictor":
        predictor = cls.__new__(cls)
        predictor._init(session, ref, name, configs, description)
        return predictor

    def _init(self, session, ref: ServiceRef, name: str, configs: list, description: str | None) -> None:
        self.session, self._ref, self.service_name = session, ref, name
        self.service_id, self.access_address = ref.id, ref.url
        self._configs, self._description = configs, description
        self.invocation_times = self.failed_times = 0

    def __repr__(self) -> str:
        return f"Predictor(service_name={self.service_name!r}, access_address={self.access_address!r})"

    def predict(self, data, data_type: str = "images", path: str = "/"):
        checks.choice(data_type, "data_type", ["images"])
        if path != "/":
            raise checks.fail("path", f"only '/' is served, got {path!r}")
        file = checks.local_path(data, "data")
        if not file.is_file():
            raise checks.fail("data", f"{file} is a folder; send one image file per call")
        answer = self.session.backend.predict(self._ref, file.name, file.read_bytes())
        self.invocation_times += 1
        if answer.status != 200:
            self.failed_times += 1
            raise BackendError(f"service {self.service_name} answered {answer.status}: "
                               f"{(answer.body.get('error_msg') if isinstance(answer.body, dict) else None) or answer.body}")
        return answer.body

    def get_service_info(self) -> dict:
        row = self.session.recorded("service", self.service_id)
        status = "deleted" if row is not None and row.state == "deleted" else "running"
        return {"service_id": self.service_id, "service_name": self.service_name, "status": status,
                "infer_type": "real-time", "access_address": self.access_address, "description": self._description,
                "invocation_times": self.invocation_times, "failed_times": self.failed_times,
                "config": [{"model_id": c.model_id, "weight": c.weight, "specification": c.specification,
                            "instance_count": c.instance_count} for c in self._configs]}

    @classmethod
    def get_service_list(cls, session, service_id=None, service_name=None, infer_type=None, offset: int = 0,
                         limit: int = 1000, service_status=None, sort_by: str = "publish_at", order: str = "desc",
                         model_id=None, workspace_id=None) -> dict:
        """The services the backend runs: ``{total_count, count, services: [{service_id, service_name, status}]}``."""
        return listing.service_list(session, service_id, service_name, infer_type, offset, limit, service_status,
                                    sort_by, order, model_id, workspace_id)

    def update_service_config(self, description: str | None = None, status: str | None = None,
                              configs=None) -> None:
        """Start or stop the service (``status`` 'running' | 'stopped'; it wins over ``configs``,
        as on ModelArts) or replace its model configs (weights adding up to 100). Blocks until
        the change is live."""
        if description is not None:
            self._description = description
        if status is not None:
            checks.choice(status, "status", ["running", "stopped"])
            self._ref = self.session.backend.update_service(self._ref, status=status)
            self.access_address = self._ref.url
            self.session.say(f"Service {self.service_name} {status}")
            return
        if configs is None:
            return
        if not isinstance(configs, (list, tuple)) or not configs or not all(
                isinstance(c, ServiceConfig) for c in configs):
            raise checks.fail("configs", f"must be a non-empty list of ServiceConfig, got {configs!r}")
        total = sum(c.weight for c in configs)
        if total != 100:
            raise checks.fail("configs", f"the weights add up to {total}; they must add up to 100")
        for i, config in enumerate(configs):
            self.session.flavour(config.specification, f"configs[{i}].specification", "service")
        self._ref = self.session.backend.update_service(self._ref, configs=tuple(c.to_backend() for c in configs))
        self._configs = list(configs)
        self.session.say(f"Service {self.service_name} now serves {len(configs)} config(s)")

    def delete_service(self) -> None:
        """Stop and delete the service (idempotent); mark it deleted in the ledger."""
        self.session.backend.delete_service(self._ref)
        self.session.forget("service", self.service_id)
        self.session.say(f"Service {self.service_name} deleted")
