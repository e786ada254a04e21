"""``Model``: a model imported from an OBS package (``modelarts.model.Model``).

``ServiceConfig`` and ``Predictor`` are importable from here too, as in ModelArts."""

from __future__ import annotations

from ..backends.base import ModelRef, ModelSpec
from . import checks, listing
from .config.model_config import ServiceConfig
from .predictor import Predictor, deploy

__all__ = ["Model", "ServiceConfig", "Predictor"]

RUNTIMES = ("python3.7", "python3.6", "python2.7")   # ModelArts' MXNet runtimes


class Model:
    """``Model(session, model_id=...)`` wraps a model that exists; any other call imports one:
    ``source_location`` is the OBS folder holding ``model/`` (config.json,
    customize_service.py, ``*-symbol.json``, ``*.params``), ``execution_code`` (optional)
    must be its ``model/customize_service.py``. Blocks until the model is published; an
    invalid package raises ``BackendError`` naming the problem, wrong arguments
    ``ArgumentError``. The model is recorded in the session's ledger before the import.
    """

    def __init__(self, session, model_id: str | None = None, model_name: str | None = None,
                 model_version: str = "0.0.1", publish: bool = True, source_location_type: str = "OBS_SOURCE",
                 source_location: str | None = None, model_type: str | None = None,
                 model_algorithm: str = "image_classification", execution_code: str | None = None,
                 runtime: str | None = None, description: str | None = None, source_job_id: str | None = None):
        from .session import Session
        if not isinstance(session, Session):
            raise checks.fail("session", f"expected a Session, got {type(session).__name__}")
        self.session = session
        if model_id is not None:   # an existing model
            row = session.recorded("model", model_id)
            version = (row.detail.get("version") if row else None) or model_version
            self._ref = ModelRef(model_id, row.name if row else model_id, version)
            self.model_name, self.model_version, self.model_id = self._ref.name, version, model_id
            self._info = {"source_location": (row.detail.get("source_location") if row else None)}
            return
        session.check_open()
        if publish is not True:
            raise checks.fail("publish", "only publish=True is supported: an imported model is published")
        checks.choice(source_location_type, "source_location_type", ["OBS_SOURCE"])
        model_type = checks.choice(checks.required(model_type, "model_type"), "model_type", ["MXNet"])
        checks.name(checks.required(model_name, "model_name"), "model_name")
        if not isinstance(model_version, str) or not checks.VERSION.match(model_version):
            raise checks.fail("model_version", f"{model_version!r} is not a version", hint="write e.g. '0.0.1'")
        runtime = checks.choice(runtime, "runtime", RUNTIMES) if runtime is not None else None   # config.json's
        if not isinstance(model_algorithm, str) or not model_algorithm:
            raise checks.fail("model_algorithm", f"expected a non-empty string, got {model_algorithm!r}")
        storage = session.storage
        source = checks.checked_uri(storage, checks.required(source_location, "source_location"), "source_location",
                                    folder=True)
        if not storage.exists(source + "model/"):
            raise checks.fail("source_location", f"no model/ folder under {source}",
                              hint="source_location is the folder that holds model/ (the training output_path)")
        if execution_code is not None:
            code = checks.checked_uri(storage, execution_code, "execution_code")
            if code != source + "model/customize_service.py":
                raise checks.fail("execution_code", f"must be {source}model/customize_service.py, got {code}")
            if not storage.exists(code):
                raise checks.fail("execution_code", f"{code} does not exist",
                                  hint="upload it: session.upload_data(bucket_path=<source_location>model/, path=...)")
        spec = ModelSpec(name=session.unique_name("model", model_name, "model_name"), version=model_version,
                         run_id=session.run_id, source_location=source, model_type=model_type,
                         model_algorithm=model_algorithm, runtime=runtime)
        with session.track("model", spec.name, {"version": model_version, "source_location": source}) as made:
            self._ref = session.backend.import_model(spec)
            made.created(self._ref.id)
        self.model_id, self.model_name, self.model_version = self._ref.id, model_name, model_version
        self._info = {"model_type": model_type, "model_algorithm": model_algorithm, "runtime": runtime,
                      "source_location": source, "execution_code": execution_code, "description": description,
                      "source_job_id": source_job_id}
        session.say(f"Model {model_name} {model_version} published: model_id {self.model_id}")

    def __repr__(self) -> str:
        return f"Model(model_name={self.model_name!r}, model_version={self.model_version!r}, model_id={self.model_id!r})"

    def get_model_id(self) -> str:
        return self.model_id

    def get_model_info(self) -> dict:
        row = self.session.recorded("model", self.model_id)
        status = "deleted" if row is not None and row.state == "deleted" else "published"
        return {"model_id": self.model_id, "model_name": self.model_name, "model_version": self.model_version,
                "model_status": status, **self._info}

    def delete_model(self) -> None:
        """Delete the model (idempotent) and mark it deleted in the ledger."""
        self.session.backend.delete_model(self._ref)
        self.session.forget("model", self.model_id)
        self.session.say(f"Model {self.model_name} {self.model_version} deleted")

    @classmethod
    def get_model_list(cls, session, model_name=None, model_version=None, model_status=None, description=None,
                       offset: int = 0, limit: int = 280, sort_by: str = "create_at", order: str = "desc",
                       workspace_id=None) -> dict:
        """The models the backend holds: ``{total_count, count, models: [{model_id, model_name, ...}]}``."""
        return listing.model_list(session, model_name, model_version, model_status, description, offset, limit,
                                  sort_by, order, workspace_id)

    @classmethod
    def get_model_object_list(cls, session, **filters) -> list["Model"]:
        """``get_model_list`` as ``Model`` objects (same filters)."""
        return [cls(session, model_id=m["model_id"]) for m in cls.get_model_list(session, **filters)["models"]]

    def deploy_predictor(self, service_name: str, configs=None, description: str | None = None,
                         infer_type: str = "real-time", schedule=None, deploy_timeout: float = 300.0) -> Predictor:
        """Deploy a real-time service; ``configs`` default to one ``modelarts.vm.cpu.2u``
        instance of this model. Blocks until the service runs (or raises)."""
        configs = configs if configs is not None else [ServiceConfig(model_id=self.model_id)]
        return deploy(self.session, service_name, configs, description=description, infer_type=infer_type,
                      schedule=schedule, deploy_timeout=deploy_timeout)
