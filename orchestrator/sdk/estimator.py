"""``Estimator``: a training job from notebook cells (``modelarts.estimator.Estimator``)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from ..backends.base import JobRef, JobSpec
from ..errors import UserError
from . import checks, listing
from .job import TrainingJob


class Estimator:
    """How to train: code, flavour, hyperparameters, where outputs and logs go.

    Arguments are checked when the Estimator is made (``ArgumentError`` names the one at
    fault). ``code_dir`` is a local folder or an OBS folder (``obs://b/code/`` or the
    classic ``/b/code/``; a local folder of that name wins); ``boot_file`` is relative to
    it or a full path inside it. ``hyperparameters`` is a list of ``{"label", "value"}``
    dicts, passed to the script as ``--label=value``. ``fit`` submits the job (recorded in
    the session's ledger first) and, with ``wait=True``, blocks until it ends; then
    ``create_model`` imports ``output_path`` and ``deploy_predictor`` serves it.
    """

    def __init__(self, modelarts_session, framework_type=None, framework_version=None, code_dir=None,
                 boot_file=None, log_url=None, hyperparameters=None, output_path=None, train_instance_type=None,
                 train_instance_count=1, job_description=None):
        from .session import Session
        if not isinstance(modelarts_session, Session):
            raise checks.fail("modelarts_session", f"expected a Session, got {type(modelarts_session).__name__}",
                              hint="from orchestrator.sdk import Session; session = Session()")
        self.session = modelarts_session
        storage = self.session.storage
        self.framework_type = checks.choice(checks.required(framework_type, "framework_type"), "framework_type",
                                            ["MXNet"])
        self.framework_version = framework_version
        self._code, self._code_uri, self.boot_file = _code(storage, code_dir, boot_file)
        self.code_dir, self.job_description = code_dir, job_description
        self.output_path = checks.checked_uri(storage, checks.required(output_path, "output_path"), "output_path",
                                              folder=True)
        self.log_url = checks.checked_uri(storage, log_url, "log_url", folder=True) if log_url else None
        self.hyperparameters = checks.hyperparameters(hyperparameters)
        self.train_instance_type = self.session.flavour(checks.required(train_instance_type, "train_instance_type"),
                                                        "train_instance_type", "training")
        self.train_instance_count = checks.count(train_instance_count, "train_instance_count")
        self.job: TrainingJob | None = None
        self.model = None

    def fit(self, inputs=None, wait: bool = False, job_name: str | None = None, logs: bool = False) -> TrainingJob:
        """Submit the job with ``inputs`` (an OBS folder) as ``--data_url`` and
        ``output_path`` as ``--train_url``; with ``wait=True`` follow it to the end."""
        session = self.session
        session.check_open()
        data = checks.checked_uri(session.storage, checks.required(inputs, "inputs"), "inputs", folder=True)
        if not session.storage.exists(data):
            raise checks.fail("inputs", f"no objects under {data}", hint="upload the data first: session.upload_data(...)")
        job_name = job_name or f"job-{secrets.token_hex(2)}"
        name = session.unique_name("job", job_name, "job_name")
        if not session.storage.exists(self.output_path):   # it is this job's: deleted with the session
            with session.track("object_prefix", self.output_path, {"from": name}) as made:
                made.created(self.output_path)
        else:
            session.say(f"note: output_path {self.output_path} already holds objects; only what this "
                        "session uploads there is deleted with it")
        code = self._code
        if code is None:   # an OBS code folder: staged locally, as the job's code is on ModelArts
            code = session.temp_dir() / "code" / name / self._code_uri.rstrip("/").rsplit("/", 1)[-1]
            shutil.rmtree(code, ignore_errors=True)
            session.storage.get(self._code_uri, str(code))
        spec = JobSpec(name=name, run_id=session.run_id, code_dir=str(code), boot_file=self.boot_file, data_url=data,
                       train_url=self.output_path, hyperparameters=self.hyperparameters,
                       flavor=self.train_instance_type, instance_count=self.train_instance_count)
        with session.track("job", name, {"flavor": spec.flavor, "framework_version": self.framework_version or ""}) \
                as made:
            ref = session.backend.submit_job(spec)
            made.created(ref.id)
        session.say(f"Training job {job_name} submitted: {self.boot_file} "
                    + " ".join(f"--{k}={v}" for k, v in spec.hyperparameters)
                    + f" on {spec.flavor} x {spec.instance_count} (run {session.run_id})")
        self.job = TrainingJob(session, ref, job_name, self.output_path, self.log_url, spec)
        if wait:
            self.job.wait(logs=logs)
        return self.job

    # the classic Estimator's job calls
    @property
    def job_id(self) -> str:
        return self._need_job().job_id

    @property
    def version_id(self) -> int:
        return self._need_job().version_id

    def get_job_info(self) -> dict:
        return self._need_job().get_job_info()

    def get_job_log(self) -> str:
        return self._need_job().get_job_log()

    def stop_job_version(self) -> None:
        self._need_job().stop()

    def delete_job(self) -> None:
        self._need_job().delete()

    @classmethod
    def delete_job_by_id(cls, modelarts_session, job_id: str) -> None:
        """Delete a training job by id (idempotent) and mark it deleted in the ledger."""
        row = modelarts_session.recorded("job", job_id)
        modelarts_session.backend.delete_job(JobRef(job_id, row.name if row else job_id))
        modelarts_session.forget("job", job_id)
        modelarts_session.say(f"Training job {job_id} deleted")

    @classmethod
    def get_job_list(cls, modelarts_session, status=None, per_page: int = 10, page: int = 1,
                     sortBy: str = "job_name", order: str = "desc", search_content: str | None = None,
                     sort_by: str | None = None) -> dict:
        """The training jobs of the backend, as ModelArts' v1 job list (numeric ``status``)."""
        return listing.job_list(modelarts_session, status, per_page, page, sort_by or sortBy, order, search_content)

    @classmethod
    def get_train_instance_types(cls, modelarts_session) -> dict:
        """The training flavours: ModelArts' documented ones and config.json's."""
        return listing.train_instance_types(modelarts_session)

    @classmethod
    def get_framework_list(cls, modelarts_session) -> dict:
        """The engines: MXNet (the engine this project runs)."""
        return listing.framework_list(modelarts_session)

    # from the job to a model and a service
    def create_model(self, **kwargs):
        """``Model(session, **kwargs)`` with ``source_location`` defaulting to ``output_path``
        and ``model_name`` to the job name; the returned Model is also ``self.model``."""
        from .model import Model
        job = self._need_job()
        kwargs.setdefault("source_location", self.output_path)
        kwargs.setdefault("model_name", job.job_name)
        kwargs.setdefault("source_job_id", job.job_id)
        self.model = Model(self.session, **kwargs)
        return self.model

    def deploy_predictor(self, service_name: str, configs=None, **kwargs):
        """Deploy a real-time service (see ``Model.deploy_predictor``); ``configs`` default
        to one instance of the model from ``create_model``."""
        from .predictor import deploy
        if configs is None:
            if self.model is None:
                raise checks.fail("configs", "no model to deploy", hint="call create_model(...) first, or pass "
                                  "configs=[ServiceConfig(model_id=..., ...)]")
            return self.model.deploy_predictor(service_name=service_name, **kwargs)
        return deploy(self.session, service_name, configs, **kwargs)

    def _need_job(self) -> TrainingJob:
        if self.job is None:
            raise UserError("this Estimator has no training job yet", hint="call fit(inputs=...) first")
        return self.job


def _code(storage, code_dir, boot_file) -> tuple[Path | None, str | None, str]:
    """(local code folder, or None and the OBS code folder; boot file relative to it)."""
    checks.required(code_dir, "code_dir")
    checks.required(boot_file, "boot_file")
    local = Path(str(code_dir)).expanduser()
    if local.is_dir():
        boot = Path(str(boot_file)).expanduser()
        boot = (boot if boot.is_absolute() else local / boot).resolve()
        if local.resolve() not in boot.parents:
            raise checks.fail("boot_file", f"{boot_file!r} is not inside code_dir {str(local)!r}")
        if not boot.is_file():
            raise checks.fail("boot_file", f"{boot_file!r} does not exist in code_dir (looked for {boot})")
        return local.resolve(), None, boot.relative_to(local.resolve()).as_posix()
    if not isinstance(code_dir, str) or not (code_dir.startswith("/") or "://" in code_dir):
        raise checks.fail("code_dir", f"{code_dir!r} is not a local folder (looked in {local.resolve()})",
                          hint="give a local folder, or an OBS folder such as obs://bucket/code/")
    uri = checks.checked_uri(storage, code_dir, "code_dir", folder=True)
    if not storage.exists(uri):
        raise checks.fail("code_dir", f"{code_dir!r} is neither a local folder nor an OBS folder with files in it",
                          hint="upload the code first: session.upload_data(bucket_path=..., path=<local folder>)")
    text = str(boot_file)
    boot_uri = checks.obs_uri(text, "boot_file") if text.startswith("/") or "://" in text else uri + text
    if not boot_uri.startswith(uri) or boot_uri == uri:
        raise checks.fail("boot_file", f"{boot_file!r} is not inside code_dir {uri}")
    if not storage.exists(boot_uri) or storage.list(boot_uri) != [boot_uri]:
        raise checks.fail("boot_file", f"{boot_uri} does not exist", hint="the files under code_dir are: "
                          + ", ".join(u[len(uri):] for u in storage.list(uri)[:10]))
    return None, uri, boot_uri[len(uri):]
