"""Model import (ModelArts v1 ``/v1/{project_id}/models``) through signed REST calls.

``import_model`` posts the package's OBS location and blocks until the model is
``published`` (returns its ref), ``failed``/``building_failed`` (raises) or the timeout
passed (raises; the model is left for teardown, which finds it by name). ``delete`` is
idempotent. ``list`` pages through every model of the project.
"""

from __future__ import annotations

import time

from ..base import BackendError, ModelRef, ModelSpec
from .errors import NotFound
from .rest import RestClient

FAILED = {"failed", "building_failed"}


class Models:
    def __init__(self, rest: RestClient, source_url, *, timeout_s: float = 600.0, poll_s: float = 2.0):
        self.rest, self.source_url = rest, source_url        # source_url: obs:// URI -> the URL ModelArts wants
        self.timeout_s, self.poll_s = timeout_s, poll_s

    def import_model(self, spec: ModelSpec) -> ModelRef:
        source = spec.source_location if spec.source_location.endswith("/") else spec.source_location + "/"
        body = {"model_name": spec.name, "model_version": spec.version, "source_location": self.source_url(source),
                "model_type": spec.model_type, "model_algorithm": spec.model_algorithm, "runtime": spec.runtime,
                "execution_code": self.source_url(source + "model/customize_service.py"),
                "description": f"orchestrator run {spec.run_id}"}
        model_id = self.rest.call("POST", "/v1/{project_id}/models", f"import model {spec.name}", body=body)["model_id"]
        ref = ModelRef(model_id, spec.name, spec.version)
        deadline = time.time() + self.timeout_s
        while True:
            info = self.show(ref)
            status = info.get("model_status")
            if status == "published":
                return ref
            if status in FAILED:
                raise BackendError(f"model {spec.name} {spec.version} failed to import: "
                                   f"{info.get('failed_reason') or status}")
            if time.time() > deadline:
                raise BackendError(f"model {spec.name} is still '{status}' after {self.timeout_s:.0f}s")
            time.sleep(self.poll_s)

    def show(self, ref: ModelRef) -> dict:
        return self.rest.call("GET", f"/v1/{{project_id}}/models/{ref.id}", f"model {ref.name}")

    def delete(self, ref: ModelRef) -> None:
        try:
            answer = self.rest.call("DELETE", f"/v1/{{project_id}}/models/{ref.id}", f"delete model {ref.name}")
        except NotFound:
            return
        failed = answer.get("delete_failed_list") or []
        if failed:
            raise BackendError(f"could not delete model {ref.name}: "
                               + "; ".join(f"{f.get('error_code')}: {f.get('error_msg')}" for f in failed))

    def list(self) -> list[dict]:
        out, offset, limit = [], 0, 100
        while True:
            page = self.rest.call("GET", "/v1/{project_id}/models", "list models",
                                  query={"offset": offset, "limit": limit}).get("models") or []
            out += page
            if len(page) < limit:
                return out
            offset += 1          # offset is a page index in these APIs
