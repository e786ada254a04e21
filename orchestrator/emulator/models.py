"""Model import of the v1 API (``/v1/{project_id}/models``), by the local registry.

``POST`` downloads ``<source_location>/model/`` from the object store, validates it as
ModelArts' import does (``validate_package``: 400 ``ModelArts.3015`` naming the problems;
nothing there: 400 ``ModelArts.3551``) and registers it; the model is ``published`` when
the answer ``{"model_id"}`` is sent. ``DELETE`` refuses a model a service uses
(``delete_failed_list`` with ``ModelArts.3009``, as the cloud answers). A ``model_type:
Image`` package must name a known image as ``swr_location`` and a ``health`` check in its
config.json (``image_of``); its record keeps both for the services part.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from orchestrator.backends.base import ModelRef, ModelSpec
from orchestrator.model_package import validate_package

from .images import Images
from .records import RUN_ID, ApiError, Records, Request, now_ms, page, require, s3_uri

SUMMARY = ("model_id", "model_name", "model_version", "model_type", "model_size", "model_status", "description",
           "create_at", "workspace_id", "source_type", "tenant", "project", "owner", "runtime")


def _missing(model_id: str) -> ApiError:
    return ApiError(404, "ModelArts.3502", f"Model {model_id} does not exist.")


def image_of(model_dir: Path, body: dict, images: Images) -> dict:
    """An Image model's ``{"image", "health"}`` from its config.json (``{}`` for other
    models); refuses what ModelArts refuses: a type that disagrees with the request, no or
    an unknown ``swr_location``, a ``health`` check without a ``url``."""
    config = json.loads((model_dir / "config.json").read_text())
    if "Image" not in (body["model_type"], config.get("model_type")):
        return {}
    if body["model_type"] != config.get("model_type"):
        raise ApiError(400, "ModelArts.3015", f"model_type {body['model_type']} of the request differs from "
                                              f"model_type {config.get('model_type')} of config.json.")
    if not config.get("swr_location"):
        raise ApiError(400, "ModelArts.3015", "Config json file does not conform to the specification: "
                                              "swr_location is required when model_type is Image.")
    health = config.get("health")
    if not isinstance(health, dict) or not str(health.get("url", "")).startswith("/"):
        raise ApiError(400, "ModelArts.3015", "Config json file does not conform to the specification: "
                                              "health needs a url such as /health for a custom image.")
    images.context(config["swr_location"], f"model {body['model_name']}")
    return {"image": config["swr_location"], "health": health}


class Models:
    def __init__(self, root: Path, local, obs, obs_endpoint: str, project: str, images: Images | None = None):
        self.local, self.obs, self.obs_endpoint, self.project = local, obs, obs_endpoint, project
        self.images = images or Images({})
        self.records, self.staging = Records(root / "models"), root / "staging"
        self.in_use = lambda model_id: False      # set by the services part

    def routes(self, router) -> None:
        router.add("POST", "/v1/{project}/models", self.create)
        router.add("GET", "/v1/{project}/models", self.list)
        router.add("GET", "/v1/{project}/models/{model_id}", self.show)
        router.add("DELETE", "/v1/{project}/models/{model_id}", self.delete)

    def create(self, req: Request):
        body = req.json()
        require(body, "model_name", "model_version", "source_location", "model_type")
        name, version = body["model_name"], body["model_version"]
        if any(r["model_name"] == name and r["model_version"] == version for r in self.records.all()):
            raise ApiError(400, "ModelArts.3001", f"Model {name} of version {version} already exists.")
        source = s3_uri(body["source_location"], self.obs_endpoint).rstrip("/") + "/model/"
        staged = self.staging / "models" / f"{name}-{version}"
        shutil.rmtree(staged, ignore_errors=True)
        try:
            if not self.obs.exists(source):
                raise ApiError(400, "ModelArts.3551", f"OBS path {source} does not exist.")
            self.obs.get(source, staged / "model")
            problems = validate_package(staged / "model")
            if problems:
                raise ApiError(400, "ModelArts.3015", "Config json file does not conform to the specification: "
                                                      + "; ".join(problems))
            image = image_of(staged / "model", body, self.images)
            local_uri = f"obs://emulator-models/{name}/{version}/"
            self.local.storage.put(str(staged), local_uri)
            match = RUN_ID.search(name)
            ref = self.local.import_model(ModelSpec(name=name, version=version, run_id=match.group(0) if match else "",
                                                    source_location=local_uri, model_type=body["model_type"],
                                                    model_algorithm=body.get("model_algorithm") or "",
                                                    runtime=body.get("runtime")))   # None: config.json's
            self.local.storage.delete(local_uri)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        size = sum(p.stat().st_size for p in self.local.models.path(ref.id).rglob("*") if p.is_file())
        record = {"model_id": ref.id, "model_name": name, "model_version": version, "model_type": body["model_type"],
                  "model_size": size, "model_status": "published", "description": body.get("description", ""),
                  "create_at": now_ms(), "created_ms": now_ms(), "workspace_id": "0", "source_type": "",
                  "tenant": self.project, "project": self.project, "owner": self.project,
                  "runtime": body.get("runtime") or "python2.7", "source_location": body["source_location"],
                  "model_algorithm": body.get("model_algorithm", ""), "execution_code": body.get("execution_code", ""),
                  "apis": body.get("apis", []), "dependencies": body.get("dependencies", []), **image}
        self.records.save(ref.id, record)
        return 200, {"model_id": ref.id}

    def show(self, req: Request):
        record = self.records.load(req.params["model_id"], _missing(req.params["model_id"]))
        return 200, {k: v for k, v in record.items() if k != "created_ms"}

    def list(self, req: Request):
        name = req.arg("model_name")
        found = [r for r in reversed(self.records.all()) if not name or name in r["model_name"]]
        chosen = page(found, req)
        return 200, {"total_count": len(found), "count": len(chosen),
                     "models": [{k: r.get(k) for k in SUMMARY} for r in chosen]}

    def delete(self, req: Request):
        model_id = req.params["model_id"]
        self.records.load(model_id, _missing(model_id))
        if self.in_use(model_id):
            return 200, {"delete_success_list": [], "delete_failed_list": [{
                "model_id": model_id, "error_code": "ModelArts.3009",
                "error_msg": f"Failed to delete model because the model ({model_id}) has been used to deploy a service."}]}
        self.local.delete_model(ModelRef(model_id, model_id, ""))
        self.records.delete(model_id)
        return 200, {"delete_success_list": [model_id], "delete_failed_list": []}

    def published(self, model_id: str) -> dict:
        record = self.records.get(model_id)
        if record is None or record["model_status"] != "published":
            raise ApiError(400, "ModelArts.3529", f"Model {model_id} does not exist or is not published.")
        return record
