"""A frozen, ordered plan built from a validated spec: every name, path and note decided
before anything runs, so ``plan`` can show exactly what ``run`` will do (no side effects)."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .backends.base import JobSpec, ModelSpec, ServiceConfig, ServiceSpec
from .errors import UserError
from .yamlsource import line_of, load_with_lines
from .spec import ConfigSpec, GenerateSpec, PipelineSpec, TeardownSection

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS = ("prepare", "upload", "train", "import_model", "deploy", "predict", "teardown")


@dataclass(frozen=True)
class DataPlan:
    generate: GenerateSpec | None      # None: use source_dir as it is
    source_dir: Path | None
    work_dir: Path                     # temporary: generated images and packed RecordIO
    data_uri: str                      # obs:// prefix the packed data is uploaded to
    val_ratio: float
    test_ratio: float
    resize: int
    quality: int
    workers: int

    @property
    def images_dir(self) -> Path:
        return self.source_dir or self.work_dir / "images"

    @property
    def packed_dir(self) -> Path:
        return self.work_dir / "packed"


@dataclass(frozen=True)
class PredictPlan:
    images: str                        # "holdout" or a path
    limit: int | None
    min_accuracy: float | None


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
               profile: str | None = None, run_id: str | None = None) -> Plan:
    """Decide names, paths and emulation notes. Raises ``UserError`` for what cannot run."""
    profile_name, prof = config.profile(profile or spec.profile)
    if prof.backend != "local":
        raise UserError(f"profile '{profile_name}' uses the '{prof.backend}' backend, which this version cannot run yet",
                        hint="use the 'local' profile (--profile local)")
    run_id = run_id or new_run_id()
    base = spec_path.resolve().parent
    root = (config_dir / os.path.expanduser(prof.root)).resolve()
    prefix = f"obs://{spec.bucket}/{spec.name}/{run_id}"

    source_dir = None
    if spec.data.source != "generated":
        source_dir = _existing_dir(base, spec.data.source, "data.source", spec_path)
    data = DataPlan(
        generate=spec.data.generate if source_dir is None else None, source_dir=source_dir,
        work_dir=root / "tmp" / run_id, data_uri=f"{prefix}/data/", val_ratio=spec.data.val_ratio,
        test_ratio=spec.data.test_ratio, resize=spec.data.resize, quality=spec.data.quality,
        workers=spec.data.workers)
    if spec.predict.images == "holdout" and spec.data.test_ratio == 0:
        raise UserError("predict.images is 'holdout' but data.test_ratio is 0, so nothing is held out",
                        where=_where(spec_path, "data.test_ratio"),
                        hint="set data.test_ratio (e.g. 0.1) or point predict.images at a folder")
    if spec.predict.images != "holdout":
        _existing_path(base, spec.predict.images, "predict.images", spec_path)

    code_dir = _existing_dir(base, spec.train.code_dir, "train.code_dir", spec_path, fallback=REPO_ROOT)
    if not (code_dir / spec.train.boot_file).is_file():
        raise UserError(f"train.boot_file '{spec.train.boot_file}' is not in {code_dir}",
                        where=_where(spec_path, "train.boot_file"))
    include = ()
    if spec.train.inference_code:
        include = (str(_existing_dir(base, spec.train.inference_code, "train.inference_code", spec_path,
                                     fallback=REPO_ROOT)),)
    job = JobSpec(
        name=f"{spec.name}-{run_id}-train", run_id=run_id, code_dir=str(code_dir), boot_file=spec.train.boot_file,
        data_url=data.data_uri, train_url=f"{prefix}/output/",
        hyperparameters=tuple((k, _arg(v)) for k, v in spec.train.hyperparameters.items()),
        flavor=spec.train.flavor, instance_count=spec.train.instance_count,
        envs=tuple(spec.train.envs.items()), max_runtime_s=spec.train.max_runtime,
        include_dirs=include)
    model_name = spec.model.name or spec.name
    model = ModelSpec(name=f"{model_name}-{run_id}", version=spec.model.version, run_id=run_id,
                      source_location=job.train_url, model_algorithm=spec.model.model_algorithm,
                      runtime=spec.model.runtime)
    service = ServiceSpec(
        name=f"{spec.service.name or spec.name}-{run_id}-svc", run_id=run_id, deploy_timeout_s=spec.service.deploy_timeout,
        configs=(ServiceConfig(model_id="<imported model>", flavor=spec.service.flavor,
                               instance_count=spec.service.instance_count, envs=tuple(spec.service.envs.items())),))
    notes = tuple(_local_notes(config, job.flavor, "training") + _local_notes(config, spec.service.flavor, "service"))
    predict = PredictPlan(spec.predict.images, spec.predict.limit, spec.predict.min_accuracy)
    run_dir = root / "runs" / run_id
    plan_args = dict(run_id=run_id, pipeline=spec.name, spec_path=spec_path.resolve(), profile=profile_name,
                     backend=prof.backend, root=root, run_dir=run_dir, data=data, job=job, model=model,
                     service=service, predict=predict, teardown=spec.teardown, notes=notes)
    return Plan(**plan_args, steps=_steps(spec, data, job, model, service, predict))


def _steps(spec, data: DataPlan, job: JobSpec, model: ModelSpec, service: ServiceSpec, predict: PredictPlan):
    source = (f"generate {data.generate.classes} classes x {data.generate.images_per_class} images (seed {data.generate.seed})"
              if data.generate else f"use image folder {data.source_dir}")
    hp = " ".join(f"--{k}={v}" for k, v in job.hyperparameters) or "(script defaults)"
    cfg = service.configs[0]
    return (
        Step("prepare", "Prepare data", (source, f"pack RecordIO (val {data.val_ratio:.0%}, held out {data.test_ratio:.0%}, "
                                                 f"shorter edge {data.resize or 'kept'}) in {data.work_dir}")),
        Step("upload", "Upload data", (f"to {data.data_uri}",)),
        Step("train", "Train", (f"job {job.name}: {Path(job.code_dir).name}/{job.boot_file} {hp}",
                                f"flavour {job.flavor} x {job.instance_count}, max runtime {job.max_runtime_s:.0f}s",
                                f"outputs to {job.train_url}")),
        Step("import_model", "Import model", (f"model {model.name} {model.version} from {model.source_location}model/",)),
        Step("deploy", "Deploy", (f"service {service.name}: flavour {cfg.flavor} x {cfg.instance_count}",)),
        Step("predict", "Predict", (("held-out test images" if predict.images == "holdout" else predict.images)
                                    + (f", at most {predict.limit}" if predict.limit else "")
                                    + (f", fail below {predict.min_accuracy:.0%} accuracy" if predict.min_accuracy else ""),)),
        Step("teardown", "Tear down", (f"when: {spec.teardown.when}; deletes service, model, job, "
                                       f"objects under obs://{spec.bucket}/{spec.name}/<run>/ and temporary folders",)),
    )


def _local_notes(config: ConfigSpec, flavor: str, what: str) -> list[str]:
    known = config.flavors.get(flavor)
    if known is None:
        return [f"{what} flavour '{flavor}' is not in config.json's flavors; it runs on this machine's CPU"]
    if known.gpus:
        return [f"{what} flavour '{flavor}' ({known.gpus} x {known.gpu_type or 'GPU'}) is emulated on the CPU: "
                f"the local backend is CPU-only (MXNet 1.9.1 CUDA wheels have no kernels for current GPUs)"]
    return [f"{what} flavour '{flavor}' ({known.cpus} vCPU) runs on this machine's {os.cpu_count()} CPU cores"]


def _where(spec_path: Path, key: str) -> str:
    """``file:line`` of ``key`` (read again only when there is an error to report)."""
    try:
        _, lines = load_with_lines(spec_path)
    except UserError:
        return str(spec_path)
    line = line_of(lines, tuple(key.split(".")))   # a defaulted key points at its section
    return f"{spec_path}:{line}" if line else str(spec_path)


def _existing_dir(base: Path, value: str, key: str, spec_path: Path, fallback: Path | None = None) -> Path:
    return _existing_path(base, value, key, spec_path, fallback, folder=True)


def _existing_path(base: Path, value: str, key: str, spec_path: Path, fallback: Path | None = None,
                   folder: bool = False) -> Path:
    path = _resolve(base, value, fallback)
    if not (path.is_dir() if folder else path.exists()):
        what = "folder " if folder else ""
        raise UserError(f"{key}: {what}'{value}' does not exist (looked in {path})", where=_where(spec_path, key),
                        hint="fix the path; relative paths are read from the pipeline file's folder")
    return path


def _resolve(base: Path, value: str, fallback: Path | None) -> Path:
    path = Path(os.path.expanduser(value))
    if path.is_absolute():
        return path
    if (base / path).exists() or fallback is None:
        return (base / path).resolve()
    return (fallback / path).resolve()   # the project's own jobs, for pipelines kept elsewhere


def _arg(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


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
