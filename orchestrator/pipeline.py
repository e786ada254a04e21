"""``Pipeline``: runs a frozen plan step by step on a backend, recording every side effect.

Blocking: each step method returns when its step is finished. ``run()`` runs them all.
Every resource is written to the ledger *before* it is created, so ``teardown`` (on
success, failure, Ctrl-C or SIGTERM) and ``orchestrator cleanup`` (after a SIGKILL) can
remove it. As a context manager a pipeline tears down what it created on exit.
Steps raise ``UserError`` for the user's mistakes and ``StepFailed`` for everything else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable

from . import datatools, factory, failpoints, model_package, predictions
from .backends.base import Backend, BackendError, JobRef, ModelRef, ServiceRef
from .cache import CacheStore
from .errors import Interrupted, StepFailed, UserError
from .files import write_json
from .events import Event
from .ledger import Ledger
from .pipeline_workflow import WorkflowSteps
from .optimize import convert_package, summary as optimize_summary
from .plan import Plan
from .reconcile import teardown_run
from .resume import EarlierAttempt
from .report import Report
from .signals import raise_interrupted, signals_deferred
from .tasks import DataTool
from .tracking import FollowTimeout, JobFollower, Tracker


class Pipeline(WorkflowSteps):
    def __init__(self, plan: Plan, backend: Backend, ledger: Ledger, on_event: Callable[[Event], None] | None = None,
                 poll_interval: float = 0.5, resume: bool = False, tracking=None):
        self.plan, self.backend, self.ledger = plan, backend, ledger
        self.tracking = tracking   # config.json's "tracking" section (MLflow), or None
        self.resume = resume   # continue plan.run_id: reuse what an earlier attempt finished
        self.earlier = EarlierAttempt(plan, backend, ledger, resume, self._emit)
        self.tracker = Tracker(ledger, plan.run_id, plan.run_dir, earlier=self.earlier.row)
        self.on_event = on_event or (lambda event: None)
        self.poll_interval = poll_interval
        self.report = Report(plan)
        self.job: JobRef | None = None
        self.model: ModelRef | None = None
        self.service: ServiceRef | None = None
        self.metrics: dict[str, dict] = {}     # step -> metrics, for when: conditions
        self.cache = CacheStore(plan.root)
        self._prefixes: set[str] = set()       # object prefixes already in the ledger
        self._torn_down = False

    # construction helpers for notebooks and the CLI
    @classmethod
    def from_yaml(cls, path: str | os.PathLike, config: str | os.PathLike | None = None, profile: str | None = None,
                  on_event: Callable[[Event], None] | None = None, resume: str | None = None,
                  strict: bool = False, keep: bool = False, params: dict | list | None = None,
                  no_cache: bool = False) -> "Pipeline":
        """A pipeline for a new run of the file, or for continuing run ``resume`` (an id or unique
        prefix); ``keep`` leaves everything running at the end (teardown.when: never). ``params``
        set parameters declared under ``parameters:`` (as ``run -p``, e.g. ``{"lr": 0.05}``);
        ``no_cache`` runs every step even when an earlier run's output could be reused."""
        plan, backend, ledger, cfg = factory.open_run(Path(path), Path(config) if config else None, profile,
                                                      resume, strict, keep, params, no_cache)
        return cls(plan, backend, ledger, on_event, poll_interval=cfg.poll_interval, resume=bool(resume),
                   tracking=cfg.tracking)

    @classmethod
    def from_dict(cls, spec: dict, base_dir: str | os.PathLike = ".", config: str | os.PathLike | None = None,
                  profile: str | None = None, on_event: Callable[[Event], None] | None = None,
                  params: dict | None = None, no_cache: bool = False) -> "Pipeline":
        with factory.spec_file(spec, Path(base_dir)) as path:
            return cls.from_yaml(path, config, profile, on_event, params=params, no_cache=no_cache)

    # the steps
    def prepare(self) -> Path:
        with self._step("prepare") as info:
            if self._cache_hit("prepare", info, lambda e: {"data": replace(self.plan.data, work_dir=Path(e.location))}):
                return self.plan.data.packed_dir
            data = self.plan.data
            with self.tracker.track("temp_dir", str(data.work_dir)) as made:
                data.work_dir.mkdir(parents=True, exist_ok=True)
                made.created(str(data.work_dir))
            if self.earlier.step_done("prepare") and (data.packed_dir / "dataset.json").is_file():
                info["resumed"] = True
                return data.packed_dir
            for tool in data.tools:           # the task's data tools (none for .rec files or raw data)
                self._tool(tool)
            if self.plan.cache_key("prepare"):
                self.cache.keep_prepared(self.plan.cache_key("prepare"), data.work_dir, self.plan.run_id)
            return data.packed_dir

    def upload(self) -> str:
        self._need("prepare")
        with self._step("upload") as info:
            if self._cache_hit("upload", info, lambda e: {"data": replace(self.plan.data, data_uri=e.location),
                                                          "job": replace(self.plan.job, data_url=e.location)}):
                return self.plan.data.data_uri
            data = self.plan.data
            uri = data.data_uri    # under the run's prefix, or its own cached one (see cache.py)
            rid = self._record_prefix(uri if self.plan.cache_key("upload") else self.plan.run_prefix)
            stats = self.backend.storage.put(str(data.packed_dir), uri)   # unchanged files are skipped: resumes
            if data.mode == "prepared" and data.labels and not (data.packed_dir / "labels.txt").is_file():
                labels = data.work_dir / "labels.txt"   # data.labels, for jobs that read the class names
                labels.write_text("".join(name + "\n" for name in data.labels))
                self.backend.storage.put(str(labels), uri + "labels.txt")
            info.update(files=stats.files, skipped=stats.skipped, bytes=stats.bytes)
            self._cache_keep("upload", uri, rid)
            return uri

    def train(self) -> JobRef:
        self._need("upload")
        with self._step("train") as info:
            if self.plan.search is not None:
                return self._search(info)
            if self._cache_hit("train", info, lambda e: self._output_at(e.location)):
                info["metrics"] = self.metrics["train"] = self._job_metrics().get("final", {})
                return None
            spec = self.plan.job
            prefix_rid = self._record_prefix(spec.train_url)
            self.job = self.earlier.reuse("job", spec.name, "train", lambda row: JobRef(row.ref_id, row.name))
            if self.job is not None:
                info["resumed"] = "re-attached to the earlier job"
            else:
                with self.tracker.track("job", spec.name, {"flavor": spec.flavor, "key": self.plan.key("train")}) as made:
                    self.job = self.backend.submit_job(spec)   # a restarted job finds its checkpoints in train_url
                    made.created(self.job.id)
            state = self._follow_job(info)
            if state.phase != "Completed":
                raise StepFailed("train", f"job {spec.name} {state.phase.lower()}: {state.reason}",
                                 log=str(self.plan.run_dir / "logs" / "train.log"))
            doc = self._job_metrics()
            info["metrics"] = self.metrics["train"] = doc.get("final", {})
            for key in ("selection", "phases", "best", "warnings"):  # face job: what was exported and why
                if doc.get(key):
                    info[key] = doc[key]
            self._cache_keep("train", spec.train_url, prefix_rid)
            return self.job

    def evaluate(self) -> dict | None:
        """Score the trained model on held-out images without a service (``evaluate:``);
        its metrics are ``evaluate.metrics.*`` in conditions."""
        if self.plan.evaluate is None:
            raise UserError("the pipeline has no evaluate section")
        self._need("train")
        with self._step("evaluate") as info:
            from .batch.steps import evaluate
            metrics = evaluate(self, info)
            self.metrics["evaluate"] = info["metrics"]
            return metrics

    def import_model(self) -> ModelRef | None:
        if self._skipped("import_model", "train"):
            return None
        self._need("train")
        with self._step("import_model") as info:
            spec = self.plan.model
            self.model = self.earlier.reuse("model", spec.name, "import_model",
                                       lambda row: ModelRef(row.ref_id, row.name, spec.version))
            if self.model is not None:
                info["resumed"] = True
                return self.model
            if spec.source_location != self.plan.output_uri:   # model/ built under the run prefix (plan.py)
                self._record_prefix(spec.source_location)
                info["files"] = self._assemble_model()
            if self.plan.optimize.mode != "fp32":
                info["optimize"] = convert_package(self.plan.optimize, self.plan.data,
                                                   spec.source_location.rstrip("/") + "/model/", self.backend.storage,
                                                   self.plan.run_dir / "optimize", self.plan.run_dir / "logs" / "optimize.log")
                self._emit("log", "import_model", optimize_summary(info["optimize"]))
            with self.tracker.track("model", spec.name, {"key": self.plan.key("import_model")}) as made:
                try:
                    self.model = self.backend.import_model(spec)
                except BackendError as exc:
                    if self.plan.model_code or "is missing from the model/ folder" not in str(exc):
                        raise
                    raise StepFailed("import_model", f"{exc}\nhint: set model.inference_code in "
                                     f"{self.plan.spec_path.name} to the folder holding customize_service.py and "
                                     "config.json: the import step then builds model/ from the training output and "
                                     "that folder") from exc
                made.created(self.model.id)
            return self.model

    def deploy(self) -> ServiceRef | None:
        if self._skipped("deploy", "import_model"):
            return None
        self._need("import_model")
        with self._step("deploy") as info:
            spec = self.plan.service
            configs = tuple(replace(c, model_id=self.model.id) for c in spec.configs)
            spec = replace(spec, configs=configs)
            self.service = self.earlier.reuse("service", spec.name, "deploy",
                                         lambda row: ServiceRef(row.ref_id, row.name, row.detail["url"]))
            if self.service is not None:
                info.update(url=self.service.url, resumed=True)
                return self.service
            with self.tracker.track("service", spec.name, {"flavor": configs[0].flavor,
                                                          "key": self.plan.key("deploy")}) as made:
                self.service = self.backend.deploy(spec)
                made.created(self.service.id, {"url": self.service.url})
            info["url"] = self.service.url
            return self.service

    def predict(self) -> dict | None:
        if self._skipped("predict", "deploy"):
            return None
        self._need("deploy")
        with self._step("predict") as info:
            cases = predictions.cases(self.plan)
            results = []
            for i, case in enumerate(cases):
                result = predictions.send(self.backend, self.service, case, self.plan.data.labels)
                results.append(result)
                failpoints.hit("predict:running")
                self._emit("prediction", "predict", result.get("error") or result["predicted_label"],
                           done=i + 1, total=len(cases), result=result)
            summary = predictions.summarise(results)
            predictions.keep_thumbnails(results, self.plan.run_dir)
            predictions.write(self.plan.run_dir / "predictions.jsonl", results)
            info.update(summary)
            if summary["errors"] > self.plan.predict.max_error_rate * summary["count"]:
                first = next(r["error"] for r in results if r.get("error"))
                raise StepFailed("predict", f"{summary['errors']} of {summary['count']} requests failed "
                                 f"(max_error_rate {self.plan.predict.max_error_rate:.0%}); the first: {first}",
                                 log=str(self.plan.run_dir / "predictions.jsonl"))
            minimum = self.plan.predict.min_accuracy
            if minimum is not None and summary["accuracy"] is None:
                raise StepFailed("predict", f"min_accuracy is {minimum:.0%} but no answer could be scored "
                                 "(no expected labels, or answers of an unknown shape: see predictions.jsonl)")
            if minimum is not None and summary["accuracy"] < minimum:
                raise StepFailed("predict", f"accuracy {summary['accuracy']:.1%} is below min_accuracy {minimum:.0%}")
            return summary

    def batch_predict(self) -> dict | None:
        """Every file of ``batch_predict.input`` through the model in worker processes, one
        JSON line per file; resumable. Skipped when the model was not imported."""
        if self.plan.batch is None:
            raise UserError("the pipeline has no batch_predict section")
        if self._skipped("batch_predict", "import_model"):
            return None
        self._need("train")
        with self._step("batch_predict") as info:
            from .batch.steps import batch_predict
            return batch_predict(self, info)

    def teardown(self) -> dict:
        """Delete everything this run created, newest first. Idempotent; never raises for
        a resource that is already gone; failures are reported and left for ``cleanup``."""
        with self._step("teardown") as info:
            if self.plan.teardown.keep_model_copy and self.model is not None:
                self._keep_model_copy()
            deleted, failed = teardown_run(self.backend, self.ledger, self.plan.run_id, self._log)
            info.update(deleted=len(deleted), failed=failed)
            self._torn_down = True
            if failed:
                raise StepFailed("teardown", "; ".join(failed) + " (run `orchestrator cleanup` to retry)")
            return info

    def run(self) -> dict:
        """All steps, then teardown per ``teardown.when``; returns the report. Re-raises the
        first failure (after teardown) so callers see why the run failed."""
        with self:
            for step in self.plan.steps[:-1]:
                getattr(self, step.name)()
        return self.report.data

    # context manager: teardown on exit, also on Ctrl-C and SIGTERM
    def __enter__(self) -> "Pipeline":
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, raise_interrupted)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = "succeeded" if exc is None else ("interrupted" if isinstance(exc, (KeyboardInterrupt, Interrupted))
                                                  else "failed")
        if exc is not None:
            self.report.fail(exc)
        when = self.plan.teardown.when
        try:
            if self.tracker.started and not self._torn_down and (when == "always" or (when == "on_success" and exc is None)):
                with signals_deferred():
                    try:
                        self.teardown()
                    except StepFailed as err:
                        self.report.fail(err)
                        status = "failed" if status == "succeeded" else status
        finally:
            if self.tracker.started:
                self.ledger.finish_run(self.plan.run_id, status)
                self.report.finish(status)
                self._publish()
            if self._previous is not None:
                signal.signal(signal.SIGTERM, self._previous)
        return False

    # helpers
    def _begin(self) -> None:
        if not self.tracker.started:
            self.tracker.start(self.plan.pipeline, self.plan.spec_path, self.plan.backend, self.plan.profile,
                               resume=self.resume)
            write_json(self.plan.run_dir / "plan.json", self.plan.to_dict())   # the settings, for report.html
            self.report.save()

    def _need(self, step: str) -> None:
        if self.report.steps.get(step, {}).get("status") != "succeeded":
            raise UserError(f"step '{step}' has not succeeded in this pipeline yet", hint=f"call {step}() first, or run()")

    @contextmanager
    def _step(self, name: str):
        self._begin()
        with self.report.step(name, self._emit) as info:
            failpoints.hit(f"{name}:start")
            try:
                yield info
            except BackendError as exc:   # the backend's words, tied to the step that hit them
                raise StepFailed(name, str(exc)) from exc
            failpoints.hit(f"{name}:end")
        if name in self.plan.steps_keyed:
            self.ledger.step_succeeded(self.plan.run_id, name, self.plan.key(name))

    def _emit(self, kind: str, step: str, message: str = "", **data) -> None:
        self.on_event(Event(kind, step, message, data))

    def _log(self, message: str) -> None:
        self._emit("log", "teardown", message)
        failpoints.hit("teardown:running")

    def _tool(self, tool: DataTool) -> None:
        datatools.run(self.ledger, self.backend, self.plan, tool, lambda msg: self._emit("log", "prepare", msg))

    def _follow_job(self, info: dict):
        follower = JobFollower(self.backend, self.job, self.plan.run_dir / "logs" / "train.log", self.poll_interval)

        def on_line(line: str) -> None:
            self._emit("log", "train", line)
            failpoints.hit("train:running")

        try:
            state = follower.follow(on_line, lambda progress: self._emit("progress", "train", "", progress=progress),
                                    timeout_s=(self.plan.job.max_runtime_s or 1e12) + 120)
        except FollowTimeout:
            self.backend.stop_job(self.job)
            raise StepFailed("train", "job did not finish within max_runtime + 120s") from None
        info["progress"] = follower.progress.metrics
        return state

    def _job_metrics(self) -> dict:
        target = self.plan.run_dir / "metrics.json"
        pairs = "verification_pairs.json"   # face jobs: pair distances for the report's ROC
        try:
            if self.backend.storage.exists(self.plan.output_uri + pairs):
                self.backend.storage.get(self.plan.output_uri + pairs, str(self.plan.run_dir / pairs))
            self.backend.storage.get(self.plan.output_uri + "metrics.json", str(target))
            doc = json.loads(target.read_text())
            return doc if isinstance(doc, dict) else {}
        except (BackendError, UserError, OSError, ValueError):
            return {}

    def _publish(self) -> None:
        """report.html, then MLflow when config.json asks for it: never fails the run, a
        problem is logged to logs/orchestrator.log and shown as a log line."""
        from .results import publish
        tracked = publish(self.plan.run_dir, self.tracking, self._log_problem)
        if tracked:
            self.report.tracking = tracked
            self.report.save()

    def _log_problem(self, message: str) -> None:
        try:
            with open(self.plan.run_dir / "logs" / "orchestrator.log", "a") as fh:
                fh.write(message + "\n")
        except OSError:   # e.g. a full disk: the line below still says what went wrong
            pass
        self._emit("log", "teardown", message.splitlines()[0])

    def _assemble_model(self) -> list[str]:
        """model/ from the training output (+ model.inference_code), built in the run folder
        and uploaded under the run prefix: the training output may be a cached one that other
        runs read, so the import step never converts or adds files in place."""
        return model_package.assemble(self.backend.storage, self.plan.output_uri, self.plan.model_code,
                                      self.plan.run_dir / "package", self.plan.model.source_location)

    def _keep_model_copy(self) -> None:
        target = self.plan.run_dir / "model"
        try:
            self.backend.storage.get(self.plan.model.source_location.rstrip("/") + "/model/", str(target))
            self.report.paths["model"] = str(target)
        except (BackendError, UserError, OSError) as exc:
            self._log(f"could not keep a copy of the model package: {exc}")
            shutil.rmtree(target, ignore_errors=True)
