"""Training jobs of the v2 API, run by the local backend's job runner.

A created job is driven by a thread: Creating (``code_dir`` and the input downloaded from
the object store into a staging folder and the local store) -> Pending -> Running (the
local supervisor runs the script with ModelArts' arguments) -> Completed once the outputs
are uploaded back to the output's OBS path; or Failed / Terminated with a task message.
A job with ``algorithm.engine.image_url`` (a custom image) runs the image's own boot
command instead (``image_jobs.py``); an image the emulator does not know is refused.
Answers have the JobResponse shape of ``huaweicloudsdkmodelarts``.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

from orchestrator.backends.base import JOB_TERMINAL, JobRef, JobSpec
from orchestrator.backends.local import procs

from . import image_jobs
from .images import Images
from .records import FLAVORS, RUN_ID, ApiError, Records, Request, now_ms, require, s3_uri

TASK = "worker-0"
LIVE = ("Creating", "Pending", "Running", "Terminating")
PREVIEW_BYTES = 5 * 1024 * 1024
LOCAL_BUCKET = "emulator-jobs"


def _missing(job_id: str) -> ApiError:
    return ApiError(404, "ModelArts.2775", f"Training job {job_id} not found.")


class Jobs:
    def __init__(self, root: Path, local, obs, obs_endpoint: str, flavors=FLAVORS, max_jobs: int = 8,
                 images: Images | None = None):
        self.local, self.obs, self.obs_endpoint = local, obs, obs_endpoint
        self.images = images or Images({})
        self.records, self.staging = Records(root / "jobs"), root / "staging"
        self.flavors, self.max_jobs = set(flavors), max_jobs
        self._stop: dict[str, threading.Event] = {}

    def routes(self, router) -> None:
        base = "/v2/{project}/training-jobs"
        router.add("POST", base, self.create)
        router.add("POST", "/v2/{project}/training-job-searches", self.search)
        router.add("GET", base + "/{job_id}", self.show)
        router.add("DELETE", base + "/{job_id}", self.delete)
        router.add("POST", base + "/{job_id}/actions", self.action)
        router.add("GET", base + "/{job_id}/tasks/{task}/logs/preview", self.preview)

    # -- the API -------------------------------------------------------------------------

    def create(self, req: Request):
        body = req.json()
        meta, algo = body.get("metadata") or {}, body.get("algorithm") or {}
        resource = (body.get("spec") or {}).get("resource") or {}
        require(meta, "name")
        require(resource, "flavor_id")
        engine = algo.get("engine") or {}
        if engine.get("image_url") or algo.get("command"):
            self._check_image_job(meta["name"], algo, engine, resource)
        else:
            if not (engine.get("engine_name") or engine.get("engine_id")):
                raise ApiError(400, "ModelArts.0101", "Parameter algorithm.engine.image_url is required when no "
                                                      "preset engine (engine_name or engine_id) is given.")
            require(algo, "code_dir", "boot_file")
            code_dir = algo["code_dir"] if algo["code_dir"].endswith("/") else algo["code_dir"] + "/"
            if not algo["boot_file"].startswith(code_dir):
                raise ApiError(400, "ModelArts.2791", f"InvalidObsPath: boot_file {algo['boot_file']} is not in "
                                                      f"code_dir {code_dir}.")
        if resource["flavor_id"] not in self.flavors:
            raise ApiError(400, "ModelArts.2781", f"FlavorNotFound: flavor {resource['flavor_id']} does not exist.")
        if len([r for r in self.records.all() if r["status"]["phase"] in LIVE]) >= self.max_jobs:
            raise ApiError(400, "ModelArts.2815", f"ExceedQuotaLimit: at most {self.max_jobs} training jobs may "
                                                  "run at the same time.")
        job_id = str(uuid.uuid4())
        record = {"kind": body.get("kind", "job"), "created_ms": now_ms(),
                  "metadata": {"id": job_id, "name": meta["name"], "description": meta.get("description", ""),
                               "create_time": now_ms(), "workspace_id": "0", "user_name": ""},
                  "status": {"phase": "Creating", "secondary_phase": "Creating", "duration": 0, "start_time": 0,
                             "tasks": [TASK], "task_statuses": []},
                  "algorithm": algo,
                  "spec": {"resource": {"flavor_id": resource["flavor_id"], "flavor_name": resource["flavor_id"],
                                        "node_count": int(resource.get("node_count") or 1)}}}
        self.records.save(job_id, record)
        self._stop[job_id] = threading.Event()
        threading.Thread(target=self._drive, args=(job_id,), name=f"job-{job_id[:8]}", daemon=True).start()
        return 201, _answer(record)

    def _check_image_job(self, name: str, algo: dict, engine: dict, resource: dict) -> None:
        if not engine.get("image_url"):
            raise ApiError(400, "ModelArts.0101", "Parameter algorithm.engine.image_url is required for a job "
                                                  "with a boot command (a custom image).")
        require(algo, "command")
        self.images.context(engine["image_url"], f"training job {name}")
        if int(resource.get("node_count") or 1) != 1:
            raise ApiError(400, "ModelArts.0101", "The emulator runs custom-image jobs on one node only.")

    def show(self, req: Request):
        return 200, _answer(self.records.load(req.params["job_id"], _missing(req.params["job_id"])))

    def search(self, req: Request):
        body = req.json()
        offset, limit = int(body.get("offset") or 0), int(body.get("limit") or 10)
        items = list(reversed(self.records.all()))     # newest first, like create_time desc
        chosen = items[offset * limit:(offset + 1) * limit]
        return 200, {"total": len(items), "count": len(chosen), "limit": limit, "offset": offset,
                     "sort_by": "create_time", "order": "desc", "group_by": "", "workspace_id": "0",
                     "items": [_answer(r) for r in chosen]}

    def action(self, req: Request):
        job_id = req.params["job_id"]
        record = self.records.load(job_id, _missing(job_id))
        if (req.json().get("action_type")) != "terminate":
            raise ApiError(400, "ModelArts.0101", "action_type must be 'terminate'.")
        if record["status"]["phase"] not in LIVE:
            raise ApiError(400, "ModelArts.0101", f"Training job {job_id} is {record['status']['phase']} and cannot be terminated.")
        self._set(job_id, "Terminating")
        self._stop.setdefault(job_id, threading.Event()).set()
        return 200, _answer(self.records.load(job_id, _missing(job_id)))

    def delete(self, req: Request):
        job_id = req.params["job_id"]
        record = self.records.load(job_id, _missing(job_id))
        self._stop.setdefault(job_id, threading.Event()).set()
        procs.stop(procs.ProcId.from_dict(record.get("process")))
        if record.get("local_ref"):
            self.local.delete_job(JobRef(record["local_ref"], record["local_ref"]))
        self.local.storage.delete(f"obs://{LOCAL_BUCKET}/{job_id}/")
        shutil.rmtree(self.staging / job_id, ignore_errors=True)
        self.records.delete(job_id)
        return 202, None

    def preview(self, req: Request):
        job_id = req.params["job_id"]
        record = self.records.load(job_id, _missing(job_id))
        if req.params["task"] != TASK:
            raise ApiError(400, "ModelArts.0101", f"Task {req.params['task']} does not exist.")
        path = (Path(record["log_path"]) if record.get("log_path")
                else self.local.training.dir(record.get("local_ref") or "-") / "logs" / "worker-0.log")
        try:
            full = path.stat().st_size
            with open(path, "rb") as fh:
                fh.seek(max(0, full - PREVIEW_BYTES))
                content = fh.read(full)
        except FileNotFoundError:
            full, content = 0, b""
        return 200, {"content": content.decode("utf-8", "replace"), "current_size": len(content), "full_size": full}

    # -- running a job ---------------------------------------------------------------------

    def _set(self, job_id: str, phase: str, message: str = "", **extra) -> None:
        with self.records.lock:
            record = self.records.get(job_id)
            if record is None or record["status"]["phase"] in JOB_TERMINAL:
                return                                   # deleted, or terminal: terminal states never change
            status = record["status"]
            status.update(phase=phase, secondary_phase=phase)
            if phase == "Running" and not status.get("start_time"):
                status["start_time"] = now_ms()
            if status.get("start_time"):
                status["duration"] = now_ms() - status["start_time"]
            if phase in JOB_TERMINAL:
                code = extra.get("exit_code", 0 if phase == "Completed" else 1)
                status["task_statuses"] = [{"task": TASK, "exit_code": code, "message": message}]
            self.records.save(job_id, record)

    def _drive(self, job_id: str) -> None:
        stop = self._stop[job_id]
        if ((self.records.get(job_id) or {}).get("algorithm", {}).get("engine") or {}).get("image_url"):
            return self._drive_image(job_id, stop)
        try:
            spec = self._stage(job_id)
            if stop.is_set():
                return self._set(job_id, "Terminated", "terminated before start")
            ref = self.local.submit_job(spec)
            self.records.update(job_id, local_ref=ref.id)
            state = self.local.job_status(ref)
            while not state.terminal:
                if stop.is_set():
                    self.local.stop_job(ref)
                elif state.phase in ("Pending", "Running"):
                    self._set(job_id, state.phase)
                time.sleep(0.3)
                state = self.local.job_status(ref)
            if state.phase != "Completed":
                return self._set(job_id, state.phase, state.reason)
            self._upload_outputs(job_id, spec)
            self._set(job_id, "Completed", "", exit_code=0)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason
            self._set(job_id, "Failed", f"{type(exc).__name__}: {exc}")

    def _drive_image(self, job_id: str, stop: threading.Event) -> None:
        record = self.records.load(job_id, _missing(job_id))
        log_path = self.staging / job_id / "logs" / "worker-0.log"
        self.records.update(job_id, log_path=str(log_path))
        try:
            host = self.images.host(record["algorithm"]["engine"]["image_url"], self.staging / job_id / "root")
            self._set(job_id, "Pending")
            phase, message, code = image_jobs.run(
                record, host, self.obs, self.obs_endpoint, log_path, stop,
                started=lambda ident: (self.records.update(job_id, process=ident.to_dict()),
                                       self._set(job_id, "Running")))
            self._set(job_id, phase, message, exit_code=code)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason
            self._set(job_id, "Failed", f"{type(exc).__name__}: {exc}")

    def _stage(self, job_id: str) -> JobSpec:
        record = self.records.load(job_id, _missing(job_id))
        algo, name = record["algorithm"], record["metadata"]["name"]
        stage = self.staging / job_id
        code_dir = algo["code_dir"].rstrip("/") + "/"
        code = stage / "code" / Path(code_dir.rstrip("/")).name
        self.obs.get(s3_uri(code_dir, self.obs_endpoint), code)
        inputs, outputs = algo.get("inputs") or [], algo.get("outputs") or []
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError("the emulator runs jobs with exactly one input and one output (data_url, train_url)")
        local_in = f"obs://{LOCAL_BUCKET}/{job_id}/input/"
        source = s3_uri(inputs[0]["remote"]["obs"]["obs_url"], self.obs_endpoint)
        self.obs.get(source, stage / "input")
        self.local.storage.put(str(stage / "input"), local_in)
        self._set(job_id, "Pending")
        match = RUN_ID.search(name)
        return JobSpec(name=job_id, run_id=match.group(0) if match else "", code_dir=str(code),
                       boot_file=algo["boot_file"][len(code_dir):], data_url=local_in,
                       train_url=f"obs://{LOCAL_BUCKET}/{job_id}/output/",
                       hyperparameters=tuple((p["name"], str(p.get("value", ""))) for p in algo.get("parameters") or []),
                       flavor=record["spec"]["resource"]["flavor_id"],
                       instance_count=record["spec"]["resource"]["node_count"],
                       envs=tuple((algo.get("environments") or {}).items()))

    def _upload_outputs(self, job_id: str, spec: JobSpec) -> None:
        record = self.records.load(job_id, _missing(job_id))
        target = s3_uri(record["algorithm"]["outputs"][0]["remote"]["obs"]["obs_url"], self.obs_endpoint)
        if self.local.storage.exists(spec.train_url):
            out = self.staging / job_id / "output"
            self.local.storage.get(spec.train_url, str(out))
            self.obs.put(out, target if target.endswith("/") else target + "/")

    def shutdown(self) -> None:
        """Terminate every live job (the emulator is stopping)."""
        for record in self.records.all():
            if record["status"]["phase"] in LIVE:
                self._stop.setdefault(record["metadata"]["id"], threading.Event()).set()
                if record.get("local_ref"):
                    self.local.stop_job(JobRef(record["local_ref"], record["local_ref"]))
                procs.stop(procs.ProcId.from_dict(record.get("process")))
                self._set(record["metadata"]["id"], "Terminated", "the emulator stopped")


def _answer(record: dict) -> dict:
    return {k: record[k] for k in ("kind", "metadata", "status", "algorithm", "spec")}
