"""Online services as predictor processes on 127.0.0.1 ports.

One predictor front per service serves all its configs (one worker pool each, traffic
split by weight; ``X-Model-Id`` says which config answered). Files in
``<root>/services/<name>/``: ``service.json`` (the record, written before the process can
bind a port), ``configs.json`` (what the predictor serves, with a ``generation``),
``ready.json`` (written by the predictor) and ``predictor.log``.

* ``deploy`` starts ``python -m orchestrator.predictor --config configs.json`` in its own
  process group and blocks until ready (every worker warm, ``GET /health`` 200), the
  process dies (failed, with its log tail) or the timeout passes (failed, stopped).
* ``update(name, configs=None, status=None)``: new configs are written to
  ``configs.json`` and the predictor is sent SIGHUP; it blocks until the predictor reports
  the new generation (new model versions are warm before they get traffic, and removed
  ones finish their in-flight requests) or its error (``BackendError``; the old configs
  keep serving). ``status="stopped"`` stops the process after it drained its requests;
  ``"running"`` starts a stopped service again, on its old port when that is free.
* ``delete`` stops the process group and frees the port; idempotent.
* ``ServiceSpec.ttl_s``: the predictor stops itself (draining first) that long after it is
  ready, a watchdog that holds with the orchestrator gone; ``status`` then says stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import requests

from orchestrator.predictor.cli import TOKEN_ENV
from orchestrator.predictor.config import ModelConfig, service_document

from ..base import BackendError, Prediction, Resource, ServiceConfig, ServiceRef, ServiceSpec
from . import procs
from .models import Registry

STATUSES = ("running", "stopped")


class Services:
    def __init__(self, root: Path, registry: Registry, host: str = "127.0.0.1"):
        self.dir = root / "services"
        self.registry, self.host = registry, host
        self._children: list = []

    def _predictor_configs(self, configs: tuple[ServiceConfig, ...]) -> list[ModelConfig]:
        if not configs:
            raise BackendError("a service needs at least one model config")
        ids = [c.model_id for c in configs]
        if len(set(ids)) != len(ids):
            raise BackendError(f"each model may appear once per service; got {ids}")
        if any(c.weight < 0 for c in configs) or not any(c.weight for c in configs):
            raise BackendError(f"weights must be >= 0 with a positive sum; got {[c.weight for c in configs]}")
        if any(c.instance_count < 1 for c in configs):
            raise BackendError("instance_count must be at least 1")
        return [ModelConfig(id=c.model_id, model_dir=str(self.registry.path(c.model_id)), weight=c.weight,
                            workers=c.instance_count, envs=tuple(sorted(c.envs)),
                            runtime=self.registry.runtime(c.model_id)) for c in configs]

    def deploy(self, spec: ServiceSpec) -> ServiceRef:
        models = self._predictor_configs(spec.configs)
        sdir = self.dir / spec.name
        if (sdir / "service.json").exists():
            raise BackendError(f"service {spec.name} already exists")
        sdir.mkdir(parents=True)
        record = {"name": spec.name, "run_id": spec.run_id, "model_ids": [c.id for c in models],
                  "status": "deploying", "created_at": time.time(), "deploy_timeout_s": spec.deploy_timeout_s,
                  "ttl_s": spec.ttl_s}
        procs.write_json(sdir / "service.json", record)
        procs.write_json(sdir / "configs.json", service_document(1, models))
        return self._start(sdir, record, port=0)

    def _start(self, sdir: Path, record: dict, port: int) -> ServiceRef:
        procs.write_json(sdir / "service.json", {**record, "status": "deploying"})
        cmd = [sys.executable, "-m", "orchestrator.predictor", "--config", str(sdir / "configs.json"),
               "--host", self.host, "--port", str(port), "--ready-file", str(sdir / "ready.json"),
               "--name", record["name"]] + (["--ttl", str(record["ttl_s"])] if record.get("ttl_s") else [])
        token = os.environ.get(TOKEN_ENV)   # the predictor needs it (and keeps it from its workers)
        proc, ident = procs.spawn(cmd, log_path=sdir / "predictor.log", cwd=sdir,
                                  env=procs.child_env({TOKEN_ENV: token} if token else None))
        self._children.append(proc)
        record["process"] = ident.to_dict()
        procs.write_json(sdir / "service.json", record)
        deadline = time.time() + record.get("deploy_timeout_s", 300.0)
        while time.time() < deadline:
            ready = procs.read_json(sdir / "ready.json")
            if ready and _healthy(ready["url"]):
                record.update(status="running", url=ready["url"], port=ready["port"], running_since=time.time())
                procs.write_json(sdir / "service.json", record)
                return ServiceRef(id=record["name"], name=record["name"], url=ready["url"])
            if proc.poll() is not None:
                self._fail(sdir, record, f"the predictor exited with code {proc.returncode}")
            time.sleep(0.1)
        procs.stop(ident)
        self._fail(sdir, record, f"not ready within {record.get('deploy_timeout_s', 300.0):.0f}s")

    def _fail(self, sdir: Path, record: dict, why: str) -> None:
        procs.write_json(sdir / "service.json", {**record, "status": "failed", "reason": why})
        log = procs.tail(sdir / "predictor.log", 12)
        raise BackendError(f"service {record['name']} failed to deploy: {why}" + (f"\n--- predictor log ---\n{log}" if log else ""))

    def update(self, name: str, configs: tuple[ServiceConfig, ...] | None = None,
               status: str | None = None, timeout_s: float = 300.0) -> ServiceRef:
        sdir = self.dir / name
        record = procs.read_json(sdir / "service.json")
        if record is None:
            raise BackendError(f"service {name} does not exist")
        if status is not None and status not in STATUSES:
            raise BackendError(f"service status must be one of {STATUSES}, not {status!r}")
        running = self.status(name) == "running"
        if configs is not None:
            models = self._predictor_configs(configs)
            current = procs.read_json(sdir / "configs.json") or {"generation": 0}
            generation = current["generation"] + 1
            procs.write_json(sdir / "configs.json", service_document(generation, models))
            record["model_ids"] = [c.id for c in models]
            procs.write_json(sdir / "service.json", record)
            if running and status != "stopped":
                self._reload(sdir, record, generation, current, timeout_s)
        if status == "stopped" and running:
            procs.stop(procs.ProcId.from_dict(record.get("process")), grace_s=60.0)  # SIGTERM: drains first
            self._reap()
            record.update(status="stopped")
            record.pop("process", None)
            procs.write_json(sdir / "service.json", record)
            (sdir / "ready.json").unlink(missing_ok=True)
        elif status == "running" and not running:
            return self._start(sdir, record, port=_free_or_zero(self.host, record.get("port", 0)))
        return ServiceRef(id=name, name=name, url=record.get("url", ""))

    def _reload(self, sdir: Path, record: dict, generation: int, previous: dict, timeout_s: float) -> None:
        ident = procs.ProcId.from_dict(record.get("process"))
        if not procs.alive(ident):
            raise BackendError(f"service {record['name']}: the predictor is not running")
        os.kill(ident.pid, signal.SIGHUP)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            ready = procs.read_json(sdir / "ready.json") or {}
            if ready.get("generation") == generation:
                return
            error = ready.get("error") or {}
            if error.get("generation") == generation:
                procs.write_json(sdir / "configs.json", previous)  # the file says what is served
                raise BackendError(f"service {record['name']}: update failed, the previous configs keep "
                                   f"serving: {error.get('message')}")
            if not procs.alive(ident):
                raise BackendError(f"service {record['name']}: the predictor exited during the update\n"
                                   + procs.tail(sdir / "predictor.log", 12))
            time.sleep(0.05)
        raise BackendError(f"service {record['name']}: update not applied within {timeout_s:.0f}s")

    def _reap(self) -> None:
        for child in self._children:
            child.poll()
        self._children = [c for c in self._children if c.returncode is None]

    def status(self, name: str) -> str:
        record = procs.read_json(self.dir / name / "service.json")
        if record is None:
            return "deleted"
        if record["status"] == "running" and not procs.alive(procs.ProcId.from_dict(record.get("process"))):
            ttl = record.get("ttl_s")      # the predictor stops itself when its ttl is over
            expired = ttl and time.time() >= record.get("running_since", 0) + ttl - 1
            return "stopped" if expired else "failed"
        return record["status"]

    def live_status(self, name: str) -> str:
        """``status`` with ``running`` confirmed by the predictor's ``/health`` (a front
        whose process lives but cannot serve is ``'concerning'``)."""
        status = self.status(name)
        if status != "running":
            return status
        record = procs.read_json(self.dir / name / "service.json") or {}
        return "running" if record.get("url") and _healthy(record["url"]) else "concerning"

    def predict(self, ref: ServiceRef, filename: str, content: bytes, timeout_s: float = 60.0) -> Prediction:
        start = time.perf_counter()
        token = os.environ.get(TOKEN_ENV)  # handed to the predictor by _start
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            resp = requests.post(ref.url, files={"images": (filename, content)}, headers=headers, timeout=timeout_s)
        except requests.RequestException as exc:
            raise BackendError(f"service {ref.name} did not answer: {exc}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {"error_code": "ORCH.0001", "error_msg": resp.text[:200]}
        return Prediction(resp.status_code, body, time.perf_counter() - start)

    def delete(self, name: str) -> None:
        sdir = self.dir / name
        record = procs.read_json(sdir / "service.json")
        if record is not None:
            procs.stop(procs.ProcId.from_dict(record.get("process")))
        self._reap()
        shutil.rmtree(sdir, ignore_errors=True)

    def list_resources(self, run_id: str | None) -> list[Resource]:
        out = []
        for path in sorted(self.dir.glob("*/service.json")):
            record = procs.read_json(path) or {}
            if run_id in (None, record.get("run_id")):
                detail = f"port {record['port']}" if record.get("port") else record.get("status", "")
                out.append(Resource("service", path.parent.name, path.parent.name, record.get("run_id", ""), detail))
        return out


def _healthy(url: str) -> bool:
    try:
        return requests.get(url.rstrip("/") + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _free_or_zero(host: str, port: int) -> int:
    """``port`` if nothing listens there now (a restarted service keeps its address), else 0."""
    if not port:
        return 0
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return 0
    return port
