"""Real-time services of the v1 API (``/v1/{project_id}/services``) and the predict route.

A created service is ``deploying`` while a thread starts the local predictor (one per
service, every config behind one address, traffic split by weight), then ``running``
with ``access_address`` = ``http://<emulator>/v1/infers/<service_id>``, or ``failed``
with ``error_msg``. ``PUT`` takes ``status`` (running|stopped) or ``config`` and applies
it the same way (``deploying`` meanwhile). ``POST /v1/infers/<id>`` (signed like every
call) is forwarded to the predictor; its answer comes back unchanged.

``schedule`` (on ``POST`` and ``PUT``: ``[{"type": "stop", "time_unit", "duration"}]``) is
the auto-stop: each time the service starts running a timer starts, and when it expires
the predictor is stopped and the service is ``stopped`` (a config update does not restart
the timer; a new ``schedule`` does, from the ``PUT``). Units are ModelArts' MINUTES, HOURS
and DAYS (1 minute to 7 days) plus SECONDS, an emulator-only extension for tests.

A service of a ``model_type: Image`` model runs the image's own serving boot instead of the
local predictor (``image_services.py``), health-checked through the model's ``health``.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import requests

from orchestrator.backends.base import ServiceConfig, ServiceRef, ServiceSpec
from orchestrator.files import read_json
from orchestrator.predictor.cli import TOKEN_ENV

from .image_services import ImageServers
from .records import FLAVORS, RUN_ID, ApiError, Records, Request, now_ms, page, require

SUMMARY = ("service_id", "service_name", "description", "tenant", "project", "owner", "publish_at", "infer_type",
           "status", "invocation_times", "failed_times", "is_shared", "shared_count", "workspace_id")
UNITS = {"SECONDS": 1, "MINUTES": 60, "HOURS": 3600, "DAYS": 86400}     # SECONDS: the emulator's extension


def _missing(service_id: str) -> ApiError:
    return ApiError(404, "ModelArts.3520", f"Service {service_id} does not exist.")


def _schedule(raw) -> list[dict]:
    """The validated auto-stop schedule of a request (``[]``: none)."""
    if not isinstance(raw, list) or len(raw) > 1 or not all(isinstance(item, dict) for item in raw):
        raise ApiError(400, "ModelArts.0101", "schedule must be a list with at most one {type, time_unit, duration}.")
    out = []
    for item in raw:
        unit, duration = item.get("time_unit"), item.get("duration")
        if str(item.get("type", "")).lower() != "stop":
            raise ApiError(400, "ModelArts.0101", "schedule type must be 'stop'.")
        if unit not in UNITS or not isinstance(duration, int) or isinstance(duration, bool) or duration < 1:
            raise ApiError(400, "ModelArts.0101", "schedule needs time_unit MINUTES, HOURS or DAYS and a whole "
                                                  "duration >= 1.")
        if duration * UNITS[unit] > 7 * 86400:
            raise ApiError(400, "ModelArts.0101", "schedule must stop the service after 1 minute to 7 days.")
        out.append({"type": "stop", "time_unit": unit, "duration": duration})
    return out


class Services:
    def __init__(self, root: Path, local, models, address: str, project: str, flavors=FLAVORS,
                 max_services: int = 8):
        self.local, self.models, self.address, self.project = local, models, address, project
        self.images = ImageServers(root / "image-services", models.images)
        self.records, self.flavors, self.max_services = Records(root / "services"), set(flavors), max_services
        self._session = requests.Session()
        self._session.trust_env = False
        self._timers: dict[str, threading.Timer] = {}     # auto-stop of running services
        self._timers_lock = threading.Lock()
        models.in_use = lambda mid: any(mid in [c["model_id"] for c in r["config"]] for r in self.records.all())

    def routes(self, router) -> None:
        router.add("POST", "/v1/{project}/services", self.create)
        router.add("GET", "/v1/{project}/services", self.list)
        router.add("GET", "/v1/{project}/services/{service_id}", self.show)
        router.add("PUT", "/v1/{project}/services/{service_id}", self.update)
        router.add("DELETE", "/v1/{project}/services/{service_id}", self.delete)
        router.add("POST", "/v1/infers/{service_id}", self.predict)

    def _configs(self, raw: list) -> list[dict]:
        if not raw:
            raise ApiError(400, "ModelArts.0101", "Parameter config is required.")
        out = []
        for c in raw:
            require(c, "model_id", "specification")
            if c["specification"] not in self.flavors:
                raise ApiError(400, "ModelArts.3836", f"Resource specification code {c['specification']} of project "
                                                      f"{self.project} does not exist.")
            model = self.models.published(c["model_id"])
            out.append({"model_id": c["model_id"], "model_name": model["model_name"],
                        "model_version": model["model_version"], "weight": int(c.get("weight", 100)),
                        "specification": c["specification"], "instance_count": int(c.get("instance_count") or 1),
                        "envs": c.get("envs") or {}, "status": "notReady", "scaling": False, "support_debug": False})
        if len(out) > 1 and any(self.models.published(c["model_id"]).get("image") for c in out):
            raise ApiError(400, "ModelArts.0101", "The emulator serves a model_type Image model alone in its "
                                                  "service (one config).")
        return out

    def _image_model(self, sid: str) -> dict | None:
        """The Image model a service serves (its emulator record), or None."""
        configs = self._config(sid)
        model = self.models.records.get(configs[0]["model_id"]) if configs else None
        return model if model and model.get("image") else None

    def create(self, req: Request):
        body = req.json()
        require(body, "service_name", "infer_type")
        if body["infer_type"] != "real-time":
            raise ApiError(400, "ModelArts.0101", "The emulator serves infer_type 'real-time' only.")
        if len(self.records.all()) >= self.max_services:
            raise ApiError(400, "ModelArts.3561", f"Insufficient node quota: at most {self.max_services} services.")
        configs = self._configs(body.get("config") or [])
        schedule = _schedule(body.get("schedule") or [])
        sid = str(uuid.uuid4())
        record = {"service_id": sid, "service_name": body["service_name"], "description": body.get("description", ""),
                  "tenant": self.project, "project": self.project, "owner": self.project, "publish_at": now_ms(),
                  "update_time": now_ms(), "created_ms": now_ms(), "infer_type": "real-time", "status": "deploying",
                  "progress": 0, "error_msg": "", "config": configs, "access_address": "", "invocation_times": 0,
                  "failed_times": 0, "is_shared": False, "shared_count": 0, "workspace_id": "0", "schedule": schedule}
        self.records.save(sid, record)
        self._in_background(sid, "running", self._deploy, sid)
        return 200, {"service_id": sid, "resource_ids": []}

    def _in_background(self, sid: str, then: str, fn, *args) -> None:
        """Run ``fn(*args)`` in a thread; the service becomes ``then`` (running|stopped) or failed."""
        def run():
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - the service records why it failed
                self._disarm(sid)
                self.records.update(sid, status="failed", error_msg=str(exc), update_time=now_ms())
                return
            ready = "ready" if then == "running" else "notReady"
            self.records.update(sid, status=then, progress=100, error_msg="", update_time=now_ms(),
                                access_address=f"{self.address}/v1/infers/{sid}",
                                config=[{**c, "status": ready} for c in self._config(sid)])
            if then == "running":
                self._arm(sid, restart=False)
        threading.Thread(target=run, name=f"service-{sid[:8]}", daemon=True).start()

    def _arm(self, sid: str, restart: bool) -> None:
        """Start the auto-stop timer of a running service (``restart``: replace a running timer)."""
        schedule = (self.records.get(sid) or {}).get("schedule")
        with self._timers_lock:
            if sid in self._timers and not restart:
                return                  # still counting since the service started
            old = self._timers.pop(sid, None)
            if old:
                old.cancel()
            if schedule:
                timer = threading.Timer(schedule[0]["duration"] * UNITS[schedule[0]["time_unit"]],
                                        self._auto_stop, args=(sid,))
                timer.daemon = True
                self._timers[sid] = timer
                timer.start()

    def _disarm(self, sid: str) -> None:
        with self._timers_lock:
            timer = self._timers.pop(sid, None)
        if timer:
            timer.cancel()

    def _auto_stop(self, sid: str) -> None:
        with self._timers_lock:
            if self._timers.get(sid) is not threading.current_thread():
                return                  # disarmed or replaced meanwhile
            del self._timers[sid]
            with self.records.lock:
                if (self.records.get(sid) or {}).get("status") != "running":
                    return
                self.records.update(sid, status="stopping")
        self._in_background(sid, "stopped", self._set_status, sid, "stopped")

    def _config(self, sid: str) -> list[dict]:
        return (self.records.get(sid) or {}).get("config", [])

    def _local_configs(self, configs: list[dict]) -> tuple[ServiceConfig, ...]:
        return tuple(ServiceConfig(model_id=c["model_id"], weight=c["weight"], flavor=c["specification"],
                                   instance_count=c["instance_count"], envs=tuple(sorted(c["envs"].items())))
                     for c in configs)

    def _deploy(self, sid: str) -> None:
        record = self.records.get(sid)
        model = self._image_model(sid)
        if model:
            self.images.start(sid, model, self.local.models.path(model["model_id"]),
                              record["config"][0]["instance_count"])
            return
        match = RUN_ID.search(record["service_name"])
        self.local.deploy(ServiceSpec(name=sid, run_id=match.group(0) if match else "",
                                      configs=self._local_configs(record["config"])))

    def _set_status(self, sid: str, status: str) -> None:
        if self._image_model(sid):
            return self.images.stop(sid) if status == "stopped" else self._deploy(sid)
        self.local.update_service(ServiceRef(sid, sid, ""), status=status)

    def _set_config(self, sid: str, configs: list[dict]) -> None:
        self.local.update_service(ServiceRef(sid, sid, ""), configs=self._local_configs(configs))

    def show(self, req: Request):
        record = self.records.load(req.params["service_id"], _missing(req.params["service_id"]))
        return 200, {k: v for k, v in record.items() if k != "created_ms"}

    def list(self, req: Request):
        name, status = req.arg("service_name"), req.arg("status")
        found = [r for r in reversed(self.records.all())
                 if (not name or name in r["service_name"]) and (not status or r["status"] == status)]
        chosen = page(found, req)
        return 200, {"total_count": len(found), "count": len(chosen),
                     "services": [{k: r.get(k) for k in SUMMARY} for r in chosen]}

    def update(self, req: Request):
        sid = req.params["service_id"]
        record = self.records.load(sid, _missing(sid))
        body = req.json()
        schedule = None if body.get("schedule") is None else _schedule(body["schedule"])
        if record["status"] in ("deploying", "stopping"):
            raise ApiError(400, "ModelArts.0101", f"Service {sid} is {record['status']}; update it when it is "
                                                  "running or stopped.")
        if schedule is not None:
            self.records.update(sid, schedule=schedule)
            if record["status"] == "running":
                self._arm(sid, restart=True)        # the new schedule counts from now
        if body.get("status"):
            if body["status"] not in ("running", "stopped"):
                raise ApiError(400, "ModelArts.0101", "status must be 'running' or 'stopped'.")
            self.records.update(sid, status="deploying" if body["status"] == "running" else "stopping")  # at once:
            # a client polling right after the PUT must not see the old status
            self._disarm(sid)
            self._in_background(sid, body["status"], self._set_status, sid, body["status"])
        elif body.get("config"):
            if self._image_model(sid):
                raise ApiError(400, "ModelArts.0101", "The emulator cannot change the configs of a service of a "
                                                      "model_type Image model; deploy a new service.")
            configs = self._configs(body["config"])
            then = "stopped" if record["status"] == "stopped" else "running"   # new configs apply on start
            self.records.update(sid, status="deploying" if then == "running" else "stopped", config=configs)
            self._in_background(sid, then, self._set_config, sid, configs)
        return 200, {}

    def delete(self, req: Request):
        sid = req.params["service_id"]
        self.records.load(sid, _missing(sid))
        self._disarm(sid)
        self.images.delete(sid)
        self.local.delete_service(ServiceRef(sid, sid, ""))
        self.records.delete(sid)
        return 200, {}

    def predict(self, req: Request):
        sid = req.params["service_id"]
        record = self.records.load(sid, ApiError(404, "ModelArts.4503", f"Service {sid} does not exist."))
        image = self._image_model(sid)
        live = self.images.url(sid) if image else self.local.services.status(sid) == "running"
        if record["status"] != "running" or not live:
            raise ApiError(503, "ModelArts.4503", f"Service {sid} is {record['status']}, not running.")
        target = (live + (image.get("apis") or [{}])[0].get("url", "/") if image
                  else read_json(self.local.services.dir / sid / "service.json")["url"])
        token = os.environ.get(TOKEN_ENV)
        headers = {"Content-Type": req.headers.get("content-type", "application/octet-stream")}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            resp = self._session.post(target, data=req.body, headers=headers, timeout=60)
        except requests.RequestException as exc:
            self.records.update(sid, failed_times=record["failed_times"] + 1)
            raise ApiError(502, "ModelArts.4504", f"The service did not answer: {type(exc).__name__}") from None
        key = "invocation_times" if resp.status_code < 400 else "failed_times"
        self.records.update(sid, **{key: record[key] + 1})
        ctype = resp.headers.get("Content-Type", "application/json")
        return resp.status_code, resp.content, {"Content-Type": ctype}

    def shutdown(self) -> None:
        """Stop every predictor (the emulator is stopping); records stay, marked stopped."""
        for record in self.records.all():
            self._disarm(record["service_id"])
            self.images.stop(record["service_id"])
            self.local.services.delete(record["service_id"])
            self.records.update(record["service_id"], status="stopped")
