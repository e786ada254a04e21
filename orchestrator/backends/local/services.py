"""Online services as predictor processes on free 127.0.0.1 ports.

``deploy`` starts ``python -m orchestrator.predictor`` for the service's model in its own
process group, records it in ``<root>/services/<name>/service.json`` before it can bind a
port, and blocks until the predictor's ready file appears and ``GET /health`` answers
(running), the process dies (failed, with its log tail) or the timeout passes (failed,
process stopped). ``delete`` stops the process group and frees the port; idempotent.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import requests

from ..base import BackendError, Prediction, Resource, ServiceRef, ServiceSpec
from . import procs
from .registry import Registry


class Services:
    def __init__(self, root: Path, registry: Registry, host: str = "127.0.0.1"):
        self.dir = root / "services"
        self.registry, self.host = registry, host
        self._children: list = []

    def deploy(self, spec: ServiceSpec) -> ServiceRef:
        if len(spec.configs) != 1:
            raise BackendError("the local backend serves one model config per service in this version")
        config = spec.configs[0]
        model_dir = self.registry.path(config.model_id)
        sdir = self.dir / spec.name
        if (sdir / "service.json").exists():
            raise BackendError(f"service {spec.name} already exists")
        sdir.mkdir(parents=True)
        record = {"name": spec.name, "run_id": spec.run_id, "model_id": config.model_id, "status": "deploying",
                  "created_at": time.time(), "model_dir": str(model_dir)}
        procs.write_json(sdir / "service.json", record)
        cmd = [sys.executable, "-m", "orchestrator.predictor", "--model-dir", str(model_dir), "--host", self.host,
               "--port", "0", "--workers", str(config.instance_count), "--ready-file", str(sdir / "ready.json"),
               "--name", spec.name]
        proc, ident = procs.spawn(cmd, log_path=sdir / "predictor.log", cwd=model_dir,
                                  env=procs.child_env(dict(config.envs)))
        self._children.append(proc)
        record["process"] = ident.to_dict()
        procs.write_json(sdir / "service.json", record)
        deadline = time.time() + spec.deploy_timeout_s
        while time.time() < deadline:
            ready = procs.read_json(sdir / "ready.json")
            if ready and _healthy(ready["url"]):
                procs.write_json(sdir / "service.json", {**record, "status": "running", "url": ready["url"],
                                                         "port": ready["port"]})
                return ServiceRef(id=spec.name, name=spec.name, url=ready["url"])
            if proc.poll() is not None:
                self._fail(sdir, record, f"the predictor exited with code {proc.returncode}")
            time.sleep(0.1)
        procs.stop(ident)
        self._fail(sdir, record, f"not ready within {spec.deploy_timeout_s:.0f}s")

    def _fail(self, sdir: Path, record: dict, why: str) -> None:
        procs.write_json(sdir / "service.json", {**record, "status": "failed", "reason": why})
        log = procs.tail(sdir / "predictor.log", 12)
        raise BackendError(f"service {record['name']} failed to deploy: {why}" + (f"\n--- predictor log ---\n{log}" if log else ""))

    def status(self, name: str) -> str:
        record = procs.read_json(self.dir / name / "service.json")
        if record is None:
            return "deleted"
        if record["status"] == "running" and not procs.alive(procs.ProcId.from_dict(record.get("process"))):
            return "failed"
        return record["status"]

    def predict(self, ref: ServiceRef, filename: str, content: bytes, timeout_s: float = 60.0) -> Prediction:
        start = time.perf_counter()
        try:
            resp = requests.post(ref.url, files={"images": (filename, content)}, timeout=timeout_s)
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
        for child in self._children:
            child.poll()
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
