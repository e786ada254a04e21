"""Model import (ModelArts v1 ``/v1/{project_id}/models``) through signed REST calls.

``import_model`` posts the package's OBS location and blocks until the model is
``published`` (returns its ref), ``failed``/``building_failed`` (raises) or the timeout
passed (raises; the model is left for teardown, which finds it by name). ``delete`` is
idempotent. ``list`` pages through every model of the project. With ``ModelSpec.image``
the package's ``config.json`` is first rewritten on OBS for the custom image (``model_type:
Image``, ``swr_location``, ``health``) and the model is imported as ``model_type: Image``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from orchestrator.image import layout

from ..base import BackendError, ModelRef, ModelSpec
from .errors import NotFound
from .rest import RestClient

FAILED = {"failed", "building_failed"}


def image_config(config: dict, image: str) -> dict:
    """An MXNet package's config.json for the custom image: ``model_type: Image``, the
    image's ``swr_location`` and its ``health`` check; ``apis`` and the rest unchanged."""
    return {**config, "model_type": "Image", "swr_location": image, "health": layout.health_config()}


class Models:
    def __init__(self, rest: RestClient, source_url, *, timeout_s: float = 600.0, poll_s: float = 2.0,
                 storage=None):
        self.rest, self.source_url = rest, source_url        # source_url: obs:// URI -> the URL ModelArts wants
        self.timeout_s, self.poll_s, self.storage = timeout_s, poll_s, storage

    def _as_image(self, spec: ModelSpec, source: str) -> dict:
        """Rewrite the package's config.json on OBS for the image (``image_config``); returns it."""
        uri = source + "model/config.json"
        with tempfile.TemporaryDirectory(prefix="orchestrator-model-") as tmp:
            path = Path(tmp) / "config.json"
            try:
                self.storage.get(uri, path)
                config = json.loads(path.read_text())
            except (BackendError, OSError, ValueError) as exc:
                raise BackendError(f"model {spec.name}: cannot read {uri}: {exc}") from None
            config = image_config(config, spec.image)
            path.write_text(json.dumps(config, indent=2))
            self.storage.put(path, uri)
        return config

    def import_model(self, spec: ModelSpec) -> ModelRef:
        source = spec.source_location if spec.source_location.endswith("/") else spec.source_location + "/"
        body = {"model_name": spec.name, "model_version": spec.version, "source_location": self.source_url(source),
                "model_type": spec.model_type, "model_algorithm": spec.model_algorithm,
                "execution_code": self.source_url(source + "model/customize_service.py"),
                "description": f"orchestrator run {spec.run_id}"}
        if spec.runtime:   # else ModelArts takes config.json's runtime (python2.7 when it has none)
            body["runtime"] = spec.runtime
        if spec.image:          # served by the image: no runtime, no execution code
            config = self._as_image(spec, source)
            body = {**{k: v for k, v in body.items() if k not in ("runtime", "execution_code")},
                    "model_type": "Image", "apis": config.get("apis") or []}
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
