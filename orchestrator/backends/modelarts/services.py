"""Real-time services (ModelArts v1 ``/v1/{project_id}/services``) and predictions.

``deploy`` and ``update`` block until the service is ``running`` (or ``stopped`` when that
was asked), ``failed`` (raises with the service's ``error_msg``) or the timeout passed
(raises; the service is left for teardown). ``predict`` POSTs the image as multipart field
``images`` to the service's ``access_address``, signed with the same AK/SK (the APIG
app-less AK/SK mode), and returns whatever status the service answered. ``delete`` is
idempotent and waits until the service is gone, so its models can be deleted next.

A ``ttl_s`` becomes the service's auto-stop ``schedule``: ModelArts itself stops it, even
with the orchestrator gone. The API counts in MINUTES, HOURS or DAYS (1 minute to 7 days),
so the ttl is rounded up to a whole minute; ``finest_unit="SECONDS"`` is for the emulator
only (it accepts SECONDS so tests need not wait a minute).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import requests

from orchestrator.errors import UserError

from ..base import TTL_HINT, BackendError, Prediction, ServiceConfig, ServiceRef, ServiceSpec, service_ttl_problem
from .errors import CloudError, NotFound
from .rest import RestClient
from .signing import UNSIGNED

PATH = "/v1/{project_id}/services"


@dataclass(frozen=True)
class Waits:
    deploy_s: float = 300.0
    delete_s: float = 120.0
    poll_s: float = 2.0


def config_body(config: ServiceConfig) -> dict:
    return {"model_id": config.model_id, "weight": config.weight, "specification": config.flavor,
            "instance_count": config.instance_count, "envs": dict(config.envs)}


UNITS = {"DAYS": 86400, "HOURS": 3600, "MINUTES": 60, "SECONDS": 1}     # SECONDS: the emulator only


def schedule(ttl_s: float, finest_unit: str = "MINUTES") -> list[dict]:
    """The v1 ``schedule`` that stops a service ``ttl_s`` after it is running: the ttl
    rounded up to ``finest_unit``, written in the largest unit that holds it exactly.
    Raises ``UserError`` for a ttl out of ModelArts' range."""
    if problem := service_ttl_problem(ttl_s):
        raise UserError(problem, hint=TTL_HINT)
    step = UNITS[finest_unit]
    seconds = math.ceil(ttl_s / step) * step
    unit = next(u for u, size in UNITS.items() if size >= step and seconds % size == 0)
    return [{"type": "stop", "time_unit": unit, "duration": seconds // UNITS[unit]}]


class Services:
    def __init__(self, rest: RestClient, waits: Waits = Waits(), finest_unit: str = "MINUTES"):
        if finest_unit not in ("MINUTES", "SECONDS"):
            raise ValueError(f"finest_unit must be 'MINUTES' (ModelArts) or 'SECONDS' (the emulator), "
                             f"not {finest_unit!r}")
        self.rest, self.waits, self.finest_unit = rest, waits, finest_unit

    def deploy(self, spec: ServiceSpec) -> ServiceRef:
        body = {"service_name": spec.name, "description": f"orchestrator run {spec.run_id}", "infer_type": "real-time",
                "config": [config_body(c) for c in spec.configs]}
        if spec.ttl_s is not None:
            body["schedule"] = schedule(spec.ttl_s, self.finest_unit)
        sid = self.rest.call("POST", PATH, f"deploy service {spec.name}", body=body)["service_id"]
        return self._wait(ServiceRef(sid, spec.name, ""), "running", spec.deploy_timeout_s)

    def update(self, ref: ServiceRef, configs: tuple[ServiceConfig, ...] | None = None,
               status: str | None = None) -> ServiceRef:
        """New configs (models, weights, flavours) and/or a new status (running|stopped).
        The API takes one of them per PUT: configs go first, then the status."""
        if status not in (None, "running", "stopped"):
            raise BackendError(f"service status must be 'running' or 'stopped', not {status!r}")
        if configs is not None:
            current = self.show(ref).get("status")
            self.rest.call("PUT", f"{PATH}/{ref.id}", f"update service {ref.name}",
                           body={"config": [config_body(c) for c in configs]})
            ref = self._wait(ref, "stopped" if current == "stopped" else "running", self.waits.deploy_s,
                             models=sorted(c.model_id for c in configs))
        if status is not None:
            self.rest.call("PUT", f"{PATH}/{ref.id}", f"update service {ref.name}", body={"status": status})
            ref = self._wait(ref, status, self.waits.deploy_s)
        return ref

    def _wait(self, ref: ServiceRef, want: str, timeout_s: float, models: list[str] | None = None) -> ServiceRef:
        """Poll until ``status == want`` (and the service serves ``models``, so a status read
        before the update took effect does not count)."""
        deadline = time.time() + timeout_s
        while True:
            info = self.show(ref)
            status = info.get("status")
            serving = sorted(c.get("model_id") for c in info.get("config") or [])
            if status == want and models in (None, serving):
                return ServiceRef(ref.id, ref.name, info.get("access_address") or ref.url)
            if status == "failed":
                raise BackendError(f"service {ref.name} failed: {info.get('error_msg') or 'no reason given'}")
            if time.time() > deadline:
                raise BackendError(f"service {ref.name} is still '{status}' after {timeout_s:.0f}s "
                                   f"(wanted '{want}')")
            time.sleep(self.waits.poll_s)

    def show(self, ref: ServiceRef) -> dict:
        return self.rest.call("GET", f"{PATH}/{ref.id}", f"service {ref.name}")

    def predict(self, ref: ServiceRef, filename: str, content: bytes) -> Prediction:
        form = requests.Request("POST", ref.url, files={"images": (filename, content)}).prepare()
        headers = {"Content-Type": form.headers["Content-Type"], "X-Sdk-Content-Sha256": UNSIGNED}
        data = form.body
        start = time.perf_counter()
        try:
            resp = self.rest.send("POST", ref.url, f"predict with service {ref.name}", data=data, headers=headers,
                                  retry=False)
        except CloudError as exc:
            raise BackendError(str(exc)) from None
        try:
            body = resp.json()
        except ValueError:
            body = {"error_code": "ORCH.0001", "error_msg": resp.text[:200]}
        return Prediction(resp.status_code, body, time.perf_counter() - start)   # any JSON value

    def delete(self, ref: ServiceRef) -> None:
        try:
            self.rest.call("DELETE", f"{PATH}/{ref.id}", f"delete service {ref.name}")
        except NotFound:
            return
        deadline = time.time() + self.waits.delete_s
        while time.time() < deadline:
            try:
                self.show(ref)
            except NotFound:
                return
            time.sleep(self.waits.poll_s)
        raise BackendError(f"service {ref.name} is still there {self.waits.delete_s:.0f}s after its deletion")

    def list(self) -> list[dict]:
        out, offset, limit = [], 0, 100
        while True:
            page = self.rest.call("GET", PATH, "list services", query={"offset": offset, "limit": limit,
                                                                        "infer_type": "real-time"}).get("services") or []
            out += page
            if len(page) < limit:
                return out
            offset += 1          # offset is a page index in this API
