"""Training jobs on ModelArts through ``huaweicloudsdkmodelarts`` (the v2 training API).

``submit`` first uploads the code folder (with the ``include_dirs`` merged in, as the local
backend does) to ``obs://<train_url's bucket>/orchestrator-code/<job name>/<token>/<folder>/``,
then creates the job: ``code_dir`` + ``boot_file`` as OBS paths (with ``JobSpec.image``: the
custom image's ``image_url`` and boot ``command`` instead of the preset engine), one input ``data_url`` and
one output ``train_url`` (the script gets them as ``--data_url``/``--train_url``),
hyperparameters as ``parameters``, the flavour and node count. The code copy belongs to the
job: ``delete`` removes it (found from the job's own ``algorithm.code_dir``), a refused
create removes it at once, and since the job name carries the run id, ``code_prefixes``
finds copies a crash orphaned. The ``<token>`` keeps two submissions of one name apart.
Every SDK call goes through ``Retry`` (throttling, 5xx, connection errors) and its errors
through ``errors.explain``. ``stop`` and ``delete`` are idempotent.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, TypeVar

from huaweicloudsdkcore.exceptions.exceptions import (ConnectionException, RequestTimeoutException,
                                                      ServiceResponseException)
from huaweicloudsdkmodelarts.v1 import (CreateTrainingJobRequest, DeleteTrainingJobRequest, Input, InputDataInfo,
                                        InputDataInfoObs, Job, JobActionType, JobAlgorithm, JobEngine, JobMetadata,
                                        JobSearches, ListTrainingJobsRequest, Output, Parameters, Remote, RemoteObs,
                                        ShowTrainingJobDetailsRequest, ShowTrainingJobLogsPreviewRequest, Spec,
                                        SpecResource, StopTrainingJobRequest)

from orchestrator.image import layout

from ..base import JobRef, JobSpec, JobState
from ..staging import stage_code
from .errors import CloudError, NotFound, explain, retryable
from .rest import Retry, Transient
from .storage import ObsStorage

T = TypeVar("T")
TASK = "worker-0"
CODE_ROOT = "orchestrator-code"     # top-level folder of the code copies in the train_url's bucket
LIVE = ("Creating", "Pending", "Running")
# ModelArts v2 phases -> the backend contract's phases (Terminating still runs; Abnormal failed)
PHASES = {"Creating": "Creating", "Pending": "Pending", "Running": "Running", "Terminating": "Running",
          "Completed": "Completed", "Failed": "Failed", "Abnormal": "Failed", "Terminated": "Terminated"}


def code_copy(job_name: str, code_dir: str) -> str | None:
    """The ``obs://`` prefix of the code copy ``upload_code`` made for ``job_name``, from the
    job's ``code_dir`` (``/bucket/orchestrator-code/<name>/<token>/<folder>/``); None for a
    code_dir this backend did not upload (never deleted)."""
    match = re.match(rf"(?:obs:/)?(/[^/]+/{CODE_ROOT}/{re.escape(job_name)}/[0-9a-f]+/)", code_dir)
    return f"obs:/{match.group(1)}" if match and job_name else None


def obs_path(uri: str) -> str:
    """``obs://bucket/key`` -> ``/bucket/key``, the form the training API takes."""
    return "/" + uri.split("://", 1)[1]


class TrainingJobs:
    def __init__(self, client, storage: ObsStorage, *, engine_name: str, engine_version: str,
                 retry: Retry | None = None, credentials_hint: str = "the AK/SK"):
        self.client, self.storage = client, storage
        self.engine_name, self.engine_version = engine_name, engine_version
        self.retry, self.credentials_hint = retry or Retry(), credentials_hint

    def _call(self, what: str, fn: Callable[..., T], request) -> T:
        def attempt():
            try:
                return fn(request)
            except ServiceResponseException as exc:
                error = explain(exc.status_code, exc.error_code, exc.error_msg, what,
                                credentials=self.credentials_hint, request_id=exc.request_id)
                raise (Transient(error) if retryable(exc.status_code, exc.error_code) else error) from None
            except (ConnectionException, RequestTimeoutException) as exc:
                raise Transient(CloudError(f"{what}: cannot reach ModelArts ({exc.error_msg})")) from None

        try:
            return self.retry.run(attempt, lambda exc: isinstance(exc, Transient))
        except Transient as exc:
            raise exc.error from None

    def upload_code(self, spec: JobSpec) -> str:
        bucket = spec.train_url.split("://", 1)[1].split("/", 1)[0]
        uri = f"obs://{bucket}/{CODE_ROOT}/{spec.name}/{uuid.uuid4().hex[:8]}/{Path(spec.code_dir).name}/"
        with tempfile.TemporaryDirectory(prefix="orchestrator-code-") as tmp:
            staged = stage_code(spec.code_dir, spec.include_dirs, Path(tmp) / Path(spec.code_dir).name,
                                spec.shipped)
            self.storage.put(staged, uri)
        return uri

    def algorithm(self, spec: JobSpec, code: str) -> JobAlgorithm:
        """The preset engine with ``boot_file``; or, with ``spec.image``, the custom image
        with its boot command (ModelArts downloads ``code_dir`` to ``MA_JOB_DIR/<folder>``,
        the input to its ``local_dir`` and uploads the output's ``local_dir`` afterwards)."""
        image = bool(spec.image)
        return JobAlgorithm(
            code_dir=obs_path(code), boot_file=None if image else obs_path(code + spec.boot_file),
            engine=(JobEngine(image_url=spec.image) if image
                    else JobEngine(engine_name=self.engine_name, engine_version=self.engine_version)),
            command=layout.train_command(f"{Path(spec.code_dir).name}/{spec.boot_file}") if image else None,
            parameters=[Parameters(name=k, value=v) for k, v in spec.hyperparameters],
            inputs=[Input(name="data_url", local_dir=layout.input_dir("data_url") if image else None,
                          remote=InputDataInfo(obs=InputDataInfoObs(obs_url=obs_path(spec.data_url))))],
            outputs=[Output(name="train_url", local_dir=layout.output_dir("train_url") if image else None,
                            remote=Remote(obs=RemoteObs(obs_url=obs_path(spec.train_url))))],
            environments=dict(spec.envs) or None)

    def submit(self, spec: JobSpec) -> JobRef:
        code = self.upload_code(spec)
        algorithm = self.algorithm(spec, code)
        job = Job(kind="job", metadata=JobMetadata(name=spec.name, description=f"orchestrator run {spec.run_id}"),
                  algorithm=algorithm,
                  spec=Spec(resource=SpecResource(flavor_id=spec.flavor, node_count=spec.instance_count)))
        try:
            resp = self._call(f"create training job {spec.name}", self.client.create_training_job,
                              CreateTrainingJobRequest(body=job))
        except Exception:
            self.storage.delete(code_copy(spec.name, obs_path(code)))    # refused: no job refers to it
            raise
        return JobRef(id=resp.metadata.id, name=spec.name)

    def show(self, ref: JobRef):
        return self._call(f"training job {ref.name}", self.client.show_training_job_details,
                          ShowTrainingJobDetailsRequest(training_job_id=ref.id))

    def status(self, ref: JobRef) -> JobState:
        status = self.show(ref).status
        phase = PHASES.get(status.phase, "Running")
        messages = [t.message for t in status.task_statuses or [] if t.message]
        reason = "; ".join(messages) or (status.secondary_phase if status.secondary_phase != status.phase else "")
        if status.phase not in PHASES:
            reason = f"ModelArts phase {status.phase}" + (f": {reason}" if reason else "")
        return JobState(phase, reason or "", time.time())

    def logs(self, ref: JobRef, since: int = 0) -> tuple[list[str], int]:
        """Whole new lines after byte ``since``. The preview holds the newest part of the log
        (up to some MB): what scrolled out of it between two polls is skipped."""
        try:
            resp = self._call(f"logs of training job {ref.name}", self.client.show_training_job_logs_preview,
                              ShowTrainingJobLogsPreviewRequest(training_job_id=ref.id, task_id=TASK))
        except CloudError:
            return [], since            # no task yet (Creating, Pending): nothing to show
        content = (resp.content or "").encode()
        full = int(resp.full_size or len(content))
        begin = max(since, full - len(content))
        if full <= since:
            return [], since
        chunk = content[begin - (full - len(content)):]
        end = chunk.rfind(b"\n") + 1
        return chunk[:end].decode("utf-8", "replace").splitlines(), begin + end

    def stop(self, ref: JobRef) -> None:
        try:
            self._terminate(ref, self.show(ref))
        except NotFound:
            return

    def _terminate(self, ref: JobRef, job) -> None:
        if job.status.phase in LIVE:
            self._call(f"terminate training job {ref.name}", self.client.stop_training_job,
                       StopTrainingJobRequest(training_job_id=ref.id, body=JobActionType(action_type="terminate")))

    def delete(self, ref: JobRef) -> None:
        """Terminate and delete the job, then its code copy; idempotent."""
        try:
            job = self.show(ref)
            self._terminate(ref, job)
            self._call(f"delete training job {ref.name}", self.client.delete_training_job,
                       DeleteTrainingJobRequest(training_job_id=ref.id))
        except NotFound:
            return          # already gone: an orphaned code copy is found by ``code_prefixes``
        code = code_copy(job.metadata.name, (job.algorithm and job.algorithm.code_dir) or "")
        if code:
            self.storage.delete(code)

    def code_prefixes(self, bucket: str) -> list[tuple[str, str]]:
        """(job name, obs:// prefix) of every code copy in ``bucket``, whether its job exists or not."""
        return [(p.rstrip("/").rsplit("/", 1)[-1], f"obs://{bucket}/{p}")
                for p in self.storage.folders(bucket, f"{CODE_ROOT}/")]

    def check(self) -> None:
        """One cheap signed call: rejected credentials raise ``UserError`` here."""
        self._call("check the ModelArts credentials", self.client.list_training_jobs,
                   ListTrainingJobsRequest(body=JobSearches(offset=0, limit=1)))

    def list(self) -> list[tuple[str, str]]:
        """(id, name) of every training job of the project, page by page."""
        out, offset, limit = [], 0, 50
        while True:
            resp = self._call("list training jobs", self.client.list_training_jobs,
                              ListTrainingJobsRequest(body=JobSearches(offset=offset, limit=limit)))
            items = resp.items or []
            out += [(j.metadata.id, j.metadata.name) for j in items]
            if len(items) < limit:
                return out
            offset += 1          # offset is a page index in these APIs
