"""A frozen, ordered plan built from a validated spec: every name, path and note decided
before anything runs, so ``plan`` can show exactly what ``run`` will do (no side effects)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import jobargs
from .backends.base import TTL_HINT, JobSpec, ModelSpec, ServiceConfig, ServiceSpec, service_ttl_problem
from .cache import cache_keys
from .errors import UserError
from .notes import backend_notes, on_this_machine
from .optimize import OptimizePlan
from .dataplan import DataPlan, check_label_names, data_plan, prepare_details
from .params import Resolved
from .spec import BatchPredictSection, ConfigSpec, EvaluateSection, PipelineSpec, TeardownSection
from .specpaths import existing_dir, existing_path, resolve, where
from .stepkeys import step_keys
from .tasks import REPO_ROOT, TASKS, TOOLS_DIR, shipped_with
from .workflow import (SearchPlan, check_conditions, check_offline_steps, job_arg, known_metrics, search_plan,
                       workflow_steps)

STEPS = ("prepare", "upload", "train", "import_model", "deploy", "predict", "teardown")


@dataclass(frozen=True)
class PredictPlan:
    images: str                        # "holdout" or an absolute path (scored by sub-folder names)
    limit: int | None
    min_accuracy: float | None
    max_error_rate: float = 0.0


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    details: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    run_id: str
    pipeline: str
    spec_path: Path
    profile: str
    backend: str
    root: Path
    run_dir: Path
    data: DataPlan
    job: JobSpec
    model: ModelSpec
    service: ServiceSpec
    predict: PredictPlan
    teardown: TeardownSection
    notes: tuple[str, ...]
    steps: tuple[Step, ...]
    keys: tuple[tuple[str, str], ...] = ()    # (step, key): see stepkeys.py
    model_code: Path | None = None            # model.inference_code: model/ is assembled from it at import
    optimize: OptimizePlan = OptimizePlan()   # model.optimize: what the import step converts
    bucket: str = ""                          # the OBS bucket of every object of the run
    run_prefix: str = ""                      # obs://<bucket>/<pipeline>/<run id>/: data/, output/, model-package/ below it
    params: tuple[tuple[str, object, str], ...] = ()   # (name, value, "default" | "-p")
    conditions: tuple[tuple[str, str], ...] = ()       # (step, when): see conditions.py
    search: SearchPlan | None = None
    cache: tuple[tuple[str, str], ...] = ()            # (step, cache key) of the steps that may be cached
    evaluate: EvaluateSection | None = None
    batch: BatchPredictSection | None = None

    def key(self, step: str) -> str:
        return dict(self.keys).get(step, "")

    def cache_key(self, step: str) -> str | None:
        return dict(self.cache).get(step)

    def condition(self, step: str) -> str | None:
        return dict(self.conditions).get(step)

    @property
    def steps_keyed(self) -> frozenset[str]:
        return frozenset(step for step, _ in self.keys)

    @property
    def output_uri(self) -> str:
        return self.job.train_url

    def to_dict(self) -> dict:
        out = asdict(self)
        return _jsonable(out)


def new_run_id(now: float | None = None) -> str:
    stamp = time.strftime("%y%m%d-%H%M%S", time.localtime(now or time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


def build_plan(spec: PipelineSpec, config: ConfigSpec, *, spec_path: Path, config_dir: Path,
               profile: str | None = None, run_id: str | None = None, strict: bool = False,
               keep: bool = False, params: Resolved | None = None, no_cache: bool = False) -> Plan:
    """Decide names, paths and emulation notes. Raises ``UserError`` for what cannot run,
    and with ``strict`` for settings this profile would only emulate or ignore. ``keep``
    (``run --keep``) leaves everything running: teardown.when becomes 'never'. ``params``
    are the parameter values the spec was built with; ``no_cache`` turns caching off."""
    profile_name, prof = config.profile(profile or spec.profile)
    run_id = run_id or new_run_id()
    base = spec_path.resolve().parent
    root = (config_dir / os.path.expanduser(prof.root)).resolve()
    prefix = f"obs://{spec.bucket}/{spec.name}/{run_id}"
    cached_prefix = f"obs://{spec.bucket}/{spec.name}/cache/{run_id}"   # outlives the run: see cache.py
    cache_data = spec.data.cache and not no_cache
    cache_train = spec.train.cache and not no_cache and spec.train.search is None

    data = data_plan(spec, base, spec_path, work_dir=root / "tmp" / run_id,
                     data_uri=f"{cached_prefix if cache_data else prefix}/data/")
    if spec.predict.images == "holdout" and data.mode == "raw":
        raise UserError(f"data.source {data.source_dir} is uploaded as it is (raw data), so no images are held out "
                        "for the predict step", where=where(spec_path, "predict.images"),
                        hint="point predict.images at a folder (or file) of test images")
    if spec.predict.images == "holdout" and data.mode == "prepared":
        raise UserError(f"data.source {data.source_dir} holds packed RecordIO files, so no images are held out "
                        "for the predict step", where=where(spec_path, "predict.images"),
                        hint="point predict.images at a folder of test images (one sub-folder per class)")
    if spec.predict.images == "holdout" and spec.data.test_ratio == 0:
        raise UserError("predict.images is 'holdout' but data.test_ratio is 0, so nothing is held out",
                        where=where(spec_path, "data.test_ratio"),
                        hint="set data.test_ratio (e.g. 0.1) or point predict.images at a folder")
    predict_images = spec.predict.images
    if predict_images != "holdout":
        predict_images = str(existing_path(base, predict_images, "predict.images", spec_path))
        if data.mode == "prepared":
            check_label_names(data, Path(predict_images), spec_path)

    task = TASKS[spec.data.task]          # what a face pipeline runs unless told otherwise
    train_dir = spec.train.code_dir if "code_dir" in spec.train.model_fields_set else task.job_dir
    own_job = "code_dir" not in spec.train.model_fields_set or resolve(base, train_dir, REPO_ROOT) == (
        REPO_ROOT / task.job_dir).resolve()
    inference_code = (spec.train.inference_code if "inference_code" in spec.train.model_fields_set
                      else task.inference_dir if own_job else None)   # never merged into a user's code
    algorithm = (spec.model.model_algorithm if "model_algorithm" in spec.model.model_fields_set
                 else task.model_algorithm)
    code_dir = existing_dir(base, train_dir, "train.code_dir", spec_path, fallback=REPO_ROOT)
    if not (code_dir / spec.train.boot_file).is_file():
        raise UserError(f"train.boot_file '{spec.train.boot_file}' is not in {code_dir}",
                        where=where(spec_path, "train.boot_file"))
    args_note = jobargs.check(code_dir, spec.train.hyperparameters, lambda key: where(spec_path, key))
    include = ()
    if inference_code:
        include = (str(existing_dir(base, inference_code, "train.inference_code", spec_path,
                                      fallback=REPO_ROOT)),)
    job = JobSpec(
        name=f"{spec.name}-{run_id}-train", run_id=run_id, code_dir=str(code_dir), boot_file=spec.train.boot_file,
        data_url=data.data_uri, train_url=f"{cached_prefix if cache_train else prefix}/output/",
        hyperparameters=tuple((k, job_arg(v)) for k, v in spec.train.hyperparameters.items()),
        flavor=spec.train.flavor, instance_count=spec.train.instance_count,
        envs=tuple(spec.train.envs.items()), max_runtime_s=spec.train.max_runtime,
        include_dirs=include, image=_image(spec.train.image, prof), shipped=shipped_with(code_dir))
    model_name = spec.model.name or spec.name
    model_code = (existing_dir(base, spec.model.inference_code, "model.inference_code", spec_path)
                  if spec.model.inference_code else None)
    model = ModelSpec(name=f"{model_name}-{run_id}", version=spec.model.version, run_id=run_id,
                      # model/ is built under the run's prefix when the import step adds code or
                      # converts (model.optimize): the training output may be a cached one that
                      # later runs reuse, so nothing is ever written into it.
                      source_location=f"{prefix}/model-package/" if model_code or spec.model.optimize != "fp32"
                      else job.train_url,
                      model_algorithm=algorithm, runtime=spec.model.runtime, image=_image(spec.model.image, prof))
    service = ServiceSpec(
        name=f"{spec.service.name or spec.name}-{run_id}-svc", run_id=run_id, deploy_timeout_s=spec.service.deploy_timeout,
        ttl_s=spec.service.ttl,
        configs=(ServiceConfig(model_id="<imported model>", flavor=spec.service.flavor,
                               instance_count=spec.service.instance_count, envs=tuple(spec.service.envs.items())),))
    if prof.backend == "modelarts" and (problem := service_ttl_problem(spec.service.ttl)):
        raise UserError(problem, where=where(spec_path, "service.ttl"), hint=TTL_HINT)
    info, emulated = backend_notes(spec, config, prof, job, model)
    if strict and emulated:
        raise UserError(f"--strict: profile '{profile_name}' would not run this pipeline as written:\n  - "
                        + "\n  - ".join(emulated), where=str(spec_path),
                        hint="use a profile that runs it for real, change the settings named, or drop --strict")
    notes = tuple(info + ([args_note] if args_note else []) + emulated)
    predict = PredictPlan(predict_images, spec.predict.limit, spec.predict.min_accuracy,
                          spec.predict.max_error_rate)
    teardown = spec.teardown.model_copy(update={"when": "never"}) if keep else spec.teardown
    run_dir = root / "runs" / run_id
    m = spec.model
    optimize = OptimizePlan(m.optimize, m.calibration, m.calibration_images, m.min_top1_agreement,
                            m.max_verification_drop)
    plan_args = dict(run_id=run_id, pipeline=spec.name, spec_path=spec_path.resolve(), profile=profile_name,
                     backend=prof.backend, root=root, run_dir=run_dir, data=data, job=job, model=model,
                     service=service, predict=predict, teardown=teardown, notes=notes, model_code=model_code,
                     optimize=optimize, bucket=spec.bucket, run_prefix=prefix + "/")
    skipped: list[str] = []
    keys = step_keys(data, TOOLS_DIR, job, model, service, predict, model_code, skipped, optimize)
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        plan_args["notes"] = notes + (f"train.code_dir: {len(skipped)} entr{'y is' if len(skipped) == 1 else 'ies are'} "
                                      f"not a regular file (symlink, pipe, device) and not read: {shown}",)
    at = lambda key: where(spec_path, key)   # noqa: E731
    metrics = known_metrics(code_dir, REPO_ROOT)
    values = dict(params.values) if params else {}
    conditions = check_conditions(spec, values, metrics, at)
    check_offline_steps(spec, base, at)
    search = search_plan(spec, job, prefix, on_this_machine(prof), metrics, at)
    cache = cache_keys(keys["prepare"], profile_name, spec.bucket, job)
    enabled = {"prepare": cache_data and data.mode not in ("prepared", "raw"), "upload": cache_data,
               "train": cache_train}
    plan_args.update(params=tuple((k, v, params.sources[k]) for k, v in values.items()), conditions=conditions,
                     search=search, cache=tuple((step, key) for step, key in cache.items() if enabled[step]),
                     evaluate=spec.evaluate, batch=spec.batch_predict)
    steps = workflow_steps(spec, _steps(spec, data, job, model, service, predict, model_code, optimize), model,
                           search, conditions)
    if plan_args["cache"]:
        steps = steps[:-1] + (replace(steps[-1], details=steps[-1].details + (
            f"keeps the {', '.join(s for s, _ in plan_args['cache'])} outputs for later runs "
            f"(obs://{spec.bucket}/{spec.name}/cache/, {root / 'cache'}; `cleanup --cache` removes them)",)),)
    return Plan(**plan_args, steps=steps, keys=tuple(keys.items()))


def _image(chosen: str | None, prof) -> str:
    """The pipeline's image, else the profile's (modelarts profiles only)."""
    return chosen or getattr(prof, "image", None) or ""


def _steps(spec, data: DataPlan, job: JobSpec, model: ModelSpec, service: ServiceSpec, predict: PredictPlan,
           model_code: Path | None = None, optimize: OptimizePlan = OptimizePlan()):
    hp = " ".join(f"--{k}={v}" for k, v in job.hyperparameters) or "(script defaults)"
    cfg = service.configs[0]
    return (
        Step("prepare", "Prepare data", prepare_details(data)),
        Step("upload", "Upload data", (f"to {data.data_uri}",)),
        Step("train", "Train", (f"job {job.name}: {Path(job.code_dir).name}/{job.boot_file} {hp}"
                                + (f" in image {job.image}" if job.image else ""),
                                f"flavour {job.flavor} x {job.instance_count}, max runtime {job.max_runtime_s:.0f}s",
                                f"outputs to {job.train_url}")),
        Step("import_model", "Import model", (f"model {model.name} {model.version} from {model.source_location}model/"
                                              + (f" as model_type Image, served by {model.image}" if model.image
                                                 else "")
                                              + (f" (the training output's symbol and latest params + {model_code})"
                                                 if model_code else
                                                 " (a copy of the training output's model/, converted there)"
                                                 if optimize.mode != "fp32" else ""),
                                              f"runtime {model.runtime or 'from config.json (python2.7 when unset)'}",
                                              optimize.describe())),
        Step("deploy", "Deploy", (f"service {service.name}: flavour {cfg.flavor} x {cfg.instance_count}"
                                  + (f", stops itself after {service.ttl_s:.0f}s (ttl)" if service.ttl_s else ""),)),
        Step("predict", "Predict", (("held-out test images" if predict.images == "holdout" else
                                     f"images under {predict.images} (scored when their sub-folder is a class name)")
                                    + (f", at most {predict.limit}" if predict.limit else "")
                                    + (f", fail below {predict.min_accuracy:.0%} accuracy" if predict.min_accuracy else ""),)),
        Step("teardown", "Tear down", (f"when: {spec.teardown.when}; deletes service, model, job, "
                                       f"objects under obs://{spec.bucket}/{spec.name}/<run>/ and temporary folders",)),
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value
